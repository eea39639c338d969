"""Step Functions: the one place an event's executions are started, stopped and resumed.

Each call turns the error codes that are part of normal life (an execution that already
ended, a task that no longer waits) into an outcome the caller decides on; any other error
(throttling, AccessDenied, a network failure) raises, so that nothing is lost silently.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from machinery_core.adapters.throttling import throttle_aware

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


class StateMachineType(StrEnum):
    STANDARD = "STANDARD"
    EXPRESS = "EXPRESS"


class Stop(StrEnum):
    STOPPED = "STOPPED"
    NOT_RUNNING = "NOT_RUNNING"  # ended already, never started, or (EXPRESS) not stoppable


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class Executions:
    def __init__(
        self,
        client: SFNClient,
        state_machine_arn: str,
        kind: StateMachineType = StateMachineType.STANDARD,
    ) -> None:
        self.client = throttle_aware(client)
        self.state_machine_arn = state_machine_arn
        self.kind = kind

    def execution_arn(self, name: str) -> str:
        # arn:aws:states:{region}:{account}:stateMachine:{machine} -> ...:execution:{machine}:{name}
        prefix, sep, machine = self.state_machine_arn.rpartition(":stateMachine:")
        if not sep:
            raise ValueError(f"not a state machine ARN: {self.state_machine_arn!r}")
        return f"{prefix}:execution:{machine}:{name}"

    def start(self, name: str, execution_input: str) -> bool:
        """Start the named execution; False when one of that name already exists."""
        try:
            self.client.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=execution_input
            )
        except ClientError as error:
            if _code(error) == "ExecutionAlreadyExists":
                return False
            raise
        return True

    def stop(self, execution: str, error: str, cause: str) -> Stop:
        """Stop the execution `execution` names (its name in this state machine, or its ARN)."""
        if self.kind is StateMachineType.EXPRESS:
            # StopExecution is not supported on EXPRESS: its next step finds the event ended.
            return Stop.NOT_RUNNING
        arn = execution if execution.startswith("arn:") else self.execution_arn(execution)
        try:
            self.client.stop_execution(executionArn=arn, error=error, cause=cause)
        except ClientError as failure:
            if _code(failure) == "ExecutionDoesNotExist":
                return Stop.NOT_RUNNING
            raise
        return Stop.STOPPED
