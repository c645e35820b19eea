"""A real HTTP server on 127.0.0.1 that serves one file's bytes (what a download test needs of the internet)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Served:
    port: int
    hits: list[str] = field(default_factory=list)  # the path of every GET, in order

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serve_bytes(data: bytes, path: str | None = None) -> Iterator[Served]:
    """Answer a GET of ``path`` (of any path when None) with ``data``, any other path with 404."""
    served = Served(0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            served.hits.append(self.path)
            if path is not None and self.path != path:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
