"""Callback services end to end on moto and loopback: dispatch, the callback route, timeouts.

An event's run is a sequence of executions (segments): the Run that reaches a callback step
dispatches it and ends its execution; the callback route starts the next one, or the wait's
timer does once the step's time is up. Step Functions is a StartSpy (the executions started,
by name and input) and the timers are a TimerSpy (set, cancelled, fired by the test): that is
all the state machine and Scheduler would see of the worker and the callback route.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from integration_kit import (
    Clock,
    DynamoCalls,
    FakeLambdaContext,
    Services,
    StartSpy,
    TimerSpy,
    Wired,
    load_handler_module,
    recorded,
    throttled,
)
from integration_kit import step_answer as answer

from machinery_core.adapters.executions import Executions, StateMachineType
from machinery_core.contract import EXPRESS_EXECUTION_SECONDS, SEGMENT_MARGIN_SECONDS
from machinery_core.domain import tokens
from machinery_core.domain.errors import ClaimHeld, Conflict, InvalidInput, NotFound, StaleVersion
from machinery_core.domain.models import (
    CallbackAccepted,
    ErrorInfo,
    Event,
    EventRequest,
    EventStatus,
    Notification,
    NotificationStatus,
    Plan,
    PlannedStep,
    Service,
    StepStatus,
    Waiting,
    Workflow,
)
from machinery_core.runtime.dependencies import Dependencies, configure
from machinery_core.service import callbacks, events, worker

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

api = load_handler_module("api_app", "functions/api/app.py")
step = load_handler_module("step_app", "functions/step/app.py")

STRING = {"type": "string"}
API_URL = "https://api.example.test"
TIMEOUT = 60  # the callback service's timeout_seconds
TOKEN_TTL = timedelta(seconds=TIMEOUT) + worker.CALLBACK_GRACE
SUSPEND = answer("SUSPEND")


@dataclass
class Rig:
    deps: Dependencies
    clock: Clock
    executions: StartSpy
    timers: TimerSpy
    services: Services
    dynamodb: Any
    answers: list[dict[str, Any]] = field(default_factory=list)  # each dispatch's Run

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
        hook = Notification(url=f"{self.services.url}/hook") if notify else None
        event = Event(
            event_id=str(uuid.uuid4()),
            workflow_id="translate-text",
            status=status,
            data=data,
            context=dict(data),
            acknowledged_at=now,
            updated_at=now,
            notification=hook,
        )
        self.store.create_event(event, plan)
        return event.event_id

    def express(self) -> None:
        """The state machine is EXPRESS: an execution ends five minutes after its start."""
        arn = self.deps.executions.state_machine_arn
        executions = Executions(self.executions, arn, StateMachineType.EXPRESS)
        self.deps = replace(self.deps, executions=executions)
        configure(self.deps)

    def first_input(self, event_id: str) -> dict[str, Any]:
        """The input of the event's first execution, as the API starts it."""
        _, plan = self.store.load_with_plan(event_id)
        first: dict[str, Any] = json.loads(events.execution_input(event_id, plan))
        return first

    def run(
        self,
        execution_input: dict[str, Any],
        invocation: str = "run",
        *,
        after_wait: bool = False,
        started_at: datetime | None = None,
    ) -> dict[str, Any]:
        """The Run state of the execution started with `execution_input` (`after_wait`: the
        Run that follows its Wait state; `started_at`: the execution's start)."""
        return worker.advance(
            self.deps,
            execution_input["event_id"],
            lambda: 60_000,
            invocation,
            execution_input["plan"],
            started_at=started_at.isoformat() if started_at else None,
            wake=execution_input["wake"],
            after_wait=after_wait,
        )

    def dispatch(self, event_id: str, **run: Any) -> str | None:
        """The event's execution reaching its callback step (its Run's answer is appended
        to `answers`): the token the service was handed, if it was called."""
        before = len(self.services.server.received())
        self.answers.append(self.run(self.first_input(event_id), **run))
        received = self.services.server.received()[before:]
        handed = [c for c in received if "X-Machinery-Callback-Url" in c.headers]
        if not handed:
            return None
        [call] = handed
        return token_in(call.headers["X-Machinery-Callback-Url"])

    def fire(self, name: str) -> dict[str, Any]:
        """The armed timer `name` fires: the Run of the execution it starts."""
        return self.run(self.timers.fire(name))

    def resume(self) -> dict[str, Any]:
        """The Run of the execution the callback route started last."""
        _, execution_input = self.executions.starts[-1]
        return self.run(execution_input)

    def event(self, event_id: str) -> Event:
        event: Event = self.store.get_event(event_id)
        return event

    def token_used(self, token: str) -> bool:
        callback = self.store.get_callback(tokens.hash_token(token))
        assert callback is not None
        return bool(callback.used)

    def callback_items(self) -> list[dict[str, Any]]:
        items = self.dynamodb.scan(TableName="machinery-test")["Items"]
        return [item for item in items if item["PK"]["S"].startswith("CALLBACK#")]


def token_in(url: str) -> str:
    found = re.fullmatch(re.escape(API_URL) + r"/callbacks/([A-Za-z0-9_-]+)", url)
    assert found is not None, url
    return found.group(1)


def answering(status: int, body: dict[str, Any] | None = None) -> Callable[[Any], Any]:
    return lambda _: (status, body if body is not None else {})


def timer(event_id: str, segment: int = 1) -> str:
    """The name of the timer of the event's wait that ended `segment`."""
    return f"{event_id}-t{segment}"


def woken(event_id: str, kind: str, at: datetime) -> dict[str, Any]:
    """The input of the execution a timer starts: no plan, what woke it."""
    return {"event_id": event_id, "plan": None, "wake": {"kind": kind, "at": at.isoformat()}}


def resumed(event_id: str, plan: dict[str, Any] | None, segment: int = 1) -> tuple[str, Any]:
    """The execution the callback route starts: its name and its input (the plan carried)."""
    name = f"{event_id}-s{segment}"
    return name, {"event_id": event_id, "plan": plan, "wake": None, "route": None}


@pytest.fixture
def rig(wired: Wired, services: Services, dynamodb: Any) -> Rig:
    """A callback service on loopback at /translate that takes the work (202), a webhook at
    /hook, Step Functions watched and the timers in memory."""
    clock = Clock()
    started = StartSpy(wired.stepfunctions)
    timers = TimerSpy()
    deps = replace(
        wired.deps,
        clock=clock,
        executions=Executions(started, wired.state_machine_arn),
        timers=cast(Any, timers),
    )
    configure(deps)  # `wired` unconfigures it
    services.behaviours["/translate"] = answering(202)
    services.behaviours["/approve"] = answering(202)
    services.behaviours["/hook"] = answering(200)
    return Rig(deps, clock, started, timers, services, dynamodb)


# --- dispatch ----------------------------------------------------------------------------


def test_dispatch_hands_the_step_over_with_a_single_use_callback_url(rig: Rig) -> None:
    # Given an event whose first step is a callback service that accepts work with 202
    event_id = rig.accept()

    # When its execution's Run reaches the step
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
    [record] = rig.callback_items()
    assert record["PK"]["S"] == f"CALLBACK#{digest}"
    callback = rig.store.get_callback(digest)
    assert (callback.event_id, callback.step, callback.attempt) == (event_id, 0, 1)
    assert (callback.used, callback.path) == (False, None)
    assert callback.expires_at == (rig.clock.now + TOKEN_TTL).replace(microsecond=0)
    # And the event waits on the step, with no attempt counted yet, until the step's timeout
    event = rig.event(event_id)
    deadline = rig.clock.now + timedelta(seconds=TIMEOUT)
    assert event.status is EventStatus.WAITING
    assert [(s.status, s.attempts, s.input) for s in event.steps] == [
        (StepStatus.WAITING, 0, {"message": "hello world"})
    ]
    assert (event.waiting, event.segment) == (Waiting(kind="callback", at=deadline), 1)
    # And the execution ends, with the wait's timer set for the timeout to start the next
    assert rig.answers == [SUSPEND]
    assert rig.timers.sets == [
        (timer(event_id), deadline, {**woken(event_id, "callback", deadline), "route": None})
    ]
    # And nothing else was started
    assert rig.executions.starts == []


def test_every_dispatch_gets_its_own_token(rig: Rig) -> None:
    tokens = {rig.dispatch(rig.accept()) for _ in range(3)}

    assert len(tokens) == 3


def test_a_dispatch_refused_with_a_retryable_error_waits_out_a_backoff_in_its_execution(
    rig: Rig,
) -> None:
    # Given a callback service that answers 500 (3 attempts allowed, 2 s interval)
    rig.services.behaviours["/translate"] = answering(500, {"error": "busy"})
    event_id = rig.accept()

    # When the step is dispatched
    token = rig.dispatch(event_id)

    # Then the Run asks its execution to wait 2 s and run again: no timer, no new execution
    assert token is not None
    assert rig.answers == [answer("BACKOFF", wait_seconds=2)]
    assert (rig.timers.sets, rig.executions.starts) == ([], [])
    # And the attempt is recorded, the event running again rather than waiting
    event = rig.event(event_id)
    assert (event.status, event.waiting) == (EventStatus.RUNNING, None)
    [recorded] = event.steps
    assert (recorded.status, recorded.attempts) == (StepStatus.RETRYING, 1)
    assert recorded.error is not None and recorded.error.status_code == 500


def test_a_refused_dispatch_whose_backoff_outlasts_the_express_execution_waits_in_a_timer(
    rig: Rig,
) -> None:
    # Given an EXPRESS execution with a second left before its margin, and a callback
    # service that answers 500 once (a 2 s backoff before the retry)
    rig.express()
    replies = iter([answering(500), answering(202)])
    rig.services.behaviours["/translate"] = lambda data: next(replies)(data)
    event_id = rig.accept()
    started_at = rig.clock.now - timedelta(
        seconds=EXPRESS_EXECUTION_SECONDS - SEGMENT_MARGIN_SECONDS - 1
    )

    # When its Run dispatches the step
    first = rig.dispatch(event_id, started_at=started_at)

    # Then the execution ends, the event waiting out the backoff for a timer
    assert rig.answers == [SUSPEND]
    event = rig.event(event_id)
    retry_at = rig.clock.now + timedelta(seconds=2)
    assert (event.waiting, event.segment) == (Waiting(kind="backoff", at=retry_at), 2)
    assert event.steps[0].status is StepStatus.RETRYING
    [(name, at, woke)] = rig.timers.sets
    assert (name, at, woke["wake"]) == (
        timer(event_id, 2),
        retry_at,
        {"kind": "backoff", "at": retry_at.isoformat()},
    )

    # When the timer fires, 2 s later
    rig.clock.advance(timedelta(seconds=2))
    assert rig.fire(timer(event_id, 2)) == SUSPEND

    # Then its execution dispatched the retry with a token of its own, and waits for it
    calls = rig.services.server.received()
    assert len(calls) == 2
    second = token_in(calls[1].headers["X-Machinery-Callback-Url"])
    assert first is not None and second != first
    event = rig.event(event_id)
    assert (event.status, event.steps[0].status) == (EventStatus.WAITING, StepStatus.WAITING)
    assert event.segment == 3
    assert rig.timers.sets[-1][0] == timer(event_id, 3)


def test_a_dispatch_refused_for_good_fails_the_event(rig: Rig) -> None:
    # Given a callback service that answers 404
    rig.services.behaviours["/translate"] = answering(404, {"error": "no such route"})
    event_id = rig.accept()

    rig.dispatch(event_id)

    # Then the Run answers the failure, the event is FAILED, and no timer is left set
    assert rig.answers == [answer("FAILED")]
    event = rig.event(event_id)
    assert (event.status, event.waiting) == (EventStatus.FAILED, None)
    assert event.error is not None
    assert (event.error.type, event.error.status_code) == ("HttpError", 404)
    assert event.steps[0].status is StepStatus.FAILED
    assert rig.timers.sets == []


def test_a_dispatch_for_an_event_that_already_ended_calls_nothing(rig: Rig) -> None:
    event_id = rig.accept(status=EventStatus.SUCCEEDED)

    token = rig.dispatch(event_id)

    assert token is None
    assert rig.answers == [answer("SUCCEEDED")]
    assert rig.event(event_id).version == 0
    assert (rig.timers.sets, rig.callback_items()) == ([], [])


def test_a_dispatch_of_input_that_breaks_the_spec_fails_without_calling(rig: Rig) -> None:
    # Given an event whose context has no `message` for the service's required input
    event_id = rig.accept(data={"text": "hello"})

    token = rig.dispatch(event_id)

    # Then the event fails, with no call, no token and no timer
    assert token is None
    assert rig.services.server.received() == []
    assert rig.answers == [answer("FAILED")]
    event = rig.event(event_id)
    assert event.error is not None and event.error.type == "InputInvalid"
    assert (rig.callback_items(), rig.timers.sets) == ([], [])


# --- callbacks.complete ------------------------------------------------------------------


def test_a_callback_with_outputs_advances_the_event_and_starts_its_next_segment(
    rig: Rig,
) -> None:
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
    assert (event.status, event.step_index, event.waiting) == (EventStatus.RUNNING, 1, None)
    assert event.context["message"] == "hola mundo"
    [done] = event.steps
    assert (done.status, done.attempts, done.output) == (
        StepStatus.SUCCEEDED,
        1,
        {"message": "hola mundo"},
    )
    assert done.duration_ms == 20_000.0
    assert rig.token_used(token)
    # And the next execution is started, named after the segment that ended to wait, with
    # the plan in its input; then the wait's timer is cancelled
    plan = rig.first_input(event_id)["plan"]
    assert rig.executions.starts == [resumed(event_id, plan)]
    assert rig.executions.names == [f"{event_id}-s1"]
    assert rig.timers.cancels == [timer(event_id)]
    assert rig.timers.armed == {}
    # And that execution runs the next step on what the callback brought
    assert rig.resume() == answer("SUCCEEDED")
    assert rig.event(event_id).outputs == {"message": "HOLA MUNDO"}


def test_a_callback_that_ends_an_event_with_a_notification_asks_for_it(rig: Rig) -> None:
    event_id = rig.accept(notify=True)
    token = rig.dispatch(event_id)
    assert token is not None

    accepted = callbacks.complete(rig.deps, token, {"message": "hola"})

    # Then the event has ended, and the execution it starts goes to Notify
    assert accepted.status is EventStatus.SUCCEEDED
    assert rig.executions.names == [f"{event_id}-s1"]
    assert rig.resume() == answer("SUCCEEDED", notify=True)


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
    assert (rig.executions.starts, rig.timers.cancels) == ([], [])


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
    assert (rig.executions.starts, rig.timers.cancels) == ([], [])


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

    # Then nothing changes and the next execution was started only once
    assert rig.event(event_id) == before
    assert rig.executions.names == [f"{event_id}-s1"]
    assert rig.timers.cancels == [timer(event_id)]


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

    # Then it is told which fields are wrong, and nothing was recorded, spent or started
    assert refused.value.details == details
    assert rig.event(event_id) == before
    assert not rig.token_used(token)
    assert (rig.executions.starts, rig.timers.cancels) == ([], [])
    assert timer(event_id) in rig.timers.armed
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

    # Then the step failed with the service's error (a reported error is not retried)
    assert accepted.status is EventStatus.FAILED
    event = rig.event(event_id)
    assert event.error is not None
    assert (event.error.type, event.error.message) == expected
    [failed] = event.steps
    assert (failed.status, failed.attempts) == (StepStatus.FAILED, 1)
    assert failed.error == event.error
    assert rig.token_used(token)
    # And the wait is over: the next execution, started, ends the run FAILED
    assert (event.waiting, rig.timers.cancels) == (None, [timer(event_id)])
    assert rig.executions.names == [f"{event_id}-s1"]
    assert rig.resume() == answer("FAILED")


def test_outputs_with_a_null_error_field_are_outputs_not_an_error_report(rig: Rig) -> None:
    # Given a service whose answers always carry an `error` field, null on success
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None

    accepted = callbacks.complete(rig.deps, token, {"message": "hola", "error": None})

    assert accepted.status is EventStatus.SUCCEEDED
    event = rig.event(event_id)
    assert (event.error, event.outputs) == (None, {"message": "hola"})
    assert rig.resume() == answer("SUCCEEDED")


def test_a_repeated_dispatch_calls_the_service_once(rig: Rig) -> None:
    # Given an execution that ran twice (EXPRESS runs at least once), the second after the
    # first had dispatched the step
    event_id = rig.accept()
    first = rig.dispatch(event_id, invocation="first")
    second = rig.dispatch(event_id, invocation="second")

    # Then the service was called once, with one token, and both executions ended to wait
    assert first is not None and second is None
    assert len(rig.services.server.received()) == 1
    assert len(rig.callback_items()) == 1
    assert rig.answers == [SUSPEND, SUSPEND]
    # And the one timer stays as the first set it
    assert {name for name, _, _ in rig.timers.sets} == {timer(event_id)}
    assert list(rig.timers.armed) == [timer(event_id)]
    # And the token completes the step, once
    assert callbacks.complete(rig.deps, first, {"message": "hola"}).status is (
        EventStatus.SUCCEEDED
    )
    assert rig.event(event_id).steps[0].attempts == 1
    assert rig.executions.names == [f"{event_id}-s1"]


def test_a_token_from_a_superseded_dispatch_is_not_found(rig: Rig) -> None:
    # Given a first dispatch the service refused with a 500 (the step is to be retried)
    rig.services.behaviours["/translate"] = answering(500)
    event_id = rig.accept()
    first = rig.dispatch(event_id)
    assert first is not None
    assert rig.answers == [answer("BACKOFF", wait_seconds=2)]

    # Then its token is dead while the step waits to retry
    with pytest.raises(NotFound):
        callbacks.complete(rig.deps, first, {"message": "late"})

    # And still dead once the Run after the Wait has dispatched the retry with its own token
    rig.services.behaviours["/translate"] = answering(202)
    rig.clock.advance(timedelta(seconds=2))
    second = rig.dispatch(event_id, after_wait=True)
    assert second is not None and second != first
    with pytest.raises(NotFound):
        callbacks.complete(rig.deps, first, {"message": "late"})

    # And only the current token completes the step, resuming the current wait
    accepted = callbacks.complete(rig.deps, second, {"message": "hola"})
    assert accepted.status is EventStatus.SUCCEEDED
    assert rig.event(event_id).steps[0].attempts == 2
    assert rig.executions.names == [f"{event_id}-s2"]
    assert rig.timers.cancels == [timer(event_id, 2)]


def test_a_callback_after_the_step_timed_out_is_not_found(rig: Rig) -> None:
    # Given a step whose timer fired first, a minute after its dispatch
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None
    rig.clock.advance(timedelta(seconds=TIMEOUT))
    assert rig.fire(timer(event_id)) == answer("FAILED")
    before = rig.event(event_id)

    # When the service calls back late (but before its token's record expires)
    with pytest.raises(NotFound):
        callbacks.complete(rig.deps, token, {"message": "hola"})

    # Then the timeout stands and no execution is started
    assert rig.event(event_id) == before
    assert not rig.token_used(token)
    assert (rig.executions.starts, rig.timers.cancels) == ([], [])


def test_a_callback_that_loses_the_race_with_its_timeout_is_not_found(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a callback whose timeout is recorded between its reads and its write
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None
    spend = rig.deps.store.use_callback

    def time_out_first(callback: Any, event: Event) -> Event:
        rig.fire(timer(event_id))
        return spend(callback, event)

    monkeypatch.setattr(rig.deps.store, "use_callback", time_out_first)

    # When it completes, then it is told the token expired (not that it was used)
    with pytest.raises(NotFound):
        callbacks.complete(rig.deps, token, {"message": "hola"})

    # and the timeout stands, with no execution started by the callback
    error = rig.event(event_id).steps[0].error
    assert error is not None and error.type == "CallbackTimeout"
    assert (rig.executions.starts, rig.timers.cancels) == ([], [])


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
    assert (rig.executions.starts, rig.timers.cancels) == ([], [])


def test_a_callback_whose_next_execution_does_not_start_is_recorded_and_keeps_the_timer(
    rig: Rig,
) -> None:
    # Given a waiting callback step followed by a sync step, and Step Functions throttling
    upper = rig.service("/upper", mode="sync")
    event_id = rig.accept(rig.service(), upper)
    token = rig.dispatch(event_id)
    assert token is not None
    rig.executions.refuse = throttled()

    # When the service calls back
    accepted = callbacks.complete(rig.deps, token, {"message": "hola"})

    # Then the callback is accepted (200 at the route) and its result kept
    assert accepted == CallbackAccepted(event_id=event_id, step=0, status=EventStatus.RUNNING)
    event = rig.event(event_id)
    assert (event.step_index, event.steps[0].output) == (1, {"message": "hola"})
    assert rig.token_used(token)
    # And the start was tried, but the timer was left to resume the event
    assert rig.executions.names == [f"{event_id}-s1"]
    assert rig.timers.cancels == []
    assert timer(event_id) in rig.timers.armed

    # When the timer fires at the step's timeout
    rig.executions.refuse = None
    rig.clock.advance(timedelta(seconds=TIMEOUT))
    finished = rig.fire(timer(event_id))

    # Then its execution finds the wait over and goes on from what was recorded: late, not lost
    assert finished == answer("SUCCEEDED")
    event = rig.event(event_id)
    assert event.outputs == {"message": "HOLA"}
    assert [(s.status, s.attempts) for s in event.steps] == [(StepStatus.SUCCEEDED, 1)] * 2


def test_the_callback_route_answers_200_even_when_its_start_fails(rig: Rig) -> None:
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None
    rig.executions.refuse = throttled()

    status, body = post(callback_request(token))

    assert (status, body) == (200, {"event_id": event_id, "step": 0, "status": "SUCCEEDED"})
    assert timer(event_id) in rig.timers.armed


# --- timeouts: the wait's timer ----------------------------------------------------------


def test_a_waiting_step_whose_timer_fires_fails_with_callback_timeout(rig: Rig) -> None:
    # Given a waiting step with a notification to send
    event_id = rig.accept(notify=True)
    rig.dispatch(event_id)

    # When its timer fires, a minute later
    rig.clock.advance(timedelta(seconds=TIMEOUT))
    result = rig.fire(timer(event_id))

    # Then the step failed with CallbackTimeout, and the event with it, on to Notify
    assert result == answer("FAILED", notify=True)
    event = rig.event(event_id)
    assert (event.status, event.waiting) == (EventStatus.FAILED, None)
    assert event.error == ErrorInfo(type="CallbackTimeout", message="no callback within 60s")
    [failed] = event.steps
    assert (failed.status, failed.attempts, failed.error) == (
        StepStatus.FAILED,
        1,
        event.error,
    )
    assert failed.duration_ms == TIMEOUT * 1000


def test_a_timer_times_the_step_out_at_the_time_it_was_set_for_whatever_the_clock(
    rig: Rig,
) -> None:
    # Given a waiting step, and a clock that lags behind the timer (the local runtime
    # scales its timers, not its clock)
    event_id = rig.accept()
    rig.dispatch(event_id)

    # When its timer fires with the clock still at the dispatch
    result = rig.fire(timer(event_id))

    # Then the wake's time is what counts: the step timed out
    assert result == answer("FAILED")
    error = rig.event(event_id).steps[0].error
    assert error is not None and error.type == "CallbackTimeout"


def test_a_timer_that_fires_after_the_callback_won_only_goes_on(rig: Rig) -> None:
    # Given a two-step event whose callback step was just completed, the timer firing as
    # its cancel is on its way (the two raced)
    event_id = rig.accept(rig.service(), rig.service("/upper", mode="sync"))
    token = rig.dispatch(event_id)
    assert token is not None
    callbacks.complete(rig.deps, token, {"message": "hola"})
    rig.clock.advance(timedelta(seconds=TIMEOUT))

    # When the timer's execution runs before the one the callback started
    result = rig.run(woken(event_id, "callback", rig.clock.now))

    # Then it times nothing out: the callback's result stands and the event goes on from it
    assert result == answer("SUCCEEDED")
    event = rig.event(event_id)
    assert (event.steps[0].status, event.steps[0].error) == (StepStatus.SUCCEEDED, None)
    assert event.outputs == {"message": "HOLA"}
    # And the execution the callback started then finds it ended, and calls nothing
    assert rig.resume() == answer("SUCCEEDED")
    assert [call.path for call in rig.services.server.received()] == ["/translate", "/upper"]


def test_a_stale_timer_leaves_a_later_wait_alone(rig: Rig) -> None:
    # Given two callback steps: the first answered 20 s after its dispatch, the second
    # dispatched by the execution that started, its timer set for a minute later
    event_id = rig.accept(rig.service(), rig.service("/approve"))
    token = rig.dispatch(event_id)
    assert token is not None
    first_deadline = rig.clock.now + timedelta(seconds=TIMEOUT)
    rig.clock.advance(timedelta(seconds=20))
    callbacks.complete(rig.deps, token, {"message": "hola"})
    assert rig.resume() == SUSPEND
    before = rig.event(event_id)
    assert (before.step_index, before.segment) == (1, 2)

    # When the first step's timer fires anyway, at its time (a late delivery, after its
    # cancel)
    rig.clock.advance(timedelta(seconds=TIMEOUT - 20))
    result = rig.run(woken(event_id, "callback", first_deadline))

    # Then the second step still has 20 s: nothing changes, and the execution ends again
    assert result == SUSPEND
    assert rig.event(event_id) == before
    assert [call.path for call in rig.services.server.received()] == ["/translate", "/approve"]

    # And its own timer still times it out when it fires
    rig.clock.advance(timedelta(seconds=20))
    assert rig.fire(timer(event_id, 2)) == answer("FAILED")
    failed = rig.event(event_id).steps[1]
    assert failed.error is not None and failed.error.type == "CallbackTimeout"


def test_a_timer_that_fires_while_the_step_backs_off_changes_nothing(rig: Rig) -> None:
    # Given a dispatch the service refused with a 500 on an EXPRESS execution with no time
    # left for the backoff: the step is RETRYING, the event waiting for its backoff's timer
    rig.express()
    replies = iter([answering(500), answering(202)])
    rig.services.behaviours["/translate"] = lambda data: next(replies)(data)
    event_id = rig.accept()
    started_at = rig.clock.now - timedelta(seconds=EXPRESS_EXECUTION_SECONDS)
    rig.dispatch(event_id, started_at=started_at)
    before = rig.event(event_id)
    assert before.steps[0].status is StepStatus.RETRYING
    assert before.waiting == Waiting(kind="backoff", at=rig.clock.now + timedelta(seconds=2))

    # When a callback's timer fires meanwhile (a stale one: a wake for the step's callback)
    stale = woken(event_id, "callback", rig.clock.now)
    result = rig.run(stale, started_at=rig.clock.now)

    # Then the step is left to its retry, at its time: that execution waits out what is left
    # of the backoff in its own Wait state, and nothing is recorded or called
    assert result == answer("BACKOFF", wait_seconds=2)
    assert rig.event(event_id) == before
    assert len(rig.services.server.received()) == 1

    # And when the backoff is over, the backoff's timer and that execution's Run after its
    # Wait both go on: the retry is dispatched once
    rig.clock.advance(timedelta(seconds=2))
    assert rig.fire(timer(event_id, 2)) == SUSPEND
    assert rig.run(stale, after_wait=True, started_at=rig.clock.now) == SUSPEND
    assert len(rig.services.server.received()) == 2
    event = rig.event(event_id)
    assert (event.steps[0].status, event.steps[0].attempts) == (StepStatus.WAITING, 1)


# --- a duplicated execution --------------------------------------------------------------


def overlapping(
    rig: Rig, execution_input: dict[str, Any], path: str, started_at: datetime
) -> tuple[Any, Any]:
    """Two Runs of the same execution (EXPRESS runs at least once), the second made while
    the first's call to `path` is under way (the service holds it until the second has
    answered). What each answered or raised."""
    held, release = threading.Event(), threading.Event()
    answer_of = rig.services.behaviours[path]

    def slow(data: dict[str, Any]) -> Any:
        held.set()
        release.wait(10)
        return answer_of(data)

    rig.services.behaviours[path] = slow
    results: dict[str, Any] = {}

    def run(invocation: str) -> None:
        try:
            results[invocation] = rig.run(execution_input, invocation, started_at=started_at)
        except Exception as error:  # what the state machine would see, and retry
            results[invocation] = error

    first = threading.Thread(target=run, args=("first",))
    first.start()
    try:
        assert held.wait(10), f"{path} was not called"
        second = threading.Thread(target=run, args=("second",))
        second.start()
        second.join(10)
        assert not second.is_alive()
    finally:
        release.set()
        first.join(10)
    assert not first.is_alive()
    rig.services.behaviours[path] = answer_of
    return results["first"], results["second"]


def test_a_duplicated_execution_calls_each_service_once(rig: Rig) -> None:
    # Given an EXPRESS deployment and a workflow of a sync step, a callback step and a sync
    # step, the services slow enough that two runs of one execution overlap
    rig.express()
    rig.services.behaviours["/upper"] = lambda data: (200, {"message": data["message"].upper()})
    rig.services.behaviours["/reverse"] = lambda data: (200, {"message": data["message"][::-1]})
    sync = {"mode": "sync", "retry": {"max_attempts": 1}}
    event_id = rig.accept(
        rig.service("/upper", **sync), rig.service(), rig.service("/reverse", **sync)
    )
    now = rig.clock.now

    # When the first execution runs twice at once, the second while the first dispatches
    # the callback step
    first, second = overlapping(rig, rig.first_input(event_id), "/translate", now)

    # Then both end the execution to wait for the callback, which was handed over once
    assert (first, second) == (SUSPEND, SUSPEND)
    [handed] = [c for c in rig.services.server.received() if c.path == "/translate"]
    token = token_in(handed.headers["X-Machinery-Callback-Url"])

    # When the callback comes, and the execution it starts runs twice at once, the second
    # while the first calls the last step
    callbacks.complete(rig.deps, token, {"message": "hola"})
    [(_, resumed_input)] = rig.executions.starts
    first, second = overlapping(rig, resumed_input, "/reverse", now)

    # Then one ran the step to the end; the other found the event claimed
    assert first == answer("SUCCEEDED")
    assert isinstance(second, ClaimHeld | StaleVersion)
    # And the state machine's retry of it finds the event ended and calls nothing
    assert rig.run(resumed_input, "second", started_at=now) == answer("SUCCEEDED")

    # And each service was called once, for the one attempt of its step
    assert rig.services.calls == [
        ("/upper", f"{event_id}:0", {"message": "hello world"}),
        ("/translate", f"{event_id}:1", {"message": "HELLO WORLD"}),
        ("/reverse", f"{event_id}:2", {"message": "hola"}),
    ]
    # And the event succeeded with one record, and one attempt, per step
    event = rig.event(event_id)
    assert (event.status, event.outputs) == (EventStatus.SUCCEEDED, {"message": "aloh"})
    assert [(s.index, s.service, s.attempts, len(s.history)) for s in event.steps] == [
        (0, "upper", 1, 1),
        (1, "translate", 1, 1),
        (2, "reverse", 1, 1),
    ]
    # And one wait, one timer, one resumed execution
    assert {name for name, _, _ in rig.timers.sets} == {timer(event_id)}
    assert rig.executions.names == [f"{event_id}-s1"]


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
    # Given an event with a notification, waiting on nothing yet
    event_id = rig.accept(notify=True)
    first = rig.first_input(event_id)

    # When Run invokes `advance` with the execution's input, it dispatches the step and
    # ends the execution
    assert run_step({"action": "advance", **first}) == SUSPEND
    assert [call.path for call in rig.services.server.received()] == ["/translate"]
    assert rig.event(event_id).status is EventStatus.WAITING

    # And the Run of the execution the timer starts times the step out, on to Notify
    rig.clock.advance(timedelta(seconds=TIMEOUT))
    woke = rig.timers.fire(timer(event_id))
    assert run_step({"action": "advance", **woke}) == answer("FAILED", notify=True)
    assert rig.event(event_id).status is EventStatus.FAILED

    # And Notify invokes `notify`, which delivers the notification
    assert run_step({"action": "notify", "event_id": event_id}) == answer("FAILED")
    assert [call.path for call in rig.services.server.received()] == ["/translate", "/hook"]
    notification = rig.event(event_id).notification
    assert notification is not None and notification.status is NotificationStatus.DELIVERED

    # And Abort invokes `abort`, which leaves an ended event as it is
    error = {"Error": "States.Runtime", "Cause": "late"}
    assert run_step({"action": "abort", "event_id": event_id, "error": error}) == answer("FAILED")


def test_with_the_plan_in_their_input_the_tasks_read_only_the_event(rig: Rig) -> None:
    # Given a callback step then a sync step, and the plan as the execution input carries it
    event_id = rig.accept(rig.service(), rig.service("/upper", mode="sync"))
    first = rig.first_input(event_id)
    assert first["plan"] is not None
    with DynamoCalls(rig.dynamodb) as recorded:
        # When Run dispatches the step
        assert run_step({"action": "advance", **first}) == SUSPEND
    reads = [op for op in recorded.operations if op in ("GetItem", "Query", "BatchGetItem")]
    assert reads == ["GetItem"]
    [url] = [c.headers["X-Machinery-Callback-Url"] for c in rig.services.server.received()]
    callbacks.complete(rig.deps, token_in(url), {"message": "hola"})

    # And the execution the callback starts (its input carries the plan too) runs the
    # next step, and Abort runs (which needs no plan)
    [(_, resumed_input)] = rig.executions.starts
    assert resumed_input["plan"] == first["plan"]
    with DynamoCalls(rig.dynamodb) as recorded:
        assert run_step({"action": "advance", **resumed_input}) == answer("SUCCEEDED")
        error = {"Error": "States.Runtime", "Cause": "late"}
        run_step({"action": "abort", "event_id": event_id, "error": error})

    # Then each read the event alone, never the plan
    reads = [op for op in recorded.operations if op in ("GetItem", "Query", "BatchGetItem")]
    assert reads == ["GetItem"] * 2
    assert {params["Key"]["SK"]["S"] for params in recorded.of("GetItem")} == {"EVENT"}


@pytest.mark.parametrize("action", ["dispatch", "callback_timed_out", "resume"])
def test_the_step_handler_refuses_an_unknown_action(rig: Rig, action: str) -> None:
    # Given an event (`dispatch` and `callback_timed_out` are gone: Run does their work)
    event_id = rig.accept()

    with pytest.raises(ValueError, match=f"unknown action '{action}'"):
        run_step({"action": action, "event_id": event_id, "task_token": "t"})

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

    # Then it is answered 200 with what was recorded, and the next execution is started
    assert (status, body) == (200, {"event_id": event_id, "step": 0, "status": "SUCCEEDED"})
    assert rig.event(event_id).outputs == {"message": "HOLA MUNDO"}
    assert rig.executions.names == [f"{event_id}-s1"]
    assert rig.timers.cancels == [timer(event_id)]
    # And a second POST of the same token is a conflict
    status, body = post(callback_request(token))
    assert (status, body) == (409, {"message": "this callback was already used"})
    assert rig.executions.names == [f"{event_id}-s1"]


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
    assert rig.executions.starts == []


def test_a_callback_body_that_is_not_json_answers_400(rig: Rig) -> None:
    event_id = rig.accept()
    token = rig.dispatch(event_id)
    assert token is not None

    status, body = post(callback_request(token, "HOLA MUNDO"))

    assert (status, body) == (400, {"message": "the request body is not valid JSON"})
    assert not rig.token_used(token)
