"""The fuzzing tier's own local runtime: no example services, nothing it could call.

It is a separate `machinery local` process from the e2e tier's `local_stack`, started
without `--examples`, so the definitions the fuzzer registers (with whatever addresses it
generates) never share a registry with tests that send events.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import requests
from loopback import LoopbackServer, start_local

STARTUP_SECONDS = 60.0
EVENT_SECONDS = 20.0

SEEDED_SERVICE = "fuzz-echo"
SEEDED_WORKFLOW = "fuzz-flow"


@dataclass(frozen=True)
class FuzzStack:
    """A running `machinery local` on loopback and what was registered before fuzzing."""

    url: str
    seeded_event_id: str
    stub: LoopbackServer  # the seeded service: it records every call Machinery makes to it

    def known_path_values(self) -> dict[str, str]:
        """Path parameter values that name something real, so 200 answers are fuzzed too."""
        return {
            "name": SEEDED_SERVICE,
            "workflow_id": SEEDED_WORKFLOW,
            "event_id": self.seeded_event_id,
        }


def require_loopback(url: str) -> str:
    """The fuzzer may only ever talk to 127.0.0.0/8."""
    host = urlsplit(url).hostname or ""
    assert ipaddress.ip_address(host).is_loopback, f"{url} is not a loopback address"
    return url


def start(port: int) -> tuple[subprocess.Popen[str], str]:
    process, url, _ = start_local(
        ["--host", "127.0.0.1", "--port", str(port), "--time-scale", "0.01"],
        # Only loopback service addresses may be registered there (the local default, made
        # explicit): the address guard is one more fence, not the one the fuzzer relies on.
        env={**os.environ, "ALLOWED_SERVICE_HOSTS": "127.0.0.0/8"},
        timeout=STARTUP_SECONDS,
    )
    if url is not None:
        return process, url
    process.kill()
    process.wait(timeout=10)
    pytest.fail("machinery local (fuzz stack) did not start")


def seed(url: str, stub: LoopbackServer) -> str:
    """One service on a loopback stub, one workflow, one event run to its end."""
    http = requests.Session()
    service = {
        "name": SEEDED_SERVICE,
        "address": stub.address,
        "spec": {
            "inputs": {"message": {"type": "string"}},
            "outputs": {"message": {"type": "string"}},
        },
    }
    workflow = {
        "name": SEEDED_WORKFLOW,
        "spec": {
            "services": [SEEDED_SERVICE],
            "inputs": {"message": {"type": "string"}},
            "outputs": {"message": {"type": "string"}},
        },
    }
    for path, body in (("/services", service), ("/workflows", workflow)):
        answer = http.post(url + path, json=body, timeout=10)
        assert answer.status_code == 201, answer.text
    answer = http.post(
        url + f"/e/{SEEDED_WORKFLOW}", json={"data": {"message": "seed"}}, timeout=10
    )
    assert answer.status_code == 202, answer.text
    event_id: str = answer.json()["event_id"]
    deadline = time.monotonic() + EVENT_SECONDS
    while True:
        event = http.get(url + f"/events/{event_id}", timeout=10).json()
        if event["status"] == "SUCCEEDED":
            return event_id
        assert event["status"] in ("PENDING", "RUNNING"), event
        if time.monotonic() > deadline:
            pytest.fail(f"the seeded event is still {event['status']} after {EVENT_SECONDS}s")
        time.sleep(0.02)
