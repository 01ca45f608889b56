"""Restart backoff of instances restarted in place (pure)."""

from __future__ import annotations


class RestartBackoff:
    """Restarts in place of one instance at most after 0, 1, 2, 4 ... up to 30 s from the
    previous one; restarts older than 5 minutes are forgotten."""

    def __init__(self) -> None:
        self._times: dict[str, list[float]] = {}

    def due(self, name: str, now: float) -> float | None:
        """None when ``name`` may restart now (the restart is then counted), else when it may."""
        recent = [t for t in self._times.get(name, []) if now - t < 300]
        self._times[name] = recent
        wait = min(30.0, 2.0 ** (len(recent) - 1))
        if recent and now - recent[-1] < wait:
            return recent[-1] + wait
        recent.append(now)
        return None
