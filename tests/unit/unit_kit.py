"""Helpers of the unit tier: a scripted loopback HTTP server's state."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Loopback:
    """A server on 127.0.0.1: `routes[path]` answers, `received` records every request."""

    url: str
    routes: dict[str, Callable[[], Reply]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
