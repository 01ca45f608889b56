"""Galera: pure decisions over what the nodes report."""
