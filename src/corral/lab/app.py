"""A small HTTP service for agent tests: answers 200, or 500 when its mode file says "500".

python app.py HOST PORT MODE_FILE
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    host, port, mode_file = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])

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

    ThreadingHTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
