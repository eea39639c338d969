"""Completion notifications and the sync wait, on moto with a loopback receiver.

worker.notify is one signed delivery attempt per invocation; events.accept_event decides
whether an event is to be notified and where; events.wait_for_end backs `?wait=N`.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from integration_kit import (
    Clock,
    FakeLambdaContext,
    Services,
    Wired,
    executions,
    load_handler_module,
    recorded,
)
from integration_kit import step_answer as answer

from machinery_core.domain.errors import NotificationFailed
from machinery_core.domain.models import (
    CompletionNotice,
    ErrorInfo,
    Event,
    EventRequest,
    EventStatus,
    EventView,
    Notification,
    NotificationStatus,
    Notify,
    Plan,
    PlannedStep,
    Service,
    Workflow,
)
from machinery_core.local.launch import free_port
from machinery_core.runtime.dependencies import Dependencies, configure
from machinery_core.service import events, notifications, worker

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

api = load_handler_module("api_app", "functions/api/app.py")
step = load_handler_module("step_app", "functions/step/app.py")

STRING = {"type": "string"}
KEY = b"notification-signing-key-for-tests"
HOOK = "/hook"


@dataclass
class Rig:
    deps: Dependencies
    clock: Clock
    services: Services

    @property
    def store(self) -> Any:
        return self.deps.store

    @property
    def hook_url(self) -> str:
        return self.services.url + HOOK

    def receiver_answers(self, status: int) -> None:
        self.services.behaviours[HOOK] = lambda _: (status, {})

    def upper(self) -> Service:
        return Service.model_validate(
            {
                "name": "upper",
                "address": self.services.url + "/upper",
                "spec": {"inputs": {"message": STRING}, "outputs": {"message": STRING}},
            }
        )

    def ended_event(
        self,
        status: EventStatus = EventStatus.SUCCEEDED,
        notification: Notification | None | bool = True,
        **fields: Any,
    ) -> str:
        """An event stored as the worker leaves it when it ends, to be notified at the hook."""
        if notification is True:
            notification = Notification(url=self.hook_url)
        now = self.clock()
        event = Event(
            event_id=str(uuid.uuid4()),
            workflow_id="shout",
            status=status,
            data={"message": "hi"},
            context={"message": "hi"},
            acknowledged_at=now - timedelta(seconds=3),
            updated_at=now,
            ended_at=now if status.terminal else None,
            notification=notification or None,
            **fields,
        )
        plan = Plan(
            workflow_version=1,
            steps=[PlannedStep(service=self.upper())],
            outputs={"message": STRING},
        )
        self.store.create_event(event, plan)
        return event.event_id

    def event(self, event_id: str) -> Event:
        event: Event = self.store.get_event(event_id)
        return event

    def deliveries(self) -> list[Any]:
        return [call for call in self.services.server.received() if call.path == HOOK]


@pytest.fixture
def rig(wired: Wired, services: Services) -> Rig:
    """Dependencies with a signing key and a fixed clock; a receiver at /hook taking 200."""
    clock = Clock()
    deps = replace(wired.deps, clock=clock, signing_key=lambda: KEY)
    configure(deps)  # `wired` unconfigures it
    rig = Rig(deps, clock, services)
    rig.receiver_answers(200)
    return rig


# --- notify: delivery --------------------------------------------------------------------


def test_a_notification_posts_the_signed_completion_notice(rig: Rig) -> None:
    # Given an event that ended SUCCEEDED with a notification pending
    event_id = rig.ended_event(outputs={"message": "HI"})
    ended = rig.event(event_id)

    # When Notify's task runs
    result = notifications.notify(rig.deps, event_id)

    # Then the receiver got the completion notice as JSON
    [delivery] = rig.deliveries()
    assert delivery.method == "POST"
    expected = CompletionNotice(
        event_id=event_id,
        workflow_id="shout",
        status=EventStatus.SUCCEEDED,
        outputs={"message": "HI"},
        error=None,
        acknowledged_at=ended.acknowledged_at,
        ended_at=ended.ended_at,
    )
    assert delivery.body == expected.model_dump_json().encode()
    assert CompletionNotice.model_validate_json(delivery.body) == expected
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["X-Machinery-Event-Id"] == event_id
    # And its signature is the HMAC-SHA256 of the raw body with the deployment's key
    signature = delivery.headers["X-Machinery-Signature"]
    assert signature == notifications.sign(KEY, delivery.body)
    computed = "sha256=" + hmac.new(KEY, delivery.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(computed, signature)
    assert not hmac.compare_digest(notifications.sign(b"another key", delivery.body), signature)
    # And the delivery is recorded, the state machine told to finish without notifying again
    assert result == answer("SUCCEEDED")
    note = rig.event(event_id).notification
    assert note == Notification(
        url=rig.hook_url,
        status=NotificationStatus.DELIVERED,
        attempts=1,
        last_status_code=200,
        last_error=None,
        last_attempt_at=rig.clock.now,
    )


def test_the_notice_of_a_failed_event_carries_its_error(rig: Rig) -> None:
    error = ErrorInfo(type="HttpError", message="the service answered 404", status_code=404)
    event_id = rig.ended_event(EventStatus.FAILED, error=error)

    assert notifications.notify(rig.deps, event_id) == answer("FAILED")

    [delivery] = rig.deliveries()
    notice = delivery.json()
    assert (notice["status"], notice["outputs"]) == ("FAILED", None)
    assert ErrorInfo.model_validate(notice["error"]) == error


def test_a_refused_notification_is_recorded_and_raised_for_a_retry(rig: Rig) -> None:
    # Given a receiver that answers 500
    rig.receiver_answers(500)
    event_id = rig.ended_event()

    # When Notify's task runs, it fails with the error the state machine retries on
    with pytest.raises(NotificationFailed, match="attempt 1 to .*/hook failed"):
        notifications.notify(rig.deps, event_id)

    # And the failed attempt was recorded first, still pending
    note = rig.event(event_id).notification
    assert note is not None
    assert (note.status, note.attempts, note.last_status_code) == (
        NotificationStatus.PENDING,
        1,
        500,
    )
    assert note.last_error == "the receiver answered 500"
    assert note.last_attempt_at == rig.clock.now


def test_an_unreachable_receiver_is_recorded_without_a_status_code(rig: Rig) -> None:
    # Given a receiver URL on a loopback port with nothing listening on it
    port = free_port()
    event_id = rig.ended_event(notification=Notification(url=f"http://127.0.0.1:{port}/hook"))

    with pytest.raises(NotificationFailed):
        notifications.notify(rig.deps, event_id)

    note = rig.event(event_id).notification
    assert note is not None
    assert (note.status, note.attempts, note.last_status_code) == (
        NotificationStatus.PENDING,
        1,
        None,
    )
    assert note.last_error is not None and note.last_error.startswith("ConnectionError")


def test_the_last_attempt_gives_up_and_lets_the_state_machine_finish(rig: Rig) -> None:
    # Given a receiver that always answers 503
    rig.receiver_answers(503)
    event_id = rig.ended_event()

    # When Notify runs NOTIFY_MAX_ATTEMPTS times (the first and the state machine's retries)
    for attempt in range(1, notifications.NOTIFY_MAX_ATTEMPTS):
        with pytest.raises(NotificationFailed, match=f"attempt {attempt} "):
            notifications.notify(rig.deps, event_id)
    result = notifications.notify(rig.deps, event_id)

    # Then the last one records FAILED and returns, so the event's own status stands
    assert result == answer("SUCCEEDED")
    assert len(rig.deliveries()) == notifications.NOTIFY_MAX_ATTEMPTS == 5
    note = rig.event(event_id).notification
    assert note is not None
    assert (note.status, note.attempts, note.last_status_code) == (
        NotificationStatus.FAILED,
        5,
        503,
    )
    # And another invocation sends nothing more
    assert notifications.notify(rig.deps, event_id) == answer("SUCCEEDED")
    assert len(rig.deliveries()) == 5


def test_a_retry_after_a_failure_can_deliver(rig: Rig) -> None:
    rig.receiver_answers(500)
    event_id = rig.ended_event()
    with pytest.raises(NotificationFailed):
        notifications.notify(rig.deps, event_id)

    rig.receiver_answers(202)
    assert notifications.notify(rig.deps, event_id) == answer("SUCCEEDED")

    note = rig.event(event_id).notification
    assert note is not None
    assert (note.status, note.attempts, note.last_status_code, note.last_error) == (
        NotificationStatus.DELIVERED,
        2,
        202,
        None,
    )
    first, second = rig.deliveries()
    assert first.body == second.body  # the same notice, so the same signature


@pytest.mark.parametrize(
    ("status", "notification", "expected"),
    [
        (EventStatus.RUNNING, True, "CONTINUE"),
        (EventStatus.WAITING, True, "CONTINUE"),
        (EventStatus.SUCCEEDED, False, "SUCCEEDED"),
        (
            EventStatus.SUCCEEDED,
            Notification(url="http://127.0.0.1:1/hook", status=NotificationStatus.DELIVERED),
            "SUCCEEDED",
        ),
    ],
    ids=["running", "waiting", "none-asked", "already-delivered"],
)
def test_nothing_is_sent_unless_an_ended_event_has_a_pending_notification(
    rig: Rig, status: EventStatus, notification: Notification | bool, expected: str
) -> None:
    event_id = rig.ended_event(status, notification=notification)

    result = notifications.notify(rig.deps, event_id)

    assert result == answer(expected)
    assert rig.deliveries() == []
    assert rig.event(event_id).version == 0


def test_the_step_handler_notifies_and_fails_by_the_retried_error_name(rig: Rig) -> None:
    delivered = rig.ended_event()
    context = FakeLambdaContext("machinery-step")

    assert step.handler({"action": "notify", "event_id": delivered}, context) == answer("SUCCEEDED")

    rig.receiver_answers(500)
    refused = rig.ended_event()
    with pytest.raises(NotificationFailed) as raised:
        step.handler({"action": "notify", "event_id": refused}, context)
    # Lambda reports the exception's class name: what the Notify state's Retry matches
    assert type(raised.value).__name__ == "NotificationFailed"


def test_an_event_that_ends_asks_the_state_machine_to_notify(rig: Rig) -> None:
    # Given an accepted event of a one-step workflow, with a notification to send
    rig.services.behaviours["/upper"] = lambda data: (200, {"message": data["message"].upper()})
    event_id = rig.ended_event(EventStatus.PENDING)

    # When the worker runs it to its end, the answer routes to Notify
    assert worker.advance(rig.deps, event_id, lambda: 60_000) == answer("SUCCEEDED", notify=True)
    assert rig.deliveries() == []  # Notify sends it, not the step

    # And Notify delivers it
    assert notifications.notify(rig.deps, event_id) == answer("SUCCEEDED")
    assert rig.deliveries()[0].json()["outputs"] == {"message": "HI"}


# --- accept_event: where to notify -------------------------------------------------------


def register_shout(rig: Rig, notify: str | None) -> None:
    now = rig.clock()
    rig.store.save_service(rig.upper(), now, create_only=True)
    spec: dict[str, Any] = {
        "services": ["upper"],
        "inputs": {"message": STRING},
        "outputs": {"message": STRING},
    }
    if notify:
        spec["notify"] = {"url": notify}
    rig.store.save_workflow(Workflow.model_validate({"name": "shout", "spec": spec}), now, None)


@pytest.mark.parametrize(
    ("default", "requested", "expected"),
    [
        ("https://default.example.test/done", "https://mine.example.test/done", "mine"),
        ("https://default.example.test/done", None, "default"),
        (None, "https://mine.example.test/done", "mine"),
        (None, None, None),
    ],
    ids=["request-overrides", "workflow-default", "request-only", "neither"],
)
def test_an_accepted_event_is_notified_where_the_request_or_the_workflow_says(
    rig: Rig, default: str | None, requested: str | None, expected: str | None
) -> None:
    # Given a workflow with or without a default notify URL
    register_shout(rig, default)
    request = EventRequest(
        data={"message": "hi"}, notify=Notify(url=requested) if requested else None
    )

    # When an event is accepted, with or without its own notify URL
    accepted = events.accept_event(rig.deps, "shout", request, "https://api.example.test")

    # Then the stored event will be notified at the request's URL, else the workflow's
    note = rig.event(accepted.event_id).notification
    if expected is None:
        assert note is None
    else:
        assert note == Notification(url=f"https://{expected}.example.test/done")


# --- wait_for_end ------------------------------------------------------------------------


class FakeTime:
    """events.time with a monotonic clock that only the recorded sleeps move."""

    def __init__(self, on_sleep: Callable[[int], None] = lambda _: None) -> None:
        self.monotonic_now = 1000.0
        self.slept: list[float] = []
        self._on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.monotonic_now

    def sleep(self, seconds: float) -> None:
        # A wait that no longer keeps to its deadline fails here rather than spinning forever
        assert len(self.slept) < 100, "wait_for_end kept polling past its deadline"
        self.slept.append(seconds)
        self.monotonic_now += seconds
        self._on_sleep(len(self.slept))


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeTime]:
    def install(on_sleep: Callable[[int], None] = lambda _: None) -> FakeTime:
        fake = FakeTime(on_sleep)
        monkeypatch.setattr(events, "time", SimpleNamespace(monotonic=fake.monotonic))
        return fake

    return install


def test_wait_for_end_returns_the_event_once_it_ends(
    rig: Rig, fake_time: Callable[..., FakeTime]
) -> None:
    # Given a running event that the worker ends during the second pause
    event_id = rig.ended_event(EventStatus.RUNNING, notification=False)

    def worker_ends_it(nth: int) -> None:
        if nth == 2:
            running = rig.event(event_id)
            rig.store.save_event(
                running.model_copy(
                    update={
                        "status": EventStatus.SUCCEEDED,
                        "outputs": {"message": "HI"},
                        "ended_at": rig.clock.now,
                    }
                )
            )

    fake = fake_time(worker_ends_it)

    view = events.wait_for_end(rig.deps, event_id, 5, sleep=fake.sleep)

    # Then the ended event is returned as GET /events/{id} shows it, right after it ended
    assert view == EventView.of(rig.event(event_id))
    assert view is not None and view.status is EventStatus.SUCCEEDED
    assert fake.slept == [0.05, 0.1]


def test_wait_for_end_of_an_event_that_already_ended_does_not_sleep(
    rig: Rig, fake_time: Callable[..., FakeTime]
) -> None:
    fake = fake_time()
    event_id = rig.ended_event(EventStatus.FAILED)

    view = events.wait_for_end(rig.deps, event_id, 5, sleep=fake.sleep)

    assert view is not None and view.status is EventStatus.FAILED
    assert fake.slept == []


def test_wait_for_end_gives_up_at_the_deadline(
    rig: Rig, fake_time: Callable[..., FakeTime]
) -> None:
    # Given an event that does not end
    fake = fake_time()
    event_id = rig.ended_event(EventStatus.RUNNING)

    view = events.wait_for_end(rig.deps, event_id, 1, sleep=fake.sleep)

    # Then None once the time is up: pauses double from 50 ms, the last one cut to the deadline
    assert view is None
    assert fake.slept == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.25])
    assert sum(fake.slept) == pytest.approx(1.0)


def test_wait_for_end_pauses_at_most_half_a_second(
    rig: Rig, fake_time: Callable[..., FakeTime]
) -> None:
    fake = fake_time()
    event_id = rig.ended_event(EventStatus.RUNNING)

    assert events.wait_for_end(rig.deps, event_id, 3, sleep=fake.sleep) is None

    assert max(fake.slept) == 0.5
    assert sum(fake.slept) == pytest.approx(3.0)


# --- the API: ?wait=N and notify ---------------------------------------------------------


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    answered = api.handler(copy.deepcopy(event), FakeLambdaContext())
    headers = {key.lower(): value for key, value in (answered.get("headers") or {}).items()}
    return answered["statusCode"], headers, json.loads(answered["body"])


def with_wait(event: dict[str, Any], wait: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["rawQueryString"] = f"wait={wait}"
    event["queryStringParameters"] = {"wait": wait}
    return event


@pytest.fixture
def shout(rig: Rig) -> Rig:
    """The `shout` workflow, its `upper` service on loopback."""
    register_shout(rig, None)
    rig.services.behaviours["/upper"] = lambda data: (200, {"message": data["message"].upper()})
    return rig


@pytest.mark.parametrize("wait", ["26", "-1", "soon"])
def test_a_wait_out_of_range_answers_422_and_accepts_nothing(
    shout: Rig, wired: Wired, wait: str
) -> None:
    status, _, body = invoke(with_wait(recorded("send_event_wait"), wait))

    assert status == 422
    assert [(d["path"], d["location"]) for d in body["details"]] == [("wait", "query")]
    assert shout.store.list_events("shout", 10, None, None)[0] == []
    assert executions(wired) == []


def test_a_wait_answers_200_with_the_event_when_it_ends_in_time(
    shout: Rig, wired: Wired, monkeypatch: pytest.MonkeyPatch, fake_time: Callable[..., FakeTime]
) -> None:
    # Given a state machine that runs the event while the API waits
    fake = fake_time()
    waited: list[float] = []
    original = events.wait_for_end

    def run_while_waiting(deps: Dependencies, event_id: str, seconds: float) -> EventView | None:
        waited.append(seconds)

        def step_function_runs(pause: float) -> None:
            fake.sleep(pause)
            worker.advance(deps, event_id, lambda: 60_000)

        return original(deps, event_id, seconds, sleep=step_function_runs)

    monkeypatch.setattr(events, "wait_for_end", run_while_waiting)

    # When the recorded event is sent with ?wait=5
    status, headers, body = invoke(recorded("send_event_wait"))

    # Then it is answered 200 with the ended event, as GET /events/{id} would show it
    assert (status, waited) == (200, [5])
    assert (body["status"], body["outputs"]) == ("SUCCEEDED", {"message": "HELLO WORLD"})
    assert headers["location"] == f"/events/{body['event_id']}"
    assert body == json.loads(EventView.of(shout.event(body["event_id"])).model_dump_json())
    assert executions(wired) == [body["event_id"]]


def test_a_wait_answers_202_when_the_event_is_still_running(
    shout: Rig, fake_time: Callable[..., FakeTime]
) -> None:
    # Given a state machine that does not get to the event in time (time only moves by sleeping)
    fake = fake_time()
    original = events.wait_for_end

    def waiting(deps: Dependencies, event_id: str, seconds: float) -> EventView | None:
        return original(deps, event_id, seconds, sleep=fake.sleep)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(events, "wait_for_end", waiting)
        status, headers, body = invoke(recorded("send_event_wait"))

    assert status == 202
    assert (body["status"], headers["location"]) == ("PENDING", f"/events/{body['event_id']}")
    assert sum(fake.slept) == pytest.approx(5.0)


def test_an_event_sent_with_notify_is_stored_with_its_notification_pending(
    shout: Rig, wired: Wired
) -> None:
    status, _, body = invoke(recorded("send_event_notify"))

    assert status == 202
    stored = shout.event(body["event_id"])
    assert stored.notification == Notification(
        url="https://hooks.example.com/machinery", status=NotificationStatus.PENDING, attempts=0
    )
    assert executions(wired) == [body["event_id"]]


def test_a_notify_url_that_is_not_http_answers_422(shout: Rig) -> None:
    event = recorded("send_event_notify")
    event["body"] = json.dumps({"data": {"message": "hi"}, "notify": {"url": "ftp://x/y"}})

    status, _, body = invoke(event)

    assert status == 422
    assert [d["path"] for d in body["details"]] == ["notify.url"]
    assert shout.store.list_events("shout", 10, None, None)[0] == []
