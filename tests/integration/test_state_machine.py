"""The template's own ASL, executed by moto's interpreter through the local runtime."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration_kit import DynamoCalls, ended_event, one_step_runtime
from loopback import LoopbackServer, json_reply

from machinery_core.domain.errors import StaleVersion
from machinery_core.domain.models import Plan
from machinery_core.local import moto_seams
from machinery_core.local.runtime import LocalRuntime
from machinery_core.service import events

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    """The local runtime in-process, with a one-step workflow against a loopback echo service."""
    server = LoopbackServer(lambda call, _: json_reply(200, {"echo": call.json()["text"]})).start()
    local = one_step_runtime(ROOT / "template.yaml", server, "echo", "text", "echo")
    yield local
    local.stop()
    server.stop()


def _send(runtime: LocalRuntime) -> str:
    answer = runtime.handle_http("POST", "/e/echo-once", {}, b'{"data": {"text": "hi"}}')
    assert answer.status == 202, answer.body
    event_id: str = json.loads(answer.body)["event_id"]
    return event_id


@pytest.fixture
def step_handler(runtime: LocalRuntime) -> Iterator[dict[str, Any]]:
    """Lets a test wrap the deployed step function's handler; restores it afterwards."""
    deployed = runtime.functions["StepFunction"]
    original = deployed.handler
    slot: dict[str, Any] = {"original": original}
    yield slot
    deployed.handler = original


def test_an_event_runs_through_the_template_state_machine(runtime: LocalRuntime) -> None:
    event = ended_event(runtime, _send(runtime))
    assert event["status"] == "SUCCEEDED"
    assert event["outputs"] == {"echo": "hi"}


def _recording(runtime: LocalRuntime, step_handler: dict[str, Any]) -> list[dict[str, Any]]:
    """Installs a step function that records each payload it is invoked with."""
    payloads: list[dict[str, Any]] = []

    def recording(payload: dict[str, Any], context: Any) -> Any:
        payloads.append(payload)
        return step_handler["original"](payload, context)

    runtime.functions["StepFunction"].handler = recording
    return payloads


def test_the_execution_carries_the_plan_to_the_run_task(
    runtime: LocalRuntime, step_handler: dict[str, Any]
) -> None:
    payloads = _recording(runtime, step_handler)
    dynamodb = runtime.dependencies.store.table.client

    # When an event runs
    with DynamoCalls(dynamodb) as recorded:
        event_id = _send(runtime)
        event = ended_event(runtime, event_id)

    # Then Run was invoked with the plan the event was stored with
    assert event["status"] == "SUCCEEDED"
    [run] = [p for p in payloads if p["action"] == "advance" and p["event_id"] == event_id]
    _, stored = runtime.dependencies.store.load_with_plan(event_id)
    assert Plan.model_validate(run["plan"]) == stored
    # And nothing read the stored plan back (that takes a Query of the table, or a GetItem
    # of the PLAN item): the worker read the event item alone
    plan_reads = [
        params
        for name, params in recorded.calls
        if (name == "Query" and params.get("IndexName") is None)
        or (name == "GetItem" and params["Key"]["SK"]["S"] == "PLAN")
    ]
    assert plan_reads == []


def test_a_plan_too_large_for_the_input_is_read_from_the_table(
    runtime: LocalRuntime, step_handler: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given plans too large for the execution input
    monkeypatch.setattr(events, "PLAN_INPUT_LIMIT", 0)
    payloads = _recording(runtime, step_handler)

    # When an event runs, then Run was invoked with a null plan and the event succeeds anyway
    event_id = _send(runtime)
    event = ended_event(runtime, event_id)
    assert event["status"] == "SUCCEEDED"
    assert event["outputs"] == {"echo": "hi"}
    [run] = [p for p in payloads if p["action"] == "advance" and p["event_id"] == event_id]
    assert run["plan"] is None


def test_a_step_function_that_keeps_crashing_is_caught_and_the_event_fails(
    runtime: LocalRuntime, step_handler: dict[str, Any]
) -> None:
    # Given a step function that crashes on every Run (but still handles Abort)
    calls: list[str] = []

    def crashing(payload: dict[str, Any], context: Any) -> Any:
        if payload.get("action") == "abort":
            calls.append("abort")
            return step_handler["original"](payload, context)
        calls.append("run")
        raise RuntimeError("the worker blew up")

    runtime.functions["StepFunction"].handler = crashing

    # When an event is sent
    event = ended_event(runtime, _send(runtime))

    # Then Run was retried (1 + 2 attempts of the States.ALL retrier), Catch sent it to Abort,
    # and the event ended FAILED with the error the state machine saw (the runtime's own
    # end-of-execution check may abort once more: a no-op on an ended event)
    assert calls[:4] == ["run", "run", "run", "abort"]
    assert set(calls[4:]) <= {"abort"}
    assert event["status"] == "FAILED"
    assert event["error"]["type"] == "RuntimeError"
    assert "the worker blew up" in event["error"]["message"]


def test_a_lost_race_is_retried_and_the_event_still_succeeds(
    runtime: LocalRuntime, step_handler: dict[str, Any]
) -> None:
    # Given a step function whose first Run loses a conditional write
    attempts: list[int] = []

    def racing(payload: dict[str, Any], context: Any) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise StaleVersion("advanced concurrently")
        return step_handler["original"](payload, context)

    runtime.functions["StepFunction"].handler = racing

    # When an event is sent, then the StaleVersion retrier runs it again and it succeeds
    event = ended_event(runtime, _send(runtime))
    assert event["status"] == "SUCCEEDED"
    assert len(attempts) == 2


def test_pruning_keeps_only_running_executions(runtime: LocalRuntime) -> None:
    # Given a few finished events
    for _ in range(3):
        ended_event(runtime, _send(runtime))
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    machine = stepfunctions_parser_backends["123456789012"]["us-east-1"].state_machines[0]
    assert any(str(e.status) != "RUNNING" for e in machine.executions)

    # When the runtime prunes, then moto keeps no finished execution to scan
    runtime.prune_executions()
    assert all(str(e.status) == "RUNNING" for e in machine.executions)


def test_installing_the_moto_seams_fails_loudly_when_one_has_moved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    monkeypatch.delattr(lambda_eval_utils, "_invoke_lambda_function")
    with pytest.raises(RuntimeError, match="_invoke_lambda_function"):
        moto_seams.install(lambda *_: ({}, None), lambda: 1.0, lambda *_: None)


def test_the_runtime_records_which_function_made_each_aws_call(runtime: LocalRuntime) -> None:
    # Given a runtime recording its AWS calls (tests/conftest.py sets MACHINERY_AWS_CALLS)
    assert runtime.aws_calls is not None

    # When an event runs to its end
    event = ended_event(runtime, _send(runtime))
    assert event["status"] == "SUCCEEDED", event

    # Then the recording names what was deployed, then each call with the function (or the
    # state machine) that made it and the resources it named; deploying was nobody's call
    lines = [json.loads(line) for line in runtime.aws_calls.path.read_text().splitlines()]
    assert lines[0]["stack"]["resources"]["Table"]["Ref"] == runtime.table_name
    calls = lines[1:]
    made = {(call["principal"], call["service"], call["operation"]) for call in calls}
    assert {
        ("ApiFunction", "stepfunctions", "StartExecution"),
        ("StateMachine", "lambda", "Invoke"),
        ("StepFunction", "dynamodb", "UpdateItem"),
    } <= made
    assert not [call for call in calls if call["operation"].startswith("Create")]
    start = next(call for call in calls if call["operation"] == "StartExecution")
    assert start["params"] == {"stateMachineArn": runtime.state_machine_arn}
    invoke = next(call for call in calls if call["operation"] == "Invoke")
    assert invoke["params"] == {"FunctionName": runtime.functions["StepFunction"].arn}
