"""Services that fail: retried when that can help, recorded, and never left RUNNING."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_kit import (
    Registry,
    StartStub,
    on_each_type,  # noqa: F401  (every test here runs on both types)
    service_definition,
    text_reply,
    unique,
)
from loopback import Call, Reply, closed_url, json_reply

pytestmark = pytest.mark.e2e


RETRY = {"max_attempts": 3, "interval_seconds": 1, "backoff_rate": 2}


def _echo(call: Call, _: int) -> Reply:
    return json_reply(200, {"message": call.json()["message"]})


def _workflow_over(
    registry: Registry, address: str, services_before: list[str] | None = None, **options: Any
) -> str:
    """Register a service at `address` (message -> message) and a workflow ending with it."""
    service = unique("flaky")
    registry.service(
        service_definition(
            service, address, {"message": "string"}, {"message": "string"}, **options
        )
    )
    name = unique("fails")
    registry.workflow(
        {
            "name": name,
            "spec": {
                "services": [*(services_before or []), service],
                "inputs": {"message": {"type": "string"}},
                "outputs": {"message": {"type": "string"}},
            },
        }
    )
    return name


def _run(stack: Any, workflow: str, message: str = "hello world") -> tuple[str, dict[str, Any]]:
    event_id = stack.send(workflow, {"message": message})
    return event_id, stack.wait_for_end(event_id)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_service_that_always_fails_retryably_fails_the_event_after_its_attempts(
    local_stack: Any, registry: Registry, stub_service: StartStub, status: int
) -> None:
    # Given a service that answers `status` every time, allowed three attempts
    stub = stub_service(lambda call, _: json_reply(status, {"error": "down"}))
    workflow = _workflow_over(registry, stub.address, retry=RETRY)

    # When an event runs
    event_id, event = _run(local_stack, workflow)

    # Then it ends FAILED with the step's error recorded
    assert event["status"] == "FAILED", event
    assert event["outputs"] is None
    [step] = event["steps"]
    assert step["status"] == "FAILED"
    assert step["error"]["status_code"] == status
    assert step["error"]["retryable"] is True
    assert event["error"] == step["error"]

    # And every attempt was made and is in the step's history
    assert step["attempts"] == RETRY["max_attempts"]
    assert [attempt["attempt"] for attempt in step["history"]] == [1, 2, 3]
    assert [attempt["status_code"] for attempt in step["history"]] == [status] * 3
    assert all(attempt["error"]["retryable"] for attempt in step["history"])
    calls = stub.received()
    assert len(calls) == 3

    # And each call carried the same idempotency key and the event id
    assert {call.headers["idempotency-key"] for call in calls} == {f"{event_id}:0"}
    assert {call.headers["x-machinery-event-id"] for call in calls} == {event_id}
    assert all(call.json() == {"message": "hello world"} for call in calls)

    # And the event is listed as FAILED
    failed = local_stack.get(f"/workflows/{workflow}/events", params={"status": "FAILED"}).json()[
        "items"
    ]
    assert [item["event_id"] for item in failed] == [event_id]


def test_a_service_that_fails_once_then_answers_succeeds_on_the_second_attempt(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a service that answers 500 once, then works
    def flaky(call: Call, nth: int) -> Reply:
        return json_reply(500, {"error": "blip"}) if nth == 1 else _echo(call, nth)

    stub = stub_service(flaky)
    workflow = _workflow_over(registry, stub.address, retry=RETRY)

    # When an event runs
    event_id, event = _run(local_stack, workflow)

    # Then it succeeds on the second attempt, and both attempts are on record
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == {"message": "hello world"}
    [step] = event["steps"]
    assert step["status"] == "SUCCEEDED"
    assert step["attempts"] == 2
    assert step["error"] is None
    assert [attempt["status_code"] for attempt in step["history"]] == [500, 200]
    assert step["history"][0]["error"]["retryable"] is True
    assert step["history"][1]["error"] is None
    assert [call.headers["idempotency-key"] for call in stub.received()] == [f"{event_id}:0"] * 2


@pytest.mark.parametrize(
    ("reply", "error_type", "status_code"),
    [
        (json_reply(200, {"message": 42}), "OutputInvalid", 200),
        (json_reply(200, {"other": "field"}), "OutputInvalid", 200),
        (json_reply(404, {"error": "no such thing"}), "HttpError", 404),
        (json_reply(400, {"error": "bad input"}), "HttpError", 400),
        (text_reply(200, "not json at all"), "InvalidResponse", 200),
        (json_reply(200, ["a", "list"]), "InvalidResponse", 200),
        (json_reply(200, {"message": "x" * (256 * 1024)}), "ResponseTooLarge", 200),
    ],
    ids=[
        "wrong-type",
        "missing-output",
        "404",
        "400",
        "not-json",
        "json-not-object",
        "answer-over-256-KiB",
    ],
)
def test_a_service_that_fails_for_good_is_not_retried(
    local_stack: Any,
    registry: Registry,
    stub_service: StartStub,
    reply: Reply,
    error_type: str,
    status_code: int,
) -> None:
    # Given a service whose answer no retry can fix, allowed three attempts
    stub = stub_service(lambda call, _: reply)
    workflow = _workflow_over(registry, stub.address, retry=RETRY)

    # When an event runs
    _, event = _run(local_stack, workflow)

    # Then it fails after a single attempt, with the reason recorded
    assert event["status"] == "FAILED", event
    [step] = event["steps"]
    assert step["status"] == "FAILED"
    assert step["attempts"] == 1
    assert len(step["history"]) == 1
    assert step["error"]["type"] == error_type
    assert step["error"]["status_code"] == status_code
    assert step["error"]["retryable"] is False
    assert event["error"]["type"] == error_type
    assert len(stub.received()) == 1


def test_a_service_nobody_listens_on_is_retried_then_fails(
    local_stack: Any, registry: Registry
) -> None:
    # Given a service registered at a loopback port nothing listens on
    workflow = _workflow_over(registry, closed_url(), retry=RETRY)

    # When an event runs
    _, event = _run(local_stack, workflow)

    # Then each attempt is a retryable connection error, and the event fails
    assert event["status"] == "FAILED", event
    [step] = event["steps"]
    assert step["attempts"] == 3
    assert step["error"]["type"] == "ConnectionError"
    assert step["error"]["retryable"] is True
    assert step["error"]["status_code"] is None


def test_a_service_that_never_answers_times_out_and_fails(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a service that holds every request until the test ends, with a 1 s timeout
    def hang(call: Call, nth: int) -> Reply:
        stub.release.wait(30)
        return _echo(call, nth)

    stub = stub_service(hang)
    retry = {"max_attempts": 2, "interval_seconds": 1, "backoff_rate": 1}
    workflow = _workflow_over(registry, stub.address, retry=retry, timeout_seconds=1)

    # When an event runs
    _, event = _run(local_stack, workflow)

    # Then each attempt timed out, was retried, and the event failed
    assert event["status"] == "FAILED", event
    [step] = event["steps"]
    assert step["attempts"] == 2
    assert step["error"]["type"] == "Timeout"
    assert step["error"]["retryable"] is True
    assert all(attempt["duration_ms"] >= 900 for attempt in step["history"])


def test_a_failure_in_a_later_step_keeps_the_earlier_steps(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a workflow whose second step, after the example `upper`, always answers 404
    stub = stub_service(lambda call, _: json_reply(404, {"error": "gone"}))
    workflow = _workflow_over(registry, stub.address, services_before=["upper"], retry=RETRY)

    # When an event runs
    event_id, event = _run(local_stack, workflow, "quiet")

    # Then the first step's work is on record and the second step's failure ended the event
    assert event["status"] == "FAILED", event
    first, second = event["steps"]
    assert first["status"] == "SUCCEEDED"
    assert first["output"] == {"message": "QUIET"}
    assert second["status"] == "FAILED"
    assert second["input"] == {"message": "QUIET"}
    assert second["error"]["status_code"] == 404
    assert stub.received()[0].headers["idempotency-key"] == f"{event_id}:1"


def test_an_event_that_outgrows_one_record_keeps_its_payloads_apart_and_succeeds(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given an echo service and a message of 120 KB: the data, the step's input and output,
    # the context and the outputs together are more than one event record holds
    stub = stub_service(_echo)
    workflow = _workflow_over(registry, stub.address, retry=RETRY)
    message = "x" * 120_000

    # When an event runs
    _, event = _run(local_stack, workflow, message)

    # Then it succeeds, and reads whole (480 KB: within what GET /events/{id} holds inline)
    assert event["status"] == "SUCCEEDED", {key: event[key] for key in ("status", "error")}
    assert event["outputs"] == {"message": message}
    assert event["steps"][0]["input"] == event["steps"][0]["output"] == {"message": message}
    assert event["linked_payloads"] == []
    assert len(stub.received()) == 1
