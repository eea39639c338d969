"""What another process needs to start `machinery local` and find it: the banner line that
names the API's URL, a free loopback port, and the lock the example services' fixed ports
(5001-5013) are held under, so that two runs on one machine wait for each other."""

from __future__ import annotations

import fcntl
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

API_BANNER = "Machinery API: "
_API_URL = re.compile(re.escape(API_BANNER) + r"(http://\S+)")


def api_url_in(line: str) -> str | None:
    """The API's URL, if `line` is the banner line that announces it."""
    found = _API_URL.search(line)
    return found.group(1) if found else None


def free_port() -> int:
    """A loopback port nobody listens on at the moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def example_ports_held() -> Iterator[None]:
    """Held while this process uses the example services' fixed ports."""
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "machinery-example-ports.lock"
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
