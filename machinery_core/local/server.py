"""Serving the local runtime's routes over HTTP on loopback."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from machinery_core.local.runtime import LocalRuntime

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's own payload limit
LOG = logging.getLogger(__name__)


class _Refused(Exception):
    """A request the HTTP layer answers itself, before any route (a body it cannot read)."""

    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(status.phrase)
        self.status = status


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
        """Every method, known or not, goes to the runtime's routes, as API Gateway routes
        them: what no route takes is its JSON 404, never http.server's HTML 501."""
        try:
            body = self._body()
        except _Refused as refusal:
            self.send_error(refusal.status)
            return
        try:
            answer = self.server.runtime.handle_http(
                self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
            )
        except Exception:
            LOG.exception("the local runtime failed on %s %s", self.command, self.path)
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR)
            return
        self._write(answer.status, answer.headers, answer.body)

    def __getattr__(self, name: str) -> Callable[[], None]:
        # http.server looks up `do_<METHOD>`, and answers 501 (HTML) when it is missing.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _body(self) -> bytes:
        """The request body: Content-Length bytes, or chunked; at most MAX_REQUEST_BYTES."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked_body()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise _Refused(HTTPStatus.BAD_REQUEST) from None
        if length < 0:
            raise _Refused(HTTPStatus.BAD_REQUEST)
        if length > MAX_REQUEST_BYTES:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        return self.rfile.read(length) if length else b""

    def _chunked_body(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                length = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Refused(HTTPStatus.BAD_REQUEST) from None
            if length < 0:
                raise _Refused(HTTPStatus.BAD_REQUEST)
            size += length
            if size > MAX_REQUEST_BYTES:
                raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            if length == 0:
                break
            chunks.append(self.rfile.read(length))
            self.rfile.readline(1024)  # the CRLF after the chunk
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields, up to the blank line
        return b"".join(chunks)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server answers itself (a malformed request line or header, a request line
        too long, a body that cannot be read) is JSON as API Gateway's, never an HTML page;
        the connection is closed, since what follows on it cannot be trusted."""
        body = json.dumps({"message": HTTPStatus(code).phrase}).encode()
        self._write(code, {"Content-Type": "application/json"}, body, close=True)

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
        if getattr(self, "command", None) == "HEAD":
            body = b""  # a HEAD answer has the headers of the body it does not carry
        # Head and body in one write: separate small writes stall on Nagle and delayed ACKs.
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(runtime: LocalRuntime, host: str, port: int) -> ThreadingHTTPServer:
    """Start serving in a background thread; the caller owns shutdown."""
    server = _Server((host, port), _Handler)
    server.runtime = runtime
    threading.Thread(target=server.serve_forever, name="machinery-http", daemon=True).start()
    return server
