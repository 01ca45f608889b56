"""A small HTTP service for agent tests: answers 200, or 500 when its mode file says "500".

python app.py HOST PORT MODE_FILE

Quiet about clients that hang up early (a health check at its timeout, HAProxy aborting a
request, a benchmark's client): a BrokenPipeError or ConnectionResetError is the client's
doing, not the service's, and a traceback for each one buried the lab's logs. Every other
error still prints its traceback.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HUNG_UP = (BrokenPipeError, ConnectionResetError)  # the client went away mid-request


class Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: at 200 requests a second, a stall of a
    # few ms fills it, the kernel drops the next SYN and HAProxy's connect waits the 1 s
    # SYN retransmit (seen as 1 s client timeouts in the rolling-restart tests). Real
    # services listen with 128 or more.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Called inside the ``except`` of a failed request: silent for a client that hung
        up, socketserver's traceback for anything else."""
        if isinstance(sys.exc_info()[1], HUNG_UP):
            return
        super().handle_error(request, client_address)


def handler(host: str, mode_file: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                mode = mode_file.read_text().strip()
            except OSError:
                mode = "ok"
            code = 500 if mode == "500" else 200
            body = f"{mode} {host}\n".encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    host, port, mode_file = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    Server((host, port), handler(host, mode_file)).serve_forever()


if __name__ == "__main__":
    main()
