"""The agent's HTTP API: health endpoints for load balancers, the read API, metrics, the change
feed and actions, served in a thread of its own from the agent's snapshots.

- :mod:`corral.api.health`: the health endpoints' answers (pure);
- :mod:`corral.api.app`: the ASGI application (Starlette);
- :mod:`corral.api.server`: uvicorn in its own thread, with no idle tick.
"""

from corral.api.app import Source, make_app
from corral.api.server import ApiServer, ApiStartError

__all__ = ["ApiServer", "ApiStartError", "Source", "make_app"]
