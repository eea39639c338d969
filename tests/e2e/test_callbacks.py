"""Callback services: dispatched with a single-use URL, the event WAITING until they call back."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from e2e_kit import (
    Inbox,
    Registry,
    StartStub,
    on_each_type,  # noqa: F401  (every test here runs on both types)
    service_definition,
    unique,
    workflow_definition,
)
from loopback import Call, Reply, json_reply

pytestmark = pytest.mark.e2e


# Scaled by --time-scale 0.01: a 9 s wait for the callback, far longer than any test needs,
# so a test that does call back never races the timeout.
PATIENT_SECONDS = 900
MESSAGE = "hello callback"
# Races are probabilistic: several rounds make a lost or misreported race show up.
CONCURRENT_ROUNDS = 10
CONCURRENT_CALLERS = 4
BUSY_WRITERS = 2


def _callback_workflow(registry: Registry, address: str, **options: Any) -> str:
    """Register a callback service at `address` (message -> message), patient unless
    `options` say otherwise, and a workflow over it alone."""
    service = unique("later")
    registry.service(
        service_definition(
            service,
            address,
            {"message": "string"},
            {"message": "string"},
            mode="callback",
            **{"timeout_seconds": PATIENT_SECONDS, **options},
        )
    )
    name = unique("waits")
    registry.workflow(
        workflow_definition(name, [service], {"message": "string"}, {"message": "string"})
    )
    return name


def _send(stack: Any, workflow: str, message: str = MESSAGE) -> str:
    event_id: str = stack.send(workflow, {"message": message})
    return event_id


def _call_back(url: str, body: object) -> requests.Response:
    """What a callback service does: POST to its URL with no credentials of any kind."""
    return requests.post(url, json=body, timeout=10)


def _callback_url(stack: Any, dispatch: Call) -> str:
    url: str = dispatch.headers["x-machinery-callback-url"]
    assert url.startswith(f"{stack.url}/callbacks/"), url
    return url


def _register_again_until(stack: Any, workflow: str, done: threading.Event) -> int:
    """Register `workflow` again (a refused conditional write) until `done`; how many times."""
    definition = stack.get(f"/workflows/{workflow}").json()["definition"]
    count = 0
    with requests.Session() as http:  # its own: a Session is not shared across threads
        while not done.is_set():
            answer = http.post(f"{stack.url}/workflows", json=definition, timeout=10)
            assert answer.status_code == 409, answer.text
            count += 1
    return count


def _at_once(callers: int, call: Callable[[int], int]) -> list[int]:
    """`call(n)` for n in range(callers), all released together; their results in order."""
    start = threading.Barrier(callers)

    def released(n: int) -> int:
        start.wait(timeout=10)
        return call(n)

    with ThreadPoolExecutor(callers) as pool:
        return list(pool.map(released, range(callers)))


def test_a_callback_service_completes_its_step_by_calling_back(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a callback service that accepts the work with 202 and a workflow over it
    inbox = Inbox()
    stub = stub_service(inbox)
    workflow = _callback_workflow(registry, stub.address)

    # When an event is sent
    event_id = _send(local_stack, workflow)

    # Then the service is given the step input, a callback URL and the usual headers
    dispatch = inbox.next()
    url = _callback_url(local_stack, dispatch)
    assert dispatch.json() == {"message": MESSAGE}
    assert dispatch.headers["idempotency-key"] == f"{event_id}:0"
    assert dispatch.headers["x-machinery-event-id"] == event_id

    # And the event and its step wait for the callback
    waiting = local_stack.get(f"/events/{event_id}").json()
    assert waiting["status"] == "WAITING", waiting
    [step] = waiting["steps"]
    assert step["status"] == "WAITING"
    assert step["input"] == {"message": MESSAGE}
    assert step["output"] is None

    # When the service calls back with its outputs
    answer = _call_back(url, {"message": "done later"})

    # Then the callback is accepted and the event succeeds with them
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"event_id": event_id, "step": 0, "status": "SUCCEEDED"}
    event = local_stack.wait_for_end(event_id)
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == {"message": "done later"}
    assert event["error"] is None
    [step] = event["steps"]
    assert step["status"] == "SUCCEEDED"
    assert step["output"] == {"message": "done later"}
    assert step["attempts"] == 1
    assert len(step["history"]) == 1
    assert step["error"] is None
    assert len(stub.received()) == 1


def test_a_callback_that_reports_an_error_fails_the_step_with_it(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a callback service that has accepted an event's step
    inbox = Inbox()
    workflow = _callback_workflow(registry, stub_service(inbox).address)
    event_id = _send(local_stack, workflow)
    url = _callback_url(local_stack, inbox.next())

    # When it calls back with an error report
    report = {"error": {"type": "QuotaExceeded", "message": "too many words today"}}
    answer = _call_back(url, report)

    # Then the report is accepted and the step, and the event, fail with that error
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "FAILED"
    event = local_stack.wait_for_end(event_id)
    assert event["status"] == "FAILED", event
    assert event["outputs"] is None
    assert event["error"]["type"] == "QuotaExceeded"
    assert event["error"]["message"] == "too many words today"
    [step] = event["steps"]
    assert step["status"] == "FAILED"
    assert step["error"] == event["error"]
    assert step["attempts"] == 1


def test_a_callback_that_never_comes_times_out_and_fails_the_step(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a callback service that accepts the work but never calls back, with a 20 s
    # timeout (0.2 s at the stack's time scale) and no retries
    inbox = Inbox()
    workflow = _callback_workflow(
        registry,
        stub_service(inbox).address,
        timeout_seconds=20,
        retry={"max_attempts": 1},
    )

    # When an event is sent and the callback does not come
    event_id = _send(local_stack, workflow)
    url = _callback_url(local_stack, inbox.next())
    event = local_stack.wait_for_end(event_id)

    # Then the step fails with CallbackTimeout, and so does the event
    assert event["status"] == "FAILED", event
    [step] = event["steps"]
    assert step["status"] == "FAILED"
    assert step["error"]["type"] == "CallbackTimeout"
    assert step["attempts"] == 1
    assert event["error"]["type"] == "CallbackTimeout"

    # And a callback that arrives too late is refused as unknown, changing nothing
    late = _call_back(url, {"message": "too late"})
    assert late.status_code == 404, late.text
    assert local_stack.get(f"/events/{event_id}").json()["status"] == "FAILED"


def test_a_second_callback_with_the_same_token_is_refused(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a callback that completed its step
    inbox = Inbox()
    workflow = _callback_workflow(registry, stub_service(inbox).address)
    event_id = _send(local_stack, workflow)
    url = _callback_url(local_stack, inbox.next())
    assert _call_back(url, {"message": "first"}).status_code == 200
    assert local_stack.wait_for_end(event_id)["status"] == "SUCCEEDED"

    # When the same token is used again
    again = _call_back(url, {"message": "second"})

    # Then it is refused as a conflict and the first outputs stand
    assert again.status_code == 409, again.text
    assert again.json()["message"]
    event = local_stack.get(f"/events/{event_id}").json()
    assert event["outputs"] == {"message": "first"}
    assert event["steps"][0]["attempts"] == 1


def test_concurrent_callbacks_with_one_token_are_accepted_exactly_once(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a callback service and a workflow over it, while the table is kept busy by
    # registrations that are refused (409) over and over
    inbox = Inbox()
    workflow = _callback_workflow(registry, stub_service(inbox).address)
    busy = threading.Event()
    with ThreadPoolExecutor(BUSY_WRITERS) as background:
        refusals = [
            background.submit(_register_again_until, local_stack, workflow, busy)
            for _ in range(BUSY_WRITERS)
        ]
        try:
            for _ in range(CONCURRENT_ROUNDS):
                # When its token is used by several callbacks at once
                event_id = _send(local_stack, workflow)
                url = _callback_url(local_stack, inbox.next())
                codes = _at_once(
                    CONCURRENT_CALLERS,
                    lambda n, url=url: _call_back(url, {"message": f"caller {n}"}).status_code,
                )

                # Then exactly one is accepted, the others are told the token was used
                assert sorted(codes) == [200] + [409] * (CONCURRENT_CALLERS - 1), codes

                # And the event ends with the accepted one's outputs
                event = local_stack.wait_for_end(event_id, timeout=5)
                assert event["status"] == "SUCCEEDED", event
                assert event["outputs"] == {"message": f"caller {codes.index(200)}"}
                assert event["steps"][0]["attempts"] == 1
        finally:
            busy.set()
        # And every refused registration was a plain 409, none a server error
        assert all(refused.result(timeout=10) > 0 for refused in refusals)


@pytest.mark.parametrize(
    "token",
    [secrets.token_urlsafe(32), "x" * 300],
    ids=["random", "overlong"],
)
def test_an_unknown_token_is_not_found_and_says_nothing_more(local_stack: Any, token: str) -> None:
    # Given a token Machinery never issued
    # When it is used to call back
    answer = _call_back(f"{local_stack.url}/callbacks/{token}", {"message": "anything"})

    # Then the answer is 404 with a message and no detail at all
    assert answer.status_code == 404, answer.text
    body = answer.json()
    assert list(body) == ["message"]
    assert isinstance(body["message"], str)
    assert body["message"]


def test_outputs_that_break_the_spec_are_refused_and_a_correct_retry_succeeds(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a callback service (message -> message: string) that has accepted a step
    inbox = Inbox()
    workflow = _callback_workflow(registry, stub_service(inbox).address)
    event_id = _send(local_stack, workflow)
    url = _callback_url(local_stack, inbox.next())

    # When it calls back with a wrong-typed output
    wrong = _call_back(url, {"message": 42})

    # Then the callback is refused with the details, and the step keeps waiting
    assert wrong.status_code == 422, wrong.text
    details = wrong.json()["details"]
    assert details
    assert any("message" in detail["path"] for detail in details), details
    waiting = local_stack.get(f"/events/{event_id}").json()
    assert waiting["status"] == "WAITING", waiting
    assert waiting["steps"][0]["status"] == "WAITING"
    assert waiting["steps"][0]["attempts"] == 0

    # When it calls back again, with the same token and correct outputs
    right = _call_back(url, {"message": "fixed"})

    # Then the callback is accepted and the event succeeds
    assert right.status_code == 200, right.text
    event = local_stack.wait_for_end(event_id)
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == {"message": "fixed"}
    assert event["steps"][0]["attempts"] == 1


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (404, False)], ids=["500-no-retries", "404"]
)
def test_a_refused_dispatch_fails_the_step_without_waiting(
    local_stack: Any, registry: Registry, stub_service: StartStub, status: int, retryable: bool
) -> None:
    # Given a callback service that refuses the work (allowed a single attempt when the
    # refusal is retryable), which would otherwise be waited for 9 s
    stub = stub_service(lambda call, _: json_reply(status, {"error": "not today"}))
    options: dict[str, Any] = {"retry": {"max_attempts": 1}} if retryable else {}
    workflow = _callback_workflow(registry, stub.address, **options)

    # When an event is sent
    event_id = _send(local_stack, workflow)

    # Then it fails at once, well within the callback timeout, with the refusal recorded
    event = local_stack.wait_for_end(event_id, timeout=5)
    assert event["status"] == "FAILED", event
    [step] = event["steps"]
    assert step["status"] == "FAILED"
    assert step["attempts"] == 1
    assert step["error"]["type"] == "HttpError"
    assert step["error"]["status_code"] == status
    assert step["error"]["retryable"] is retryable
    assert event["error"] == step["error"]
    assert len(stub.received()) == 1


def test_a_refused_dispatch_is_retried_and_the_retry_is_called_back(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a callback service that answers 503 to its first dispatch, then accepts
    inbox = Inbox()

    def busy_once(call: Call, nth: int) -> Reply:
        return json_reply(503, {"error": "busy"}) if nth == 1 else inbox(call, nth)

    stub = stub_service(busy_once)
    workflow = _callback_workflow(
        registry, stub.address, retry={"max_attempts": 2, "interval_seconds": 1}
    )

    # When an event is sent and the accepted dispatch is called back
    event_id = _send(local_stack, workflow)
    url = _callback_url(local_stack, inbox.next())
    assert _call_back(url, {"message": "second time lucky"}).status_code == 200

    # Then the event succeeds on the second attempt, both dispatches carrying the same key
    event = local_stack.wait_for_end(event_id)
    assert event["status"] == "SUCCEEDED", event
    [step] = event["steps"]
    assert step["attempts"] == 2
    assert step["history"][0]["status_code"] == 503
    assert step["history"][1]["error"] is None
    assert step["output"] == {"message": "second time lucky"}
    calls = stub.received()
    assert [call.headers["idempotency-key"] for call in calls] == [f"{event_id}:0"] * 2


def test_a_sync_step_after_a_callback_step_gets_the_callback_outputs(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a workflow: a callback service (message -> message), then a sync one
    # (message -> message, length)
    inbox = Inbox()
    sync = stub_service(
        lambda call, _: json_reply(
            200, {"message": call.json()["message"] + "!", "length": len(call.json()["message"])}
        )
    )
    sync_name = unique("measure")
    registry.service(
        service_definition(
            sync_name, sync.address, {"message": "string"}, {"message": "string", "length": "int"}
        )
    )
    callback_name = unique("later")
    registry.service(
        service_definition(
            callback_name,
            stub_service(inbox).address,
            {"message": "string"},
            {"message": "string"},
            mode="callback",
            timeout_seconds=PATIENT_SECONDS,
        )
    )
    workflow = unique("mixed")
    registry.workflow(
        workflow_definition(
            workflow,
            [callback_name, sync_name],
            {"message": "string"},
            {"message": "string", "length": "integer"},
        )
    )

    # When an event is sent and the callback service calls back
    event_id = _send(local_stack, workflow)
    url = _callback_url(local_stack, inbox.next())
    assert sync.received() == []
    answer = _call_back(url, {"message": "four"})

    # Then the event carries on to the sync step with the callback's output
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"event_id": event_id, "step": 0, "status": "RUNNING"}
    event = local_stack.wait_for_end(event_id)
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == {"message": "four!", "length": 4}
    first, second = event["steps"]
    assert (first["service"], first["status"], first["attempts"]) == (
        callback_name,
        "SUCCEEDED",
        1,
    )
    assert (second["service"], second["status"], second["attempts"]) == (
        sync_name,
        "SUCCEEDED",
        1,
    )
    assert second["input"] == {"message": "four"}
    [call] = sync.received()
    assert call.headers["idempotency-key"] == f"{event_id}:1"
    assert "x-machinery-callback-url" not in call.headers


def test_the_example_async_workflow_runs_to_its_outputs(local_stack: Any) -> None:
    # Given the example stack, whose reverse-later service calls back a moment after it
    # accepts the work
    message = "The Sun will rise in the morning !"

    # When an event is sent to process-text-async
    event_id = _send(local_stack, "process-text-async", message)

    # Then it ends SUCCEEDED with the same outputs as the all-sync example
    event = local_stack.wait_for_end(event_id)
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == {"message": "! GNINROM EHT NI ESIR LLIW NUS EHT", "space_count": 7}
    steps = event["steps"]
    assert [step["service"] for step in steps] == ["upper", "reverse-later", "space-counter"]
    assert all(step["status"] == "SUCCEEDED" and step["attempts"] == 1 for step in steps)
    assert steps[1]["input"] == {"message": message.upper()}
    assert steps[1]["output"] == {"message": "! GNINROM EHT NI ESIR LLIW NUS EHT"}
