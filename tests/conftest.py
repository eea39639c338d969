"""Fixtures shared by every tier: a moto table built from template.yaml, and the local runtime."""

from __future__ import annotations

import fcntl
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
import requests
from moto import mock_aws

from machinery_core.local.template import Template
from machinery_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
EXAMPLES = ROOT / "examples"

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")


@pytest.fixture
def dynamodb() -> Iterator[object]:
    """A moto DynamoDB client with the template's table (named `machinery-test`)."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        Template.load(TEMPLATE).create_table(client, "machinery-test")
        yield client


@pytest.fixture
def store(dynamodb: object) -> Store:
    return Store(dynamodb, "machinery-test", timedelta(days=30))  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalStack:
    """A `machinery local --examples` process, driven over real HTTP."""

    def __init__(
        self, url: str, process: subprocess.Popen[str], signing_key: str, banner: list[str]
    ) -> None:
        self.url = url
        self.process = process
        self.signing_key = signing_key  # what completion notifications are signed with
        self.banner = banner  # what it printed up to and including its URL
        self.http = requests.Session()

    def post(self, path: str, json: object = None, **kwargs: object) -> requests.Response:
        return self.http.post(self.url + path, json=json, timeout=10, **kwargs)  # type: ignore[arg-type]

    def put(self, path: str, json: object = None) -> requests.Response:
        return self.http.put(self.url + path, json=json, timeout=10)

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return self.http.get(self.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]

    def delete(self, path: str) -> requests.Response:
        return self.http.delete(self.url + path, timeout=10)

    def wait_for_end(self, event_id: str, timeout: float = 20.0) -> dict[str, object]:
        """Poll until the event is terminal; fail the test if it is not by `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            event: dict[str, object] = self.get(f"/events/{event_id}").json()
            if event["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                return event
            if time.monotonic() > deadline:
                pytest.fail(f"event {event_id} still {event['status']} after {timeout}s")
            time.sleep(0.02)


@pytest.fixture(scope="session")
def example_ports() -> Iterator[None]:
    """Held while the example services' fixed ports (5001-5004) are in use by this run.

    A second test run on the same machine waits here instead of failing to bind them.
    """
    with open(Path(os.environ.get("TMPDIR", "/tmp")) / "machinery-example-ports.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def local_stack(example_ports: None) -> Iterator[LocalStack]:
    """The local runtime as users run it (`machinery local --examples`), with waits scaled to 1%."""
    port = free_port()
    signing_key = "e2e-notification-signing-key"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "machinery_core.cli",
            "local",
            "--examples",
            "--port",
            str(port),
            "--time-scale",
            "0.01",
        ],
        cwd=ROOT,
        # ALLOWED_SERVICE_HOSTS unset: the local runtime's own default (loopback) applies
        env={
            **{k: v for k, v in os.environ.items() if k != "ALLOWED_SERVICE_HOSTS"},
            "MACHINERY_NOTIFICATION_SECRET": signing_key,
        },
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    assert process.stdout is not None
    url = None
    banner: list[str] = []
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        banner.append(line.rstrip("\n"))
        found = re.search(r"Machinery API: (http://\S+)", line)
        if found:
            url = found.group(1)
    if url is None:
        process.kill()
        pytest.fail("machinery local did not start")
    stack = LocalStack(url, process, signing_key, banner)
    yield stack
    process.terminate()
    process.wait(timeout=10)
