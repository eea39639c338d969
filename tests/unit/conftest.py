"""The unit tier: pure code only. No socket, no DNS lookup and no moto here; what needs one
is in tests/integration/."""

from __future__ import annotations

import socket
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket or DNS lookup fails the test that made it."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a unit test touched the network: it belongs in tests/integration/")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
