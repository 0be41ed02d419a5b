"""An HTTP server on another loopback address (127.0.0.2) that records every request
reaching it: where a markdown image from untrusted text would send a viewer's browser."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Tracker:
    """``with Tracker() as t:`` … ``t.url`` … ``t.hits`` (the paths requested, in order)."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - stdlib naming
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                """Quiet."""

        self.hits = hits
        self.server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"

    def __enter__(self) -> Tracker:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
