"""EventBridge Scheduler: the timers that resume an event waiting outside any execution.

A timer is a one-time schedule (`at(...)`) in the template's own schedule group that starts
the state machine with an input (`events.execution_input`, with its `wake`), as a role that
may only do that. The one place Scheduler's error codes become outcomes: setting a timer
that exists is not an error (a retried invocation sets the same one), nor is deleting one
that is gone (it fired, and deleted itself, or was deleted). Names: at most 64 characters of
`[0-9a-zA-Z-_.]` (`Event.timer_name` is a uuid, `-t` and a count).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from machinery_core.adapters.throttling import throttle_aware

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def at_expression(moment: datetime) -> str:
    """`at(yyyy-mm-ddThh:mm:ss)` in UTC, rounded up to the second: never before `moment`."""
    moment = moment.astimezone(UTC)
    whole = moment.replace(microsecond=0)
    if whole < moment:
        whole += timedelta(seconds=1)
    return f"at({whole:%Y-%m-%dT%H:%M:%S})"


def moment_of(expression: str) -> datetime:
    """The time an `at(...)` expression names (UTC)."""
    inner = expression.strip()[3:-1]
    return datetime.fromisoformat(inner).replace(tzinfo=UTC)


class Timers:
    def __init__(
        self,
        client: EventBridgeSchedulerClient,
        group: str,
        state_machine_arn: str,
        role_arn: str,
    ) -> None:
        self.client = throttle_aware(client)
        self.group = group
        self.state_machine_arn = state_machine_arn
        self.role_arn = role_arn

    def set(self, name: str, at: datetime, execution_input: str) -> None:
        """A one-time schedule `name` in the group that starts the state machine with
        `execution_input` at `at` (UTC, rounded up to the second; FlexibleTimeWindow OFF),
        deleted by Scheduler once it has fired (ActionAfterCompletion DELETE). A name that
        exists already is not an error: a retried invocation setting the same timer.

        `name` is Scheduler's: at most 64 characters of `[0-9a-zA-Z-_.]`; it is passed on
        as given (Scheduler refuses another with a ValidationException, which is raised)."""
        try:
            self.client.create_schedule(
                Name=name,
                GroupName=self.group,
                ScheduleExpression=at_expression(at),
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target={
                    "Arn": self.state_machine_arn,
                    "RoleArn": self.role_arn,
                    "Input": execution_input,
                    # a start that fails (throttled) is tried again, for up to a day
                    "RetryPolicy": {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185},
                },
            )
        except ClientError as error:
            if _code(error) != "ConflictException":
                raise

    def cancel(self, name: str) -> None:
        """Delete the schedule `name`; one already gone is not an error."""
        try:
            self.client.delete_schedule(Name=name, GroupName=self.group)
        except ClientError as error:
            if _code(error) != "ResourceNotFoundException":
                raise
