"""The Step Functions adapter: expected error codes become outcomes, the others raise."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from machinery_core.adapters.executions import Executions, StateMachineType, Stop
from machinery_core.domain.errors import Throttled

MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:machinery-Events"
EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:machinery-Events:evt-1"


@pytest.fixture
def stubbed() -> Iterator[tuple[Executions, Stubber]]:
    client = boto3.client(
        "stepfunctions",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield Executions(client, MACHINE), stubber
        stubber.assert_no_pending_responses()


def test_the_execution_arn_is_built_from_the_state_machine_arn() -> None:
    assert Executions(None, MACHINE).execution_arn("evt-1") == EXECUTION  # type: ignore[arg-type]


def test_a_malformed_state_machine_arn_is_refused() -> None:
    with pytest.raises(ValueError, match="not a state machine ARN"):
        Executions(None, "arn:aws:lambda:x").execution_arn("evt-1")  # type: ignore[arg-type]


def test_start_names_the_execution_and_reports_one_that_already_exists(
    stubbed: tuple[Executions, Stubber],
) -> None:
    executions, stubber = stubbed
    expected = {"stateMachineArn": MACHINE, "name": "evt-1", "input": "{}"}
    stubber.add_response(
        "start_execution", {"executionArn": EXECUTION, "startDate": "2026-01-01"}, expected
    )
    stubber.add_client_error("start_execution", "ExecutionAlreadyExists", expected_params=expected)

    assert executions.start("evt-1", "{}") is True
    assert executions.start("evt-1", "{}") is False


@pytest.mark.parametrize(
    ("code", "raised"),
    [("ThrottlingException", Throttled), ("AccessDeniedException", ClientError)],
)
def test_start_raises_what_is_not_expected(
    stubbed: tuple[Executions, Stubber], code: str, raised: type[Exception]
) -> None:
    # throttling is the domain's Throttled (adapters/throttling.py); the rest, as AWS said it
    executions, stubber = stubbed
    stubber.add_client_error("start_execution", code)
    with pytest.raises(raised):
        executions.start("evt-1", "{}")


def test_stop_reports_an_execution_that_is_not_there(stubbed: tuple[Executions, Stubber]) -> None:
    executions, stubber = stubbed
    expected = {"executionArn": EXECUTION, "error": "Cancelled", "cause": "why"}
    stubber.add_response("stop_execution", {"stopDate": "2026-01-01"}, expected)
    stubber.add_client_error("stop_execution", "ExecutionDoesNotExist", expected_params=expected)

    assert executions.stop("evt-1", "Cancelled", "why") is Stop.STOPPED
    assert executions.stop("evt-1", "Cancelled", "why") is Stop.NOT_RUNNING


def test_stop_raises_a_throttled_call(stubbed: tuple[Executions, Stubber]) -> None:
    executions, stubber = stubbed
    stubber.add_client_error("stop_execution", "ThrottlingException")
    with pytest.raises(Throttled):
        executions.stop("evt-1", "Cancelled", "why")


def test_stop_on_express_calls_nothing(stubbed: tuple[Executions, Stubber]) -> None:
    # Given an EXPRESS state machine, which StopExecution does not support
    executions, _ = stubbed
    executions.kind = StateMachineType.EXPRESS

    # Then a stop is a no-op (the stubber fails on any call it was not told about)
    assert executions.stop("evt-1", "Cancelled", "why") is Stop.NOT_RUNNING


def test_stop_takes_an_execution_by_its_arn_too(stubbed: tuple[Executions, Stubber]) -> None:
    # Given the ARN of an execution a timer started (Scheduler names it, not Machinery)
    executions, stubber = stubbed
    arn = EXECUTION.replace("evt-1", "0b1e-generated")
    expected = {"executionArn": arn, "error": "Cancelled", "cause": "why"}
    stubber.add_response("stop_execution", {"stopDate": "2026-01-01"}, expected)

    # Then it is stopped by that ARN as it is
    assert executions.stop(arn, "Cancelled", "why") is Stop.STOPPED
