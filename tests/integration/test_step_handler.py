"""The step Lambda handler (functions/step/app.py) against loopback HTTP services."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from integration_kit import (
    DynamoCalls,
    FakeLambdaContext,
    Services,
    Wired,
    item_size,
    load_handler_module,
)

from machinery_core.adapters.store import Store
from machinery_core.domain.errors import ClaimHeld, StaleVersion
from machinery_core.domain.models import (
    Event,
    EventStatus,
    Plan,
    PlannedStep,
    Service,
    StepStatus,
    utc_now,
)
from machinery_core.runtime.dependencies import configure
from machinery_core.service.events import execution_input

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

step = load_handler_module("step_app", "functions/step/app.py")

STRING = {"type": "string"}
INTEGER = {"type": "integer"}


def make_service(
    services: Services, name: str, outputs: dict[str, Any], path: str | None = None, **extra: Any
) -> Service:
    return Service.model_validate(
        {
            "name": name,
            "address": f"{services.url}{path or '/' + name}",
            "spec": {"inputs": {"message": STRING}, "outputs": outputs},
            **extra,
        }
    )


def process_text(services: Services, **extra: Any) -> list[Service]:
    """The seed workflow's three services, served on loopback."""
    return [
        make_service(services, "upper", {"message": STRING}, **extra),
        make_service(services, "reverse", {"message": STRING}, **extra),
        make_service(services, "space-counter", {"space_count": INTEGER}, **extra),
    ]


def plan_of(steps: list[Service], outputs: dict[str, Any] | None = None) -> Plan:
    return Plan.model_validate(
        {
            "workflow_version": 1,
            "steps": [PlannedStep(service=s).model_dump() for s in steps],
            "outputs": outputs or {"message": STRING, "space_count": INTEGER},
        }
    )


def stored_event(
    store: Store,
    steps: list[Service],
    status: EventStatus = EventStatus.PENDING,
    outputs: dict[str, Any] | None = None,
) -> str:
    """An accepted event, stored with its plan as the API would store it."""
    plan = plan_of(steps, outputs)
    now = utc_now()
    event = Event(
        event_id=str(uuid.uuid4()),
        workflow_id="process-text",
        status=status,
        data={"message": "hello big world"},
        context={"message": "hello big world"},
        acknowledged_at=now,
        updated_at=now,
    )
    store.create_event(event, plan)
    return event.event_id


def advance(event_id: str, remaining_ms: int = 60_000, **payload: Any) -> dict[str, Any]:
    answer: dict[str, Any] = step.handler(
        {"event_id": event_id, **payload}, FakeLambdaContext("machinery-step", remaining_ms)
    )
    return answer


SUCCEEDED = {"status": "SUCCEEDED", "wait_seconds": 0, "timeout_seconds": 0, "notify": False}


def test_with_the_plan_in_its_input_the_worker_reads_only_the_event_and_writes_only_state(
    wired: Wired, services: Services, dynamodb: Any
) -> None:
    # Given an accepted event of the three-step workflow, and its plan as the execution
    # input carries it (the Run state passes it on)
    steps = process_text(services)
    event_id = stored_event(wired.store, steps)
    carried = json.loads(execution_input(event_id, plan_of(steps)))["plan"]
    assert carried is not None

    # When the step function runs it
    with DynamoCalls(dynamodb) as recorded:
        assert advance(event_id, plan=carried) == SUCCEEDED

    # Then it read the event item once, and never the plan
    assert recorded.operations == ["GetItem"] + ["UpdateItem"] * 4  # the claim, 3 steps
    [read] = recorded.of("GetItem")
    assert read["Key"]["SK"] == {"S": "EVENT"}
    # And each write carried the event's state, and the listing's summary attributes only
    # where the status changed (the claim: RUNNING; the last step: SUCCEEDED), so the
    # steps between write the table and not its index
    state_only = {":state", ":next", ":expected"}
    with_summary = state_only | {":status", ":updated"}
    assert [set(write["ExpressionAttributeValues"]) for write in recorded.of("UpdateItem")] == [
        with_summary, state_only, state_only, with_summary
    ]  # fmt: skip
    # And the event item, at its largest, is under 1 KB: one write unit per write
    item = dynamodb.get_item(
        TableName="machinery-test", Key={"PK": {"S": f"EVENT#{event_id}"}, "SK": {"S": "EVENT"}}
    )["Item"]
    assert "plan" not in item
    assert item_size(item) <= 1024
    assert wired.store.get_event(event_id).outputs == {
        "message": "DLROW GIB OLLEH",
        "space_count": 2,
    }


@pytest.mark.parametrize("payload", [{}, {"plan": None}], ids=["no-plan", "null-plan"])
def test_without_a_plan_in_its_input_the_worker_reads_it_with_the_event(
    wired: Wired, services: Services, dynamodb: Any, payload: dict[str, Any]
) -> None:
    # Given an event whose execution carries no plan (too large, or holding secrets), run
    # by a container that has not read that plan yet
    event_id = stored_event(wired.store, process_text(services))
    wired.store.known_plans.clear()

    # When the step function runs it
    with DynamoCalls(dynamodb) as recorded:
        assert advance(event_id, **payload) == SUCCEEDED

    # Then it read the event, then its plan by reference, and wrote as before
    assert recorded.operations == ["GetItem", "GetItem"] + ["UpdateItem"] * 4
    assert recorded.of("GetItem")[1]["Key"]["PK"]["S"].startswith("PLAN#")


def test_advance_runs_every_sync_step_in_one_invocation(wired: Wired, services: Services) -> None:
    # Given an accepted event of the three-step workflow
    event_id = stored_event(wired.store, process_text(services))

    # When the step function is invoked once
    answer = advance(event_id)

    # Then it ran all three steps and says so
    assert answer == {
        "status": "SUCCEEDED",
        "wait_seconds": 0,
        "timeout_seconds": 0,
        "notify": False,
    }
    assert [call[0] for call in services.calls] == ["/upper", "/reverse", "/space-counter"]
    assert [call[1] for call in services.calls] == [f"{event_id}:{n}" for n in range(3)]
    event = wired.store.get_event(event_id)
    assert event.status is EventStatus.SUCCEEDED
    assert event.outputs == {"message": "DLROW GIB OLLEH", "space_count": 2}
    assert [(s.service, s.status, s.attempts) for s in event.steps] == [
        ("upper", StepStatus.SUCCEEDED, 1),
        ("reverse", StepStatus.SUCCEEDED, 1),
        ("space-counter", StepStatus.SUCCEEDED, 1),
    ]
    # One checkpoint per step, plus the start
    assert event.version == 4


def test_a_retryable_failure_hands_back_to_wait(wired: Wired, services: Services) -> None:
    # Given a first service answering 503, with a 1.5 s retry interval and a rate of 2
    flaky = make_service(
        services,
        "upper",
        {"message": STRING},
        path="/unavailable",
        retry={"max_attempts": 3, "interval_seconds": 1.5, "backoff_rate": 2},
    )
    event_id = stored_event(wired.store, [flaky], outputs={"message": STRING})

    # When the step function is invoked
    first = advance(event_id)

    # Then it asks the state machine to wait, in whole seconds, and records the attempt
    assert first == {"status": "BACKOFF", "wait_seconds": 2, "timeout_seconds": 0, "notify": False}
    event = wired.store.get_event(event_id)
    assert event.status is EventStatus.RUNNING
    assert (event.steps[0].status, event.steps[0].attempts) == (StepStatus.RETRYING, 1)
    assert event.steps[0].error is not None and event.steps[0].error.status_code == 503

    # And the next invocation retries the same step, waiting longer after it
    assert advance(event_id) == {
        "status": "BACKOFF",
        "wait_seconds": 3,
        "timeout_seconds": 0,
        "notify": False,
    }
    assert [call[1] for call in services.calls] == [f"{event_id}:0", f"{event_id}:0"]

    # And the last attempt ends the event
    assert advance(event_id) == {
        "status": "FAILED",
        "wait_seconds": 0,
        "timeout_seconds": 0,
        "notify": False,
    }
    assert wired.store.get_event(event_id).steps[0].attempts == 3


def test_a_short_deadline_hands_back_after_one_call(wired: Wired, services: Services) -> None:
    # Given services with a 10 s timeout, and an invocation with 12 s left (9 s after safety)
    event_id = stored_event(wired.store, process_text(services, timeout_seconds=10))

    # When the step function is invoked
    answer = advance(event_id, remaining_ms=12_000)

    # Then it made the first call (a fresh invocation always does) and handed back
    assert answer == {
        "status": "CONTINUE",
        "wait_seconds": 0,
        "timeout_seconds": 0,
        "notify": False,
    }
    assert [call[0] for call in services.calls] == ["/upper"]
    event = wired.store.get_event(event_id)
    assert (event.status, event.step_index) == (EventStatus.RUNNING, 1)
    assert event.context["message"] == "HELLO BIG WORLD"

    # And a later invocation with time enough carries on from the checkpoint
    assert advance(event_id, remaining_ms=60_000) == {
        "status": "SUCCEEDED",
        "wait_seconds": 0,
        "timeout_seconds": 0,
        "notify": False,
    }
    assert [call[0] for call in services.calls] == ["/upper", "/reverse", "/space-counter"]


def test_abort_fails_a_running_event(wired: Wired, services: Services) -> None:
    # Given an event waiting to retry its first step
    flaky = make_service(services, "upper", {"message": STRING}, path="/unavailable")
    event_id = stored_event(wired.store, [flaky], outputs={"message": STRING})
    assert advance(event_id)["status"] == "BACKOFF"

    # When the state machine gives up on it
    answer = step.handler(
        {
            "event_id": event_id,
            "action": "abort",
            "error": {"Error": "States.Timeout", "Cause": "took too long"},
        },
        FakeLambdaContext("machinery-step"),
    )

    # Then the event and its step are FAILED with the state machine's error
    assert answer == {"status": "FAILED", "wait_seconds": 0, "timeout_seconds": 0, "notify": False}
    event = wired.store.get_event(event_id)
    assert event.status is EventStatus.FAILED
    assert event.error is not None
    assert (event.error.type, event.error.message) == ("States.Timeout", "took too long")
    assert event.steps[0].status is StepStatus.FAILED
    assert event.ended_at is not None


def test_abort_leaves_a_finished_event_alone(wired: Wired, services: Services) -> None:
    event_id = stored_event(wired.store, process_text(services))
    advance(event_id)
    before = wired.store.get_event(event_id)

    answer = step.handler(
        {"event_id": event_id, "action": "abort", "error": {"Error": "States.Runtime"}},
        FakeLambdaContext("machinery-step"),
    )

    assert answer == {
        "status": "SUCCEEDED",
        "wait_seconds": 0,
        "timeout_seconds": 0,
        "notify": False,
    }
    assert wired.store.get_event(event_id) == before


@pytest.mark.parametrize("status", [EventStatus.SUCCEEDED, EventStatus.FAILED])
def test_advance_on_a_terminal_event_calls_nothing(
    wired: Wired, services: Services, status: EventStatus
) -> None:
    event_id = stored_event(wired.store, process_text(services), status=status)

    answer = advance(event_id)

    assert answer == {
        "status": status.value,
        "wait_seconds": 0,
        "timeout_seconds": 0,
        "notify": False,
    }
    assert services.calls == []
    assert wired.store.get_event(event_id).version == 0


class RendezvousStore(Store):
    """Both invocations read the event before either writes; writes are serialised.

    moto's conditional writes are check-then-write without a lock, whereas DynamoDB's are
    atomic: the lock models the real service, so the race the test provokes is the one
    production can see, not one in moto.
    """

    def __init__(self, *args: Any, parties: int) -> None:
        super().__init__(*args)
        self.barrier = threading.Barrier(parties)
        self.write_lock = threading.Lock()

    def load_with_plan(self, event_id: str) -> tuple[Event, Plan]:
        loaded = super().load_with_plan(event_id)
        self.barrier.wait(timeout=10)
        return loaded

    def save_event(self, event: Event) -> Event:
        with self.write_lock:
            return super().save_event(event)


@pytest.mark.parametrize("status", [EventStatus.PENDING, EventStatus.RUNNING])
def test_two_concurrent_invocations_do_not_both_advance_an_event(
    wired: Wired, services: Services, dynamodb: Any, status: EventStatus
) -> None:
    # Given an event, and two invocations that both read it before either writes
    event_id = stored_event(wired.store, process_text(services), status=status)
    racing = RendezvousStore(dynamodb, "machinery-test", timedelta(days=30), parties=2)
    configure(replace(wired.deps, store=racing))
    results: list[dict[str, Any] | Exception] = []

    def invoke() -> None:
        try:
            results.append(advance(event_id))
        except Exception as error:  # the handler's failure is what the state machine sees
            results.append(error)

    # When they run at once
    threads = [threading.Thread(target=invoke) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads)

    # Then one finished the event and the other lost the conditional write
    assert len(results) == 2
    assert {
        "status": "SUCCEEDED",
        "wait_seconds": 0,
        "timeout_seconds": 0,
        "notify": False,
    } in results
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(losers) == 1 and isinstance(losers[0], StaleVersion)
    # And the event holds each step exactly once
    event = wired.store.get_event(event_id)
    assert event.status is EventStatus.SUCCEEDED
    assert [(s.index, s.service, s.attempts, len(s.history)) for s in event.steps] == [
        (0, "upper", 1, 1),
        (1, "reverse", 1, 1),
        (2, "space-counter", 1, 1),
    ]
    # And every service was called once: the loser's claim failed before it called anything
    upper_calls = services.calls_to("/upper")
    assert len(upper_calls) == 1
    assert {call[1] for call in upper_calls} == {f"{event_id}:0"}
    assert len(services.calls_to("/reverse")) == len(services.calls_to("/space-counter")) == 1


def test_an_invocation_finding_the_event_claimed_by_another_calls_nothing(
    wired: Wired, services: Services
) -> None:
    # Given an event another invocation has claimed (its claim still running)
    event_id = stored_event(wired.store, process_text(services), status=EventStatus.RUNNING)
    event = wired.store.get_event(event_id)
    wired.store.save_event(
        event.model_copy(
            update={
                "claimed_by": "other-invocation",
                "claimed_until": utc_now() + timedelta(minutes=1),
            }
        )
    )

    # When a duplicate invocation arrives, then it stands back (the state machine retries it)
    with pytest.raises(ClaimHeld):
        advance(event_id)
    assert services.calls == []


def test_an_expired_claim_is_taken_over(wired: Wired, services: Services) -> None:
    # Given a claim whose invocation died (its time has run out)
    event_id = stored_event(wired.store, process_text(services), status=EventStatus.RUNNING)
    event = wired.store.get_event(event_id)
    wired.store.save_event(
        event.model_copy(
            update={
                "claimed_by": "dead-invocation",
                "claimed_until": utc_now() - timedelta(seconds=1),
            }
        )
    )

    # When the state machine's retry invokes again, then it carries the event to the end
    assert advance(event_id)["status"] == "SUCCEEDED"
    finished = wired.store.get_event(event_id)
    assert (finished.claimed_by, finished.claimed_until) == (None, None)


def test_without_a_payload_bucket_an_event_that_outgrows_its_item_fails_event_too_large(
    wired: Wired, services: Services
) -> None:
    # Given a deployment with no payload bucket, and a step answering 250 KB (its output
    # and the context it goes into: 500 KB)
    assert wired.store.payloads is None
    services.behaviours["/huge"] = lambda data: (200, {"message": "x" * 250_000})
    event_id = stored_event(wired.store, [make_service(services, "huge", {"message": STRING})])

    # When the step function runs it
    answer = advance(event_id)

    # Then the event ends FAILED with an error that says why, rather than staying RUNNING
    assert answer["status"] == "FAILED"
    event = wired.store.get_event(event_id)
    assert event.status is EventStatus.FAILED
    assert event.error is not None and event.error.type == "EventTooLarge"
    assert event.error.retryable is False
