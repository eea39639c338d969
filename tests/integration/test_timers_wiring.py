"""The deployed dependencies build the timers from the environment template.yaml gives both
functions, their Scheduler client only on first use (most invocations set no timer)."""

from __future__ import annotations

import pytest

from machinery_core.adapters.throttling import ThrottleAware
from machinery_core.adapters.timers import Timers
from machinery_core.runtime.dependencies import Dependencies, OnFirstUse

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:machinery-StateMachine"
ROLE = "arn:aws:iam::123456789012:role/machinery-SchedulerRole"


def test_the_timers_are_built_from_the_environment_their_client_on_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TABLE_NAME", "machinery-test")
    monkeypatch.setenv("STATE_MACHINE_ARN", MACHINE)
    monkeypatch.setenv("SCHEDULE_GROUP", "machinery-TimerGroup")
    monkeypatch.setenv("SCHEDULER_ROLE_ARN", ROLE)

    timers = Dependencies.from_environment().timers

    assert isinstance(timers, Timers)
    assert (timers.group, timers.state_machine_arn, timers.role_arn) == (
        "machinery-TimerGroup",
        MACHINE,
        ROLE,
    )
    assert isinstance(timers.client, ThrottleAware)  # adapters/throttling.py
    built_on_first_use = timers.client._client
    assert isinstance(built_on_first_use, OnFirstUse)
    assert built_on_first_use._built == []  # no client until a timer is set or cancelled
    assert timers.client.meta.service_model.service_name == "scheduler"


@pytest.mark.parametrize("missing", ["SCHEDULE_GROUP", "SCHEDULER_ROLE_ARN"])
def test_without_a_group_or_a_role_there_are_no_timers(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setenv("TABLE_NAME", "machinery-test")
    monkeypatch.setenv("SCHEDULE_GROUP", "machinery-TimerGroup")
    monkeypatch.setenv("SCHEDULER_ROLE_ARN", ROLE)
    monkeypatch.delenv(missing)

    assert Dependencies.from_environment().timers is None
