"""Functional health checks (shell): http, tcp, exec with Nagios plugin semantics."""
