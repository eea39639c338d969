"""What the local runtime refuses and scales for an EXPRESS state machine, as pure functions:
the Tasks that wait for a task token (nested ones too), and the execution's start time as a
Task sees it, its age scaled like every wait."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta

import pytest

from machinery_core.local.moto_seams import _scaled_start
from machinery_core.local.template import callback_tasks

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _task(resource: str) -> dict[str, object]:
    return {"Type": "Task", "Resource": resource, "End": True}


def test_every_task_waiting_for_a_task_token_is_found_nested_ones_included() -> None:
    # Given a definition with a callback Task at the top, in a Parallel branch and in the
    # iterators of both Map spellings, beside Tasks that do not wait
    callback = "arn:aws:states:::lambda:invoke.waitForTaskToken"
    definition = {
        "StartAt": "Run",
        "States": {
            "Run": _task("arn:aws:states:::lambda:invoke"),
            "Await": _task(callback),
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "A", "States": {"A": _task("arn:aws:states:::sqs:sendMessage")}},
                    {"StartAt": "B", "States": {"B": _task(callback)}},
                ],
            },
            "Each": {"Type": "Map", "Iterator": {"StartAt": "C", "States": {"C": _task(callback)}}},
            "Every": {
                "Type": "Map",
                "ItemProcessor": {"StartAt": "D", "States": {"D": _task(callback)}},
            },
            "Done": {"Type": "Succeed"},
        },
    }
    # When / Then each is named by its path, as CreateStateMachine names what it refuses
    assert callback_tasks(definition) == [
        "/States/Await/Resource",
        "/States/Both/Branches/1/States/B/Resource",
        "/States/Each/Iterator/States/C/Resource",
        "/States/Every/ItemProcessor/States/D/Resource",
    ]


def test_a_definition_without_callback_tasks_has_none() -> None:
    assert callback_tasks({"StartAt": "A", "States": {"A": _task("arn:aws:states:::x")}}) == []


def _age(start_time: str) -> float:
    return (
        datetime.now(UTC) - datetime.fromisoformat(start_time.replace("Z", "+00:00"))
    ).total_seconds()


@pytest.mark.parametrize(("scale", "expected_age"), [(1.0, 2.0), (0.01, 200.0), (0.001, 2000.0)])
def test_the_start_time_is_now_less_the_real_age_scaled(scale: float, expected_age: float) -> None:
    # Given an execution that started two real seconds ago (as moto keeps it: a datetime)
    real = datetime.now(UTC) - timedelta(seconds=2)

    # When a Task reads its start time under a time scale
    start_time = _scaled_start(real, scale)

    # Then it is written as Step Functions writes it, and its age is the real one scaled
    assert ISO.match(start_time), start_time
    assert _age(start_time) == pytest.approx(expected_age, rel=0.05)
    # And read again later, it is scaled from the real start still, not from itself
    again = _scaled_start(start_time, scale)
    assert _age(again) == pytest.approx(expected_age, rel=0.05)
    # And what a state copies out of it is a plain string
    assert type(copy.deepcopy(again)) is str


def test_with_a_time_scale_of_zero_no_time_has_passed() -> None:
    start_time = _scaled_start(datetime.now(UTC) - timedelta(seconds=5), 0.0)
    assert abs(_age(start_time)) < 1
