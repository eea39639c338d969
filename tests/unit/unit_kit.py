"""Helpers of the unit tier: a loopback service whose routes each test scripts, a fixed
clock, and a service builder."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from loopback import Call, LoopbackServer, Reply

from machinery_core.domain.models import Service

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
STRING = {"type": "string"}
INTEGER = {"type": "integer"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_service(
    name: str = "upper",
    *,
    inputs: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    **extra: Any,
) -> Service:
    """A service at 127.0.0.1:5000/{name}; its inputs and outputs default to a string message."""
    return Service.model_validate(
        {
            "name": name,
            "address": f"http://127.0.0.1:5000/{name}",
            "spec": {
                "inputs": {"message": STRING} if inputs is None else inputs,
                "outputs": {"message": STRING} if outputs is None else outputs,
            },
            **extra,
        }
    )


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
