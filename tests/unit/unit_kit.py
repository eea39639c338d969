"""Helpers of the unit tier: a loopback service whose routes each test scripts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from loopback import Call, LoopbackServer, Reply


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
