"""The state-loop worker behind the state machine's Run state.

One invocation runs consecutive steps, checkpointing each with one conditional write,
and hands back to the state machine only to wait (a retry backoff) or to finish. The
answer drives the Route choice: CONTINUE (run again), BACKOFF (wait `wait_seconds`),
SUCCEEDED or FAILED.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from machinery_core import engine
from machinery_core.dependencies import Dependencies
from machinery_core.errors import ItemTooLarge
from machinery_core.models import ErrorInfo, Event
from machinery_core.observability import logger, metrics

# Left for the checkpoint write and the answer after the last call of an invocation.
SAFETY_SECONDS = 3.0


def _answer(status: str, wait_seconds: float = 0) -> dict[str, Any]:
    return {"status": status, "wait_seconds": math.ceil(wait_seconds)}


def advance(deps: Dependencies, event_id: str, remaining_ms: Callable[[], int]) -> dict[str, Any]:
    event, plan = deps.store.load_run(event_id)
    if event.status.terminal:
        return _answer(event.status.value)
    started = engine.begin(event, deps.clock())
    if started is not event:
        event = deps.store.save_event(started)

    calls = 0
    while True:
        planned = plan.steps[event.step_index]
        available = remaining_ms() / 1000 - SAFETY_SECONDS
        if calls and available < planned.service.timeout_seconds:
            # A fresh invocation gets the full timeout; hand back rather than cut the call short.
            return _answer("CONTINUE")
        payload, refusal = engine.step_input(event, plan)
        if refusal is not None:
            event = deps.store.save_event(
                engine.refuse_input(event, plan, payload, refusal, deps.clock())
            )
            break
        outcome = deps.invoker.call(
            planned.service,
            payload,
            event_id=event_id,
            step_index=event.step_index,
            timeout=min(planned.service.timeout_seconds, max(available, 1.0)),
        )
        calls += 1
        transition = engine.record_call(event, plan, payload, outcome)
        try:
            event = deps.store.save_event(transition.event)
        except ItemTooLarge as error:
            event = _fail_oversized(deps, event, planned.service.name, error)
            break
        logger.info(
            "step recorded",
            event_id=event_id,
            workflow_id=event.workflow_id,
            step=len(event.steps) - 1,
            service=planned.service.name,
            step_status=event.steps[-1].status.value,
            duration_ms=outcome.duration_ms,
        )
        if transition.wait_seconds > 0:
            return _answer("BACKOFF", transition.wait_seconds)
        if event.status.terminal:
            break

    metrics.add_metric(name=f"Events{event.status.value.title()}", unit="Count", value=1)
    logger.info(
        "event ended", event_id=event_id, workflow_id=event.workflow_id, status=event.status.value
    )
    return _answer(event.status.value)


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
    event, _ = deps.store.load_run(event_id)
    info = ErrorInfo(
        type=str(error.get("Error", "States.Runtime")),
        message=str(error.get("Cause", "the state machine gave up on this event"))[:4096],
    )
    if not event.status.terminal:
        event = deps.store.save_event(engine.abort(event, info, deps.clock()))
        logger.error(
            "event aborted", event_id=event_id, workflow_id=event.workflow_id, error=info.type
        )
    return _answer(event.status.value)
