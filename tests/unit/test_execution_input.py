"""The state machine's input: the event id and, when it may travel there, the event's plan."""

from __future__ import annotations

import json

import pytest
from builders import make_service

from machinery_core.domain.models import FieldSpec, Plan, PlannedStep
from machinery_core.service import events


def plan(*steps: PlannedStep) -> Plan:
    return Plan(
        workflow_version=3,
        steps=list(steps) or [PlannedStep(service=make_service("upper"))],
        outputs={"message": FieldSpec(type="string")},
        callback_base_url="https://api.example.test",
    )


def test_the_input_carries_the_plan_without_its_defaults() -> None:
    accepted = plan(PlannedStep(service=make_service("upper", timeout_seconds=3)))

    carried = json.loads(events.execution_input("evt-1", accepted))

    assert set(carried) == {"event_id", "plan", "wake", "route"}
    assert (carried["wake"], carried["route"]) == (None, None)
    assert carried["event_id"] == "evt-1"
    assert Plan.model_validate(carried["plan"]) == accepted
    assert "retry" not in carried["plan"]["steps"][0]["service"]  # a default, left out


@pytest.mark.parametrize("where", ["service", "fallback"])
def test_a_plan_holding_secret_headers_stays_out_of_the_input(where: str) -> None:
    # Given a plan with a service whose secret header must never show in an execution's history
    secret = {"secret_headers": {"Authorization": "Bearer s3cret"}}
    step = (
        PlannedStep(service=make_service("upper", **secret))
        if where == "service"
        else PlannedStep(
            service=make_service("upper"),
            on_error="fallback",
            fallback=make_service("spare", **secret),
        )
    )

    # Then the input carries none (the worker reads the stored plan) and no secret
    text = events.execution_input("evt-1", plan(step))
    assert json.loads(text) == {"event_id": "evt-1", "plan": None, "wake": None, "route": None}
    assert "s3cret" not in text


def test_a_plan_over_the_limit_stays_out_of_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    accepted = plan()
    dumped = accepted.model_dump(mode="json", exclude_defaults=True)
    size = len(json.dumps(dumped, separators=(",", ":")))

    monkeypatch.setattr(events, "PLAN_INPUT_LIMIT", size)
    assert json.loads(events.execution_input("evt-1", accepted))["plan"] is not None
    monkeypatch.setattr(events, "PLAN_INPUT_LIMIT", size - 1)
    assert json.loads(events.execution_input("evt-1", accepted))["plan"] is None


def test_a_timer_input_says_what_woke_the_event_and_carries_no_plan() -> None:
    wake = {"kind": "callback", "at": "2026-12-04T12:00:00+00:00"}
    carried = json.loads(events.execution_input("evt-1", None, wake=wake))
    assert carried == {"event_id": "evt-1", "plan": None, "wake": wake, "route": None}
