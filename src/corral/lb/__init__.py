"""The load-balancer data path: HAProxy configuration (pure), runtime-state sync (pure), and
the asyncio client of HAProxy's runtime API and master CLI.

- :mod:`corral.lb.config`: ``render(spec, node, servers, run_dir) -> str``, ``backends``.
- :mod:`corral.lb.sync`: ``plan(desired, observed) -> SyncPlan``.
- :mod:`corral.lb.runtime`: ``Runtime`` (stats socket), ``MasterCli`` (master socket).
The process driver is :class:`corral.drivers.haproxy.HaproxyService`.
"""
