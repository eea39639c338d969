"""Cancel (POST /events/{id}/cancel) and redrive (POST /events/{id}/retry) over HTTP."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from e2e_kit import (
    Inbox,
    Registry,
    StartStub,
    on_each_type,  # noqa: F401  (every test here runs on both types)
    service_definition,
    unique,
    workflow_definition,
)
from loopback import Call, Reply, json_reply

pytestmark = pytest.mark.e2e


def _wait_for_status(stack: Any, event_id: str, status: str, timeout: float = 10) -> dict[str, Any]:
    event: dict[str, Any] = stack.wait_until(
        event_id,
        lambda event: event["status"] == status,
        f"event {{event_id}} is {{event[status]}}, not {status}, after {{timeout}}s",
        timeout,
    )
    return event


def _one_step_workflow(registry: Registry, address: str, **options: Any) -> str:
    service = unique("svc")
    registry.service(
        service_definition(service, address, {"text": "string"}, {"echo": "string"}, **options)
    )
    workflow = unique("wf")
    registry.workflow(
        workflow_definition(workflow, [service], {"text": "string"}, {"echo": "string"})
    )
    return workflow


def test_cancelling_a_waiting_event_ends_it_and_refuses_its_late_callback(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given an event WAITING for a callback service that has its callback URL
    inbox = Inbox()
    service = stub_service(inbox)
    workflow = _one_step_workflow(registry, service.address, mode="callback", timeout_seconds=900)
    event_id = local_stack.post(f"/e/{workflow}", json={"data": {"text": "hi"}}).json()["event_id"]
    callback_url = inbox.next().headers["X-Machinery-Callback-Url"]
    _wait_for_status(local_stack, event_id, "WAITING")

    # When it is cancelled
    cancelled = local_stack.post(f"/events/{event_id}/cancel")

    # Then it is CANCELLED at once, its step too, and it stays so
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "CANCELLED"
    assert cancelled.json()["steps"][0]["status"] == "CANCELLED"
    assert local_stack.post(f"/events/{event_id}/cancel").status_code == 409
    # and the service's late callback is refused, and recorded on the step, never applied
    late = local_stack.http.post(callback_url, json={"echo": "too late"}, timeout=10)
    assert late.status_code == 409
    event = local_stack.get(f"/events/{event_id}").json()
    assert event["status"] == "CANCELLED"
    assert event["outputs"] is None
    assert event["steps"][0]["history"][-1]["error"]["type"] == "ArrivedAfterCancel"


def test_a_sync_answer_that_arrives_after_the_cancel_is_recorded_not_applied(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a sync service that holds its answer until the test lets it go
    called = threading.Event()

    def slow(call: Call, nth: int) -> Reply:
        called.set()
        service.release.wait(10)
        return json_reply(200, {"echo": call.json()["text"]})

    service = stub_service(slow)
    workflow = _one_step_workflow(registry, service.address, timeout_seconds=30)
    event_id = local_stack.post(f"/e/{workflow}", json={"data": {"text": "hi"}}).json()["event_id"]
    assert called.wait(10)

    # When the event is cancelled while the call is under way, and then the answer comes
    assert local_stack.post(f"/events/{event_id}/cancel").status_code == 200
    service.release.set()

    # Then the answer is recorded as late on the step and the event stays CANCELLED
    deadline = time.monotonic() + 10
    while True:
        event = local_stack.get(f"/events/{event_id}").json()
        history = event["steps"][0]["history"] if event["steps"] else []
        if history and history[-1]["error"]["type"] == "ArrivedAfterCancel":
            break
        assert time.monotonic() < deadline, f"the late answer was not recorded: {event}"
        time.sleep(0.02)
    assert event["status"] == "CANCELLED"
    assert event["outputs"] is None
    assert history[-1]["status_code"] == 200


def test_a_failed_event_retried_runs_again_from_its_failed_step(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a two-step workflow whose second service is down (404) until it is fixed
    fixed = threading.Event()
    first = stub_service(lambda call, nth: json_reply(200, {"middle": call.json()["text"] + "!"}))
    second = stub_service(
        lambda call, nth: (
            json_reply(200, {"echo": call.json()["middle"]})
            if fixed.is_set()
            else json_reply(404, {"error": "not deployed yet"})
        )
    )
    names = [unique("first"), unique("second")]
    registry.service(
        service_definition(names[0], first.address, {"text": "string"}, {"middle": "string"})
    )
    registry.service(
        service_definition(names[1], second.address, {"middle": "string"}, {"echo": "string"})
    )
    workflow = unique("wf")
    registry.workflow(workflow_definition(workflow, names, {"text": "string"}, {"echo": "string"}))
    event_id = local_stack.post(f"/e/{workflow}", json={"data": {"text": "hi"}}).json()["event_id"]
    failed = local_stack.wait_for_end(event_id)
    assert failed["status"] == "FAILED"

    # When the service is fixed and the event is retried
    fixed.set()
    retried = local_stack.post(f"/events/{event_id}/retry")

    # Then it runs again from step 2, keeping step 1's output (the first service ran once)
    assert retried.status_code == 202
    assert retried.json()["event_id"] == event_id
    event = local_stack.wait_for_end(event_id)
    assert event["status"] == "SUCCEEDED"
    assert event["outputs"] == {"echo": "hi!"}
    assert event["run"] == 2
    assert len(first.received()) == 1
    assert [s["status"] for s in event["steps"]] == ["SUCCEEDED", "SUCCEEDED"]
    # and the history shows the failed run with the step it could not complete
    [earlier] = event["runs"]
    assert earlier["run"] == 1
    assert earlier["status"] == "FAILED"
    assert earlier["error"]["status_code"] == 404
    assert [s["service"] for s in earlier["steps"]] == [names[1]]


def test_only_a_failed_event_can_be_retried(local_stack: Any) -> None:
    event_id = local_stack.post("/e/process-text", json={"data": {"message": "fine"}}).json()[
        "event_id"
    ]
    assert local_stack.wait_for_end(event_id)["status"] == "SUCCEEDED"

    refused = local_stack.post(f"/events/{event_id}/retry")

    assert refused.status_code == 409
    assert "FAILED" in refused.json()["message"]
    assert local_stack.post("/events/nope/retry").status_code == 404
    assert local_stack.post("/events/nope/cancel").status_code == 404


def test_a_cancelled_event_still_sends_its_completion_notification(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given an event WAITING on a callback that asked to be notified
    service_inbox, receiver_inbox = Inbox(), Inbox(json_reply(200, {}))
    service, receiver = stub_service(service_inbox), stub_service(receiver_inbox)
    workflow = _one_step_workflow(registry, service.address, mode="callback", timeout_seconds=900)
    event_id = local_stack.post(
        f"/e/{workflow}",
        json={"data": {"text": "hi"}, "notify": {"url": receiver.address}},
    ).json()["event_id"]
    service_inbox.next()
    _wait_for_status(local_stack, event_id, "WAITING")

    # When it is cancelled
    cancelled = local_stack.post(f"/events/{event_id}/cancel").json()

    # Then the receiver hears of it, and the event records the delivery
    notice = receiver_inbox.next()
    assert notice.json()["status"] == "CANCELLED"
    assert notice.json()["event_id"] == event_id
    assert cancelled["notification"]["status"] == "DELIVERED"
