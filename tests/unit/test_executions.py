"""The Step Functions adapter: expected error codes become outcomes, the others raise."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from machinery_core.adapters.executions import Executions, StateMachineType, Stop

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


@pytest.mark.parametrize("code", ["ThrottlingException", "AccessDeniedException"])
def test_start_raises_what_is_not_expected(stubbed: tuple[Executions, Stubber], code: str) -> None:
    executions, stubber = stubbed
    stubber.add_client_error("start_execution", code)
    with pytest.raises(ClientError):
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
    with pytest.raises(ClientError):
        executions.stop("evt-1", "Cancelled", "why")


def test_stop_on_express_calls_nothing(stubbed: tuple[Executions, Stubber]) -> None:
    # Given an EXPRESS state machine, which StopExecution does not support
    executions, _ = stubbed
    executions.kind = StateMachineType.EXPRESS

    # Then a stop is a no-op (the stubber fails on any call it was not told about)
    assert executions.stop("evt-1", "Cancelled", "why") is Stop.NOT_RUNNING


@pytest.mark.parametrize("code", ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"])
def test_resume_reports_a_task_nothing_waits_on(
    stubbed: tuple[Executions, Stubber], code: str
) -> None:
    executions, stubber = stubbed
    stubber.add_client_error("send_task_success", code)
    assert executions.resume("token", "{}") is False


@pytest.mark.parametrize("code", ["ThrottlingException", "AccessDeniedException", "InvalidOutput"])
def test_resume_raises_what_would_otherwise_be_lost(
    stubbed: tuple[Executions, Stubber], code: str
) -> None:
    executions, stubber = stubbed
    stubber.add_client_error("send_task_success", code)
    with pytest.raises(ClientError):
        executions.resume("token", "{}")


def test_resume_completes_the_task(stubbed: tuple[Executions, Stubber]) -> None:
    executions, stubber = stubbed
    stubber.add_response("send_task_success", {}, {"taskToken": "token", "output": '{"a":1}'})
    assert executions.resume("token", '{"a":1}') is True


def test_fail_fails_the_task_with_its_error_and_cause(stubbed: tuple[Executions, Stubber]) -> None:
    # Given a task that waits on its token
    executions, stubber = stubbed
    stubber.add_response(
        "send_task_failure", {}, {"taskToken": "token", "error": "Refused", "cause": "why"}
    )
    # When it is failed, Then Step Functions is told so with the error and cause
    assert executions.fail("token", "Refused", "why") is True


@pytest.mark.parametrize("code", ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"])
def test_fail_reports_a_task_nothing_waits_on(
    stubbed: tuple[Executions, Stubber], code: str
) -> None:
    executions, stubber = stubbed
    stubber.add_client_error("send_task_failure", code)
    assert executions.fail("token", "Refused", "why") is False


@pytest.mark.parametrize("code", ["ThrottlingException", "AccessDeniedException"])
def test_fail_raises_what_would_otherwise_be_lost(
    stubbed: tuple[Executions, Stubber], code: str
) -> None:
    executions, stubber = stubbed
    stubber.add_client_error("send_task_failure", code)
    with pytest.raises(ClientError):
        executions.fail("token", "Refused", "why")
