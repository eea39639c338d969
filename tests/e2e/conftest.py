"""End-to-end fixtures: stub services on loopback and registrations that clean up.

The session's `local_stack` (tests/conftest.py) is shared by every e2e test, so each test
registers what it needs under a unique name and deletes it afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from e2e_kit import Registry, StartStub
from loopback import Call, LoopbackServer, Reply


@pytest.fixture
def stub_service() -> Iterator[StartStub]:
    """Start stub services for one test; every one is shut down afterwards."""
    started: list[LoopbackServer] = []

    def start(respond: Callable[[Call, int], Reply]) -> LoopbackServer:
        stub = LoopbackServer(respond).start()
        started.append(stub)
        return stub

    yield start
    for stub in started:
        stub.stop()


@pytest.fixture
def registry(local_stack: Any) -> Iterator[Registry]:
    """Register definitions for one test; workflows, then services, are deleted afterwards."""
    tracked = Registry(local_stack)
    yield tracked
    tracked.cleanup()
