"""Helpers for the end-to-end tests: stub services on loopback, definitions, registrations."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import LocalStack

Reply = tuple[int, dict[str, str], bytes]


def unique(prefix: str) -> str:
    """A slug no other test (or earlier run against the same stack) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def json_reply(status: int, body: object, headers: dict[str, str] | None = None) -> Reply:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


def text_reply(status: int, text: str) -> Reply:
    return status, {"Content-Type": "text/plain"}, text.encode()


@dataclass(frozen=True)
class Call:
    """One request a stub service received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StubService:
    """An http.server on 127.0.0.1 that answers with `respond(call, nth_call)`."""

    respond: Callable[[Call, int], Reply]
    calls: list[Call] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def start(self) -> StubService:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                call = Call(
                    method=self.command,
                    path=self.path,
                    headers={key.lower(): value for key, value in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                with stub._lock:
                    stub.calls.append(call)
                    nth = len(stub.calls)
                status, headers, body = stub.respond(call, nth)
                head = [f"HTTP/1.1 {status} Stub"]
                head += [f"{key}: {value}" for key, value in headers.items()]
                head.append(f"Content-Length: {len(body)}")
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

            do_POST = do_PUT = do_PATCH = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(
            target=server.serve_forever, args=(0.05,), name="stub-service", daemon=True
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


class Registry:
    """Registers definitions over HTTP and deletes them (workflows first) when the test ends."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.services: list[str] = []
        self.workflows: list[str] = []

    def track_service(self, name: str) -> None:
        if name not in self.services:
            self.services.append(name)

    def track_workflow(self, name: str) -> None:
        if name not in self.workflows:
            self.workflows.append(name)

    def service(self, definition: dict[str, Any]) -> dict[str, Any]:
        answer = self.stack.post("/services", json=definition)
        assert answer.status_code == 201, answer.text
        self.track_service(definition["name"])
        body: dict[str, Any] = answer.json()
        return body

    def workflow(self, definition: dict[str, Any]) -> dict[str, Any]:
        answer = self.stack.post("/workflows", json=definition)
        assert answer.status_code == 201, answer.text
        self.track_workflow(definition["name"])
        body: dict[str, Any] = answer.json()
        return body

    def cleanup(self) -> None:
        for name in reversed(self.workflows):
            answer = self.stack.delete(f"/workflows/{name}")
            assert answer.status_code in (204, 404), answer.text
        for name in reversed(self.services):
            answer = self.stack.delete(f"/services/{name}")
            assert answer.status_code in (204, 404), answer.text


def service_definition(
    name: str,
    address: str,
    inputs: dict[str, str],
    outputs: dict[str, str],
    **options: Any,
) -> dict[str, Any]:
    """A canonical service definition; `inputs`/`outputs` map field names to types."""
    return {
        "name": name,
        "address": address,
        "spec": {
            "inputs": {key: {"type": kind} for key, kind in inputs.items()},
            "outputs": {key: {"type": kind} for key, kind in outputs.items()},
        },
        **options,
    }


def workflow_definition(
    name: str,
    services: list[str],
    inputs: dict[str, str],
    outputs: dict[str, str],
    operations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "spec": {
            "services": services,
            "inputs": {key: {"type": kind} for key, kind in inputs.items()},
            "outputs": {key: {"type": kind} for key, kind in outputs.items()},
            "operations": operations or {},
        },
    }
