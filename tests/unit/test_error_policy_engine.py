"""on_error policies: how a step that failed for good is followed (engine and type-flow check)."""

from __future__ import annotations

from typing import Any

import pytest
from builders import (
    COUNTER,
    FATAL,
    INTEGER,
    STRING,
    UPPER,
    answered,
    failed,
    make_event,
    make_plan,
    make_service,
)

from machinery_core.domain import engine
from machinery_core.domain.errors import InvalidDefinition
from machinery_core.domain.models import EventStatus, PlannedStep, StepStatus, Workflow
from machinery_core.domain.validation import check_workflow

SHOUT = make_service("shout", inputs={"message": STRING}, outputs={"message": STRING})


def test_continue_marks_the_step_failed_and_goes_on_without_its_outputs() -> None:
    # Given upper may fail without failing the event
    plan = make_plan(
        PlannedStep(service=UPPER, on_error="continue"),
        COUNTER,
        outputs={"space_count": INTEGER},
    )

    # When it fails for good
    after = engine.record_call(make_event(), plan, {"message": "a b"}, failed(FATAL)).event

    # Then its step is FAILED with the error, the context is untouched, and step 2 is next
    assert after.status is EventStatus.RUNNING
    assert after.step_index == 1
    assert after.steps[0].status is StepStatus.FAILED
    assert after.steps[0].error == FATAL
    assert after.context == {"message": "a b"}
    # and the event still ends SUCCEEDED with the next step's outputs
    payload, _ = engine.step_input(after, plan)
    ended = engine.record_call(after, plan, payload, answered({"space_count": 1})).event
    assert ended.status is EventStatus.SUCCEEDED
    assert ended.outputs == {"space_count": 1}


def test_continue_on_the_last_step_still_checks_the_workflow_outputs() -> None:
    plan = make_plan(PlannedStep(service=UPPER, on_error="continue"), outputs={"message": STRING})
    data = {"data": {"text": "x"}, "context": {"text": "x"}}

    ended = engine.record_call(make_event(**data), plan, {}, failed(FATAL)).event

    assert ended.status is EventStatus.FAILED
    assert ended.error is not None and ended.error.type == "OutputsInvalid"


def test_a_fallback_takes_the_step_over_and_its_answer_counts() -> None:
    # Given upper falls back to shout
    plan = make_plan(
        PlannedStep(service=UPPER, on_error="fallback", fallback=SHOUT), outputs={"message": STRING}
    )

    # When upper fails for good
    taken = engine.record_call(make_event(), plan, {"message": "a b"}, failed(FATAL)).event

    # Then the step is running again, on shout, with upper's attempt kept in its history
    assert engine.current_service(taken, plan) == SHOUT
    [step] = taken.steps
    assert (step.service, step.status, step.fallback_from, step.attempts) == (
        "shout",
        StepStatus.RUNNING,
        "upper",
        0,
    )
    assert [attempt.error for attempt in step.history] == [FATAL]
    # and when shout answers, the event succeeds with it
    payload, _ = engine.step_input(taken, plan)
    ended = engine.record_call(taken, plan, payload, answered({"message": "A B!"})).event
    assert ended.status is EventStatus.SUCCEEDED
    assert ended.outputs == {"message": "A B!"}
    assert ended.steps[0].service == "shout"
    assert len(ended.steps[0].history) == 2


def test_a_failing_fallback_fails_the_event() -> None:
    plan = make_plan(
        PlannedStep(service=UPPER, on_error="fallback", fallback=SHOUT), outputs={"message": STRING}
    )
    taken = engine.record_call(make_event(), plan, {"message": "a b"}, failed(FATAL)).event

    ended = engine.record_call(taken, plan, {"message": "a b"}, failed(FATAL)).event

    assert ended.status is EventStatus.FAILED
    assert ended.steps[0].status is StepStatus.FAILED
    assert ended.steps[0].fallback_from == "upper"


def _workflow(on_error: dict[str, Any], outputs: dict[str, Any]) -> Workflow:
    return Workflow.model_validate(
        {
            "name": "policies",
            "spec": {
                "services": ["upper", "space-counter"],
                "inputs": {"message": STRING},
                "outputs": outputs,
                "on_error": on_error,
            },
        }
    )


SERVICES = {s.name: s for s in (UPPER, COUNTER, SHOUT)}


def test_a_continue_step_cannot_be_the_only_source_of_a_required_output() -> None:
    workflow = _workflow({"space-counter": "continue"}, {"space_count": INTEGER})

    with pytest.raises(InvalidDefinition) as refusal:
        check_workflow(workflow, SERVICES)

    assert refusal.value.details[0]["path"] == "spec.outputs.space_count"


def test_a_continue_step_whose_outputs_are_not_needed_type_checks() -> None:
    check_workflow(_workflow({"upper": "continue"}, {"space_count": INTEGER}), SERVICES)


def test_a_fallback_must_exist_and_take_the_step_inputs() -> None:
    with pytest.raises(InvalidDefinition, match="unknown services: nope"):
        check_workflow(_workflow({"upper": {"fallback": "nope"}}, {}), SERVICES)

    needs_text = make_service("needs-text", inputs={"text": STRING}, outputs={"message": STRING})
    with pytest.raises(InvalidDefinition) as refusal:
        check_workflow(
            _workflow({"upper": {"fallback": "needs-text"}}, {}),
            {**SERVICES, "needs-text": needs_text},
        )
    assert refusal.value.details[0]["path"].startswith("spec.on_error.upper (fallback needs-text)")


def test_only_outputs_both_services_give_are_certain_after_a_fallback() -> None:
    # Given a fallback for space-counter that does not count spaces
    quiet = make_service("quiet", inputs={"message": STRING}, outputs={"message": STRING})
    services = {**SERVICES, "quiet": quiet}

    # Then space_count can no longer be a required output
    with pytest.raises(InvalidDefinition):
        check_workflow(
            _workflow({"space-counter": {"fallback": "quiet"}}, {"space_count": INTEGER}), services
        )
    # while a fallback that gives it too is fine
    check_workflow(
        _workflow({"space-counter": {"fallback": "space-counter"}}, {"space_count": INTEGER}),
        services,
    )


def test_on_error_keys_must_name_a_step() -> None:
    with pytest.raises(ValueError, match="on_error key 'nope'"):
        _workflow({"nope": "continue"}, {})
