"""EXPRESS without limits: an event longer than an EXPRESS execution's five minutes runs as a
sequence of executions, each ending to wait (time-scaled by --time-scale 0.01: five minutes
are 3 s here, and the local runtime ends an EXPRESS execution that runs longer)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from e2e_kit import Inbox, Registry, StartStub, service_definition, unique, workflow_definition
from loopback import Call, Reply, json_reply

pytestmark = pytest.mark.e2e

SCALE = 0.01  # the e2e stacks' --time-scale
TEN_MINUTES = 600


@pytest.fixture
def local_stack(express_stack: Any) -> Any:
    """Every test here runs on the EXPRESS stack (the registry and stubs follow it)."""
    return express_stack


def _callback_workflow(registry: Registry, address: str, timeout_seconds: int) -> str:
    """A workflow over one callback service at `address` (message -> message), allowed
    `timeout_seconds` and one attempt."""
    service = unique("calls-back")
    registry.service(
        service_definition(
            service,
            address,
            {"message": "string"},
            {"message": "string"},
            mode="callback",
            timeout_seconds=timeout_seconds,
            retry={"max_attempts": 1},
        )
    )
    workflow = unique("waits")
    registry.workflow(
        workflow_definition(workflow, [service], {"message": "string"}, {"message": "string"})
    )
    return workflow


def test_a_callback_that_comes_after_ten_minutes_succeeds(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a callback service allowed fifteen minutes, on EXPRESS
    inbox = Inbox()
    workflow = _callback_workflow(registry, stub_service(inbox).address, 900)
    event_id = local_stack.send(workflow, {"message": "hi"})
    url = inbox.next().headers["x-machinery-callback-url"]

    # When it calls back ten minutes (time-scaled) later: twice an execution's five
    time.sleep(TEN_MINUTES * SCALE)
    waiting = local_stack.get(f"/events/{event_id}").json()
    answer = requests.post(url, json={"message": "done"}, timeout=10)

    # Then the event waited all that time, and goes on to succeed
    assert waiting["status"] == "WAITING", waiting
    assert answer.status_code == 200, answer.text
    event = local_stack.wait_for_end(event_id)
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == {"message": "done"}


def _retried_after(
    stack: Any,
    registry: Registry,
    stub_service: StartStub,
    first: int,
    retry_after: int,
    second_takes: float = 0,
) -> tuple[dict[str, Any], list[float]]:
    """An event of one step whose service first answers `first` with Retry-After
    `retry_after` (seconds), then (after `second_takes` seconds, time-scaled) 200 with its
    message and a "!": the ended event and when each call came."""
    calls: list[float] = []

    def respond(call: Call, nth: int) -> Reply:
        calls.append(time.monotonic())
        if nth == 1:
            return json_reply(first, {"error": "later"}, {"Retry-After": str(retry_after)})
        time.sleep(second_takes * SCALE)
        return json_reply(200, {"message": call.json()["message"] + "!"})

    stub = stub_service(respond)
    service = unique("busy")
    registry.service(
        service_definition(
            service,
            stub.address,
            {"message": "string"},
            {"message": "string"},
            retry={"max_attempts": 2, "interval_seconds": 1, "max_delay_seconds": 3600},
        )
    )
    workflow = unique("backs-off")
    registry.workflow(
        workflow_definition(workflow, [service], {"message": "string"}, {"message": "string"})
    )
    event_id = stack.send(workflow, {"message": "go"})
    return stack.wait_for_end(event_id, timeout=30), calls


def test_a_retry_after_of_ten_minutes_is_waited_out_and_the_event_succeeds(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a service that first answers 429 with Retry-After: 600, then 200
    # When an event runs
    event, calls = _retried_after(local_stack, registry, stub_service, 429, TEN_MINUTES)

    # Then it waited the ten minutes (time-scaled) for its second attempt, and succeeded
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == {"message": "go!"}
    assert len(calls) == 2
    assert calls[1] - calls[0] >= TEN_MINUTES * SCALE * 0.9


def test_a_callback_timeout_fires_and_a_late_callback_is_refused(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a callback service allowed one minute, that never calls back in time
    inbox = Inbox()
    workflow = _callback_workflow(registry, stub_service(inbox).address, 60)
    event_id = local_stack.send(workflow, {"message": "hi"})
    url = inbox.next().headers["x-machinery-callback-url"]

    # When its timer fires
    event = local_stack.wait_for_end(event_id)

    # Then the step failed with CallbackTimeout, and a callback now is refused
    assert event["status"] == "FAILED", event
    assert event["steps"][0]["error"]["type"] == "CallbackTimeout"
    late = requests.post(url, json={"message": "too late"}, timeout=10)
    assert late.status_code == 404, late.text


def test_a_call_that_would_outlive_the_execution_goes_on_in_the_next(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a service that first answers 503 and asks for a retry after 260 s: a wait that
    # still fits in the execution (five minutes less its margin), after which too little of
    # it is left for the retry's call (its timeout 10 s; it takes 100 s)
    # When an event runs
    event, calls = _retried_after(local_stack, registry, stub_service, 503, 260, 100)

    # Then the retry ran after the wait, in a fresh execution, and the event succeeded
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == {"message": "go!"}
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 260 * SCALE * 0.9
