"""The timers on the local runtime: moto's scheduler stores schedules and never fires them,
so the runtime fires those that are due (time-scaled, like every wait) as EventBridge
Scheduler would, as the template's SchedulerRole; and `$$.Execution.StartTime`, as the Run
task passes it on, ages in the same scaled time."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from iam_policy import Stack, check
from sam_kit import deployed

from machinery_core.local.aws_calls import acting_as
from machinery_core.local.runtime import LocalRuntime
from machinery_core.local.template import Template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    """The template on an EXPRESS state machine, its waits 100 times shorter."""
    local = LocalRuntime(TEMPLATE, time_scale=0.01, state_machine_type="EXPRESS").start()
    yield local
    local.stop()


Answer = Callable[[dict[str, Any]], dict[str, Any]]


def _route(status: str, wait_seconds: float = 0) -> dict[str, Any]:
    return {"status": status, "wait_seconds": wait_seconds, "timeout_seconds": 0, "notify": False}


class Received(list[tuple[dict[str, Any], datetime]]):
    """What the step function received, and when; `answer` answers it (else: the run ends)."""

    answer: Answer | None = None


@pytest.fixture
def step(runtime: LocalRuntime) -> Iterator[Received]:
    """The step function replaced by one that records each payload (and when it came) and
    answers as the test says."""
    received = Received()
    deployed_function = runtime.functions["StepFunction"]
    original = deployed_function.handler

    def recording(payload: dict[str, Any], context: Any) -> Any:
        received.append((payload, datetime.now(UTC)))
        return received.answer(payload) if received.answer else _route("SUCCEEDED")

    deployed_function.handler = recording
    yield received
    deployed_function.handler = original


def _wake_input(marker: str) -> str:
    wake = {"kind": "backoff", "at": "2026-12-04T11:00:00+00:00"}
    return json.dumps({"event_id": marker, "plan": None, "wake": wake, "route": None})


def _runs_of(received: list[tuple[dict[str, Any], datetime]], marker: str) -> list[datetime]:
    return [at for payload, at in received if payload.get("event_id") == marker]


def _schedules(runtime: LocalRuntime) -> list[str]:
    listed = runtime._scheduler.list_schedules(GroupName=runtime.schedule_group)
    return [schedule["Name"] for schedule in listed["Schedules"]]


def test_a_timer_fires_when_due_on_the_scaled_clock_then_is_gone(
    runtime: LocalRuntime,
    step: Received,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given time 1000 times shorter, and a timer set ten minutes ahead
    monkeypatch.setattr(runtime, "time_scale", 0.001)
    assert runtime.dependencies.timers is not None
    marker, name = f"timer-{uuid.uuid4()}", f"{uuid.uuid4()}-backoff-1"
    set_at = datetime.now(UTC)
    runtime.dependencies.timers.set(name, set_at + timedelta(minutes=10), _wake_input(marker))
    assert name in _schedules(runtime)

    # When its scaled ten minutes pass (0.6 s)
    deadline = time.monotonic() + 5
    while not _runs_of(step, marker) and time.monotonic() < deadline:
        time.sleep(0.01)

    # Then an execution started with the timer's input ran the step function, not before
    # its time and well within a second of it
    [ran] = _runs_of(step, marker)
    assert timedelta(seconds=0.55) <= ran - set_at <= timedelta(seconds=1.5), ran - set_at
    [payload] = [payload for payload, _ in step if payload.get("event_id") == marker]
    assert payload["action"] == "advance"
    assert payload["wake"] == json.loads(_wake_input(marker))["wake"]
    # And the schedule deleted itself (ActionAfterCompletion DELETE)
    assert name not in _schedules(runtime)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        runtime._scheduler.get_schedule(Name=name, GroupName=runtime.schedule_group)


def test_a_cancelled_timer_never_fires(
    runtime: LocalRuntime,
    step: Received,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a timer set ten scaled minutes ahead (0.6 s), then cancelled
    monkeypatch.setattr(runtime, "time_scale", 0.001)
    assert runtime.dependencies.timers is not None
    marker, name = f"timer-{uuid.uuid4()}", f"{uuid.uuid4()}-callback-1"
    runtime.dependencies.timers.set(
        name, datetime.now(UTC) + timedelta(minutes=10), _wake_input(marker)
    )
    runtime.dependencies.timers.cancel(name)

    # When its time has long passed, then nothing started, and nothing is left
    time.sleep(1.2)
    assert _runs_of(step, marker) == []
    assert name not in _schedules(runtime)
    # And cancelling it again is not an error
    runtime.dependencies.timers.cancel(name)


def test_firing_due_timers_leaves_those_not_yet_due(runtime: LocalRuntime, step: Received) -> None:
    # Given a timer a day ahead (15 scaled minutes of real time at this scale)
    assert runtime.dependencies.timers is not None
    marker, name = f"timer-{uuid.uuid4()}", f"{uuid.uuid4()}-backoff-1"
    runtime.dependencies.timers.set(name, datetime.now(UTC) + timedelta(days=1), "{}")
    try:
        # When the runtime fires what is due, then it is not fired and is still there
        assert name not in runtime.fire_due_timers()
        assert name in _schedules(runtime)
        assert _runs_of(step, marker) == []
    finally:
        runtime.dependencies.timers.cancel(name)


def test_the_run_task_sees_the_execution_start_time_aged_in_scaled_time(
    runtime: LocalRuntime, step: Received
) -> None:
    # Given a step function that backs off 100 s (1 s real) once, then ends the run
    marker = f"start-time-{uuid.uuid4()}"

    def answer(payload: dict[str, Any]) -> dict[str, Any]:
        first = len(_runs_of(step, marker)) == 1
        return _route("BACKOFF", 100) if first else _route("SUCCEEDED")

    step.answer = answer

    # When an execution runs
    started = runtime._stepfunctions.start_execution(
        stateMachineArn=runtime.state_machine_arn,
        name=marker,
        input=json.dumps({"event_id": marker, "plan": None, "wake": None, "route": None}),
    )
    deadline = time.monotonic() + 10
    while len(_runs_of(step, marker)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)

    # Then each Run got the start time as Step Functions writes it, and the execution's age
    # it gives is the real one scaled: about nothing at first, then the backoff's 100 s
    runs = [(payload, at) for payload, at in step if payload.get("event_id") == marker]
    assert len(runs) == 2, runs
    ages = []
    for payload, at in runs:
        assert ISO.match(payload["started_at"]), payload["started_at"]
        assert type(payload["started_at"]) is str
        start = datetime.fromisoformat(payload["started_at"].replace("Z", "+00:00"))
        ages.append((at - start).total_seconds())
    assert 0 <= ages[0] < 30, ages
    assert 100 <= ages[1] < 150, ages
    assert payload["execution"] == started["executionArn"]


@pytest.mark.sam
def test_the_timers_calls_are_recorded_and_allowed_by_the_templates_roles(
    runtime: LocalRuntime,
    step: Received,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a runtime recording its AWS calls (tests/conftest.py sets MACHINERY_AWS_CALLS)
    assert runtime.aws_calls is not None and runtime.dependencies.timers is not None
    monkeypatch.setattr(runtime, "time_scale", 0.001)
    timers = runtime.dependencies.timers
    marker, fired, cancelled = f"timer-{uuid.uuid4()}", str(uuid.uuid4()), str(uuid.uuid4())

    # When the step function sets a timer that fires and one the API function cancels, as
    # the worker and the callback route do
    with acting_as("StepFunction"):
        timers.set(fired, datetime.now(UTC) + timedelta(minutes=1), _wake_input(marker))
        timers.set(cancelled, datetime.now(UTC) + timedelta(days=1), "{}")
    with acting_as("ApiFunction"):
        timers.cancel(cancelled)
    deadline = time.monotonic() + 5
    while not _runs_of(step, marker) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _runs_of(step, marker)

    # Then the recording names each schedule, its group, and what its target starts as whom,
    # and the timer's start was made as the scheduler's role
    lines = [json.loads(line) for line in runtime.aws_calls.path.read_text().splitlines()]
    calls = lines[1:]
    named = {"GroupName": runtime.schedule_group}
    target = {"Arn": runtime.state_machine_arn, "RoleArn": runtime.scheduler_role_arn}
    ours = [
        call
        for call in calls
        if call["params"].get("Name") in (fired, cancelled) or call["principal"] == "SchedulerRole"
    ]
    assert {
        "principal": "StepFunction",
        "service": "scheduler",
        "operation": "CreateSchedule",
        "params": {"Name": fired, **named, "Target": target},
    } in ours
    assert {
        "principal": "ApiFunction",
        "service": "scheduler",
        "operation": "DeleteSchedule",
        "params": {"Name": cancelled, **named},
    } in ours
    assert {
        "principal": "SchedulerRole",
        "service": "stepfunctions",
        "operation": "StartExecution",
        "params": {"stateMachineArn": runtime.state_machine_arn},
    } in ours

    # And the template's roles, as a deploy makes them, allow every one of them
    physical = lines[0]["stack"]
    document = Template.load(TEMPLATE).document
    parameters = {name: str(p.get("Default", "")) for name, p in document["Parameters"].items()}
    stack = Stack.from_json(
        {
            **physical,
            "resources": {
                **{name: {"Ref": value} for name, value in parameters.items()},
                **physical["resources"],
            },
            "conditions": {
                "IamAuthorization": parameters["ApiAuthorization"] == "AWS_IAM",
                "ExpressStateMachine": parameters["StateMachineType"] == "EXPRESS",
            },
        }
    )
    roles = deployed({"defaults": {}})["defaults"]
    findings = [f for f in check(roles, stack, ours) if f.kind != "unused"]
    assert findings == []
