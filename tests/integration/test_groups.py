"""Conditions, parallel branches and maps, run by the worker against loopback services."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, cast

import pytest
from integration_kit import DynamoCalls, StartSpy, TimerSpy, Wired, step_answer
from loopback import Call, LoopbackServer, Reply, json_reply

from machinery_core.adapters.executions import Executions
from machinery_core.domain.errors import Conflict, NotFound
from machinery_core.domain.models import (
    EventRequest,
    EventStatus,
    RetryPolicy,
    Service,
    StepRecord,
    StepStatus,
    Workflow,
    utc_now,
)
from machinery_core.runtime.dependencies import configure
from machinery_core.service import callbacks, events, registry, worker

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

STRING = {"type": "string"}
NUMBER = {"type": "number"}


@dataclass
class Shop:
    """An order's services on one loopback server: each answers from its input, and notes
    when it started and ended (its own clock, so overlap is proven by the services)."""

    server: LoopbackServer
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)  # skus whose enrichment answers 404
    slow: float = 0.0  # seconds each call takes
    pricing: float = 0.0  # seconds enrich takes to price a line it knows
    on_call: Callable[[int], None] | None = None  # told the number of each call, as it comes
    arrived: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, call: Call, _: int) -> Reply:
        started = time.monotonic()
        with self.lock:
            self.arrived += 1
            number = self.arrived
        if self.on_call is not None:
            self.on_call(number)
        time.sleep(self.slow)
        body = call.json()
        name = call.path.strip("/")
        result = ANSWERS[name](body, self)
        with self.lock:
            self.spans.setdefault(name, []).append((started, time.monotonic()))
            self.keys.append(call.headers["Idempotency-Key"])
            if "X-Machinery-Callback-Url" in call.headers:
                key = call.headers["Idempotency-Key"]
                self.callback_urls[key] = call.headers["X-Machinery-Callback-Url"]
        return result

    callback_urls: dict[str, str] = field(default_factory=dict)  # by Idempotency-Key

    def took_callback(self, body: dict[str, Any]) -> Reply:
        return json_reply(202, {})

    def service(self, name: str, inputs: dict[str, Any], outputs: dict[str, Any]) -> Service:
        return Service.model_validate(
            {
                "name": name,
                "address": f"{self.server.url}/{name}",
                "spec": {"inputs": inputs, "outputs": outputs},
                "retry": {"max_attempts": 1},
            }
        )


def _enrich(body: dict[str, Any], shop: Shop) -> Reply:
    if body["line"]["sku"] in shop.failing:
        return json_reply(404, {"error": "unknown sku"})
    time.sleep(shop.pricing)
    return json_reply(200, {"price": body["line"]["qty"] * 2.5})


ANSWERS: dict[str, Callable[[dict[str, Any], Shop], Reply]] = {
    "fraud-check": lambda body, _: json_reply(200, {"verdict": "ok"}),
    "vat-fr": lambda body, _: json_reply(200, {"vat": 0.2}),
    "vat-default": lambda body, _: json_reply(200, {"vat": 0.0}),
    "reserve-stock": lambda body, _: json_reply(200, {"reservation": "r-1"}),
    "charge-card": lambda body, _: json_reply(200, {"charge": "c-1"}),
    "receipt": lambda body, _: json_reply(200, {"receipt": f"receipt for {body['charge']}"}),
    "enrich": _enrich,
    "approve": lambda body, shop: shop.took_callback(body),
}


@pytest.fixture
def shop(wired: Wired) -> Iterator[Shop]:
    server = LoopbackServer(respond=lambda call, nth: shop.answer(call, nth))
    shop = Shop(server=server)
    server.start()
    for service in (
        shop.service("fraud-check", {"amount": NUMBER}, {"verdict": STRING}),
        shop.service("vat-fr", {"country": STRING}, {"vat": NUMBER}),
        shop.service("vat-default", {"country": STRING}, {"vat": NUMBER}),
        shop.service("reserve-stock", {"lines": {"type": "array"}}, {"reservation": STRING}),
        shop.service("charge-card", {"amount": NUMBER}, {"charge": STRING}),
        shop.service("receipt", {"charge": STRING}, {"receipt": STRING}),
        shop.service("enrich", {"line": {"type": "object"}}, {"price": NUMBER}),
    ):
        registry.save_service(wired.deps, service, create_only=True)
    approve = shop.service("approve", {"amount": NUMBER}, {"approval": STRING})
    approve = approve.model_copy(update={"mode": "callback", "timeout_seconds": 60.0})
    registry.save_service(wired.deps, approve, create_only=True)
    yield shop
    server.stop()


ORDER: dict[str, Any] = {
    "name": "order",
    "spec": {
        "inputs": {"amount": NUMBER, "country": STRING, "lines": {"type": "array"}},
        "services": [
            {"service": "fraud-check", "when": "amount > `100`"},
            {"when": "country == 'FR'", "steps": ["vat-fr"], "otherwise": ["vat-default"]},
            {"parallel": [["reserve-stock"], ["charge-card", "receipt"]]},
            {
                "map": "lines",
                "as": "line",
                "steps": ["enrich"],
                "collect": "enriched",
                "id": "prices",
            },
        ],
        "outputs": {
            "vat": NUMBER,
            "receipt": STRING,
            "reservation": STRING,
            "enriched": {"type": "array"},
        },
    },
}


def register(wired: Wired, definition: dict[str, Any]) -> None:
    registry.save_workflow(wired.deps, Workflow.model_validate(definition), create_only=False)


def send(wired: Wired, workflow: str, data: dict[str, Any]) -> str:
    accepted = events.accept_event(
        wired.deps, workflow, EventRequest(data=data), "http://127.0.0.1"
    )
    return accepted.event_id


def run(wired: Wired, event_id: str, invocation: str = "first") -> dict[str, Any]:
    return worker.advance(wired.deps, event_id, lambda: 600_000, invocation)


def lines(count: int) -> list[dict[str, Any]]:
    return [{"sku": f"sku-{n}", "qty": n} for n in range(count)]


def shapes(steps: list[StepRecord]) -> list[tuple[Any, ...]]:
    return [(s.kind, s.service, s.status.value, s.branch, s.iteration) for s in steps]


def test_an_order_runs_its_condition_branches_and_map_in_one_invocation(
    wired: Wired, shop: Shop
) -> None:
    # Given the order workflow, and an order of 90 from France with three lines
    register(wired, ORDER)
    event_id = send(wired, "order", {"amount": 90, "country": "FR", "lines": lines(3)})

    # When the step function runs it
    answer = run(wired, event_id)

    # Then one invocation ran it to the end
    assert answer["status"] == "SUCCEEDED"
    event = wired.store.get_event(event_id)
    # And the fraud check was skipped (90 is not above 100), the French VAT applied, both
    # branches ran and joined, and each line was priced, in order
    assert event.outputs == {
        "vat": 0.2,
        "receipt": "receipt for c-1",
        "reservation": "r-1",
        "enriched": [{"price": 0.0}, {"price": 2.5}, {"price": 5.0}],
    }
    fraud, vat, fork, prices = event.steps
    assert (fraud.service, fraud.status) == ("fraud-check", StepStatus.SKIPPED)
    assert (vat.kind, vat.decision, shapes(vat.steps)) == (
        "when", True, [("service", "vat-fr", "SUCCEEDED", 0, None)]
    )  # fmt: skip
    assert shapes(fork.steps) == [
        ("service", "reserve-stock", "SUCCEEDED", 0, None),
        ("service", "charge-card", "SUCCEEDED", 1, None),
        ("service", "receipt", "SUCCEEDED", 1, None),
    ]
    assert (prices.kind, prices.id, prices.total, prices.completed) == ("map", "prices", 3, 3)
    assert [s.iteration for s in prices.steps] == [0, 1, 2]
    # And each call had its own Idempotency-Key: the step's path, and a map's iteration
    assert sorted(shop.keys) == sorted(
        [f"{event_id}:1.0.0", f"{event_id}:2.0.0", f"{event_id}:2.1.0", f"{event_id}:2.1.1"]
        + [f"{event_id}:3.0:{n}" for n in range(3)]
    )


def test_the_other_way_runs_when_the_condition_does_not_hold(wired: Wired, shop: Shop) -> None:
    # Given an order of 150 from Germany
    register(wired, ORDER)
    event_id = send(wired, "order", {"amount": 150, "country": "DE", "lines": []})

    # When it runs
    assert run(wired, event_id)["status"] == "SUCCEEDED"

    # Then the fraud check ran, and the default VAT was taken
    event = wired.store.get_event(event_id)
    assert event.steps[0].status is StepStatus.SUCCEEDED
    assert event.steps[1].decision is False
    assert shapes(event.steps[1].steps) == [("service", "vat-default", "SUCCEEDED", 1, None)]
    # And a map over no element collects an empty array
    assert event.outputs is not None and event.outputs["enriched"] == []


def test_parallel_branches_overlap_in_time(wired: Wired, shop: Shop) -> None:
    # Given services that each take 0.3 s
    shop.slow = 0.3
    register(wired, ORDER)
    event_id = send(wired, "order", {"amount": 10, "country": "FR", "lines": []})

    # When it runs
    assert run(wired, event_id)["status"] == "SUCCEEDED"

    # Then, by the services' own clocks, reserve-stock was called while charge-card ran
    [(reserve_start, reserve_end)] = shop.spans["reserve-stock"]
    [(charge_start, charge_end)] = shop.spans["charge-card"]
    assert reserve_start < charge_end and charge_start < reserve_end
    # And the receipt came after the charge, in its branch's order
    [(receipt_start, _)] = shop.spans["receipt"]
    assert receipt_start >= charge_end


def _map_only(on_error: str | None, concurrency: int = 10) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "inputs": {"lines": {"type": "array"}},
        "services": [
            {
                "map": "lines",
                "as": "line",
                "steps": ["enrich"],
                "collect": "enriched",
                "id": "prices",
                "max_concurrency": concurrency,
            }
        ],
        "outputs": {"enriched": {"type": "array"}},
    }
    if on_error:
        spec["on_error"] = {"prices": on_error}
    return {"name": "prices", "spec": spec}


def test_a_map_under_continue_collects_null_for_a_failed_iteration(
    wired: Wired, shop: Shop
) -> None:
    # Given a map whose iterations continue on error, and one line the service refuses
    register(wired, _map_only("continue"))
    shop.failing = {"sku-1"}
    event_id = send(wired, "prices", {"lines": lines(3)})

    # When it runs
    assert run(wired, event_id)["status"] == "SUCCEEDED"

    # Then that iteration's object is null and its error is on its step
    event = wired.store.get_event(event_id)
    assert event.outputs == {"enriched": [{"price": 0.0}, None, {"price": 5.0}]}
    failed = event.steps[0].steps[1]
    assert (failed.iteration, failed.status) == (1, StepStatus.FAILED)
    assert failed.error is not None and failed.error.status_code == 404


def test_a_map_under_fail_fails_the_event_once_the_iterations_in_flight_end(
    wired: Wired, shop: Shop
) -> None:
    # Given a map that fails on error (the default), two at a time, its second line refused
    # at once while pricing a line takes a moment
    register(wired, _map_only(None, concurrency=2))
    shop.failing = {"sku-1"}
    shop.pricing = 0.3
    event_id = send(wired, "prices", {"lines": lines(6)})

    # When it runs
    assert run(wired, event_id)["status"] == "FAILED"

    # Then the event failed with the iteration's error once the first line was priced, and
    # no other iteration started
    event = wired.store.get_event(event_id)
    assert event.error is not None and event.error.status_code == 404
    assert event.steps[0].status is StepStatus.FAILED
    assert sorted(key.rsplit(":", 1)[1] for key in shop.keys) == ["0", "1"]
    assert [s.status for s in event.steps[0].steps] == [StepStatus.SUCCEEDED, StepStatus.FAILED]


def test_a_map_of_100_checkpoints_once_per_batch(wired: Wired, shop: Shop, dynamodb: Any) -> None:
    # Given a map of 100 lines, ten at a time
    register(wired, _map_only(None, concurrency=10))
    event_id = send(wired, "prices", {"lines": lines(100)})

    # When it runs
    with DynamoCalls(dynamodb) as recorded:
        assert run(wired, event_id)["status"] == "SUCCEEDED"

    # Then it wrote the claim, about one checkpoint per ten iterations, and the end
    writes = len(recorded.of("UpdateItem"))
    assert 2 <= writes <= 12, writes
    assert len(wired.store.get_event(event_id).outputs["enriched"]) == 100  # type: ignore[index]


def test_a_crash_in_the_middle_of_a_map_reruns_only_the_rest(wired: Wired, shop: Shop) -> None:
    # Given a map of 20 lines, two at a time, whose invocation dies after its third checkpoint
    register(wired, _map_only(None, concurrency=2))
    event_id = send(wired, "prices", {"lines": lines(20)})
    checkpoints = 0
    save = wired.store.save_event

    class Killed(Exception):
        pass

    def dying(event: Any) -> Any:
        nonlocal checkpoints
        saved = save(event)
        if event.steps and event.steps[0].kind == "map":
            checkpoints += 1
            if checkpoints == 3:
                raise Killed
        return saved

    wired.store.save_event = dying  # type: ignore[method-assign]
    with pytest.raises(Killed):
        run(wired, event_id, "first")
    wired.store.save_event = save  # type: ignore[method-assign]
    done_before = {
        s.iteration
        for s in wired.store.get_event(event_id).steps[0].steps
        if s.status.value == "SUCCEEDED"
    }
    calls_before = len(shop.keys)
    assert 0 < len(done_before) < 20

    # When another invocation takes the event over once the claim has expired
    event = wired.store.get_event(event_id)
    assert event.claimed_until is not None
    later = event.claimed_until
    deps = replace(wired.deps, clock=lambda: later)
    assert worker.advance(deps, event_id, lambda: 600_000, "second")["status"] == "SUCCEEDED"

    # Then it called only the iterations that had not completed (each with its own key)
    again = shop.keys[calls_before:]
    rerun = {int(key.rsplit(":", 1)[1]) for key in again}
    assert rerun == set(range(20)) - done_before
    event = wired.store.get_event(event_id)
    assert [line["price"] for line in event.outputs["enriched"]] == [n * 2.5 for n in range(20)]  # type: ignore[index]


def test_a_step_whose_when_does_not_hold_is_skipped_without_a_write(
    wired: Wired, shop: Shop, dynamodb: Any
) -> None:
    # Given a workflow of one conditional step, and data that does not meet its condition
    register(
        wired,
        {
            "name": "checked",
            "spec": {
                "inputs": {"amount": NUMBER},
                "services": [{"service": "fraud-check", "when": "amount > `100`"}],
            },
        },
    )
    event_id = send(wired, "checked", {"amount": 5})

    # When it runs
    with DynamoCalls(dynamodb) as recorded:
        assert run(wired, event_id)["status"] == "SUCCEEDED"

    # Then nothing was called, the step is SKIPPED, and one write did it all
    assert shop.keys == []
    assert wired.store.get_event(event_id).steps[0].status is StepStatus.SKIPPED
    assert recorded.operations.count("UpdateItem") == 1


def test_the_plan_carries_groups_through_the_execution_input(wired: Wired, shop: Shop) -> None:
    # Given the order workflow's event
    register(wired, ORDER)
    event_id = send(wired, "order", {"amount": 1, "country": "FR", "lines": lines(1)})

    # When the worker runs it from the plan its execution carries
    _, plan = wired.store.load_with_plan(event_id)
    carried = json.loads(events.execution_input(event_id, plan))["plan"]
    answer = worker.advance(wired.deps, event_id, lambda: 600_000, "x", carried)

    # Then the groups are the same as stored
    assert answer["status"] == "SUCCEEDED"
    assert EventStatus.SUCCEEDED is wired.store.get_event(event_id).status


# --- callbacks in groups -----------------------------------------------------------------


def _token(url: str) -> str:
    return url.rsplit("/", 1)[1]


@dataclass
class Waits:
    """What the state machine and Scheduler see of an event's waits: the executions
    started (Step Functions watched) and the timers (in memory)."""

    executions: StartSpy
    timers: TimerSpy


@pytest.fixture
def waits(wired: Wired) -> Waits:
    """`wired` with Step Functions watched and the timers in memory (in `wired.deps` and
    every handler)."""
    started, timers = StartSpy(wired.stepfunctions), TimerSpy()
    executions = Executions(started, wired.state_machine_arn)
    wired.deps = replace(wired.deps, executions=executions, timers=cast(Any, timers))
    configure(wired.deps)  # `wired` unconfigures it when the test ends
    return Waits(started, timers)


def test_a_callback_in_a_parallel_branch_is_awaited_once_and_resumed_by_its_answer(
    wired: Wired, shop: Shop, waits: Waits
) -> None:
    # Given a workflow whose parallel group has a callback service in one branch
    register(
        wired,
        {
            "name": "approved",
            "spec": {
                "inputs": {"amount": NUMBER, "lines": {"type": "array"}},
                "services": [{"parallel": [["approve"], ["reserve-stock"]]}],
                "outputs": {"approval": STRING, "reservation": STRING},
            },
        },
    )
    event_id = send(wired, "approved", {"amount": 5, "lines": []})

    # When the step function runs it: the sync branch runs, then the callback step is
    # dispatched and the execution ends
    before = utc_now()
    assert run(wired, event_id) == step_answer("SUSPEND")
    assert [key.rsplit(":", 1)[1] for key in shop.keys] == ["0.1.0", "0.0.0"]
    [url] = shop.callback_urls.values()

    # Then the event waits for that step until its timeout, with the wait's timer set then
    event = wired.store.get_event(event_id)
    assert event.status is EventStatus.WAITING
    assert event.steps[0].steps[0].status is StepStatus.WAITING
    assert event.waiting is not None and event.waiting.kind == "callback"
    deadline = event.waiting.at
    assert before + timedelta(seconds=60) <= deadline <= utc_now() + timedelta(seconds=60)
    [(name, at, woke)] = waits.timers.sets
    assert (name, at) == (f"{event_id}-t1", deadline)
    assert woke["wake"] == {"kind": "callback", "at": deadline.isoformat()}
    assert waits.executions.names == [event_id]  # the event's first, the API's

    # When the service calls back
    callbacks.complete(wired.deps, _token(url), {"approval": "granted"})

    # Then the wait is over, once: the next execution is started and the timer cancelled
    assert waits.executions.names == [event_id, f"{event_id}-s1"]
    assert waits.timers.cancels == [f"{event_id}-t1"]
    # And that execution joins the branches
    _, resumed = waits.executions.starts[-1]
    answer = worker.advance(wired.deps, event_id, lambda: 600_000, "next", resumed["plan"])
    assert answer["status"] == "SUCCEEDED"
    event = wired.store.get_event(event_id)
    assert event.outputs == {"approval": "granted", "reservation": "r-1"}
    # And the token is spent
    with pytest.raises(Conflict):
        callbacks.complete(wired.deps, _token(url), {"approval": "again"})


def test_a_map_of_callbacks_waits_for_the_last_of_them(
    wired: Wired, shop: Shop, waits: Waits
) -> None:
    # Given a map calling a callback service for each of three lines
    register(
        wired,
        {
            "name": "approvals",
            "spec": {
                "inputs": {"amount": NUMBER, "lines": {"type": "array"}},
                "services": [
                    {"map": "lines", "as": "line", "steps": ["approve"], "collect": "approvals"}
                ],
                "outputs": {"approvals": {"type": "array"}},
            },
        },
    )
    event_id = send(wired, "approvals", {"amount": 5, "lines": lines(3)})

    # When the step function runs it, one Run hands all three over and ends its execution
    assert run(wired, event_id) == step_answer("SUSPEND")
    assert sorted(shop.callback_urls) == [f"{event_id}:0.0:{n}" for n in range(3)]
    assert len({_token(url) for url in shop.callback_urls.values()}) == 3
    assert [name for name, _, _ in waits.timers.sets] == [f"{event_id}-t1"]

    # Then only the last answer starts the next execution, and cancels the one timer
    for number in (2, 0, 1):
        url = shop.callback_urls[f"{event_id}:0.0:{number}"]
        callbacks.complete(wired.deps, _token(url), {"approval": f"yes-{number}"})
        last = number == 1
        assert waits.executions.names[1:] == ([f"{event_id}-s1"] if last else [])
        assert waits.timers.cancels == ([f"{event_id}-t1"] if last else [])
        status = wired.store.get_event(event_id).status
        assert status is (EventStatus.RUNNING if last else EventStatus.WAITING)
    assert run(wired, event_id)["status"] == "SUCCEEDED"
    outputs = wired.store.get_event(event_id).outputs
    assert outputs == {"approvals": [{"approval": f"yes-{n}"} for n in range(3)]}


def test_a_group_callback_that_times_out_fails_its_step(
    wired: Wired, shop: Shop, waits: Waits
) -> None:
    # Given a callback in a parallel branch, dispatched
    register(
        wired,
        {
            "name": "approved",
            "spec": {
                "inputs": {"amount": NUMBER, "lines": {"type": "array"}},
                "services": [{"parallel": [["approve"], ["reserve-stock"]]}],
            },
        },
    )
    event_id = send(wired, "approved", {"amount": 5, "lines": []})
    assert run(wired, event_id) == step_answer("SUSPEND")

    # When the wait's timer fires, a minute later
    later = replace(wired.deps, clock=lambda: utc_now() + timedelta(seconds=61))
    [(name, _, woke)] = waits.timers.sets
    answer = worker.advance(
        later, event_id, lambda: 600_000, "timer", woke["plan"], wake=woke["wake"]
    )

    # Then the step failed with CallbackTimeout, and the same Run failed the event with it
    # (on_error: fail)
    assert answer["status"] == "FAILED"
    event = wired.store.get_event(event_id)
    assert (event.status, event.waiting) == (EventStatus.FAILED, None)
    approve = event.steps[0].steps[0]
    assert (approve.status, approve.error.type) == (StepStatus.FAILED, "CallbackTimeout")  # type: ignore[union-attr]
    # And its late answer is refused, starting nothing
    with pytest.raises(NotFound):
        [url] = shop.callback_urls.values()
        callbacks.complete(wired.deps, _token(url), {"approval": "late"})
    assert waits.executions.names == [event_id]


def test_a_step_of_a_group_waits_out_its_backoff_in_the_state_machine(
    wired: Wired, shop: Shop
) -> None:
    # Given a branch whose service answers 503 once, with a 5 s retry interval
    attempts: list[int] = []

    def flaky(body: dict[str, Any], _: Shop) -> Reply:
        attempts.append(1)
        return json_reply(503, {}) if len(attempts) == 1 else json_reply(200, {"stock": "ok"})

    ANSWERS["stock-check"] = flaky
    service = shop.service("stock-check", {}, {"stock": STRING}).model_copy(
        update={"retry": RetryPolicy(max_attempts=2, interval_seconds=5)}
    )
    registry.save_service(wired.deps, service, create_only=True)
    register(
        wired,
        {
            "name": "stocked",
            "spec": {
                "inputs": {"lines": {"type": "array"}},
                "services": [{"parallel": [["stock-check"], ["reserve-stock"]]}],
            },
        },
    )
    event_id = send(wired, "stocked", {"lines": []})
    try:
        # When the step function runs it
        answer = run(wired, event_id)

        # Then the other branch ended, and the invocation hands back to wait 5 s
        assert (answer["status"], answer["wait_seconds"]) == ("BACKOFF", 5)
        retrying = wired.store.get_event(event_id).steps[0].steps[0]
        assert (retrying.status, retrying.retry_at is not None) == (StepStatus.RETRYING, True)

        # And once the wait is over, the next run retries and joins
        later = replace(wired.deps, clock=lambda: utc_now() + timedelta(seconds=6))
        assert worker.advance(later, event_id, lambda: 600_000, "next")["status"] == "SUCCEEDED"
        assert len(attempts) == 2
    finally:
        del ANSWERS["stock-check"]


def test_a_map_of_a_thousand_elements_fits_in_the_event(wired: Wired, shop: Shop) -> None:
    # Given a map over the most elements a map takes, forty at a time
    register(wired, _map_only(None, concurrency=40))
    event_id = send(wired, "prices", {"lines": lines(1000)})

    # When it runs
    assert run(wired, event_id)["status"] == "SUCCEEDED"

    # Then every iteration is recorded (the ones that succeeded at once without their input
    # and history) and collected in order
    event = wired.store.get_event(event_id)
    iterations = event.steps[0].steps
    assert [s.iteration for s in iterations] == list(range(1000))
    assert all(s.input is None and s.history == [] for s in iterations)
    assert event.outputs is not None
    assert [line["price"] for line in event.outputs["enriched"]] == [n * 2.5 for n in range(1000)]


def test_a_map_over_more_than_a_thousand_elements_fails_the_step(wired: Wired, shop: Shop) -> None:
    register(wired, _map_only(None))
    event_id = send(wired, "prices", {"lines": lines(1001)})

    assert run(wired, event_id)["status"] == "FAILED"

    event = wired.store.get_event(event_id)
    assert event.error is not None and event.error.type == "MapTooLarge"
    assert shop.keys == []


def test_a_map_cancelled_while_it_runs_starts_nothing_more(wired: Wired, shop: Shop) -> None:
    # Given a map of ten lines, two at a time, cancelled while its fifth call is made
    register(wired, _map_only(None, concurrency=2))
    event_id = send(wired, "prices", {"lines": lines(10)})

    def cancel_at_the_fifth(number: int) -> None:
        if number == 5:
            events.cancel_event(wired.deps, event_id)

    shop.on_call = cancel_at_the_fifth

    # When it runs
    answer = run(wired, event_id)

    # Then the invocation noticed at its next checkpoint (at most a batch of two calls
    # later) and started nothing more: the event is CANCELLED, and the steps under way were
    # cancelled with it
    assert answer["status"] == "CANCELLED"
    assert len(shop.keys) <= 5 + 2
    event = wired.store.get_event(event_id)
    assert event.status is EventStatus.CANCELLED
    assert event.steps[0].status is StepStatus.CANCELLED
    assert StepStatus.RUNNING not in {s.status for s in event.steps[0].steps}


def test_a_failed_group_is_retried_from_its_start(wired: Wired, shop: Shop) -> None:
    # Given an event whose map failed on a line the service did not know
    register(wired, _map_only(None))
    shop.failing = {"sku-1"}
    event_id = send(wired, "prices", {"lines": lines(3)})
    assert run(wired, event_id)["status"] == "FAILED"

    # When the service knows it now and the event is retried
    shop.failing = set()
    events.redrive_event(wired.deps, event_id)
    assert run(wired, event_id, "retry")["status"] == "SUCCEEDED"

    # Then the map ran again and collected every line; the failed run is kept
    event = wired.store.get_event(event_id)
    assert event.outputs == {"enriched": [{"price": 0.0}, {"price": 2.5}, {"price": 5.0}]}
    assert [run.steps[0].kind for run in event.runs] == ["map"]


def test_the_steps_of_one_branch_are_checkpointed_one_by_one(
    wired: Wired, shop: Shop, dynamodb: Any
) -> None:
    # Given a group of one branch of two steps (one call in flight at a time)
    register(
        wired,
        {
            "name": "charged",
            "spec": {
                "inputs": {"amount": NUMBER},
                "services": [{"parallel": [["charge-card", "receipt"]]}],
                "outputs": {"receipt": STRING},
            },
        },
    )
    event_id = send(wired, "charged", {"amount": 3})

    # When it runs
    with DynamoCalls(dynamodb) as recorded:
        assert run(wired, event_id)["status"] == "SUCCEEDED"

    # Then it wrote the claim, the first step's end before the second call, and the end
    assert recorded.operations.count("UpdateItem") == 3
