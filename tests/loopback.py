"""A scripted HTTP service on 127.0.0.1 for every test tier: it records each call and
answers with `respond(call, nth_call)`. Also: a `machinery local` started on loopback, and a
loopback URL nobody listens on."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from machinery_core.local.launch import api_url_in, free_port

ROOT = Path(__file__).resolve().parents[1]

Reply = tuple[int, dict[str, str], bytes]


def start_local(
    args: list[str], env: dict[str, str], timeout: float = 60.0
) -> tuple[subprocess.Popen[str], str | None, list[str]]:
    """Start `machinery local *args` and read its output until it names the API's URL.

    The process, the URL (None if it ended or `timeout` passed first: the caller decides
    what that means) and the lines read, newlines stripped.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "machinery_core.cli", "local", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        url = api_url_in(line)
        if url is not None:
            return process, url, lines
    return process, None, lines


def closed_url(path: str = "/") -> str:
    """A loopback URL on a port nobody listens on at the moment."""
    return f"http://127.0.0.1:{free_port()}{path}"


def json_reply(status: int, body: object, headers: dict[str, str] | None = None) -> Reply:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


@dataclass(frozen=True)
class Call:
    """One request the service received (header names are case-insensitive)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class LoopbackServer:
    respond: Callable[[Call, int], Reply]
    calls: list[Call] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The root, without a trailing slash."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def address(self) -> str:
        return self.url + "/"

    def start(self) -> LoopbackServer:
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                call = Call(
                    method=self.command,
                    path=self.path,
                    headers=CaseInsensitiveDict(self.headers.items()),
                    body=self.rfile.read(length) if length else b"",
                )
                with loopback._lock:
                    loopback.calls.append(call)
                    nth = len(loopback.calls)
                status, headers, body = loopback.respond(call, nth)
                head = [f"HTTP/1.1 {status} Loopback"]
                head += [f"{key}: {value}" for key, value in headers.items()]
                head.append(f"Content-Length: {len(body)}")
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(
            target=server.serve_forever, args=(0.05,), name="loopback", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self.release.set()  # unblock any handler a test made wait
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self) -> list[Call]:
        with self._lock:
            return list(self.calls)


class Unreachable(BaseAdapter):
    """A transport that records each request it is given and connects nowhere.

    Mount it on a requests.Session where a broken address guard would otherwise reach
    beyond 127.0.0.1: the request shows in `sent` instead of leaving the machine.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(str(request.url))
        raise requests.ConnectionError("the tests let nothing leave the machine")

    def close(self) -> None:
        pass


class FakeResolver:
    """socket.getaddrinfo over a fixed table, for the address guard: no DNS is queried.

    A name not in the table does not resolve (socket.gaierror); `asked` lists each lookup.
    """

    def __init__(self, table: Mapping[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int | None]] = []

    def __call__(self, host: str, port: int | None) -> list[tuple[Any, ...]]:
        self.asked.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port or 0),
            )
            for ip in self.table[host]
        ]


@dataclass
class Loopback:
    """`routes[path]()` answers a request to `path`; `received` lists every request."""

    server: LoopbackServer
    routes: dict[str, Callable[[], Reply]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def received(self) -> list[Call]:
        return self.server.received()

    @property
    def release(self) -> threading.Event:
        return self.server.release

    def answer(self, call: Call, _: int) -> Reply:
        route = self.routes.get(call.path)
        return route() if route else (404, {}, b'{"error":"no route"}')
