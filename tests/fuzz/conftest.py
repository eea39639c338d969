"""Fixtures of the fuzzing tier: its own local runtime on loopback (see fuzz_kit)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fuzz_kit import FuzzStack, require_loopback, seed, start
from loopback import LoopbackServer, json_reply

from machinery_core.local.launch import free_port


@pytest.fixture(scope="session")
def fuzz_stack() -> Iterator[FuzzStack]:
    process, url = start(free_port())
    stub = LoopbackServer(lambda call, _: json_reply(200, call.json())).start()
    try:
        require_loopback(url)
        yield FuzzStack(url, seed(url, stub), stub)
    finally:
        stub.stop()
        process.terminate()
        process.wait(timeout=10)
