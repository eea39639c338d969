"""The state-loop worker behind the state machine's Task states.

One invocation runs consecutive sync steps, checkpointing each with one conditional
write, and hands back to the state machine only to wait or to finish, with an answer of
the Route protocol (routes.py).

The execution input carries the event's plan (see events.execution_input) and the Task
states that need it pass it on, so an invocation reads only the event, once; the stored
plan is read (in the same request) only when the input carries none.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from machinery_core.adapters.executions import StateMachineType
from machinery_core.contract import (
    EXPRESS_EXECUTION_SECONDS,
    MIN_SEGMENT_SECONDS,
    SEGMENT_MARGIN_SECONDS,
)
from machinery_core.domain import engine, tokens
from machinery_core.domain.engine import CallOutcome
from machinery_core.domain.errors import (
    ClaimHeld,
    ItemTooLarge,
    MachineryError,
    PayloadStoreUnavailable,
    StaleVersion,
    Throttled,
)
from machinery_core.domain.groups import Call, GroupRun
from machinery_core.domain.models import (
    MAX_MAP_CONCURRENCY,
    Callback,
    ErrorInfo,
    Event,
    EventStatus,
    Plan,
    PlannedGroup,
    PlannedNode,
    Service,
    StepRecord,
    StepStatus,
)
from machinery_core.runtime.dependencies import Dependencies
from machinery_core.runtime.observability import event_context, logger
from machinery_core.service import observe, routes
from machinery_core.service.events import execution_input

# Left for the checkpoint write and the answer after the last call of an invocation.
SAFETY_SECONDS = 3.0
# A callback token outlives its step's timeout by this much, so a late caller is told
# 404 by the rules (step no longer waiting) rather than by a vanished record.
CALLBACK_GRACE = timedelta(days=1)


DISPATCH_TIMEOUT_SECONDS = 30.0  # a callback service only has to accept the work
# The task's timeout is a whole number of seconds: a deadline this close has passed.
CLOCK_TOLERANCE = timedelta(seconds=1)
# The most calls one invocation makes at once: a map's largest max_concurrency.
MAX_POOL = MAX_MAP_CONCURRENCY


def _load(deps: Dependencies, event_id: str, carried: dict[str, Any] | None) -> tuple[Event, Plan]:
    """The event and its plan: the one the invocation carries, else the stored one."""
    if carried is None:
        return deps.store.load_with_plan(event_id)
    return deps.store.get_event(event_id), Plan.model_validate(carried)


@dataclass(frozen=True)
class Segment:
    """The execution an invocation runs in, and until when it may keep the event: EXPRESS
    executions end at five minutes (less a margin for what follows the last call); a
    STANDARD one has no limit that a step could reach."""

    ends_at: datetime | None = None

    def left(self, now: datetime) -> float | None:
        return None if self.ends_at is None else (self.ends_at - now).total_seconds()

    def fits(self, now: datetime, seconds: float) -> bool:
        left = self.left(now)
        return left is None or seconds <= left


def segment_of(deps: Dependencies, started_at: str | None) -> Segment:
    """The segment an execution started at `started_at` (its `$$.Execution.StartTime`) is."""
    if deps.executions.kind is not StateMachineType.EXPRESS or not started_at:
        return Segment()
    start = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    return Segment(start + timedelta(seconds=EXPRESS_EXECUTION_SECONDS - SEGMENT_MARGIN_SECONDS))


def advance(
    deps: Dependencies,
    event_id: str,
    remaining_ms: Callable[[], int],
    invocation_id: str = "local",
    plan_carried: dict[str, Any] | None = None,
    *,
    started_at: str | None = None,
    execution: str | None = None,
    wake: dict[str, Any] | None = None,
    after_wait: bool = False,
) -> dict[str, Any]:
    """Do what is due for the event, whatever started this execution: its first, a timer
    (`wake`: a backoff's, or a callback's timeout), the callback route, or a duplicate.
    `after_wait`: this Run follows the execution's own Wait state (a backoff it waited out)."""
    event, plan = _load(deps, event_id, plan_carried)
    with event_context(event_id, event.workflow_id, event.trace.trace_id):
        return _advance(
            deps,
            event,
            plan,
            remaining_ms,
            invocation_id,
            started_at=started_at,
            execution=execution,
            wake=wake,
            after_wait=after_wait,
        )


def _advance(
    deps: Dependencies,
    event: Event,
    plan: Plan,
    remaining_ms: Callable[[], int],
    invocation_id: str,
    *,
    started_at: str | None,
    execution: str | None,
    wake: dict[str, Any] | None,
    after_wait: bool,
) -> dict[str, Any]:
    event_id = event.event_id
    if event.status.terminal:
        return routes.answer_for(event)
    segment = segment_of(deps, started_at)
    if wake is not None and wake.get("kind") == "callback":
        event, wait_seconds = _time_out_callbacks(deps, event, plan, _woken_at(deps, wake))
        if event.status.terminal:
            observe.event_ended(event)
            return routes.answer_for(event)
        if wait_seconds > 0:
            return _pause(deps, event, segment, wait_seconds)
    if _waits_for_callback(event):
        return _suspended(deps, event)  # a duplicate, or too early: its wait goes on
    waiting = event.waiting
    by_its_timer = wake is not None and wake.get("kind") == "backoff"
    if waiting is not None and waiting.kind == "backoff" and not by_its_timer and not after_wait:
        # started by the callback route (a callback reported an error), another wait's
        # timer (a callback's), or a duplicate
        left = (waiting.at - deps.clock()).total_seconds()
        if left > 0:
            return _pause(deps, event, segment, left)
    now = deps.clock()
    holder, until = event.claimed_by, event.claimed_until
    if holder not in (None, invocation_id) and until is not None and until > now:
        raise ClaimHeld(f"invocation {holder} is advancing event {event_id!r} until {until}")

    def left_ms() -> int:
        """What is left of the Lambda invocation and of the execution, the shorter."""
        left = segment.left(deps.clock())
        lambda_ms = remaining_ms()
        return lambda_ms if left is None else min(lambda_ms, int(left * 1000))

    def held(state: Event) -> Event:
        """`state` past any skipped steps, claimed for the next call (each checkpoint renews
        the claim), with that call's step shown under way."""
        state = engine.settle(state, plan, deps.clock())
        if state.step_index >= len(plan.steps) or state.status.terminal:
            return engine.claim(state, None, None)
        now = deps.clock()
        node = plan.steps[state.step_index]
        if isinstance(node, PlannedGroup):
            return engine.claim(state, invocation_id, now + _seconds(_longest_call(node)))
        service = engine.current_service(state, plan)
        if service.mode == "callback":  # dispatched by this invocation, with no claim
            return engine.claim(state, None, None)
        claimed = engine.claim(state, invocation_id, now + _seconds(service.timeout_seconds))
        return engine.mark_under_way(claimed, plan, now)

    # The claim's conditional write is what stops a concurrent duplicate here.
    event = deps.store.save_event(held(engine.begin(event, now, execution)))
    calls = 0
    try:
        while not event.status.terminal:
            node = plan.steps[event.step_index]
            if isinstance(node, PlannedGroup):
                ran = _GroupInvocation(deps, event, plan, node, invocation_id, left_ms, calls)
                event, answer = ran.run(held)
                calls += ran.calls
                if answer is None:
                    continue
                if answer["status"] == "AWAIT":
                    event = _dispatch_group(deps, event, plan, node)
                    if _waiting_in_group(event):
                        return _suspended(deps, event)
                    continue  # every service refused its step: the group goes on
                return _hand_back(deps, event, plan, segment, answer)
            service = engine.current_service(event, plan)
            if service.mode == "callback":
                event, wait_seconds = _dispatch(deps, event, plan, service)
                if event.status is EventStatus.WAITING:
                    return _suspended(deps, event)
                if wait_seconds > 0:
                    return _pause(deps, event, segment, wait_seconds)
                continue
            if not segment.fits(deps.clock(), service.timeout_seconds + SAFETY_SECONDS):
                return _continue_elsewhere(deps, event, plan)  # the call would outlive it
            available = left_ms() / 1000 - SAFETY_SECONDS
            if calls and available < service.timeout_seconds:
                # A fresh invocation gets the full timeout: hand back, not cut the call short.
                event = deps.store.save_event(engine.claim(event, None, None))
                return _hand_back(deps, event, plan, segment, routes.answer("CONTINUE"))
            payload, refusal = engine.step_input(event, plan)
            if refusal is not None:
                event = deps.store.save_event(
                    engine.refuse_input(event, plan, payload, refusal, deps.clock())
                )
                break
            outcome = deps.invoker.call(
                service,
                payload,
                event_id=event_id,
                step=event.step_index,
                timeout=min(service.timeout_seconds, max(available, 1.0)),
                trace=event.trace,
            )
            calls += 1
            index = event.step_index
            transition = engine.record_call(event, plan, payload, outcome, random.random())
            after = transition.event
            after = engine.claim(after, None, None) if transition.wait_seconds > 0 else held(after)
            try:
                event = deps.store.save_event(after)
            except ItemTooLarge as error:
                event = _fail_oversized(deps, event, service.name, error)
                break
            except StaleVersion:
                return _refuse_late(deps, event, plan, outcome)
            record = transition.event.steps[index]
            retry = record.status is StepStatus.RETRYING
            observe.call_ended(event, index, service.name, record.attempts, outcome, retry)
            if transition.wait_seconds > 0:
                return _pause(deps, event, segment, transition.wait_seconds)
    except (PayloadStoreUnavailable, Throttled):
        _release(deps, event)
        raise

    observe.event_ended(event)
    return routes.answer_for(event)


# --- segments: an event waiting outside any execution ------------------------------------


def _waits_for_callback(event: Event) -> bool:
    step = event.current_step
    return step is not None and step.kind == "service" and step.status is StepStatus.WAITING


def _suspended(deps: Dependencies, event: Event) -> dict[str, Any]:
    """End this execution: the event's timer (set again, which changes nothing if it is set)
    or its callback starts the next."""
    if event.waiting is not None:
        _set_timer(deps, event)
    logger.info(
        "event suspended",
        event_id=event.event_id,
        workflow_id=event.workflow_id,
        waiting=event.waiting.kind if event.waiting else None,
        segment=event.segment,
    )
    return routes.answer("SUSPEND")


def _set_timer(deps: Dependencies, event: Event) -> None:
    assert event.waiting is not None
    if deps.timers is None:
        raise RuntimeError("no timers are configured (SCHEDULE_GROUP, SCHEDULER_ROLE_ARN)")
    wake = {"kind": event.waiting.kind, "at": event.waiting.at.isoformat()}
    deps.timers.set(
        event.timer_name, event.waiting.at, execution_input(event.event_id, None, wake=wake)
    )


def _pause(
    deps: Dependencies, event: Event, segment: Segment, wait_seconds: float
) -> dict[str, Any]:
    """Wait out a backoff: in this execution (its Wait state) when it fits, else in a timer."""
    now = deps.clock()
    if segment.fits(now, wait_seconds):
        return routes.answer("BACKOFF", wait_seconds=wait_seconds)
    at = now + timedelta(seconds=wait_seconds)
    waiting = event.waiting
    if waiting is None or waiting.kind != "backoff" or abs((waiting.at - at).total_seconds()) > 1:
        event = deps.store.save_event(engine.suspend(event, "backoff", at))
    return _suspended(deps, event)  # a wait already suspended for keeps its one timer


def _hand_back(
    deps: Dependencies, event: Event, plan: Plan, segment: Segment, answer: dict[str, Any]
) -> dict[str, Any]:
    """A group's or the loop's hand-back: a backoff waits where it fits; a run that must go
    on in a fresh invocation goes on in a fresh execution when this one's time is short."""
    if answer["status"] == "BACKOFF":
        return _pause(deps, event, segment, answer["wait_seconds"])
    if answer["status"] == "CONTINUE" and not segment.fits(deps.clock(), MIN_SEGMENT_SECONDS):
        return _continue_elsewhere(deps, event, plan)
    return answer


def _continue_elsewhere(deps: Dependencies, event: Event, plan: Plan) -> dict[str, Any]:
    """This EXPRESS execution is nearly over: the run goes on in the next, started now, and
    this one ends. (A start that fails fails this invocation, which the state machine retries:
    the retry finds the wait over, and the execution still short, and starts it again.)"""
    now = deps.clock()
    event = deps.store.save_event(engine.suspend(engine.claim(event, None, None), "backoff", now))
    deps.executions.start(
        event.resumed_execution_name,
        execution_input(event.event_id, plan, wake={"kind": "backoff"}),
    )
    logger.info("event goes on in a fresh execution", event_id=event.event_id)
    return routes.answer("SUSPEND")


def _woken_at(deps: Dependencies, wake: dict[str, Any]) -> datetime:
    """When the timer was set to fire, or now if later: a deadline the timer was set for has
    passed, whatever this clock says (the local runtime scales its timers)."""
    now = deps.clock()
    at = wake.get("at")
    if not at:
        return now
    return max(now, datetime.fromisoformat(str(at)))


def _time_out_callbacks(
    deps: Dependencies, event: Event, plan: Plan, now: datetime
) -> tuple[Event, float]:
    """A callback's timer fired: the callbacks whose time is up fail (their steps' policies
    decide what follows: the backoff before a retry, in seconds), unless they answered."""
    if isinstance(plan.steps[event.step_index], PlannedGroup):
        moment = now + CLOCK_TOLERANCE
        # the calls that timed out, with their records' status, of the attempt that was saved
        expired: list[tuple[Call, bool]] = []

        def expire(run: GroupRun) -> bool:
            expired[:] = [
                (run.call_of(path), run.records[path].status is StepStatus.RETRYING)
                for path in run.expire(moment)
            ]
            return bool(expired)

        event = _update_group(deps, event.event_id, plan, expire)
        logger.warning("group callback timed out", event_id=event.event_id, step=event.step_index)
        for call, retry in expired:
            observe.call_failed_later(
                event, call.label, call.service.name, "callback_timeout", retry
            )
        return event, 0
    step, waiting = event.current_step, event.waiting
    if step is None or step.status is not StepStatus.WAITING or waiting is None:
        return event, 0
    if waiting.at > now + CLOCK_TOLERANCE:
        return event, 0  # the timer of an earlier attempt: this one still has time
    service = engine.current_service(event, plan)
    outcome = CallOutcome(
        started_at=waiting.at - timedelta(seconds=service.timeout_seconds),
        ended_at=deps.clock(),
        error=ErrorInfo(
            type="CallbackTimeout",
            message=f"no callback within {service.timeout_seconds:g}s",
        ),
    )
    transition = engine.record_call(event, plan, step.input or {}, outcome)
    event = deps.store.save_event(transition.event)
    logger.warning(
        "callback timed out",
        event_id=event.event_id,
        workflow_id=event.workflow_id,
        step=step.index,
    )
    retry = event.steps[step.index].status is StepStatus.RETRYING
    observe.call_failed_later(event, step.index, service.name, "callback_timeout", retry)
    return event, transition.wait_seconds


def _release(deps: Dependencies, event: Event) -> None:
    """Unclaim the event as last stored, so that the state machine's retry of this failed
    invocation advances it at once instead of waiting out the claim (the step whose outcome
    could not be stored is called again, with the same Idempotency-Key)."""
    try:
        deps.store.save_event(engine.claim(event, None, None))
    except (MachineryError, ClientError):
        logger.warning("the event stays claimed until its claim expires", event_id=event.event_id)


def _longest_call(node: PlannedGroup) -> float:
    return max(
        max(step.service.timeout_seconds, step.fallback.timeout_seconds if step.fallback else 0)
        for step in node.leaves()
    )


def _width(nodes: list[PlannedNode]) -> int:
    """How many calls a list of steps may have in flight at once."""
    widest = 1
    for node in nodes:
        if isinstance(node, PlannedGroup):
            if node.kind == "parallel":
                width = sum(_width(branch) for branch in node.branches)
            elif node.kind == "map":
                width = node.max_concurrency * _width(node.branches[0])
            else:
                width = max(_width(branch) for branch in node.branches)
            widest = max(widest, width)
    return widest


class _GroupInvocation:
    """A top-level group run by one invocation: its ready calls made concurrently on a
    bounded pool, a checkpoint per batch of ended calls (the group's width: a map's
    max_concurrency, a parallel's branches), until the group ends, must wait out a
    backoff, or the invocation's time runs short."""

    def __init__(
        self,
        deps: Dependencies,
        event: Event,
        plan: Plan,
        group: PlannedGroup,
        invocation_id: str,
        remaining_ms: Callable[[], int],
        calls_before: int,
    ) -> None:
        self.deps, self.event, self.plan, self.group = deps, event, plan, group
        self.invocation_id, self.remaining_ms = invocation_id, remaining_ms
        self.calls_before = calls_before
        self.calls = 0
        self.run_state = GroupRun(event.step_index, group, event.context, event.current_step)
        self.longest = _longest_call(group)
        self.to_dispatch: list[Call] = []  # callback calls: _dispatch_group makes them

    def run(self, held: Callable[[Event], Event]) -> tuple[Event, dict[str, Any] | None]:
        """The event after the group, and the answer when the invocation must hand back."""
        batch = width = _width([self.group])
        in_flight: dict[Future[CallOutcome], Call] = {}
        short_of_time = cancelled = False
        since_checkpoint = 0
        with ThreadPoolExecutor(max_workers=min(width, MAX_POOL)) as pool:
            while True:
                now = self.deps.clock()
                ready = self.run_state.ready(now, {call.path for call in in_flight.values()})
                self.to_dispatch = [call for call in ready if call.callback]
                sync = [call for call in ready if not call.callback]
                for call in sync if not (short_of_time or cancelled) else []:
                    available = self.remaining_ms() / 1000 - SAFETY_SECONDS
                    timeout = call.service.timeout_seconds
                    if (self.calls_before or self.calls) and available < timeout:
                        short_of_time = True
                        break
                    until = self.event.claimed_until
                    outlives = until is not None and now + timedelta(seconds=timeout) > until
                    if since_checkpoint >= batch or outlives:
                        # before the next call: the batch ended so far, and a renewed claim
                        since_checkpoint = 0
                        cancelled = not self._checkpoint()
                        if cancelled:
                            break
                    self.run_state.started(call, now)
                    future = pool.submit(
                        self.deps.invoker.call,
                        call.service,
                        call.payload,
                        event_id=self.event.event_id,
                        step=call.label,
                        timeout=min(timeout, max(available, 1.0)),
                        trace=self.event.trace,
                    )
                    in_flight[future] = call
                    self.calls += 1
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    call = in_flight.pop(future)
                    outcome = future.result()
                    self.run_state.finished(call, outcome, random.random())
                    self._log(call, outcome)
                    since_checkpoint += 1
        if cancelled:
            current = self.deps.store.get_event(self.event.event_id)
            return current, routes.answer_for(current)
        return self._end(held, short_of_time)

    def _progress(self) -> Event:
        return engine.record_group(self.event, self.run_state.record(), self.deps.clock())

    def _checkpoint(self) -> bool:
        """Store the group's progress and renew the claim; False if the event was cancelled."""
        now = self.deps.clock()
        claimed = engine.claim(self._progress(), self.invocation_id, now + _seconds(self.longest))
        try:
            self.event = self.deps.store.save_event(claimed)
        except StaleVersion:
            current = self.deps.store.get_event(self.event.event_id)
            if current.status is not EventStatus.CANCELLED:
                raise
            return False
        return True

    def _end(
        self, held: Callable[[Event], Event], short_of_time: bool
    ) -> tuple[Event, dict[str, Any] | None]:
        run = self.run_state
        now = self.deps.clock()
        answer: dict[str, Any] | None = None
        if run.ended:
            after = held(
                engine.finish_group(self.event, self.plan, run.record(), run.produced, now)
            )
        else:
            after = engine.claim(self._progress(), None, None)
            answer = self._hand_back(now, short_of_time)
        try:
            event = self.deps.store.save_event(after)
        except ItemTooLarge as error:
            return _fail_oversized(self.deps, self.event, f"{self.group.kind} group", error), None
        except StaleVersion:
            current = self.deps.store.get_event(self.event.event_id)
            if current.status is not EventStatus.CANCELLED:
                raise
            return current, routes.answer_for(current)
        if run.ended:
            return event, None
        return event, answer

    def _hand_back(self, now: datetime, short_of_time: bool) -> dict[str, Any]:
        """What the state machine does while the group cannot go on in this invocation:
        run again (time ran short), dispatch or wait for its callbacks, or wait out the
        earliest backoff, whichever comes first (callbacks to hand over, at once)."""
        if short_of_time:
            return routes.answer("CONTINUE")
        awaited = self._awaited(now)
        retry_at = self.run_state.retry_at
        backoff = max((retry_at - now).total_seconds(), 1.0) if retry_at is not None else None
        if awaited is not None and (self.to_dispatch or backoff is None or awaited <= backoff):
            return routes.answer("AWAIT", timeout_seconds=awaited)
        if backoff is not None:
            return routes.answer("BACKOFF", wait_seconds=backoff)
        return routes.answer("CONTINUE")

    def _awaited(self, now: datetime) -> float | None:
        """Seconds until the first of the group's callbacks (waiting or to dispatch) times
        out, or None when it waits for none."""
        deadlines = [
            now + timedelta(seconds=call.service.timeout_seconds) for call in self.to_dispatch
        ]
        if self.run_state.deadline is not None:
            deadlines.append(self.run_state.deadline)
        if not deadlines:
            return None
        return max((min(deadlines) - now).total_seconds(), 1.0)

    def _log(self, call: Call, outcome: CallOutcome) -> None:
        record = self.run_state.records[call.path]
        retry = record.status is StepStatus.RETRYING
        observe.call_ended(
            self.event, call.label, call.service.name, record.attempts, outcome, retry
        )


def _seconds(timeout: float) -> timedelta:
    return timedelta(seconds=timeout + SAFETY_SECONDS)


def _refuse_late(
    deps: Dependencies, event: Event, plan: Plan, outcome: CallOutcome
) -> dict[str, Any]:
    """Someone else moved the event on during the call: if it was cancelled, the answer is
    recorded as late and not applied; anything else is a real race, for the state machine's
    retry to sort out."""
    current = deps.store.get_event(event.event_id)
    if current.status is not EventStatus.CANCELLED:
        raise StaleVersion(f"event {event.event_id!r} was advanced concurrently")
    deps.store.save_event(engine.record_late(current, plan, outcome))
    logger.info("late answer refused", event_id=event.event_id, step=event.step_index)
    return routes.answer_for(current)


def _fail_oversized(deps: Dependencies, event: Event, service: str, error: ItemTooLarge) -> Event:
    """The step's result cannot be stored: end the event FAILED rather than retry forever.

    `event` is the last state that was stored; if even it plus the error no longer fits, the
    failure is stored without the running context and the steps' inputs and outputs.
    """
    info = ErrorInfo(
        type="EventTooLarge",
        message=f"step {event.step_index} ({service}) could not be recorded: {error.message}",
    )
    failed = engine.abort(event, info, deps.clock())
    try:
        return deps.store.save_event(failed)
    except ItemTooLarge:
        slim = [step.model_copy(update={"input": None, "output": None}) for step in failed.steps]
        return deps.store.save_event(failed.model_copy(update={"context": {}, "steps": slim}))


def abort(
    deps: Dependencies, event_id: str, error: dict[str, Any], execution: str | None = None
) -> dict[str, Any]:
    """The state machine caught an error it cannot retry: the event must not stay RUNNING.
    Unless it is a retried run's, not yet begun: named for its own execution, it is not the
    failing one's (`execution`), an earlier run's ending late."""
    event = deps.store.get_event(event_id)
    if (
        execution is not None
        and event.status is EventStatus.PENDING
        and event.execution not in (None, execution)
    ):
        return routes.answer_for(event)
    with event_context(event_id, event.workflow_id, event.trace.trace_id):
        return _abort(deps, event, error)


def _abort(deps: Dependencies, event: Event, error: dict[str, Any]) -> dict[str, Any]:
    event_id = event.event_id
    info = ErrorInfo(
        type=str(error.get("Error", "States.Runtime")),
        message=str(error.get("Cause", "the state machine gave up on this event"))[:4096],
    )
    if not event.status.terminal:
        event = deps.store.save_event(engine.abort(event, info, deps.clock()))
        logger.error(
            "event aborted", event_id=event_id, workflow_id=event.workflow_id, error=info.type
        )
        observe.event_ended(event)
    return routes.answer_for(event)


# --- callback services -------------------------------------------------------------------


def _dispatch(
    deps: Dependencies, event: Event, plan: Plan, service: Service
) -> tuple[Event, float]:
    """Hand the step to a callback service with a single-use callback URL, in the write that
    marks it WAITING (until its timeout, when its timer fires). If the service does not take
    the work, the attempt ends as its answer says: the event and the backoff before a retry."""
    payload, refusal = engine.step_input(event, plan)
    if refusal is not None:
        refused = engine.refuse_input(event, plan, payload, refusal, deps.clock())
        return deps.store.save_event(refused), 0
    token = tokens.new_token()
    now = deps.clock()
    attempts = event.current_step.attempts if event.current_step is not None else 0
    timeout = timedelta(seconds=service.timeout_seconds)
    callback = Callback(
        token_hash=tokens.hash_token(token),
        event_id=event.event_id,
        step=event.step_index,
        attempt=attempts + 1,
        dispatched_at=now,
        expires_at=now + timeout + CALLBACK_GRACE,
    )
    waiting = engine.suspend(
        engine.wait_for_callback(event, plan, payload, now), "callback", now + timeout
    )
    event = deps.store.open_callback(waiting, callback)
    base = (plan.callback_base_url or "").rstrip("/")
    outcome = deps.invoker.call(
        service,
        payload,
        event_id=event.event_id,
        step=event.step_index,
        timeout=min(service.timeout_seconds, DISPATCH_TIMEOUT_SECONDS),
        extra_headers={"X-Machinery-Callback-Url": f"{base}/callbacks/{token}"},
        expect_body=False,
        trace=event.trace,
    )
    if outcome.error is None:
        observe.call_ended(event, event.step_index, service.name, attempts + 1, outcome, False)
        return event, 0  # WAITING: its callback, or its timer, resumes it
    transition = engine.record_call(event, plan, payload, outcome, random.random())
    retry = transition.event.steps[event.step_index].status is StepStatus.RETRYING
    observe.call_ended(event, event.step_index, service.name, attempts + 1, outcome, retry)
    try:
        saved = deps.store.save_event(transition.event)
    except StaleVersion:
        _refuse_late(deps, event, plan, outcome)
        return deps.store.get_event(event.event_id), 0
    return saved, transition.wait_seconds


# DynamoDB takes 100 actions in a transaction: the event's update and 99 callbacks.
MAX_DISPATCH = 99


def _dispatch_group(deps: Dependencies, event: Event, plan: Plan, group: PlannedGroup) -> Event:
    """The group's ready callback services handed their steps at once, each with its own
    single-use callback URL, in the write that has the event wait until the first of its
    callbacks times out (its timer). The last callback to answer starts the next execution.
    A service that does not take its step has its attempt failed here."""
    run = GroupRun(event.step_index, group, event.context, event.current_step)
    now = deps.clock()
    calls = [call for call in run.ready(now, set()) if call.callback][:MAX_DISPATCH]
    callbacks, urls = [], {}
    base = (plan.callback_base_url or "").rstrip("/")
    for call in calls:
        run.dispatched(call, now)
        token = tokens.new_token()
        callbacks.append(
            Callback(
                token_hash=tokens.hash_token(token),
                event_id=event.event_id,
                step=event.step_index,
                attempt=run.records[call.path].attempts + 1,
                dispatched_at=now,
                expires_at=now + timedelta(seconds=call.service.timeout_seconds) + CALLBACK_GRACE,
                path=call.path,
            )
        )
        urls[call.path] = f"{base}/callbacks/{token}"
    deadlines = [run.records[path].deadline for path in run.waiting()]
    first = min((d for d in deadlines if d is not None), default=now)
    waiting = engine.record_group(event, run.record(), now, EventStatus.WAITING)
    event = deps.store.open_callback(engine.suspend(waiting, "callback", first), *callbacks)

    def hand_over(call: Call) -> CallOutcome:
        return deps.invoker.call(
            call.service,
            call.payload,
            event_id=event.event_id,
            step=call.label,
            timeout=min(call.service.timeout_seconds, DISPATCH_TIMEOUT_SECONDS),
            extra_headers={"X-Machinery-Callback-Url": urls[call.path]},
            expect_body=False,
            trace=event.trace,
        )

    refused: list[tuple[Call, CallOutcome]] = []
    if calls:
        with ThreadPoolExecutor(max_workers=min(len(calls), MAX_POOL)) as pool:
            for call, outcome in zip(calls, pool.map(hand_over, calls), strict=True):
                attempt = run.records[call.path].attempts + 1  # the dispatch's own
                if outcome.error is not None:
                    refused.append((call, outcome))
                # a refused dispatch's retry is decided with the rest of the group
                observe.call_ended(event, call.label, call.service.name, attempt, outcome, False)
    logger.info(
        "group callbacks dispatched",
        event_id=event.event_id,
        workflow_id=event.workflow_id,
        step=event.step_index,
        dispatched=len(calls),
        refused=len(refused),
    )

    def record_refusals(run: GroupRun) -> bool:
        for call, outcome in refused:
            if run.records[call.path].status is StepStatus.WAITING:
                run.finished(call, outcome, random.random())
        return True

    if not refused:
        return event
    event = _update_group(deps, event.event_id, plan, record_refusals)
    if _waiting_in_group(event):
        return event
    return deps.store.save_event(event.model_copy(update={"waiting": None}))


def _waiting_in_group(event: Event) -> bool:
    step = event.current_step

    def waits(record: StepRecord) -> bool:
        return record.status is StepStatus.WAITING or any(waits(s) for s in record.steps)

    return step is not None and step.kind != "service" and waits(step)


# How often a group's update is tried again when a concurrent callback moved the event on.
GROUP_RACES = 5


def _update_group(
    deps: Dependencies, event_id: str, plan: Plan, change: Callable[[GroupRun], bool]
) -> Event:
    """Apply `change` to the event's current group and save it, reading it anew when a
    concurrent write (another callback of the group) got there first."""
    for _ in range(GROUP_RACES):
        event = deps.store.get_event(event_id)
        group = plan.steps[event.step_index] if event.step_index < len(plan.steps) else None
        if event.status.terminal or not isinstance(group, PlannedGroup):
            return event
        run = GroupRun(event.step_index, group, event.context, event.current_step)
        if not change(run):
            return event
        status = EventStatus.WAITING if run.waiting() else EventStatus.RUNNING
        try:
            return deps.store.save_event(
                engine.record_group(event, run.record(), deps.clock(), status)
            )
        except StaleVersion:
            continue
    raise StaleVersion(f"event {event_id!r} kept changing under a group update")
