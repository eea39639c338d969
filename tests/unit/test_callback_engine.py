"""The callback transitions of an event (engine.wait_for_callback, then engine.record_call)."""

from __future__ import annotations

from typing import Any

from builders import INTEGER, STRING, T0, at, make_plan, make_service

from machinery_core.domain import engine
from machinery_core.domain.engine import CallOutcome
from machinery_core.domain.models import (
    ErrorInfo,
    Event,
    EventStatus,
    Plan,
    StepRecord,
    StepStatus,
)

TRANSLATE = make_service(
    "translate",
    outputs={"message": STRING},
    mode="callback",
    timeout_seconds=300,
    retry={"max_attempts": 3, "interval_seconds": 2, "backoff_rate": 3},
)
COUNTER = make_service("space-counter", outputs={"space_count": INTEGER})


CALLBACK_THEN_SYNC = make_plan(
    TRANSLATE, COUNTER, outputs={"message": STRING, "space_count": INTEGER}
)
CALLBACK_ONLY = make_plan(TRANSLATE, outputs={"message": STRING})
PAYLOAD = {"message": "a b"}


def running_event(**update: Any) -> Event:
    return Event(
        event_id="evt-1",
        workflow_id="translate-text",
        status=EventStatus.RUNNING,
        data=dict(PAYLOAD),
        context=dict(PAYLOAD),
        acknowledged_at=T0,
        updated_at=T0,
        **update,
    )


def waiting(event: Event | None = None, plan: Plan = CALLBACK_THEN_SYNC, now: float = 1) -> Event:
    return engine.wait_for_callback(event or running_event(), plan, dict(PAYLOAD), at(now))


def called_back(body: dict[str, Any], end: float = 31) -> CallOutcome:
    return CallOutcome(started_at=at(1), ended_at=at(end), body=body)


def reported(error: ErrorInfo, end: float = 31) -> CallOutcome:
    return CallOutcome(
        started_at=at(1), ended_at=at(end), status_code=error.status_code, error=error
    )


RETRYABLE = ErrorInfo(type="HttpError", message="503", status_code=503, retryable=True)
FATAL = ErrorInfo(type="QuotaExceeded", message="no more translations today")


# --- wait_for_callback -------------------------------------------------------------------


def test_waiting_for_a_first_dispatch_makes_step_and_event_waiting() -> None:
    # Given a running event about to dispatch its first step to a callback service
    event = running_event()

    # When it starts waiting for the callback
    waited = engine.wait_for_callback(event, CALLBACK_THEN_SYNC, dict(PAYLOAD), at(1))

    # Then the event and its new step are WAITING, with the input sent and no attempt counted
    assert (waited.status, waited.step_index, waited.updated_at) == (EventStatus.WAITING, 0, at(1))
    [step] = waited.steps
    assert (step.index, step.service, step.status) == (0, "translate", StepStatus.WAITING)
    assert (step.attempts, step.history) == (0, [])
    assert (step.input, step.started_at, step.ended_at) == (PAYLOAD, at(1), None)
    # And the event it was given is untouched (a new state, not a mutation)
    assert (event.status, event.steps) == (EventStatus.RUNNING, [])
    # And nothing of the run's results is changed
    assert (waited.context, waited.outputs, waited.error) == (event.context, None, None)


def test_waiting_again_after_a_failed_attempt_keeps_the_attempts_so_far() -> None:
    # Given a step whose first dispatch failed and is now to be retried
    retrying = engine.record_call(waiting(), CALLBACK_THEN_SYNC, PAYLOAD, reported(RETRYABLE))
    event = retrying.event
    assert (event.steps[0].status, event.steps[0].attempts) == (StepStatus.RETRYING, 1)
    assert event.steps[0].ended_at is not None

    # When the retry is dispatched
    waited = waiting(event, now=40)

    # Then the step waits again with its history intact and no attempt added
    [step] = waited.steps
    assert (waited.status, step.status) == (EventStatus.WAITING, StepStatus.WAITING)
    assert step.attempts == 1
    assert [attempt.status_code for attempt in step.history] == [503]
    assert step.ended_at is None
    assert step.started_at == at(1)  # the step started with its first attempt
    assert waited.updated_at == at(40)


def test_waiting_only_replaces_the_current_step() -> None:
    # Given an event on its second step with the first one done
    done = StepRecord(index=0, service="upper", status=StepStatus.SUCCEEDED, attempts=1)
    event = running_event(step_index=1, steps=[done])
    plan = make_plan(COUNTER, TRANSLATE, outputs={"message": STRING})

    waited = engine.wait_for_callback(event, plan, dict(PAYLOAD), at(5))

    assert [(s.index, s.service, s.status) for s in waited.steps] == [
        (0, "upper", StepStatus.SUCCEEDED),
        (1, "translate", StepStatus.WAITING),
    ]
    assert waited.steps[0] == done


# --- record_call after a wait ------------------------------------------------------------


def test_a_callback_with_outputs_moves_on_to_the_next_step_and_the_event_runs_again() -> None:
    # Given an event waiting on its first (callback) step of two
    event = waiting()

    # When the callback brings the service's outputs
    transition = engine.record_call(
        event, CALLBACK_THEN_SYNC, PAYLOAD, called_back({"message": "A B"})
    )

    # Then the step succeeded on its first attempt and the event runs its next step
    updated = transition.event
    assert transition.wait_seconds == 0
    assert (updated.status, updated.step_index) == (EventStatus.RUNNING, 1)
    [step] = updated.steps
    assert (step.status, step.attempts, step.output, step.error) == (
        StepStatus.SUCCEEDED,
        1,
        {"message": "A B"},
        None,
    )
    assert step.duration_ms == 30_000.0  # from the dispatch to the callback
    assert [(a.attempt, a.started_at, a.ended_at) for a in step.history] == [(1, at(1), at(31))]
    assert updated.context["message"] == "A B"


def test_a_callback_on_the_last_step_ends_the_event() -> None:
    transition = engine.record_call(
        waiting(plan=CALLBACK_ONLY), CALLBACK_ONLY, PAYLOAD, called_back({"message": "A B"})
    )

    assert transition.event.status is EventStatus.SUCCEEDED
    assert transition.event.outputs == {"message": "A B"}
    assert transition.event.ended_at == at(31)


def test_a_reported_error_fails_the_step_and_the_event() -> None:
    # Given a waiting event
    event = waiting()

    # When the service reports an error it does not want retried
    transition = engine.record_call(event, CALLBACK_THEN_SYNC, PAYLOAD, reported(FATAL))

    # Then the step and the event are FAILED with that error
    updated = transition.event
    assert transition.wait_seconds == 0
    assert (updated.status, updated.error) == (EventStatus.FAILED, FATAL)
    [step] = updated.steps
    assert (step.status, step.attempts, step.error) == (StepStatus.FAILED, 1, FATAL)
    assert updated.ended_at == at(31)


def test_a_retryable_error_with_attempts_left_backs_off_and_the_event_runs_again() -> None:
    # Given a waiting step with 3 attempts allowed (2 s interval, rate 3)
    event = waiting()

    # When its dispatch fails with a retryable error
    transition = engine.record_call(event, CALLBACK_THEN_SYNC, PAYLOAD, reported(RETRYABLE))

    # Then the step is RETRYING after the first interval and the event is RUNNING, not WAITING
    updated = transition.event
    assert transition.wait_seconds == 2.0
    assert (updated.status, updated.step_index) == (EventStatus.RUNNING, 0)
    [step] = updated.steps
    assert (step.status, step.attempts, step.error) == (StepStatus.RETRYING, 1, RETRYABLE)
    assert updated.ended_at is None


def test_a_retryable_error_on_the_last_attempt_fails_the_event() -> None:
    # Given a step that already failed twice and waits on its third and last attempt
    event = waiting()
    for _ in range(2):
        event = engine.record_call(event, CALLBACK_THEN_SYNC, PAYLOAD, reported(RETRYABLE)).event
        event = waiting(event)
    assert event.steps[0].attempts == 2

    transition = engine.record_call(event, CALLBACK_THEN_SYNC, PAYLOAD, reported(RETRYABLE))

    assert transition.wait_seconds == 0
    assert transition.event.status is EventStatus.FAILED
    assert (transition.event.steps[0].status, transition.event.steps[0].attempts) == (
        StepStatus.FAILED,
        3,
    )


def test_outputs_that_break_the_spec_fail_the_step() -> None:
    transition = engine.record_call(
        waiting(), CALLBACK_THEN_SYNC, PAYLOAD, called_back({"message": 42})
    )

    assert transition.event.status is EventStatus.FAILED
    error = transition.event.steps[0].error
    assert error is not None and error.type == "OutputInvalid"


def test_abort_fails_a_waiting_step() -> None:
    error = ErrorInfo(type="States.Runtime", message="gave up")

    aborted = engine.abort(waiting(), error, at(99))

    assert aborted.status is EventStatus.FAILED
    assert (aborted.steps[0].status, aborted.steps[0].error) == (StepStatus.FAILED, error)
