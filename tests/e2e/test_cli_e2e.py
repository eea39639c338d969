"""The `machinery` command against the real local runtime (`machinery local --examples`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from e2e_kit import Registry, StartStub, service_definition, unique, workflow_definition
from loopback import json_reply

from machinery_core.cli.command import main
from machinery_core.contract import duration_text

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "examples" / "definitions"
EVENT_FILE = DEFINITIONS / "event-text.json"
EXPECTED_OUTPUTS = {"message": "! GNINROM EHT NI ESIR LLIW NUS EHT", "space_count": 7}
EXAMPLE_SERVICES = {path.stem.removeprefix("service-") for path in DEFINITIONS.glob("service-*")}
EXAMPLE_WORKFLOWS = {"process-text", "process-text-async", "order"}


def machinery(stack: Any, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--api-url", stack.url, *args], input=stdin)


def apply_json(stack: Any, *paths: Path) -> dict[str, Any]:
    result = machinery(stack, "apply", *map(str, paths), "--output", "json")
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def by_name(summary: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["result"] for item in summary["results"] if item["name"]}


def test_apply_of_the_examples_is_idempotent_and_updates_what_changed(
    local_stack: Any, tmp_path: Path
) -> None:
    # Given the example definitions, which the local runtime registered at start
    # When they are applied
    first = apply_json(local_stack, DEFINITIONS)

    # Then every one is unchanged, and the event file is skipped
    assert by_name(first) == dict.fromkeys(EXAMPLE_SERVICES | EXAMPLE_WORKFLOWS, "unchanged")
    skipped = [item["file"] for item in first["results"] if item["result"] == "skipped"]
    assert sorted(Path(file).name for file in skipped) == ["event-order.json", "event-text.json"]
    # services before workflows
    kinds = [item["kind"] for item in first["results"] if item["kind"]]
    assert kinds == ["service"] * len(EXAMPLE_SERVICES) + ["workflow"] * 3

    # Given a copy in which one service and one workflow have a new description
    copy = tmp_path / "definitions"
    shutil.copytree(DEFINITIONS, copy)
    for name in ("service-upper.json", "workflow-process-text.json"):
        document = json.loads((copy / name).read_text())
        (copy / name).write_text(json.dumps({**document, "description": "changed by the CLI test"}))
    try:
        # When the copy is applied, twice
        changed = apply_json(local_stack, copy)
        again = apply_json(local_stack, copy)

        # Then those two are updated and the rest unchanged, then nothing changes
        expected = dict.fromkeys(EXAMPLE_SERVICES | EXAMPLE_WORKFLOWS, "unchanged")
        assert by_name(changed) == {**expected, "upper": "updated", "process-text": "updated"}
        assert by_name(again) == expected
        record = local_stack.get("/workflows/process-text").json()
        assert record["definition"]["description"] == "changed by the CLI test"
    finally:
        # And the originals applied again put the examples back as they were
        restored = apply_json(local_stack, DEFINITIONS)
    assert {name for name, result in by_name(restored).items() if result == "updated"} == {
        "upper",
        "process-text",
    }
    assert local_stack.get("/workflows/process-text").json()["definition"]["description"] is None


def test_send_wait_status_and_events_follow_the_example_event(local_stack: Any) -> None:
    # When the example event is sent with --wait and --output json
    sent = machinery(
        local_stack, "send", "process-text", str(EVENT_FILE), "--wait", "--output", "json"
    )

    # Then it exits 0 with the ended event and the outputs the README promises
    assert sent.exit_code == 0, sent.output
    event = json.loads(sent.stdout)
    assert event["status"] == "SUCCEEDED"
    assert event["outputs"] == EXPECTED_OUTPUTS
    event_id = event["event_id"]

    # And `status` shows it: as the API's JSON, and as text with each step
    as_json = machinery(local_stack, "status", event_id, "--output", "json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == local_stack.get(f"/events/{event_id}").json()
    text = machinery(local_stack, "status", event_id)
    assert text.exit_code == 0, text.output
    assert "status: SUCCEEDED" in text.stdout
    step_lines = [line.split("\t") for line in text.stdout.splitlines() if "\t" in line][1:]
    assert [(row[1], row[2], row[3]) for row in step_lines] == [
        ("upper", "SUCCEEDED", "1"),
        ("reverse", "SUCCEEDED", "1"),
        ("space-counter", "SUCCEEDED", "1"),
    ]
    assert all(row[4].endswith(("ms", " s")) for row in step_lines)

    # And `status --watch` of an ended event returns at once with it
    watched = machinery(local_stack, "status", event_id, "--watch", "--output", "json")
    assert watched.exit_code == 0
    assert json.loads(watched.stdout)["status"] == "SUCCEEDED"

    # And `events` lists it among the workflow's recent events
    listed = machinery(local_stack, "events", "process-text", "--limit", "100", "--output", "json")
    assert listed.exit_code == 0, listed.output
    assert event_id in [item["event_id"] for item in json.loads(listed.stdout)["items"]]
    succeeded = machinery(local_stack, "events", "process-text", "--status", "SUCCEEDED")
    assert succeeded.exit_code == 0, succeeded.output
    assert succeeded.stdout.splitlines()[0] == "event\tstatus\taccepted\tupdated\tduration"
    rows = [line.split("\t") for line in succeeded.stdout.splitlines()[1:]]
    assert all(row[1] == "SUCCEEDED" for row in rows)
    # And its duration reads as `status` and the dashboard show it
    [its_row] = [row for row in rows if row[0] == event_id]
    assert its_row[4] == duration_text(event["duration_ms"])
    assert f"duration: {duration_text(event['duration_ms'])}" in text.stdout.splitlines()


def test_a_replayed_send_says_it_was_a_replay(local_stack: Any) -> None:
    # Given the example event, sent once with an Idempotency-Key
    key = unique("cli-replay")
    send = ("send", "process-text", str(EVENT_FILE), "--idempotency-key", key)
    first = machinery(local_stack, *send, "--output", "json")
    assert first.exit_code == 0, first.output
    created = json.loads(first.stdout)
    assert created.get("replayed", False) is False
    event = local_stack.wait_for_end(created["event_id"])
    replay_line = f"replayed: this Idempotency-Key already created event {event['event_id']}"

    # When it is sent again with that key: as text and JSON, with and without --wait
    text = machinery(local_stack, *send)
    as_json = machinery(local_stack, *send, "--output", "json")
    waited = machinery(local_stack, *send, "--wait")
    waited_json = machinery(local_stack, *send, "--wait", "--output", "json")

    # Then each answers the first event and says it was a replay
    for result in (text, as_json, waited, waited_json):
        assert result.exit_code == 0, result.output
    assert text.stdout.splitlines() == [f"{event['event_id']} SUCCEEDED", replay_line]
    assert json.loads(as_json.stdout)["event_id"] == event["event_id"]
    assert json.loads(as_json.stdout)["replayed"] is True
    assert waited.stdout.splitlines()[0] == replay_line
    assert f"event: {event['event_id']}" in waited.stdout.splitlines()
    assert "status: SUCCEEDED" in waited.stdout.splitlines()
    assert json.loads(waited_json.stdout) == {**event, "replayed": True}

    # And the workflow still has the one event
    listed = machinery(local_stack, "events", "process-text", "--limit", "100", "--output", "json")
    ids = [item["event_id"] for item in json.loads(listed.stdout)["items"]]
    assert ids.count(event["event_id"]) == 1


def test_apply_refuses_two_files_that_define_the_same_workflow(
    local_stack: Any, tmp_path: Path
) -> None:
    # Given a copy of the example workflow that changes it, beside the original
    original = DEFINITIONS / "workflow-process-text.json"
    changed = tmp_path / "workflow-process-text.json"
    document = json.loads(original.read_text())
    changed.write_text(json.dumps({**document, "description": "must not be applied"}))

    # When both are applied
    result = machinery(local_stack, "apply", str(original), str(changed))

    # Then it exits 2 naming both files, and the workflow is as it was
    assert result.exit_code == 2, result.output
    assert f"workflow 'process-text' is defined in both {original} and {changed}" in result.stderr
    record = local_stack.get("/workflows/process-text").json()
    assert record["definition"]["description"] is None


def test_send_without_wait_takes_bare_data_from_stdin(local_stack: Any) -> None:
    # When bare data is sent from stdin
    sent = machinery(
        local_stack, "send", "process-text", "-", "--output", "json", stdin='{"message": "a b"}'
    )

    # Then the event is accepted and runs with that data
    assert sent.exit_code == 0, sent.output
    accepted = json.loads(sent.stdout)
    assert accepted["status"] == "PENDING"
    event = local_stack.wait_for_end(accepted["event_id"])
    assert event["data"] == {"message": "a b"}
    assert event["outputs"] == {"message": "B A", "space_count": 1}


def test_a_failing_event_exits_1_and_a_refused_one_2(
    local_stack: Any, registry: Registry, stub_service: StartStub, tmp_path: Path
) -> None:
    # Given a service that refuses every call (400: not retried) and a workflow over it,
    # registered with `apply`
    stub = stub_service(lambda call, _: json_reply(400, {"error": "no"}))
    service, workflow = unique("refuser"), unique("refused")
    registry.track_service(service)
    registry.track_workflow(workflow)
    (tmp_path / "service.json").write_text(
        json.dumps(service_definition(service, stub.address, {"message": "string"}, {}))
    )
    (tmp_path / "workflow.json").write_text(
        json.dumps(workflow_definition(workflow, [service], {"message": "string"}, {}))
    )
    applied = apply_json(local_stack, tmp_path)
    assert by_name(applied) == {service: "created", workflow: "created"}

    # When an event is sent with --wait
    sent = machinery(local_stack, "send", workflow, "-", "--wait", stdin='{"message": "hi"}')

    # Then it exits 1 and shows the failed step with its error
    assert sent.exit_code == 1, sent.output
    assert "status: FAILED" in sent.stdout
    failed_step = next(line for line in sent.stdout.splitlines() if line.startswith("0\t"))
    assert failed_step.split("\t")[1:3] == [service, "FAILED"]
    assert "400" in failed_step
    event_id = next(
        line.split(": ", 1)[1] for line in sent.stdout.splitlines() if line.startswith("event: ")
    )
    assert machinery(local_stack, "status", event_id).exit_code == 1

    # And data that breaks the workflow's inputs is refused: exit 2 with the field path
    refused = machinery(local_stack, "send", workflow, "-", stdin='{"message": 3}')
    assert refused.exit_code == 2
    assert "data.message" in refused.stderr


def test_openapi_prints_the_served_document(local_stack: Any) -> None:
    result = machinery(local_stack, "openapi", "--output", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document == local_stack.get("/openapi.json").json()
    assert "/e/{workflow_id}" in document["paths"]


def test_diagram_draws_a_workflow_and_an_event(local_stack: Any, tmp_path: Path) -> None:
    # Given an ended example event
    sent = machinery(local_stack, "send", "process-text", str(EVENT_FILE), "--output", "json")
    event = local_stack.wait_for_end(json.loads(sent.stdout)["event_id"])

    # When the workflow is drawn as Mermaid and the event as SVG into a file
    workflow = machinery(local_stack, "diagram", "process-text")
    drawn = tmp_path / "event.svg"
    of_event = machinery(
        local_stack, "diagram", event["event_id"], "--format", "svg", "-o", str(drawn)
    )

    # Then the Mermaid text names the workflow's services, and the file holds an SVG
    assert workflow.exit_code == 0, workflow.output
    assert all(name in workflow.stdout for name in ("upper", "reverse", "space-counter"))
    assert of_event.exit_code == 0, of_event.output
    assert "<svg" in drawn.read_text()
    assert local_stack.get(
        f"/events/{event['event_id']}/diagram", params={"format": "svg"}
    ).text == (drawn.read_text())


def test_the_installed_command_prints_plain_lines_when_piped(local_stack: Any) -> None:
    # When the console script's module runs as a process whose stdout is a pipe
    done = subprocess.run(
        [sys.executable, "-m", "machinery_core.cli", "events", "process-text", "--limit", "3"],
        env={
            **{k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")},
            "MACHINERY_API_URL": local_stack.url,
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )

    # Then it prints tab-separated lines without any terminal escape
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "event\tstatus\taccepted\tupdated\tduration"
    assert "\x1b[" not in done.stdout
