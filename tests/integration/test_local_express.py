"""The local runtime on an EXPRESS state machine refuses what AWS refuses: a Task that waits
for a task token (CreateStateMachine's InvalidDefinition), and an execution past five
minutes (time-scaled), which ends TIMED_OUT and so fails its event like any other end; and
`machinery local --state-machine-type` chooses the type."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from integration_kit import ended_event
from loopback import LoopbackServer, json_reply

from machinery_core.cli.command import main
from machinery_core.local import command as local_command
from machinery_core.local import moto_seams
from machinery_core.local.runtime import LocalRuntime
from machinery_core.local.template import Template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


def _copy(tmp_path: Path, definition: dict[str, Any] | None = None, **states: Any) -> Path:
    """template.yaml, its ASL replaced by `definition` or given more `states`, written beside
    the test (the functions' code still found where it is)."""
    document = Template.load(TEMPLATE).document
    for resource in document["Resources"].values():
        properties = resource.get("Properties") or {}
        if "CodeUri" in properties:
            properties["CodeUri"] = str(ROOT / properties["CodeUri"])
    machine = document["Resources"]["StateMachine"]["Properties"]
    if definition is not None:
        machine["Definition"] = definition
    machine["Definition"]["States"].update(states)
    path = tmp_path / "template.json"
    path.write_text(json.dumps(document))
    return path


def test_an_express_state_machine_that_waits_for_a_task_token_is_refused(tmp_path: Path) -> None:
    # Given the template with a Task waiting for a task token, in a Parallel branch the run
    # starts with
    callback = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {
            "FunctionName": "${StepFunctionArn}",
            "Payload": {"token.$": "$$.Task.Token"},
        },
        "End": True,
    }
    path = _copy(
        tmp_path,
        AwaitCallback={
            "Type": "Parallel",
            "Branches": [{"StartAt": "Dispatch", "States": {"Dispatch": callback}}],
            "ResultPath": None,
            "Next": "Run",
        },
    )
    document = json.loads(path.read_text())
    document["Resources"]["StateMachine"]["Properties"]["Definition"]["StartAt"] = "AwaitCallback"
    path.write_text(json.dumps(document))

    # When it is deployed on EXPRESS, then it is refused as CreateStateMachine refuses it,
    # naming the Task, before anything is deployed
    express = LocalRuntime(path, state_machine_type="EXPRESS")
    with pytest.raises(ClientError) as refused:
        express.start()
    assert refused.value.response["Error"]["Code"] == "InvalidDefinition"
    assert refused.value.operation_name == "CreateStateMachine"
    assert (
        "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: Express state machine "
        "does not support '.waitForTaskToken' service integration at "
        "/States/AwaitCallback/Branches/0/States/Dispatch/Resource'"
    ) in str(refused.value)
    assert express._mock is None

    # And on STANDARD, as on AWS, it deploys
    LocalRuntime(path, state_machine_type="STANDARD").start().stop()


def test_the_template_itself_deploys_on_express() -> None:
    LocalRuntime(TEMPLATE, state_machine_type="EXPRESS").start().stop()


def test_an_unknown_state_machine_type_is_refused() -> None:
    with pytest.raises(ValueError, match="STANDARD or EXPRESS"):
        LocalRuntime(TEMPLATE, state_machine_type="SYNC")


# A state machine that holds an execution: `hold` seconds when its input says, else ten
# minutes (an event's execution input says nothing of it).
HOLDING = {
    "StartAt": "HowLong",
    "States": {
        "HowLong": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.hold", "IsPresent": True, "Next": "HoldFor"}],
            "Default": "HoldLong",
        },
        "HoldFor": {"Type": "Wait", "SecondsPath": "$.hold", "End": True},
        "HoldLong": {"Type": "Wait", "Seconds": 600, "End": True},
    },
}


def _ends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, Any], str]]:
    """Every execution end the runtime hears (input and status), heard as before."""
    heard: list[tuple[dict[str, Any], str]] = []
    original = moto_seams._current["ended"]

    def ended(execution_input: dict[str, Any], status: str, *rest: Any) -> None:
        heard.append((execution_input, status))
        original(execution_input, status, *rest)

    monkeypatch.setitem(moto_seams._current, "ended", ended)
    return heard


def _status(runtime: LocalRuntime, arn: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = str(runtime._stepfunctions.describe_execution(executionArn=arn)["status"])
        if status != "RUNNING":
            return status
        time.sleep(0.01)
    return "RUNNING"


def _start(runtime: LocalRuntime, name: str, execution_input: dict[str, Any]) -> str:
    answer = runtime._stepfunctions.start_execution(
        stateMachineArn=runtime.state_machine_arn, name=name, input=json.dumps(execution_input)
    )
    arn: str = answer["executionArn"]
    return arn


def test_an_express_execution_past_five_scaled_minutes_times_out_and_its_event_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the holding state machine on EXPRESS, time 1000 times shorter (five minutes: 0.3 s)
    server = LoopbackServer(lambda call, _: json_reply(200, {"echo": "unused"})).start()
    runtime = LocalRuntime(
        _copy(tmp_path, HOLDING), time_scale=0.001, state_machine_type="EXPRESS"
    ).start()
    try:
        heard = _ends(monkeypatch)
        service = {"name": "echo", "address": server.address, "spec": {}}
        workflow = {"name": "held", "spec": {"services": ["echo"]}}
        for route, body in (("/services", service), ("/workflows", workflow)):
            answer = runtime.handle_http("POST", route, {}, json.dumps(body).encode())
            assert answer.status == 201, answer.body

        # When an event's execution holds it for ten scaled minutes
        answer = runtime.handle_http("POST", "/e/held", {}, b'{"data": {}}')
        assert answer.status == 202, answer.body
        event_id = json.loads(answer.body)["event_id"]

        # Then the execution ended TIMED_OUT at five, which the runtime heard as it hears
        # every end, so the event, which nothing else would end, is FAILED saying so
        event = ended_event(runtime, event_id, timeout=10)
        assert event["status"] == "FAILED", event
        assert event["error"]["type"] == "States.ExecutionEnded"
        assert "TIMED_OUT" in event["error"]["message"]
        assert [status for given, status in heard if given.get("event_id") == event_id] == [
            "TIMED_OUT"
        ]

        # And an execution that holds for less than five scaled minutes succeeds
        under = _start(runtime, "under-five-minutes", {"hold": 200})
        assert _status(runtime, under) == "SUCCEEDED"
    finally:
        runtime.stop()
        server.stop()


def test_a_standard_execution_has_no_five_minute_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = LocalRuntime(_copy(tmp_path, HOLDING), time_scale=0.001).start()
    try:
        held = _start(runtime, "ten-minutes", {"hold": 600})
        assert _status(runtime, held) == "SUCCEEDED"
    finally:
        runtime.stop()


@pytest.mark.parametrize(
    ("given", "expected"), [([], "STANDARD"), (["--state-machine-type", "express"], "EXPRESS")]
)
def test_machinery_local_takes_the_state_machine_type(
    monkeypatch: pytest.MonkeyPatch, given: list[str], expected: str
) -> None:
    # Given the local runtime's entry point replaced by one that records what it is given
    runs: list[tuple[Any, ...]] = []
    monkeypatch.setattr(local_command, "run", lambda *args: runs.append(args))

    # When `machinery local` runs, then the runtime gets the type (STANDARD by default)
    result = CliRunner().invoke(main, ["local", "--port", "0", *given])
    assert result.exit_code == 0, result.output
    host, port, examples, template, time_scale, machine_type, metrics = runs[0]
    assert (machine_type, metrics) == (expected, False)


def test_the_banner_says_which_type_runs() -> None:
    assert "EXPRESS" in local_command.state_machine_notice("EXPRESS")
    assert "STANDARD" in local_command.state_machine_notice("STANDARD")


def test_make_run_passes_the_state_machine_type_on() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "STATE_MACHINE_TYPE ?= STANDARD" in makefile
    assert "--state-machine-type $(STATE_MACHINE_TYPE)" in makefile
