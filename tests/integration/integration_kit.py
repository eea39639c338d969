"""Helpers of the integration tier: handler loading, recorded events, a fake Lambda context,
wired deps, a clock the test moves, the step handler's answers, and spies on the executions
started and the timers set."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from loopback import LoopbackServer

from machinery_core.adapters.store import Store
from machinery_core.domain.models import utc_now
from machinery_core.runtime.dependencies import Dependencies

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"


if TYPE_CHECKING:
    from machinery_core.local.runtime import LocalRuntime


def one_step_runtime(
    template: Path, server: LoopbackServer, name: str, inputs: str, outputs: str
) -> LocalRuntime:
    """The local runtime in-process (time scaled 1000 times shorter), with a service `name`
    at `server` (string field `inputs` in, `outputs` out) and a workflow `{name}-once`
    calling it."""
    from machinery_core.local.runtime import LocalRuntime

    local = LocalRuntime(template, time_scale=0.001).start()
    service = {
        "name": name,
        "address": server.address,
        "spec": {
            "inputs": {inputs: {"type": "string"}},
            "outputs": {outputs: {"type": "string"}},
        },
    }
    workflow = {
        "name": f"{name}-once",
        "spec": {
            "services": [name],
            "inputs": {inputs: {"type": "string"}},
            "outputs": {outputs: {"type": "string"}},
        },
    }
    for route, body in (("/services", service), ("/workflows", workflow)):
        answer = local.handle_http("POST", route, {}, json.dumps(body).encode())
        assert answer.status == 201, answer.body
    return local


@contextmanager
def raised_by_the_step_function(
    runtime: LocalRuntime, error: type[Exception]
) -> Iterator[list[str]]:
    """The names of the `error`s the runtime's StepFunction handler raises meanwhile (each a
    failed invocation, for the state machine's Retry to take up)."""
    raised: list[str] = []
    deployed = runtime.functions["StepFunction"]
    original = deployed.handler

    def recording(event: dict[str, Any], context: Any) -> Any:
        try:
            return original(event, context)
        except error as failure:
            raised.append(type(failure).__name__)
            raise

    deployed.handler = recording
    try:
        yield raised
    finally:
        deployed.handler = original


def ended_event(runtime: LocalRuntime, event_id: str, timeout: float = 20) -> dict[str, Any]:
    """The event once it has ended, read through the runtime's API (polled to `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event: dict[str, Any] = json.loads(
            runtime.handle_http("GET", f"/events/{event_id}", {}, b"").body
        )
        if event["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return event
        time.sleep(0.01)
    pytest.fail(f"event {event_id} did not end")


def load_handler_module(name: str, relative: str) -> ModuleType:
    """Load a Lambda handler module from its file, as the Lambda runtime would."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the handlers' generic models through it
    spec.loader.exec_module(module)
    return module


def recorded(name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recorded API Gateway event tests/events/{name}.json (with `body`, if given)."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    if body is not None:
        event["body"] = json.dumps(body)
        event["headers"]["content-length"] = str(len(event["body"].encode()))
    return event


def at_path_id(event: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    """The recorded event with its path parameter `key` set to `value` (as API Gateway would)."""
    changed = copy.deepcopy(event)
    old = changed["pathParameters"][key]
    changed["pathParameters"][key] = value
    changed["rawPath"] = changed["rawPath"].replace(old, value)
    changed["requestContext"]["http"]["path"] = changed["rawPath"]
    return changed


class FakeLambdaContext:
    """What powertools and the handlers read of a Lambda context."""

    def __init__(self, function_name: str = "machinery-api", remaining_ms: int = 30_000) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2025/01/01/[$LATEST]0123456789abcdef"
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Wired:
    deps: Dependencies
    store: Store
    stepfunctions: Any
    state_machine_arn: str


def executions(wired: Wired) -> list[str]:
    """The names of the executions started on `wired`'s state machine."""
    listed = wired.stepfunctions.list_executions(stateMachineArn=wired.state_machine_arn)
    return [execution["name"] for execution in listed["executions"]]


class Clock:
    """The dependencies' clock, moved on by the test."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def step_answer(
    status: str, wait_seconds: int = 0, timeout_seconds: int = 0, notify: bool = False
) -> dict[str, Any]:
    """What the step handler answers the state machine."""
    return {
        "status": status,
        "wait_seconds": wait_seconds,
        "timeout_seconds": timeout_seconds,
        "notify": notify,
    }


class StartSpy:
    """Step Functions' StartExecution, watched: `starts` lists the (name, input) of every
    start asked for, refused or not. Every call goes on to the moto client it wraps; set
    `refuse` to make StartExecution fail instead (throttled, say)."""

    def __init__(self, delegate: Any) -> None:
        self._delegate = delegate
        self.starts: list[tuple[str, dict[str, Any]]] = []
        self.refuse: ClientError | None = None

    def start_execution(self, *, name: str, input: str, **rest: Any) -> dict[str, Any]:
        self.starts.append((name, json.loads(input)))
        if self.refuse is not None:
            raise self.refuse
        started: dict[str, Any] = self._delegate.start_execution(name=name, input=input, **rest)
        return started

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.starts]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._delegate, name)


def throttled(operation: str = "StartExecution") -> ClientError:
    """What an AWS call raises once its retries are spent on throttling."""
    return ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, operation
    )


class TimerSpy:
    """The timers (adapters/timers.Timers) in memory: `sets` lists every set(name, at,
    input) and `cancels` every cancel(name); `armed` holds the timers set and neither
    cancelled nor fired, by name. Like Scheduler, setting a name that is armed keeps the
    timer as it was, and a fired timer is gone."""

    def __init__(self) -> None:
        self.sets: list[tuple[str, datetime, dict[str, Any]]] = []
        self.cancels: list[str] = []
        self.armed: dict[str, tuple[datetime, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def set(self, name: str, at: datetime, execution_input: str) -> None:
        with self._lock:
            self.sets.append((name, at, json.loads(execution_input)))
            self.armed.setdefault(name, (at, json.loads(execution_input)))

    def cancel(self, name: str) -> None:
        with self._lock:
            self.cancels.append(name)
            self.armed.pop(name, None)

    def fire(self, name: str) -> dict[str, Any]:
        """The input of the execution the armed timer `name` starts, as it fires."""
        with self._lock:
            _, execution_input = self.armed.pop(name)
        return execution_input


Behaviour = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


@dataclass
class Services:
    """Example-like services on 127.0.0.1; `calls` lists (path, idempotency key, body)."""

    server: LoopbackServer
    behaviours: dict[str, Behaviour] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def calls(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (call.path, call.headers["Idempotency-Key"], call.json())
            for call in self.server.received()
        ]

    def calls_to(self, path: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [call for call in self.calls if call[0] == path]


def example_behaviours() -> dict[str, Behaviour]:
    return {
        "/upper": lambda data: (200, {"message": data["message"].upper()}),
        "/reverse": lambda data: (200, {"message": data["message"][::-1]}),
        "/space-counter": lambda data: (200, {"space_count": data["message"].count(" ")}),
        "/unavailable": lambda data: (503, {"error": "try later"}),
    }


class DynamoCalls:
    """Every DynamoDB call a client makes from now on, as (operation, parameters).

    A botocore hook on the client: it sees the calls of whatever uses that client (the
    store), and is removed by `stop` (or on leaving a `with` block).
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-parameter-build.dynamodb", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((model.name, copy.deepcopy(params)))

    @property
    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]

    def stop(self) -> None:
        self._client.meta.events.unregister("before-parameter-build.dynamodb", self._record)

    def __enter__(self) -> DynamoCalls:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it (names plus values), for S, N and B attributes."""
    size = 0
    for name, value in item.items():
        ((kind, inner),) = value.items()
        assert kind in ("S", "N", "B"), kind
        size += len(name.encode()) + (len(inner) if kind == "B" else len(str(inner).encode()))
    return size
