"""The agent's decisions as a pure core: inputs with ``now`` in, effects out."""
