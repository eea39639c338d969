"""Fixtures shared by every tier: a moto table built from template.yaml, and the local runtime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from loopback import start_local
from moto import mock_aws

from machinery_core.adapters.store import Store
from machinery_core.local.aws_calls import ENVIRONMENT_VARIABLE as AWS_CALLS
from machinery_core.local.launch import example_ports_held, free_port
from machinery_core.local.template import Template

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
EXAMPLES = ROOT / "examples"

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

_OWN_RECORDING = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    # Every local runtime of the run (in-process, or `machinery local` processes, which
    # inherit the environment) records its functions' AWS calls for the permissions check.
    if not os.environ.get(AWS_CALLS):
        directory = Path(tempfile.mkdtemp(prefix="machinery-aws-calls-"))
        os.environ[AWS_CALLS] = str(directory)
        config.stash[_OWN_RECORDING] = directory


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = config.stash.get(_OWN_RECORDING, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
        os.environ.pop(AWS_CALLS, None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The permissions check reads what every other test's runtimes recorded: it goes last.
    checks = [item for item in items if item.get_closest_marker("permissions")]
    if checks:
        items[:] = [item for item in items if not item.get_closest_marker("permissions")] + checks


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

    def send(self, workflow: str, data: object, **body: object) -> str:
        """POST an event (`data`, plus `body`'s other fields) to `workflow`; its accepted id."""
        answer = self.post(f"/e/{workflow}", json={"data": data, **body})
        assert answer.status_code == 202, answer.text
        event_id: str = answer.json()["event_id"]
        return event_id

    def wait_until(
        self,
        event_id: str,
        done: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 20.0,
    ) -> dict[str, Any]:
        """Poll the event until `done(event)`; fail the test if it is not by `timeout`.

        `what` is the failure message, a str.format template over `event_id`, `timeout` and
        `event` (the last one polled), e.g. "event {event_id} still {event[status]}".
        """
        deadline = time.monotonic() + timeout
        while True:
            event: dict[str, Any] = self.get(f"/events/{event_id}").json()
            if done(event):
                return event
            if time.monotonic() > deadline:
                pytest.fail(what.format(event_id=event_id, timeout=timeout, event=event))
            time.sleep(0.02)

    def wait_for_end(self, event_id: str, timeout: float = 20.0) -> dict[str, object]:
        """Poll until the event is terminal; fail the test if it is not by `timeout`."""
        return self.wait_until(
            event_id,
            lambda event: event["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"),
            "event {event_id} still {event[status]} after {timeout}s",
            timeout,
        )


@pytest.fixture(scope="session")
def example_ports() -> Iterator[None]:
    """Held while the example services' fixed ports (5001-5004) are in use by this run.

    A second test run on the same machine waits here instead of failing to bind them.
    """
    with example_ports_held():
        yield


def _start_stack(*options: str) -> tuple[subprocess.Popen[str], str, str, list[str]]:
    port = free_port()
    signing_key = "e2e-notification-signing-key"
    process, url, banner = start_local(
        [*options, "--port", str(port), "--time-scale", "0.01"],
        # ALLOWED_SERVICE_HOSTS unset: the local runtime's own default (loopback) applies
        env={
            **{k: v for k, v in os.environ.items() if k != "ALLOWED_SERVICE_HOSTS"},
            "MACHINERY_NOTIFICATION_SECRET": signing_key,
        },
    )
    if url is None:
        process.kill()
        pytest.fail("machinery local did not start")
    return process, url, signing_key, banner


@pytest.fixture(scope="session")
def standard_stack(example_ports: None) -> Iterator[LocalStack]:
    """The local runtime as users run it (`machinery local --examples`), with waits scaled to 1%."""
    process, url, signing_key, banner = _start_stack("--examples")
    stack = LocalStack(url, process, signing_key, banner)
    yield stack
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def local_stack(standard_stack: LocalStack) -> LocalStack:
    """The stack every e2e test uses (STANDARD); a module whose tests must hold on both types
    overrides it with `e2e_kit.on_each_type`."""
    return standard_stack


@pytest.fixture(scope="session")
def express_stack(standard_stack: LocalStack) -> Iterator[LocalStack]:
    """The same on an EXPRESS state machine (`--state-machine-type EXPRESS`), with the example
    definitions registered over HTTP: their services are the ones `standard_stack` started."""
    process, url, signing_key, banner = _start_stack("--state-machine-type", "EXPRESS")
    stack = LocalStack(url, process, signing_key, banner)
    definitions = EXAMPLES / "definitions"
    for pattern, route in (("service-*.json", "/services"), ("workflow-*.json", "/workflows")):
        for path in sorted(definitions.glob(pattern)):
            answer = stack.post(route, json=json.loads(path.read_text()))
            assert answer.status_code == 201, f"{path.name}: {answer.text}"
    yield stack
    process.terminate()
    process.wait(timeout=10)
