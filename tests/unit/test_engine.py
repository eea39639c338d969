"""The pure state transitions of an event (machinery_core.domain.engine)."""

from __future__ import annotations

import dataclasses

import pytest
from builders import (
    COUNTER,
    FATAL,
    INTEGER,
    RETRYABLE,
    STRING,
    UPPER,
    answered,
    at,
    failed,
    make_event,
    make_plan,
    make_service,
)

from machinery_core.domain import engine
from machinery_core.domain.models import (
    ErrorInfo,
    EventStatus,
    PlannedStep,
    RetryPolicy,
    StepOperation,
    StepStatus,
)

TWO_STEPS = make_plan(UPPER, COUNTER, outputs={"message": STRING, "space_count": INTEGER})


# --- begin -------------------------------------------------------------------------------


def test_begin_moves_a_pending_event_to_running() -> None:
    event = make_event(EventStatus.PENDING)

    started = engine.begin(event, at(1))

    assert started.status is EventStatus.RUNNING
    assert started.updated_at == at(1)
    assert event.status is EventStatus.PENDING  # the input is not mutated


def test_begin_is_idempotent() -> None:
    running = engine.begin(make_event(EventStatus.PENDING), at(1))

    # Beginning again hands back the very same event: nothing to persist
    assert engine.begin(running, at(2)) is running
    failed_event = make_event(EventStatus.FAILED)
    assert engine.begin(failed_event, at(2)) is failed_event


# --- step_input --------------------------------------------------------------------------


def test_step_input_builds_the_payload_from_the_context() -> None:
    payload, refusal = engine.step_input(make_event(context={"message": "hi", "x": 1}), TWO_STEPS)

    assert payload == {"message": "hi"}
    assert refusal is None


def test_step_input_refuses_input_that_breaks_the_spec() -> None:
    # Given a context whose `message` is not a string
    event = make_event(context={"message": 42})

    payload, refusal = engine.step_input(event, TWO_STEPS)

    assert payload == {"message": 42}
    assert refusal is not None
    assert refusal.type == "InputInvalid"
    assert "input.message: expected string, got integer" in refusal.message


def test_step_input_refuses_a_missing_required_input() -> None:
    _, refusal = engine.step_input(make_event(context={}), TWO_STEPS)

    assert refusal is not None and "input.message: required field is missing" in refusal.message


def test_refuse_input_fails_the_event_and_the_step() -> None:
    event = make_event(context={"message": 42})
    payload, refusal = engine.step_input(event, TWO_STEPS)
    assert refusal is not None

    ended = engine.refuse_input(event, TWO_STEPS, payload, refusal, at(3))

    assert ended.status is EventStatus.FAILED
    assert ended.error == refusal
    assert ended.ended_at == at(3)
    [step] = ended.steps
    assert (step.service, step.status, step.attempts) == ("upper", StepStatus.FAILED, 0)
    assert step.input == {"message": 42}
    assert step.error == refusal


# --- record_call: success ----------------------------------------------------------------


def test_a_successful_step_advances_and_merges_its_outputs() -> None:
    event = make_event(context={"message": "a b", "keep": 1})

    transition = engine.record_call(
        event, TWO_STEPS, {"message": "a b"}, answered({"message": "A B"})
    )

    after = transition.event
    assert transition.wait_seconds == 0
    assert after.status is EventStatus.RUNNING
    assert after.step_index == 1
    assert after.context == {"message": "A B", "keep": 1}
    [step] = after.steps
    assert step.status is StepStatus.SUCCEEDED
    assert step.attempts == 1
    assert (step.input, step.output) == ({"message": "a b"}, {"message": "A B"})
    assert (step.started_at, step.ended_at, step.duration_ms) == (at(1), at(1.25), 250.0)
    assert [a.status_code for a in step.history] == [200]


def test_the_last_successful_step_ends_the_event_with_its_outputs() -> None:
    first = engine.record_call(
        make_event(context={"message": "a b", "noise": True}),
        TWO_STEPS,
        {"message": "a b"},
        answered({"message": "A B"}),
    ).event

    last = engine.record_call(
        first, TWO_STEPS, {"message": "A B"}, answered({"space_count": 1}, 2, 2.5)
    ).event

    assert last.status is EventStatus.SUCCEEDED
    assert last.outputs == {"message": "A B", "space_count": 1}  # only the declared outputs
    assert last.ended_at == at(2.5)
    assert [s.service for s in last.steps] == ["upper", "space-counter"]
    assert last.error is None


def test_an_operation_maps_the_answer_into_the_context() -> None:
    counter = PlannedStep(
        service=make_service("space-counter", inputs={"text": STRING}, outputs={"count": INTEGER}),
        operation=StepOperation(inputs={"text": "message"}, outputs={"space_count": "count"}),
    )
    plan = make_plan(counter, outputs={"space_count": INTEGER})

    payload, refusal = engine.step_input(make_event(), plan)
    assert (payload, refusal) == ({"text": "a b"}, None)
    ended = engine.record_call(make_event(), plan, payload, answered({"count": 1})).event

    assert ended.status is EventStatus.SUCCEEDED
    assert ended.outputs == {"space_count": 1}
    assert "count" not in ended.context


# --- record_call: retries and failures -----------------------------------------------------


def test_a_retryable_error_with_attempts_left_retries_after_the_policy_delay() -> None:
    transition = engine.record_call(make_event(), TWO_STEPS, {"message": "a b"}, failed(RETRYABLE))

    after = transition.event
    assert transition.wait_seconds == 2.0  # interval_seconds before attempt 2
    assert after.status is EventStatus.RUNNING
    assert after.step_index == 0
    [step] = after.steps
    assert (step.status, step.attempts, step.error) == (StepStatus.RETRYING, 1, RETRYABLE)


@pytest.mark.parametrize(("retry_after", "expected"), [(30.0, 30.0), (0.5, 2.0)])
def test_a_retry_after_longer_than_the_policy_delay_is_honoured(
    retry_after: float, expected: float
) -> None:
    # Given a 503 whose service asked to be left alone for `retry_after` seconds
    outcome = dataclasses.replace(failed(RETRYABLE, status=503), retry_after=retry_after)

    # When it is recorded, then the wait is the longer of that and the policy's 2 s
    transition = engine.record_call(make_event(), TWO_STEPS, {"message": "a b"}, outcome)
    assert transition.wait_seconds == expected


def test_retry_waits_grow_by_the_backoff_rate() -> None:
    first = engine.record_call(make_event(), TWO_STEPS, {"message": "a b"}, failed(RETRYABLE))

    second = engine.record_call(first.event, TWO_STEPS, {"message": "a b"}, failed(RETRYABLE, 4, 5))

    assert second.wait_seconds == 6.0  # 2 s * 3 before attempt 3
    assert second.event.steps[0].attempts == 2


def test_success_on_the_second_attempt_keeps_both_attempts_in_history() -> None:
    retrying = engine.record_call(
        make_event(), TWO_STEPS, {"message": "a b"}, failed(RETRYABLE, 1, 1.5)
    )

    after = engine.record_call(
        retrying.event, TWO_STEPS, {"message": "a b"}, answered({"message": "A B"}, 4, 4.5)
    )

    [step] = after.event.steps
    assert after.wait_seconds == 0
    assert (step.status, step.attempts, step.error) == (StepStatus.SUCCEEDED, 2, None)
    assert [(a.attempt, a.status_code) for a in step.history] == [(1, None), (2, 200)]
    assert step.history[0].error == RETRYABLE
    assert (step.started_at, step.ended_at) == (at(1), at(4.5))
    assert after.event.step_index == 1


def test_a_retryable_error_on_the_last_attempt_fails_the_event() -> None:
    transition = engine.record_call(make_event(), TWO_STEPS, {"message": "a b"}, failed(RETRYABLE))
    for attempt in (2, 3):
        transition = engine.record_call(
            transition.event, TWO_STEPS, {"message": "a b"}, failed(RETRYABLE, attempt * 10)
        )

    assert transition.wait_seconds == 0
    assert transition.event.status is EventStatus.FAILED
    assert transition.event.steps[0].attempts == 3
    assert transition.event.error == RETRYABLE


def test_a_non_retryable_error_fails_the_step_and_the_event() -> None:
    transition = engine.record_call(
        make_event(), TWO_STEPS, {"message": "a b"}, failed(FATAL, status=404)
    )

    event = transition.event
    assert transition.wait_seconds == 0
    assert event.status is EventStatus.FAILED
    assert event.error == FATAL
    assert event.ended_at == at(1.5)
    [step] = event.steps
    assert (step.status, step.error, step.attempts) == (StepStatus.FAILED, FATAL, 1)
    assert event.outputs is None


def test_outputs_that_break_the_service_spec_fail_with_output_invalid() -> None:
    # Given upper answering an integer for its string output
    transition = engine.record_call(
        make_event(), TWO_STEPS, {"message": "a b"}, answered({"message": 7})
    )

    event = transition.event
    assert event.status is EventStatus.FAILED
    assert event.error is not None
    assert event.error.type == "OutputInvalid"
    assert event.error.status_code == 200
    assert "output.message: expected string, got integer" in event.error.message
    assert event.steps[0].status is StepStatus.FAILED
    assert event.context == {"message": "a b"}  # nothing merged


def test_outputs_missing_a_declared_field_fail_with_output_invalid() -> None:
    transition = engine.record_call(make_event(), TWO_STEPS, {"message": "a b"}, answered({}))

    assert transition.event.error is not None
    assert transition.event.error.type == "OutputInvalid"
    assert "output.message: required field is missing" in transition.event.error.message


def test_workflow_outputs_that_break_the_spec_fail_with_outputs_invalid() -> None:
    # Given a plan whose workflow output `space_count` nothing produces
    plan = make_plan(UPPER, outputs={"message": STRING, "space_count": INTEGER})

    event = engine.record_call(
        make_event(), plan, {"message": "a b"}, answered({"message": "A B"})
    ).event

    assert event.status is EventStatus.FAILED
    assert event.error is not None and event.error.type == "OutputsInvalid"
    assert "outputs.space_count: required field is missing" in event.error.message
    assert event.steps[0].status is StepStatus.SUCCEEDED  # the step itself was fine
    assert event.outputs is None


# --- abort -------------------------------------------------------------------------------

GAVE_UP = ErrorInfo(type="States.TaskFailed", message="the step function kept failing")


def test_abort_fails_a_running_event_and_its_current_step() -> None:
    retrying = engine.record_call(
        make_event(), TWO_STEPS, {"message": "a b"}, failed(RETRYABLE)
    ).event

    aborted = engine.abort(retrying, GAVE_UP, at(9))

    assert aborted.status is EventStatus.FAILED
    assert aborted.error == GAVE_UP
    assert aborted.ended_at == at(9)
    assert (aborted.steps[0].status, aborted.steps[0].error) == (StepStatus.FAILED, GAVE_UP)


def test_abort_leaves_finished_steps_alone() -> None:
    advanced = engine.record_call(
        make_event(), TWO_STEPS, {"message": "a b"}, answered({"message": "A"})
    ).event

    aborted = engine.abort(advanced, GAVE_UP, at(9))

    assert aborted.status is EventStatus.FAILED
    assert aborted.steps[0].status is StepStatus.SUCCEEDED


def test_abort_of_a_pending_event_fails_it() -> None:
    aborted = engine.abort(make_event(EventStatus.PENDING), GAVE_UP, at(9))
    assert (aborted.status, aborted.steps) == (EventStatus.FAILED, [])


def test_abort_is_a_no_op_on_a_terminal_event() -> None:
    done = make_event(EventStatus.SUCCEEDED, outputs={"message": "A B"}, ended_at=at(2))

    assert engine.abort(done, GAVE_UP, at(9)) is done


@pytest.mark.parametrize(
    ("retry", "draw", "expected"),
    [
        ({"interval_seconds": 10, "backoff_rate": 3, "max_delay_seconds": 20}, 1.0, 20.0),
        ({"interval_seconds": 10, "jitter": "full"}, 0.25, 5.0),
        ({"interval_seconds": 10, "jitter": "none"}, 0.25, 20.0),
    ],
    ids=["capped-by-max-delay", "full-jitter-scales", "no-jitter-ignores-the-draw"],
)
def test_retry_delays_are_capped_and_jittered_as_the_policy_says(
    retry: dict[str, object], draw: float, expected: float
) -> None:
    # Given a service whose policy is `retry`, failing a second time (the wait before attempt 3)
    policy = RetryPolicy.model_validate({"max_attempts": 5, **retry})
    plan = TWO_STEPS.model_copy(deep=True)
    plan.steps[0].service.retry = policy
    first = engine.record_call(make_event(), plan, {"message": "a b"}, failed(RETRYABLE), draw)

    # When it fails again, then the wait follows the policy and the caller's draw
    second = engine.record_call(
        first.event, plan, {"message": "a b"}, failed(RETRYABLE, 4, 5), draw
    )
    assert second.wait_seconds == pytest.approx(expected)


# --- the step under way ------------------------------------------------------------------


def test_the_next_step_is_marked_running_with_its_first_attempt() -> None:
    # Given an event about to call its first step
    event = make_event()

    # When it is marked under way
    marked = engine.mark_under_way(event, TWO_STEPS, at(1))

    # Then the step shows RUNNING since now, attempt 1 of none ended
    step = marked.steps[0]
    assert (step.index, step.service, step.status) == (0, "upper", StepStatus.RUNNING)
    assert (step.started_at, step.attempt, step.attempts, step.ended_at) == (at(1), 1, 0, None)


def test_a_retried_step_keeps_its_start_and_shows_the_next_attempt() -> None:
    # Given a step whose first attempt failed and waits for its retry
    event = make_event()
    retrying = engine.record_call(event, TWO_STEPS, {"message": "a b"}, failed(RETRYABLE)).event
    assert retrying.steps[0].status is StepStatus.RETRYING

    # When the retry is about to be made
    marked = engine.mark_under_way(retrying, TWO_STEPS, at(9))

    # Then it is RUNNING again, attempt 2, and its start is the step's first
    step = marked.steps[0]
    assert (step.status, step.attempt, step.attempts) == (StepStatus.RUNNING, 2, 1)
    assert step.started_at == retrying.steps[0].started_at


def test_a_recorded_answer_ends_the_attempt_under_way() -> None:
    marked = engine.mark_under_way(make_event(), TWO_STEPS, at(0.5))
    after = engine.record_call(marked, TWO_STEPS, {"message": "a b"}, answered({"message": "A B"}))
    step = after.event.steps[0]
    assert (step.status, step.attempt, step.attempts) == (StepStatus.SUCCEEDED, None, 1)
    assert step.started_at == at(0.5)


def test_an_ended_event_or_a_finished_plan_is_not_marked() -> None:
    ended = make_event(EventStatus.SUCCEEDED)
    assert engine.mark_under_way(ended, TWO_STEPS, at(1)) == ended
    past_the_end = make_event(step_index=2)
    assert engine.mark_under_way(past_the_end, TWO_STEPS, at(1)) == past_the_end


def test_cancelling_closes_the_attempt_under_way() -> None:
    marked = engine.mark_under_way(make_event(), TWO_STEPS, at(1))
    cancelled = engine.cancel(marked, at(2))
    assert cancelled.steps[0].status is StepStatus.CANCELLED
    assert cancelled.steps[0].attempt is None
