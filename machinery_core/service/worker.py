"""The state-loop worker behind the state machine's Task states.

One invocation runs consecutive sync steps, checkpointing each with one conditional
write, and hands back to the state machine only to wait or to finish, with an answer of
the Route protocol (routes.py).

The execution input carries the event's plan (see events.execution_input) and the Task
states that need it pass it on, so an invocation reads only the event, once; the stored
plan is read (in the same request) only when the input carries none.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from machinery_core.domain import engine, tokens
from machinery_core.domain.engine import CallOutcome
from machinery_core.domain.errors import (
    ClaimHeld,
    ItemTooLarge,
    MachineryError,
    PayloadStoreUnavailable,
    StaleVersion,
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
    StepRecord,
    StepStatus,
)
from machinery_core.runtime.dependencies import Dependencies
from machinery_core.runtime.observability import logger, metrics
from machinery_core.service import routes

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


def advance(
    deps: Dependencies,
    event_id: str,
    remaining_ms: Callable[[], int],
    invocation_id: str = "local",
    plan_carried: dict[str, Any] | None = None,
) -> dict[str, Any]:
    event, plan = _load(deps, event_id, plan_carried)
    if event.status.terminal:
        return routes.answer_for(event)
    now = deps.clock()
    holder, until = event.claimed_by, event.claimed_until
    if holder not in (None, invocation_id) and until is not None and until > now:
        raise ClaimHeld(f"invocation {holder} is advancing event {event_id!r} until {until}")

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
        if service.mode == "callback":  # this invocation calls nothing more
            return engine.claim(state, None, None)
        claimed = engine.claim(state, invocation_id, now + _seconds(service.timeout_seconds))
        return engine.mark_under_way(claimed, plan, now)

    # The claim's conditional write is what stops a concurrent duplicate here.
    event = deps.store.save_event(held(engine.begin(event, now)))
    calls = 0
    try:
        while not event.status.terminal:
            node = plan.steps[event.step_index]
            if isinstance(node, PlannedGroup):
                ran = _GroupInvocation(deps, event, plan, node, invocation_id, remaining_ms, calls)
                event, answer = ran.run(held)
                calls += ran.calls
                if answer is not None:
                    return answer
                continue
            service = engine.current_service(event, plan)
            if service.mode == "callback":
                # `held` left the event unclaimed: the dispatch is another invocation's work
                return routes.answer("AWAIT", timeout_seconds=service.timeout_seconds)
            available = remaining_ms() / 1000 - SAFETY_SECONDS
            if calls and available < service.timeout_seconds:
                # A fresh invocation gets the full timeout: hand back, not cut the call short.
                deps.store.save_event(engine.claim(event, None, None))
                return routes.answer("CONTINUE")
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
            logger.info(
                "step recorded",
                event_id=event_id,
                workflow_id=event.workflow_id,
                step=index,
                service=service.name,
                step_status=transition.event.steps[index].status.value,
                duration_ms=outcome.duration_ms,
            )
            if transition.wait_seconds > 0:
                return routes.answer_for(event, transition.wait_seconds)
    except PayloadStoreUnavailable:
        _release(deps, event)
        raise

    metrics.add_metric(name=f"Events{event.status.value.title()}", unit="Count", value=1)
    logger.info(
        "event ended", event_id=event_id, workflow_id=event.workflow_id, status=event.status.value
    )
    return routes.answer_for(event)


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
        self.to_dispatch: list[Call] = []  # callback calls: the AwaitCallback task makes them

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
        out, or None when it waits for none: the AwaitCallback task's timeout."""
        deadlines = [
            now + timedelta(seconds=call.service.timeout_seconds) for call in self.to_dispatch
        ]
        if self.run_state.deadline is not None:
            deadlines.append(self.run_state.deadline)
        if not deadlines:
            return None
        return max((min(deadlines) - now).total_seconds(), 1.0)

    def _log(self, call: Call, outcome: CallOutcome) -> None:
        logger.info(
            "group call ended",
            event_id=self.event.event_id,
            workflow_id=self.event.workflow_id,
            step=call.label,
            service=call.service.name,
            step_status=self.run_state.records[call.path].status.value,
            duration_ms=outcome.duration_ms,
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


def abort(deps: Dependencies, event_id: str, error: dict[str, Any]) -> dict[str, Any]:
    """The state machine caught an error it cannot retry: the event must not stay RUNNING."""
    event = deps.store.get_event(event_id)
    info = ErrorInfo(
        type=str(error.get("Error", "States.Runtime")),
        message=str(error.get("Cause", "the state machine gave up on this event"))[:4096],
    )
    if not event.status.terminal:
        event = deps.store.save_event(engine.abort(event, info, deps.clock()))
        logger.error(
            "event aborted", event_id=event_id, workflow_id=event.workflow_id, error=info.type
        )
    return routes.answer_for(event)


# --- callback services -------------------------------------------------------------------


def dispatch(
    deps: Dependencies,
    event_id: str,
    task_token: str,
    plan_carried: dict[str, Any] | None = None,
) -> None:
    """AwaitCallback's task: hand the step to a callback service, then let the task wait.

    The service gets a single-use callback URL; the state machine's task token stays in
    the table. If the service does not take the work, the task is completed here at once
    with the answer (a retry backoff or the failure) so the state machine moves on.
    """
    event, plan = _load(deps, event_id, plan_carried)
    if event.status.terminal:
        _resume(deps, task_token, routes.answer_for(event))
        return
    group = plan.steps[event.step_index]
    if isinstance(group, PlannedGroup):
        _dispatch_group(deps, event, plan, group, task_token)
        return
    service = engine.current_service(event, plan)
    payload, refusal = engine.step_input(event, plan)
    if refusal is not None:
        event = deps.store.save_event(
            engine.refuse_input(event, plan, payload, refusal, deps.clock())
        )
        _resume(deps, task_token, routes.answer_for(event))
        return

    token = tokens.new_token()
    now = deps.clock()
    attempts = event.current_step.attempts if event.current_step is not None else 0
    callback = Callback(
        token_hash=tokens.hash_token(token),
        event_id=event_id,
        step=event.step_index,
        attempt=attempts + 1,
        task_token=task_token,
        dispatched_at=now,
        expires_at=now + timedelta(seconds=service.timeout_seconds) + CALLBACK_GRACE,
    )
    event = deps.store.open_callback(engine.wait_for_callback(event, plan, payload, now), callback)
    base = (plan.callback_base_url or "").rstrip("/")
    outcome = deps.invoker.call(
        service,
        payload,
        event_id=event_id,
        step=event.step_index,
        timeout=min(service.timeout_seconds, DISPATCH_TIMEOUT_SECONDS),
        extra_headers={"X-Machinery-Callback-Url": f"{base}/callbacks/{token}"},
        expect_body=False,
    )
    logger.info(
        "callback step dispatched",
        event_id=event_id,
        workflow_id=event.workflow_id,
        step=event.step_index,
        service=service.name,
        accepted=outcome.error is None,
    )
    if outcome.error is None:
        return  # the task waits for the callback, or for its timeout
    transition = engine.record_call(event, plan, payload, outcome, random.random())
    try:
        event = deps.store.save_event(transition.event)
    except StaleVersion:
        _resume(deps, task_token, _refuse_late(deps, event, plan, outcome))
        return
    _resume(deps, task_token, routes.answer_for(event, transition.wait_seconds))


# DynamoDB takes 100 actions in a transaction: the event's update and 99 callbacks.
MAX_DISPATCH = 99


def _dispatch_group(
    deps: Dependencies, event: Event, plan: Plan, group: PlannedGroup, task_token: str
) -> None:
    """The group's callback services handed their steps at once, under one task token.

    Each gets its own single-use callback URL; the last callback to answer resumes the
    task (the token is kept on the event, so a later wait of the same group re-arms it
    without calling anyone again). A service that does not take its step has its attempt
    failed here; when then nothing is left waiting, the task resumes at once.
    """
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
                task_token=task_token,
                dispatched_at=now,
                expires_at=now + timedelta(seconds=call.service.timeout_seconds) + CALLBACK_GRACE,
                path=call.path,
            )
        )
        urls[call.path] = f"{base}/callbacks/{token}"
    waiting = engine.record_group(event, run.record(), now, EventStatus.WAITING)
    event = deps.store.open_callback(
        waiting.model_copy(update={"group_task_token": task_token}), *callbacks
    )

    def hand_over(call: Call) -> CallOutcome:
        return deps.invoker.call(
            call.service,
            call.payload,
            event_id=event.event_id,
            step=call.label,
            timeout=min(call.service.timeout_seconds, DISPATCH_TIMEOUT_SECONDS),
            extra_headers={"X-Machinery-Callback-Url": urls[call.path]},
            expect_body=False,
        )

    refused: list[tuple[Call, CallOutcome]] = []
    if calls:
        with ThreadPoolExecutor(max_workers=min(len(calls), MAX_POOL)) as pool:
            for call, outcome in zip(calls, pool.map(hand_over, calls), strict=True):
                if outcome.error is not None:
                    refused.append((call, outcome))
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

    event = _update_group(deps, event.event_id, plan, record_refusals) if refused else event
    if not _waiting_in_group(event):
        _resume(deps, task_token, routes.answer_for(event))


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


def callback_timed_out(
    deps: Dependencies, event_id: str, plan_carried: dict[str, Any] | None = None
) -> dict[str, Any]:
    """AwaitCallback timed out: the waiting step fails, unless its callback just won the race."""
    event, plan = _load(deps, event_id, plan_carried)
    if not event.status.terminal and isinstance(plan.steps[event.step_index], PlannedGroup):
        # The first of the group's callbacks to expire ended the wait: those whose time is
        # up fail, and the Run state carries on (waiting again for the others, if any).
        now = deps.clock() + CLOCK_TOLERANCE
        event = _update_group(deps, event_id, plan, lambda run: bool(run.expire(now)))
        logger.warning("group callback timed out", event_id=event_id, step=event.step_index)
        return routes.answer_for(event)
    step = event.current_step
    if event.status.terminal or step is None or step.status is not StepStatus.WAITING:
        return routes.answer_for(event)
    service = engine.current_service(event, plan)
    outcome = CallOutcome(
        started_at=event.updated_at,
        ended_at=deps.clock(),
        error=ErrorInfo(
            type="CallbackTimeout",
            message=f"no callback within {service.timeout_seconds:g}s",
        ),
    )
    transition = engine.record_call(event, plan, step.input or {}, outcome)
    event = deps.store.save_event(transition.event)
    logger.warning(
        "callback timed out", event_id=event_id, workflow_id=event.workflow_id, step=step.index
    )
    return routes.answer_for(event, transition.wait_seconds)


def _resume(deps: Dependencies, task_token: str, answer: dict[str, Any]) -> None:
    deps.executions.resume(task_token, json.dumps(answer))
