"""Unit-tier fixtures: a loopback HTTP server whose routes each test scripts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from unit_kit import Loopback, Received


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    state: dict[str, Loopback] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            server = state["server"]
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            server.received.append(
                Received(self.command, self.path, dict(self.headers.items()), body)
            )
            route = server.routes.get(self.path)
            status, headers, payload = route() if route else (404, {}, b'{"error":"no route"}')
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")  # no idle handler thread left at teardown
            self.end_headers()
            self.wfile.write(payload)
            self.close_connection = True

        do_POST = do_PUT = do_PATCH = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    state["server"] = Loopback(url=f"http://127.0.0.1:{server.server_address[1]}")
    yield state["server"]
    state["server"].release.set()  # let any held request finish
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
