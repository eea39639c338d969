"""The EventBridge Scheduler adapter: one-time schedules that start the state machine, the
codes that are outcomes (an existing timer, a timer already gone), and the others raise."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from machinery_core.adapters.timers import Timers, at_expression, moment_of
from machinery_core.domain.errors import Throttled

GROUP = "machinery-TimerGroup"
MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:machinery-StateMachine"
ROLE = "arn:aws:iam::123456789012:role/machinery-SchedulerRole"
NAME = "0b6f3c4e-8d2a-4f57-9e1c-2a7b5d9c1e00-callback-1"
INPUT = '{"event_id": "0b6f3c4e", "plan": null, "wake": {"kind": "callback"}, "route": null}'


@pytest.fixture
def stubbed() -> Iterator[tuple[Timers, Stubber]]:
    client = boto3.client(
        "scheduler",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield Timers(client, GROUP, MACHINE, ROLE), stubber
        stubber.assert_no_pending_responses()


def _created(at: str) -> dict[str, object]:
    return {
        "Name": NAME,
        "GroupName": GROUP,
        "ScheduleExpression": at,
        "ScheduleExpressionTimezone": "UTC",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "ActionAfterCompletion": "DELETE",
        "Target": {
            "Arn": MACHINE,
            "RoleArn": ROLE,
            "Input": INPUT,
            "RetryPolicy": {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185},
        },
    }


def test_set_creates_a_one_time_schedule_that_starts_the_state_machine_with_the_input(
    stubbed: tuple[Timers, Stubber],
) -> None:
    # Given a moment with a fraction of a second
    timers, stubber = stubbed
    at = datetime(2026, 12, 4, 11, 0, 0, 250_000, tzinfo=UTC)
    arn = f"arn:aws:scheduler:eu-west-1:123456789012:schedule/{GROUP}/{NAME}"
    stubber.add_response(
        "create_schedule", {"ScheduleArn": arn}, _created("at(2026-12-04T11:00:01)")
    )

    # When the timer is set, then it is a one-time schedule at the next whole second, in
    # the group, off any flexible window, deleted once it has fired, starting the state
    # machine with the input as the scheduler's role
    timers.set(NAME, at, INPUT)


def test_setting_a_timer_that_exists_is_not_an_error(stubbed: tuple[Timers, Stubber]) -> None:
    timers, stubber = stubbed
    stubber.add_client_error("create_schedule", "ConflictException", http_status_code=409)
    timers.set(NAME, datetime(2026, 12, 4, 11, 0, tzinfo=UTC), INPUT)


@pytest.mark.parametrize(
    "code", ["ValidationException", "ServiceQuotaExceededException", "AccessDeniedException"]
)
def test_set_raises_what_is_not_expected(stubbed: tuple[Timers, Stubber], code: str) -> None:
    timers, stubber = stubbed
    stubber.add_client_error("create_schedule", code)
    with pytest.raises(ClientError):
        timers.set(NAME, datetime(2026, 12, 4, 11, 0, tzinfo=UTC), INPUT)


def test_cancel_deletes_the_schedule_and_one_already_gone_is_not_an_error(
    stubbed: tuple[Timers, Stubber],
) -> None:
    timers, stubber = stubbed
    expected = {"Name": NAME, "GroupName": GROUP}
    stubber.add_response("delete_schedule", {}, expected)
    stubber.add_client_error(
        "delete_schedule",
        "ResourceNotFoundException",
        http_status_code=404,
        expected_params=expected,
    )

    timers.cancel(NAME)  # deleted
    timers.cancel(NAME)  # fired (and deleted itself) or deleted before: nothing to do


@pytest.mark.parametrize(
    ("code", "raised"),
    [("ThrottlingException", Throttled), ("AccessDeniedException", ClientError)],
)
def test_cancel_raises_what_is_not_expected(
    stubbed: tuple[Timers, Stubber], code: str, raised: type[Exception]
) -> None:
    timers, stubber = stubbed
    stubber.add_client_error("delete_schedule", code)
    with pytest.raises(raised):
        timers.cancel(NAME)


@pytest.mark.parametrize(
    ("moment", "expression"),
    [
        (datetime(2026, 12, 4, 11, 0, 0, tzinfo=UTC), "at(2026-12-04T11:00:00)"),
        (datetime(2026, 12, 4, 11, 0, 0, 1, tzinfo=UTC), "at(2026-12-04T11:00:01)"),
        (datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), "at(2027-01-01T00:00:00)"),
        # another offset is written in UTC
        (
            datetime(2026, 12, 4, 12, 30, 0, tzinfo=timezone(timedelta(hours=1, minutes=30))),
            "at(2026-12-04T11:00:00)",
        ),
    ],
)
def test_the_at_expression_is_utc_and_never_before_the_moment(
    moment: datetime, expression: str
) -> None:
    assert at_expression(moment) == expression
    assert moment_of(expression) >= moment
    assert moment_of(expression) - moment < timedelta(seconds=1)
