"""Query parameters: parsed, or a 400 that names the parameter and what it must be."""

from __future__ import annotations

from starlette.requests import Request


class BadRequest(Exception):
    """A malformed request (400), or a thing that is not there (404), with its reason."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as an int in [low, high], else :class:`BadRequest`."""
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, not {text[:40]!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, not {value}")
    return value
