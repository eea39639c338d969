"""POST /e/{workflow_id}?wait=N: the finished event when it ends within N seconds, else 202."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from e2e_kit import (
    Inbox,
    Registry,
    StartStub,
    newest_event,
    service_definition,
    unique,
    workflow_definition,
)
from loopback import json_reply

pytestmark = pytest.mark.e2e

MESSAGE = "The Sun will rise in the morning !"
OUTPUTS = {"message": "! GNINROM EHT NI ESIR LLIW NUS EHT", "space_count": 7}


def _send(stack: Any, workflow: str, wait: object, message: str = MESSAGE) -> requests.Response:
    params = {} if wait is None else {"wait": wait}
    answer: requests.Response = stack.post(
        f"/e/{workflow}", json={"data": {"message": message}}, params=params
    )
    return answer


@pytest.mark.parametrize("wait", [5, 25])
def test_an_event_that_ends_within_the_wait_is_answered_whole(local_stack: Any, wait: int) -> None:
    # Given the example workflow, which ends in well under a second
    # When an event is sent with ?wait
    answer = _send(local_stack, "process-text", wait)

    # Then the answer is 200 with the finished event, as GET /events/{id} shows it
    assert answer.status_code == 200, answer.text
    event = answer.json()
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == OUTPUTS
    assert [step["service"] for step in event["steps"]] == ["upper", "reverse", "space-counter"]
    assert answer.headers["Location"].endswith(f"/events/{event['event_id']}")
    assert local_stack.get(answer.headers["Location"]).json() == event


def test_an_event_that_fails_within_the_wait_is_answered_whole(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a workflow whose only service answers 404
    stub = stub_service(lambda call, _: json_reply(404, {"error": "gone"}))
    service = unique("gone")
    registry.service(
        service_definition(service, stub.address, {"message": "string"}, {"message": "string"})
    )
    workflow = unique("fails")
    registry.workflow(
        workflow_definition(workflow, [service], {"message": "string"}, {"message": "string"})
    )

    # When an event is sent with ?wait=5
    answer = _send(local_stack, workflow, 5)

    # Then the answer is 200 with the FAILED event and its error
    assert answer.status_code == 200, answer.text
    event = answer.json()
    assert event["status"] == "FAILED", event
    assert event["error"]["status_code"] == 404
    assert event["steps"][0]["status"] == "FAILED"


def test_the_wait_covers_a_callback_step(local_stack: Any) -> None:
    # Given the example workflow whose middle service calls back a moment later
    # When an event is sent with ?wait=10
    answer = _send(local_stack, "process-text-async", 10)

    # Then the answer is 200 with the outputs, the callback having come within the wait
    assert answer.status_code == 200, answer.text
    event = answer.json()
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == OUTPUTS
    assert event["steps"][1]["service"] == "reverse-later"


@pytest.mark.parametrize("wait", [None, 0])
def test_without_a_wait_the_event_is_only_acknowledged(local_stack: Any, wait: int | None) -> None:
    # Given the example workflow
    # When an event is sent with no wait, or ?wait=0
    answer = _send(local_stack, "process-text", wait)

    # Then it is acknowledged with 202 as usual, and runs to its end
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert set(accepted) == {"event_id", "workflow_id", "status", "acknowledged_at", "replayed"}
    assert accepted["replayed"] is False
    assert local_stack.wait_for_end(accepted["event_id"])["outputs"] == OUTPUTS


def test_an_event_still_running_after_the_wait_is_acknowledged_with_202(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a workflow over a callback service that accepts the work and does not call back
    # (for 9 s at the stack's time scale)
    inbox = Inbox()
    service = unique("slow")
    registry.service(
        service_definition(
            service,
            stub_service(inbox).address,
            {"message": "string"},
            {"message": "string"},
            mode="callback",
            timeout_seconds=900,
        )
    )
    workflow = unique("slow-flow")
    registry.workflow(
        workflow_definition(workflow, [service], {"message": "string"}, {"message": "string"})
    )

    # When an event is sent with ?wait=1
    started = time.monotonic()
    answer = _send(local_stack, workflow, 1)
    elapsed = time.monotonic() - started

    # Then, after waiting about a second, the answer is the usual 202 with the event id
    assert answer.status_code == 202, answer.text
    assert 1.0 <= elapsed < 5.0, elapsed
    accepted = answer.json()
    assert set(accepted) == {"event_id", "workflow_id", "status", "acknowledged_at", "replayed"}
    assert accepted["replayed"] is False
    event_id = accepted["event_id"]
    assert answer.headers["Location"].endswith(f"/events/{event_id}")

    # And the event is still waiting for its callback
    assert local_stack.get(f"/events/{event_id}").json()["status"] == "WAITING"

    # And it ends when the service does call back
    url = inbox.next().headers["x-machinery-callback-url"]
    assert requests.post(url, json={"message": "at last"}, timeout=10).status_code == 200
    assert local_stack.wait_for_end(event_id)["outputs"] == {"message": "at last"}


@pytest.mark.parametrize("wait", [26, -1, "soon"])
def test_a_wait_out_of_range_is_refused_before_anything_is_accepted(
    local_stack: Any, wait: object
) -> None:
    # Given the example workflow and its newest event
    newest = newest_event(local_stack, "process-text")

    # When an event is sent with a wait outside 0..25 seconds
    answer = _send(local_stack, "process-text", wait)

    # Then it is refused with 422, naming the parameter
    assert answer.status_code == 422, answer.text
    details = answer.json()["details"]
    assert any("wait" in detail["path"] for detail in details), details

    # And no event was created
    assert newest_event(local_stack, "process-text") == newest
