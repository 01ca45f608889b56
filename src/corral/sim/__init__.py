"""Deterministic simulator for the membership core: virtual time, simulated network, faults.

Public API: :class:`Simulator`, :class:`SimNode`, :class:`Network`, :class:`Latency`, and the
scenario interpreter :class:`~corral.sim.scenario.Scenario` used by ``tests/scenarios``.
"""

from corral.sim.network import Latency, Network
from corral.sim.simulator import SimNode, Simulator

__all__ = ["Latency", "Network", "SimNode", "Simulator"]
