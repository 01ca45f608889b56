"""The agent's HTTP API: health endpoints for load balancers, the read API, metrics, the change
feed and actions, served in a thread of its own from the agent's snapshots.

- :mod:`corral.api.health`: the health endpoints' answers (pure);
- :mod:`corral.api.read`: the read API (the views of :mod:`corral.records.view`);
- :mod:`corral.api.auth`: bearer tokens and roles (:mod:`corral.auth`);
- :mod:`corral.api.openapi`: the OpenAPI document;
- :mod:`corral.api.app`: the ASGI application (Starlette);
- :mod:`corral.api.server`: uvicorn in its own thread, with no idle tick.
"""

from corral.api.app import Source, make_app
from corral.api.read import Reader
from corral.api.server import ApiServer, ApiStartError

__all__ = ["ApiServer", "ApiStartError", "Reader", "Source", "make_app"]
