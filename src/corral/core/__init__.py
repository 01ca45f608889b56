"""Pure cores: no sockets, no asyncio, no subprocesses, no files, no wall clock.

Every core takes ``now`` (seconds on a monotonic clock) and, where it needs randomness, a seeded
``random.Random``; it returns its effects as data.
"""
