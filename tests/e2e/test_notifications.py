"""Completion notifications: a signed summary POSTed when an event ends, retried, recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime
from typing import Any

import pytest
from e2e_kit import (
    Inbox,
    Registry,
    StartStub,
    newest_event,
    on_each_type,  # noqa: F401  (every test here runs on both types)
    service_definition,
    unique,
    wait_for_notification,
    workflow_definition,
)
from loopback import Call, Reply, closed_url, json_reply

pytestmark = pytest.mark.e2e


NOTICE_FIELDS = {
    "event_id",
    "workflow_id",
    "status",
    "outputs",
    "error",
    "acknowledged_at",
    "ended_at",
}
MESSAGE = "notify me please"
PROCESSED = {"message": "ESAELP EM YFITON", "space_count": 2}


def _send(stack: Any, workflow: str, notify_url: str | None = None) -> str:
    notify = {} if notify_url is None else {"notify": {"url": notify_url}}
    event_id: str = stack.send(workflow, {"message": MESSAGE}, **notify)
    return event_id


def _verified_notice(stack: Any, call: Call) -> dict[str, Any]:
    """The notice a receiver got, once its signature is checked as a receiver would."""
    assert call.method == "POST"
    assert call.headers["content-type"].startswith("application/json")
    signature = call.headers["x-machinery-signature"]
    expected = (
        "sha256=" + hmac.new(stack.signing_key.encode(), call.body, hashlib.sha256).hexdigest()
    )
    assert hmac.compare_digest(signature, expected), (signature, expected)
    notice: dict[str, Any] = json.loads(call.body)
    assert call.headers["x-machinery-event-id"] == notice["event_id"]
    return notice


def _summary(event: dict[str, Any]) -> dict[str, Any]:
    return {key: event[key] for key in NOTICE_FIELDS}


def _moment(value: object) -> datetime:
    assert isinstance(value, str)
    return datetime.fromisoformat(value)


@pytest.mark.parametrize("workflow", ["process-text", "process-text-async"])
def test_a_notification_is_signed_and_summarises_the_ended_event(
    local_stack: Any, stub_service: StartStub, workflow: str
) -> None:
    # Given a receiver that takes notifications with 200
    inbox = Inbox(json_reply(200, {}))
    receiver = stub_service(inbox)

    # When an event to an example workflow (all sync, or ended by a callback) asks to be
    # notified at the receiver
    event_id = _send(local_stack, workflow, receiver.address)

    # Then the receiver gets one notification whose signature verifies with the signing key
    notice = _verified_notice(local_stack, inbox.next())

    # And it summarises the ended event as GET /events/{id} shows it
    event = wait_for_notification(local_stack, event_id)
    assert set(notice) >= NOTICE_FIELDS
    assert {key: notice[key] for key in NOTICE_FIELDS} == _summary(event)
    assert notice["event_id"] == event_id
    assert notice["workflow_id"] == workflow
    assert notice["status"] == "SUCCEEDED"
    assert notice["outputs"] == PROCESSED
    assert notice["error"] is None

    # And the delivery is recorded on the event
    note = event["notification"]
    assert note["url"] == receiver.address
    assert note["status"] == "DELIVERED"
    assert note["attempts"] == 1
    assert note["last_status_code"] == 200
    assert note["last_error"] is None
    assert _moment(note["last_attempt_at"]) >= _moment(event["ended_at"])
    assert len(receiver.received()) == 1


def test_a_failed_event_is_notified_with_its_error(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a workflow whose only service answers 404, and a notification receiver
    broken = stub_service(lambda call, _: json_reply(404, {"error": "gone"}))
    service = unique("gone")
    registry.service(
        service_definition(service, broken.address, {"message": "string"}, {"message": "string"})
    )
    workflow = unique("fails")
    registry.workflow(
        workflow_definition(workflow, [service], {"message": "string"}, {"message": "string"})
    )
    inbox = Inbox(json_reply(204, {}))
    receiver = stub_service(inbox)

    # When an event fails
    event_id = _send(local_stack, workflow, receiver.address)

    # Then the signed notification says FAILED, with the event's error
    notice = _verified_notice(local_stack, inbox.next())
    event = wait_for_notification(local_stack, event_id)
    assert event["status"] == "FAILED", event
    assert {key: notice[key] for key in NOTICE_FIELDS} == _summary(event)
    assert notice["status"] == "FAILED"
    assert notice["outputs"] is None
    assert notice["error"]["type"] == "HttpError"
    assert notice["error"]["status_code"] == 404
    assert event["notification"]["status"] == "DELIVERED"
    assert event["notification"]["last_status_code"] == 204


def test_the_workflow_default_notify_is_used_unless_the_event_names_its_own(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a workflow over the example `upper` whose spec names a default receiver
    default_inbox = Inbox(json_reply(200, {}))
    default_receiver = stub_service(default_inbox)
    workflow = unique("notifies")
    definition = workflow_definition(
        workflow, ["upper"], {"message": "string"}, {"message": "string"}
    )
    definition["spec"]["notify"] = {"url": default_receiver.address}
    registry.workflow(definition)

    # When an event gives no notify
    first = _send(local_stack, workflow)

    # Then the default receiver is notified of it
    notice = _verified_notice(local_stack, default_inbox.next())
    assert notice["event_id"] == first
    assert notice["outputs"] == {"message": MESSAGE.upper()}
    event = wait_for_notification(local_stack, first)
    assert event["notification"]["url"] == default_receiver.address
    assert event["notification"]["status"] == "DELIVERED"

    # When another event names its own receiver
    own_inbox = Inbox(json_reply(200, {}))
    own_receiver = stub_service(own_inbox)
    second = _send(local_stack, workflow, own_receiver.address)

    # Then only that receiver is notified of it
    assert _verified_notice(local_stack, own_inbox.next())["event_id"] == second
    event = wait_for_notification(local_stack, second)
    assert event["notification"]["url"] == own_receiver.address
    assert event["notification"]["status"] == "DELIVERED"
    assert [json.loads(call.body)["event_id"] for call in default_receiver.received()] == [first]


def test_a_failing_receiver_is_retried_until_it_takes_the_notification(
    local_stack: Any, stub_service: StartStub
) -> None:
    # Given a receiver that answers 500 twice, then 200
    inbox = Inbox(lambda call, nth: json_reply(500 if nth <= 2 else 200, {}))
    receiver = stub_service(inbox)

    # When an event asks to be notified there
    event_id = _send(local_stack, "process-text", receiver.address)

    # Then the notification is delivered on the third attempt, and recorded so
    event = wait_for_notification(local_stack, event_id)
    assert event["status"] == "SUCCEEDED", event
    note = event["notification"]
    assert note["status"] == "DELIVERED", note
    assert note["attempts"] == 3
    assert note["last_status_code"] == 200
    assert note["last_error"] is None

    # And every attempt carried the same signed notice
    calls = receiver.received()
    assert len(calls) == 3
    notices = [_verified_notice(local_stack, call) for call in calls]
    assert notices[0] == notices[1] == notices[2]
    assert notices[0]["event_id"] == event_id


@pytest.mark.parametrize("receiver_kind", ["answers-500", "nobody-listens"])
def test_a_receiver_that_never_takes_it_fails_the_notification_after_five_attempts(
    local_stack: Any, stub_service: StartStub, receiver_kind: str
) -> None:
    # Given a receiver that always answers 500, or a port nobody listens on
    receiver = None
    arrivals: list[float] = []

    def down(call: Call, nth: int) -> Reply:
        arrivals.append(time.monotonic())
        return json_reply(500, {"error": "down"})

    if receiver_kind == "answers-500":
        receiver = stub_service(down)
        url = receiver.address
    else:
        url = closed_url()

    # When an event asks to be notified there
    event_id = _send(local_stack, "process-text", url)

    # Then the notification ends FAILED after five attempts, with the last problem recorded
    event = wait_for_notification(local_stack, event_id)
    note = event["notification"]
    assert note["status"] == "FAILED", note
    assert note["attempts"] == 5
    assert note["last_error"]
    assert note["last_attempt_at"] is not None
    if receiver is not None:
        assert note["last_status_code"] == 500
        assert "500" in note["last_error"]
        assert len(receiver.received()) == 5
        # And the retries backed off: 2 + 4 + 8 + 16 s, scaled by the stack's 0.01
        assert arrivals[-1] - arrivals[0] >= 0.25, arrivals
    else:
        assert note["last_status_code"] is None

    # And the event itself still SUCCEEDED with its outputs
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == PROCESSED
    assert event["error"] is None


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/notices", "not a url"], ids=["not-http", "not-a-url"]
)
def test_a_notify_url_that_is_not_http_is_refused(
    local_stack: Any, registry: Registry, url: str
) -> None:
    # Given the example workflow and its newest event
    newest = newest_event(local_stack, "process-text")

    # When an event, or a workflow definition, names a notify URL that is not http(s)
    event = local_stack.post(
        "/e/process-text", json={"data": {"message": MESSAGE}, "notify": {"url": url}}
    )
    definition = workflow_definition(
        unique("bad-notify"), ["upper"], {"message": "string"}, {"message": "string"}
    )
    definition["spec"]["notify"] = {"url": url}
    workflow = local_stack.post("/workflows", json=definition)
    if workflow.status_code == 201:
        registry.track_workflow(definition["name"])  # so that a regression still cleans up

    # Then both are refused with 422, naming the field, and no event was created
    assert event.status_code == 422, event.text
    assert [detail["path"] for detail in event.json()["details"]] == ["notify.url"]
    assert workflow.status_code == 422, workflow.text
    assert [detail["path"] for detail in workflow.json()["details"]] == ["spec.notify.url"]
    assert newest_event(local_stack, "process-text") == newest
