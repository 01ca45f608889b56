"""Labs: local clusters for the demo, the integration tests and the benchmarks."""
