"""Callback services end to end on moto and loopback: dispatch, the callback route, timeouts.

Step Functions is a TaskSpy: it records the answers the worker and the callback route send
back for the AwaitCallback task, which is all the state machine would see of them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from integration_kit import (
    Clock,
    DynamoCalls,
    FakeLambdaContext,
    Services,
    TaskSpy,
    Wired,
    load_handler_module,
    recorded,
    task_timed_out,
)
from integration_kit import step_answer as answer

from machinery_core.domain import tokens
from machinery_core.domain.errors import Conflict, InvalidInput, NotFound
from machinery_core.domain.models import (
    CallbackAccepted,
    ErrorInfo,
    Event,
    EventRequest,
    EventStatus,
    Notification,
    Plan,
    PlannedStep,
    Service,
    StepStatus,
    Workflow,
)
from machinery_core.runtime.dependencies import Dependencies, configure
from machinery_core.service import callbacks, events, routes, worker

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

api = load_handler_module("api_app", "functions/api/app.py")
step = load_handler_module("step_app", "functions/step/app.py")

STRING = {"type": "string"}
API_URL = "https://api.example.test"
TASK = "sfn-task-token-1"
TIMEOUT = 60  # the callback service's timeout_seconds
TOKEN_TTL = timedelta(seconds=TIMEOUT) + worker.CALLBACK_GRACE


@dataclass
class Rig:
    deps: Dependencies
    clock: Clock
    tasks: TaskSpy
    services: Services
    dynamodb: Any

    @property
    def store(self) -> Any:
        return self.deps.store

    def service(self, path: str = "/translate", **extra: Any) -> Service:
        fields: dict[str, Any] = {
            "name": path.strip("/"),
            "address": self.services.url + path,
            "spec": {"inputs": {"message": STRING}, "outputs": {"message": STRING}},
            "mode": "callback",
            "timeout_seconds": TIMEOUT,
            "retry": {"max_attempts": 3, "interval_seconds": 2, "backoff_rate": 2},
            **extra,
        }
        return Service.model_validate(fields)

    def accept(
        self,
        *steps: Service,
        notify: bool = False,
        status: EventStatus = EventStatus.RUNNING,
        data: dict[str, Any] | None = None,
    ) -> str:
        """An event begun by the state machine, stored with its plan as the API stores it."""
        plan = Plan(
            workflow_version=1,
            steps=[PlannedStep(service=s) for s in steps or (self.service(),)],
            outputs={"message": STRING},
            callback_base_url=API_URL,
        )
        now = self.clock()
        data = data if data is not None else {"message": "hello world"}
        event = Event(
            event_id=str(uuid.uuid4()),
            workflow_id="translate-text",
            status=status,
            data=data,
            context=dict(data),
            acknowledged_at=now,
            updated_at=now,
            notification=Notification(url="https://hooks.example.test/done") if notify else None,
        )
        self.store.create_event(event, plan)
        return event.event_id

    def dispatch(self, event_id: str, task_token: str = TASK) -> str | None:
        """AwaitCallback's task; the token the service was handed, if it was called."""
        before = len(self.services.server.received())
        worker.dispatch(self.deps, event_id, task_token)
        received = self.services.server.received()[before:]
        if not received:
            return None
        [call] = received
        url = call.headers["X-Machinery-Callback-Url"]
        found = re.fullmatch(re.escape(API_URL) + r"/callbacks/([A-Za-z0-9_-]+)", url)
        assert found is not None, url
        return found.group(1)

    def event(self, event_id: str) -> Event:
        event: Event = self.store.get_event(event_id)
        return event

    def token_used(self, token: str) -> bool:
        callback = self.store.get_callback(tokens.hash_token(token))
        assert callback is not None
        return bool(callback.used)


def answering(status: int, body: dict[str, Any] | None = None) -> Callable[[Any], Any]:
    return lambda _: (status, body if body is not None else {})


@pytest.fixture
def rig(wired: Wired, tasks: TaskSpy, services: Services, dynamodb: Any) -> Rig:
    """A callback service on loopback at /translate that takes the work (202)."""
    clock = Clock()
    deps = replace(wired.deps, clock=clock)
    configure(deps)  # `wired` unconfigures it
    services.behaviours["/translate"] = answering(202)
    return Rig(deps, clock, tasks, services, dynamodb)


# --- dispatch ----------------------------------------------------------------------------


def test_dispatch_hands_the_step_over_with_a_single_use_callback_url(rig: Rig) -> None:
    # Given an event whose first step is a callback service that accepts work with 202
    event_id = rig.accept()

    # When AwaitCallback's task dispatches it
    token = rig.dispatch(event_id)

    # Then the service got the step's input and a callback URL on the API, with the usual keys
    [call] = rig.services.server.received()
    assert (call.path, call.json()) == ("/translate", {"message": "hello world"})
    assert call.headers["Idempotency-Key"] == f"{event_id}:0"
    assert call.headers["X-Machinery-Event-Id"] == event_id
    # And the URL's token is at least 256 random bits, URL-safe
    assert token is not None and len(token) >= 43
    # And the table knows the token only by its SHA-256
    items = rig.dynamodb.scan(TableName="machinery-test")["Items"]
    # (the event's state and plan are stored compressed: look inside them too)
    assert token not in json.dumps(items, default=lambda packed: zlib.decompress(packed).decode())
    digest = hashlib.sha256(token.encode()).hexdigest()
    [record] = [item for item in items if item["PK"]["S"].startswith("CALLBACK#")]
    assert record["PK"]["S"] == f"CALLBACK#{digest}"
    callback = rig.store.get_callback(digest)
    assert (callback.event_id, callback.step, callback.attempt) == (event_id, 0, 1)
    assert (callback.task_token, callback.used) == (TASK, False)
    assert callback.expires_at == (rig.clock.now + TOKEN_TTL).replace(microsecond=0)
    # And the event waits on the step, with no attempt counted yet
    event = rig.event(event_id)
    assert event.status is EventStatus.WAITING
    assert [(s.status, s.attempts, s.input) for s in event.steps] == [
        (StepStatus.WAITING, 0, {"message": "hello world"})
    ]
    # And the task is left waiting: nothing was sent back to the state machine
    assert rig.tasks.successes == []


def test_every_dispatch_gets_its_own_token(rig: Rig) -> None:
    tokens = {rig.dispatch(rig.accept()) for _ in range(3)}

    assert len(tokens) == 3


def test_a_dispatch_refused_with_a_retryable_error_resumes_the_task_with_a_backoff(
    rig: Rig,
) -> None:
    # Given a callback service that answers 500 (3 attempts allowed, 2 s interval)
    rig.services.behaviours["/translate"] = answering(500, {"error": "busy"})
    event_id = rig.accept()

    # When the step is dispatched
    rig.dispatch(event_id)

    # Then the task is completed at once, asking the state machine to wait and retry
    assert rig.tasks.successes == [(TASK, answer("BACKOFF", wait_seconds=2))]
    # And the attempt is recorded, the event running again rather than waiting
    event = rig.event(event_id)
    assert event.status is EventStatus.RUNNING
    [recorded] = event.steps
    assert (recorded.status, recorded.attempts) == (StepStatus.RETRYING, 1)
    assert recorded.error is not None and recorded.error.status_code == 500


def test_a_dispatch_refused_for_good_fails_the_event(rig: Rig) -> None:
    # Given a callback service that answers 404
    rig.services.behaviours["/translate"] = answering(404, {"error": "no such route"})
    event_id = rig.accept()

    rig.dispatch(event_id)

    # Then the task is completed with the failure and the event is FAILED
    assert rig.tasks.successes == [(TASK, answer("FAILED"))]
    event = rig.event(event_id)
    assert event.status is EventStatus.FAILED
    assert event.error is not None
    assert (event.error.type, event.error.status_code) == ("HttpError", 404)
    assert event.steps[0].status is StepStatus.FAILED


def test_a_dispatch_for_an_event_that_already_ended_resumes_the_task_and_calls_nothing(
    rig: Rig,
) -> None:
    event_id = rig.accept(status=EventStatus.SUCCEEDED)

    token = rig.dispatch(event_id)

    assert token is None
    assert rig.tasks.successes == [(TASK, answer("SUCCEEDED"))]
    assert rig.event(event_id).version == 0


def test_a_dispatch_of_input_that_breaks_the_spec_fails_without_calling(rig: Rig) -> None:
    # Given an event whose context has no `message` for the service's required input
    event_id = rig.accept(data={"text": "hello"})

    token = rig.dispatch(event_id)

    assert token is None
    assert rig.tasks.successes == [(TASK, answer("FAILED"))]
    event = rig.event(event_id)
    assert event.error is not None and event.error.type == "InputInvalid"
    callbacks_stored = [
        item
        for item in rig.dynamodb.scan(TableName="machinery-test")["Items"]
        if item["PK"]["S"].startswith("CALLBACK#")
    ]
    assert callbacks_stored == []


# --- callbacks.complete ------------------------------------------------------------------


def test_a_callback_with_outputs_advances_the_event_and_resumes_the_task(rig: Rig) -> None:
    # Given a callback step followed by a sync step (the example `upper` service)
    upper = rig.service("/upper", mode="sync")
    event_id = rig.accept(rig.service(), upper)
    token = rig.dispatch(event_id)
    assert token is not None
    rig.clock.advance(timedelta(seconds=20))

    # When the service calls back with its outputs
    accepted = callbacks.complete(rig.deps, token, {"message": "hola mundo"})

    # Then the callback is acknowledged for that step, and the event runs on
    assert accepted == CallbackAccepted(event_id=event_id, step=0, status=EventStatus.RUNNING)
    event = rig.event(event_id)
    assert (event.status, event.step_index) == (EventStatus.RUNNING, 1)
    assert event.context["message"] == "hola mundo"
    [done] = event.steps
    assert (done.status, done.attempts, done.output) == (
        StepStatus.SUCCEEDED,
        1,
        {"message": "hola mundo"},
    )
    assert done.duration_ms == 20_000.0
    # And the task is completed with the answer that runs the next step
    assert rig.tasks.successes == [(TASK, answer("CONTINUE"))]
    assert rig.token_used(token)
    # And the next step runs on what the callback brought
    assert worker.advance(rig.deps, event_id, lambda: 60_000) == answer("SUCCEEDED")
    assert rig.event(event_id).outputs == {"message": "HOLA MUNDO"}


def test_a_callback_that_ends_an_event_with_a_notification_asks_for_it(rig: Rig) -> None:
    event_id = rig.accept(notify=True)
    token = rig.dispatch(event_id)
    assert token is not None

    accepted = callbacks.complete(rig.deps, token, {"message": "hola"})

    assert accepted.status is EventStatus.SUCCEEDED
    assert rig.tasks.successes == [(TASK, answer("SUCCEEDED", notify=True))]


@pytest.mark.parametrize(
    "token",
    ["q3J9pZ0cV1xWm8TtR2yLh6sNf4uKd7aEb5oGi0jQwXc", "", "x" * 257],
    ids=["unknown", "empty", "too-long"],
)
def test_a_token_never_issued_is_not_found(rig: Rig, token: str) -> None:
    event_id = rig.accept()
    rig.dispatch(event_id)

    with pytest.raises(NotFound) as refused:
        callbacks.complete(rig.deps, token, {"message": "hola"})

    assert refused.value.to_body() == {"message": "not found"}
    assert rig.event(event_id).status is EventStatus.WAITING
    assert rig.tasks.successes == []


def test_an_expired_token_is_not_found(rig: Rig) -> None:
    # Given a step still waiting, but past its token's expiry (the timeout plus the grace)
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None
    rig.clock.advance(TOKEN_TTL + timedelta(seconds=1))

    with pytest.raises(NotFound):
        callbacks.complete(rig.deps, token, {"message": "hola"})

    assert rig.event(event_id).status is EventStatus.WAITING
    assert not rig.token_used(token)
    assert rig.tasks.successes == []


def test_a_token_works_until_just_before_it_expires(rig: Rig) -> None:
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None
    rig.clock.advance(TOKEN_TTL - timedelta(seconds=2))

    accepted = callbacks.complete(rig.deps, token, {"message": "hola"})

    assert accepted.status is EventStatus.SUCCEEDED


def test_a_token_is_single_use(rig: Rig) -> None:
    # Given a callback that was already completed
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None
    callbacks.complete(rig.deps, token, {"message": "hola"})
    before = rig.event(event_id)

    # When the same token is presented again, with other outputs
    with pytest.raises(Conflict, match="already used"):
        callbacks.complete(rig.deps, token, {"message": "adios"})

    # Then nothing changes and the task was completed only once
    assert rig.event(event_id) == before
    assert len(rig.tasks.successes) == 1


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({"message": 42}, [{"path": "body.message", "message": "expected string, got integer"}]),
        ({}, [{"path": "body.message", "message": "required field is missing"}]),
        (["hola"], [{"path": "body", "message": "expected an object, got array"}]),
    ],
    ids=["wrong-type", "missing", "not-an-object"],
)
def test_outputs_that_break_the_spec_are_refused_and_the_step_keeps_waiting(
    rig: Rig, body: Any, details: list[dict[str, str]]
) -> None:
    # Given a waiting step
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None
    before = rig.event(event_id)

    # When the service calls back with outputs its spec does not allow
    with pytest.raises(InvalidInput) as refused:
        callbacks.complete(rig.deps, token, body)

    # Then it is told which fields are wrong, and nothing was recorded or spent
    assert refused.value.details == details
    assert rig.event(event_id) == before
    assert not rig.token_used(token)
    assert rig.tasks.successes == []
    # And it may call again with correct outputs
    accepted = callbacks.complete(rig.deps, token, {"message": "hola"})
    assert accepted.status is EventStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (
            {"type": "QuotaExceeded", "message": "no more translations today"},
            ("QuotaExceeded", "no more translations today"),
        ),
        ("the model is down", ("ServiceError", "the model is down")),
        ({}, ("ServiceError", "the service reported an error")),
    ],
    ids=["typed", "text", "empty"],
)
def test_a_reported_error_fails_the_step_with_it(
    rig: Rig, report: Any, expected: tuple[str, str]
) -> None:
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None

    accepted = callbacks.complete(rig.deps, token, {"error": report})

    assert accepted.status is EventStatus.FAILED
    event = rig.event(event_id)
    assert event.error is not None
    assert (event.error.type, event.error.message) == expected
    [failed] = event.steps
    assert (failed.status, failed.attempts) == (StepStatus.FAILED, 1)
    assert failed.error == event.error
    assert rig.tasks.successes == [(TASK, answer("FAILED"))]
    assert rig.token_used(token)


def test_outputs_with_a_null_error_field_are_outputs_not_an_error_report(rig: Rig) -> None:
    # Given a service whose answers always carry an `error` field, null on success
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None

    accepted = callbacks.complete(rig.deps, token, {"message": "hola", "error": None})

    assert accepted.status is EventStatus.SUCCEEDED
    event = rig.event(event_id)
    assert (event.error, event.outputs) == (None, {"message": "hola"})
    assert rig.tasks.successes == [(TASK, answer("SUCCEEDED"))]


def test_a_repeated_dispatch_completes_the_step_once(rig: Rig) -> None:
    # Given a dispatch that ran twice for the same task (a Lambda retry after it had run)
    event_id = rig.accept()
    first = rig.dispatch(event_id)
    second = rig.dispatch(event_id)
    assert first is not None and second is not None and first != second

    # Then the service was sent the same step twice, under the same idempotency key
    calls = rig.services.server.received()
    assert [call.headers["Idempotency-Key"] for call in calls] == [f"{event_id}:0"] * 2
    # And whichever token comes back first completes the step; the other is then dead
    assert callbacks.complete(rig.deps, second, {"message": "hola"}).status is (
        EventStatus.SUCCEEDED
    )
    with pytest.raises(NotFound):
        callbacks.complete(rig.deps, first, {"message": "adios"})
    assert rig.event(event_id).outputs == {"message": "hola"}
    assert rig.tasks.successes == [(TASK, answer("SUCCEEDED"))]


def test_a_token_from_a_superseded_dispatch_is_not_found(rig: Rig) -> None:
    # Given a first dispatch the service refused with a 500 (the step is to be retried)
    rig.services.behaviours["/translate"] = answering(500)
    event_id = rig.accept()
    first = rig.dispatch(event_id)
    assert first is not None

    # Then its token is dead while the step waits to retry
    with pytest.raises(NotFound):
        callbacks.complete(rig.deps, first, {"message": "late"})

    # And still dead once the retry has been dispatched with a token of its own
    rig.services.behaviours["/translate"] = answering(202)
    second = rig.dispatch(event_id, task_token="sfn-task-token-2")
    assert second is not None and second != first
    with pytest.raises(NotFound):
        callbacks.complete(rig.deps, first, {"message": "late"})

    # And only the current token completes the step, resuming the current task
    accepted = callbacks.complete(rig.deps, second, {"message": "hola"})
    assert accepted.status is EventStatus.SUCCEEDED
    assert rig.tasks.successes[-1] == ("sfn-task-token-2", answer("SUCCEEDED"))
    assert rig.event(event_id).steps[0].attempts == 2


def test_a_callback_after_the_step_timed_out_is_not_found(rig: Rig) -> None:
    # Given a step whose AwaitCallback timed out first
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None
    worker.callback_timed_out(rig.deps, event_id)
    before = rig.event(event_id)

    # When the service calls back late (but before its token's record expires)
    with pytest.raises(NotFound):
        callbacks.complete(rig.deps, token, {"message": "hola"})

    # Then the timeout stands and the state machine hears nothing more
    assert rig.event(event_id) == before
    assert rig.tasks.successes == []


def test_a_callback_that_loses_the_race_with_its_timeout_is_not_found(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a callback whose timeout is recorded between its reads and its write
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None
    spend = rig.deps.store.use_callback

    def time_out_first(callback: Any, event: Event) -> Event:
        worker.callback_timed_out(rig.deps, event_id)
        return spend(callback, event)

    monkeypatch.setattr(rig.deps.store, "use_callback", time_out_first)

    # When it completes, then it is told the token expired (not that it was used)
    with pytest.raises(NotFound):
        callbacks.complete(rig.deps, token, {"message": "hola"})

    # and the timeout stands, with the state machine told nothing by the callback
    assert rig.event(event_id).steps[0].error is not None
    assert rig.event(event_id).steps[0].error.type == "CallbackTimeout"  # type: ignore[union-attr]
    assert rig.tasks.successes == []


def test_a_callback_for_an_event_the_state_machine_aborted_is_not_found(rig: Rig) -> None:
    # Given a waiting step whose execution then failed (Abort, which counts no attempt)
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None
    worker.abort(rig.deps, event_id, {"Error": "States.Runtime", "Cause": "gave up"})
    before = rig.event(event_id)
    assert (before.status, before.steps[0].attempts) == (EventStatus.FAILED, 0)

    with pytest.raises(NotFound):
        callbacks.complete(rig.deps, token, {"message": "hola"})

    assert rig.event(event_id) == before
    assert not rig.token_used(token)
    assert rig.tasks.successes == []


def test_a_callback_the_state_machine_no_longer_waits_for_is_still_recorded(rig: Rig) -> None:
    # Given a waiting step whose task has just timed out in Step Functions
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None
    rig.tasks.refuse = task_timed_out()

    # When the service calls back
    accepted = callbacks.complete(rig.deps, token, {"message": "hola"})

    # Then the callback is accepted and its result kept
    assert accepted.status is EventStatus.SUCCEEDED
    event = rig.event(event_id)
    assert (event.status, event.outputs) == (EventStatus.SUCCEEDED, {"message": "hola"})
    assert rig.token_used(token)
    # And the timeout path that follows carries on from it, changing nothing
    assert worker.callback_timed_out(rig.deps, event_id) == answer("SUCCEEDED")
    assert rig.event(event_id) == event


# --- callback_timed_out ------------------------------------------------------------------


def test_a_waiting_step_that_times_out_fails_with_callback_timeout(rig: Rig) -> None:
    event_id = rig.accept(notify=True)
    rig.dispatch(event_id)
    rig.clock.advance(timedelta(seconds=TIMEOUT))

    result = worker.callback_timed_out(rig.deps, event_id)

    assert result == answer("FAILED", notify=True)
    event = rig.event(event_id)
    assert event.status is EventStatus.FAILED
    assert event.error == ErrorInfo(type="CallbackTimeout", message="no callback within 60s")
    [failed] = event.steps
    assert (failed.status, failed.attempts, failed.error) == (
        StepStatus.FAILED,
        1,
        event.error,
    )
    assert failed.duration_ms == TIMEOUT * 1000


def test_a_timeout_after_the_callback_won_changes_nothing(rig: Rig) -> None:
    # Given a two-step event whose callback step was just completed
    event_id = rig.accept(rig.service(), rig.service("/upper", mode="sync"))
    token = rig.dispatch(event_id)
    assert token is not None
    callbacks.complete(rig.deps, token, {"message": "hola"})
    before = rig.event(event_id)

    # When the timeout path runs anyway (the two raced)
    result = worker.callback_timed_out(rig.deps, event_id)

    # Then it answers what the event needs next and writes nothing
    assert result == routes.answer_for(before) == answer("CONTINUE")
    assert rig.event(event_id) == before


def test_a_timeout_while_the_step_backs_off_changes_nothing(rig: Rig) -> None:
    # Given a dispatch the service refused with a 500: the step is RETRYING, not waiting
    rig.services.behaviours["/translate"] = answering(500)
    event_id = rig.accept()
    rig.dispatch(event_id)
    before = rig.event(event_id)
    assert before.steps[0].status is StepStatus.RETRYING

    # When the task's timeout fires as well
    result = worker.callback_timed_out(rig.deps, event_id)

    # Then the step is left to its retry
    assert result == answer("CONTINUE")
    assert rig.event(event_id) == before


# --- the callback base URL ---------------------------------------------------------------


@pytest.fixture
def registered(rig: Rig) -> Rig:
    """The `translate` callback service and a `translate-text` workflow using it."""
    now = rig.clock()
    rig.store.save_service(rig.service(), now, create_only=True)
    workflow = Workflow.model_validate(
        {
            "name": "translate-text",
            "spec": {
                "services": ["translate"],
                "inputs": {"message": STRING},
                "outputs": {"message": STRING},
            },
        }
    )
    rig.store.save_workflow(workflow, now, None)
    return rig


@pytest.mark.parametrize(
    ("configured", "expected"),
    [(None, "https://abc.execute-api.us-east-1.amazonaws.com"), (API_URL, API_URL)],
    ids=["request-url", "configured"],
)
def test_the_plan_calls_back_on_the_configured_url_or_the_one_the_event_came_in_on(
    registered: Rig, configured: str | None, expected: str
) -> None:
    deps = replace(registered.deps, callback_base_url=configured)

    accepted = events.accept_event(
        deps,
        "translate-text",
        EventRequest(data={"message": "hi"}),
        "https://abc.execute-api.us-east-1.amazonaws.com",
    )

    _, plan = registered.store.load_with_plan(accepted.event_id)
    assert plan.callback_base_url == expected


# --- the step handler --------------------------------------------------------------------


def run_step(payload: dict[str, Any]) -> Any:
    return step.handler(payload, FakeLambdaContext("machinery-step"))


def test_the_step_handler_routes_each_action(rig: Rig) -> None:
    # Given an event waiting on nothing yet
    event_id = rig.accept(notify=True)

    # When AwaitCallback invokes `dispatch`, it returns nothing (the task waits for its token)
    assert run_step({"action": "dispatch", "event_id": event_id, "task_token": TASK}) is None
    assert [call.path for call in rig.services.server.received()] == ["/translate"]
    assert rig.event(event_id).status is EventStatus.WAITING

    # And CallbackTimedOut invokes `callback_timed_out`, which answers the Route choice
    timed_out = run_step({"action": "callback_timed_out", "event_id": event_id})
    assert timed_out == answer("FAILED", notify=True)
    assert rig.event(event_id).status is EventStatus.FAILED


def test_with_the_plan_in_their_input_the_tasks_read_only_the_event(rig: Rig) -> None:
    # Given an event, and its plan as the execution input carries it (the Tasks pass it on)
    event_id = rig.accept(notify=True)
    _, plan = rig.store.load_with_plan(event_id)
    carried = json.loads(events.execution_input(event_id, plan))["plan"]
    assert carried is not None

    # When AwaitCallback dispatches the step, CallbackTimedOut then fails it, and Abort runs
    # (which needs no plan)
    with DynamoCalls(rig.dynamodb) as recorded:
        task = {"event_id": event_id, "task_token": TASK, "plan": carried}
        assert run_step({"action": "dispatch", **task}) is None
        timed_out = run_step(
            {"action": "callback_timed_out", "event_id": event_id, "plan": carried}
        )
        error = {"Error": "States.Runtime", "Cause": "late"}
        run_step({"action": "abort", "event_id": event_id, "error": error})

    # Then they did their work as before
    assert [call.path for call in rig.services.server.received()] == ["/translate"]
    assert timed_out == answer("FAILED", notify=True)
    # And each read the event alone, never the plan
    reads = [op for op in recorded.operations if op in ("GetItem", "Query", "BatchGetItem")]
    assert reads == ["GetItem"] * 3
    assert {params["Key"]["SK"]["S"] for params in recorded.of("GetItem")} == {"EVENT"}


def test_the_step_handler_refuses_an_unknown_action(rig: Rig) -> None:
    event_id = rig.accept()

    with pytest.raises(ValueError, match="unknown action 'resume'"):
        run_step({"action": "resume", "event_id": event_id})

    assert rig.event(event_id).version == 0
    assert rig.services.server.received() == []


# --- POST /callbacks/{token} -------------------------------------------------------------


def callback_request(token: str, body: str | None = None) -> dict[str, Any]:
    """The recorded callback, for `token` (and `body`, if given)."""
    event = recorded("complete_callback")
    old = event["pathParameters"]["token"]
    event["pathParameters"]["token"] = token
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/callbacks/{token}"
    assert old not in json.dumps(event)
    if body is not None:
        event["body"] = body
        event["headers"]["content-length"] = str(len(body.encode()))
    return event


def post(event: dict[str, Any]) -> tuple[int, Any]:
    answered = api.handler(copy.deepcopy(event), FakeLambdaContext())
    return answered["statusCode"], json.loads(answered["body"])


def test_the_recorded_callback_completes_the_step(rig: Rig) -> None:
    # Given a step waiting on the token the service was handed
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None

    # When the service POSTs its outputs to its callback URL (no AWS signature)
    status, body = post(callback_request(token))

    # Then it is answered 200 with what was recorded
    assert (status, body) == (200, {"event_id": event_id, "step": 0, "status": "SUCCEEDED"})
    assert rig.event(event_id).outputs == {"message": "HOLA MUNDO"}
    # And a second POST of the same token is a conflict
    status, body = post(callback_request(token))
    assert (status, body) == (409, {"message": "this callback was already used"})


def test_an_unknown_callback_token_answers_a_bare_404(rig: Rig) -> None:
    event = recorded("complete_callback")

    status, body = post(event)

    assert (status, body) == (404, {"message": "not found"})


def test_a_callback_with_outputs_that_break_the_spec_answers_422(rig: Rig) -> None:
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None

    status, body = post(callback_request(token, json.dumps({"message": ["HOLA"]})))

    assert status == 422
    assert body["details"] == [{"path": "body.message", "message": "expected string, got array"}]
    assert rig.event(event_id).status is EventStatus.WAITING


def test_a_callback_body_that_is_not_json_answers_400(rig: Rig) -> None:
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None

    status, body = post(callback_request(token, "HOLA MUNDO"))

    assert (status, body) == (400, {"message": "the request body is not valid JSON"})
    assert not rig.token_used(token)
