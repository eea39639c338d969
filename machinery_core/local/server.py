"""Serving the local runtime's routes over HTTP on loopback."""

from __future__ import annotations

import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from machinery_core.local.runtime import LocalRuntime

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's own payload limit


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    runtime: LocalRuntime


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._write(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"Content-Type": "application/json"},
                b'{"message":"Request Entity Too Large"}',
                close=True,
            )
            return
        body = self.rfile.read(length) if length else b""
        answer = self.server.runtime.handle_http(
            self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
        )
        self._write(answer.status, answer.headers, answer.body)

    def _write(
        self, status: int, headers: dict[str, str], body: bytes, close: bool = False
    ) -> None:
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
        lines += [
            f"{key}: {value}" for key, value in headers.items() if key.lower() != "content-length"
        ]
        lines.append(f"Content-Length: {len(body)}")
        if close:
            lines.append("Connection: close")
            self.close_connection = True
        # Head and body in one write: separate small writes stall on Nagle and delayed ACKs.
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(runtime: LocalRuntime, host: str, port: int) -> ThreadingHTTPServer:
    """Start serving in a background thread; the caller owns shutdown."""
    server = _Server((host, port), _Handler)
    server.runtime = runtime
    threading.Thread(target=server.serve_forever, name="machinery-http", daemon=True).start()
    return server
