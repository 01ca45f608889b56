"""The node agent: registration under a lease, controller election, reconcile, reporting."""
