"""A webhook receiver on loopback for the alert tests and ``bench/alerts.py``: it records
every POST (its JSON body, the time it came on the wall clock) and answers ``500`` to the
first ``fail_first`` POSTs of each dedup id, then ``200``, so a sender's retries and its
dedup id can be checked: :meth:`Hook.delivered` is each id answered 200, with how many times.

It runs the standard library's threading HTTP server in a thread of its own (nothing to
install, nothing shared with the code under test); :meth:`close` stops it."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hook:
    fail_first: int = 0
    posts: list[tuple[float, dict[str, Any], int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def start(self) -> Hook:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError:
                    body = {}
                status = hook._answer(body if isinstance(body, dict) else {})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _answer(self, body: dict[str, Any]) -> int:
        with self._lock:
            seen = sum(1 for _, b, _ in self.posts if b.get("id") == body.get("id"))
            status = 500 if seen < self.fail_first else 200
            self.posts.append((time.time(), body, status))
        return status

    def delivered(self) -> Counter[str]:
        """Each dedup id answered 200, and how many times."""
        with self._lock:
            return Counter(str(b.get("id")) for _, b, s in self.posts if s == 200)

    def first_delivery(self, event_id: str) -> float | None:
        """When the first 200 for the event ``event_id`` was answered (wall clock)."""
        with self._lock:
            return next(
                (t for t, b, s in self.posts if s == 200 and b.get("event") == event_id), None
            )

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
