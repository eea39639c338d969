"""Unit-tier fixtures: a loopback HTTP server whose routes each test scripts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loopback import LoopbackServer
from unit_kit import Loopback


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    scripted = Loopback(server=LoopbackServer(respond=lambda call, nth: scripted.answer(call, nth)))
    scripted.server.start()
    yield scripted
    scripted.server.stop()
