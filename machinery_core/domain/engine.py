"""The state transitions of an event, as pure functions: (event, what happened) -> event.

Nothing here does I/O or reads the clock; the worker supplies both, which keeps every
transition testable on its own and lets the store persist each result with one
conditional write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from machinery_core.domain import mapping
from machinery_core.domain.models import (
    Attempt,
    ErrorInfo,
    Event,
    EventStatus,
    Notification,
    Plan,
    RunRecord,
    Service,
    StepRecord,
    StepStatus,
    milliseconds,
)
from machinery_core.domain.validation import Detail, check_data


@dataclass(frozen=True)
class CallOutcome:
    """What one HTTP call to a service gave."""

    started_at: datetime
    ended_at: datetime
    status_code: int | None = None
    body: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    retry_after: float | None = None  # what the service asked for, in seconds

    @property
    def duration_ms(self) -> float:
        return milliseconds(self.started_at, self.ended_at)

    def as_attempt(self, number: int, error: ErrorInfo | None) -> Attempt:
        return Attempt(
            attempt=number,
            started_at=self.started_at,
            ended_at=self.ended_at,
            duration_ms=self.duration_ms,
            status_code=self.status_code,
            error=error,
        )


@dataclass(frozen=True)
class Transition:
    event: Event
    wait_seconds: float = 0.0  # > 0: retry the current step after this long


def claim(event: Event, owner: str | None, until: datetime | None) -> Event:
    """Who may advance the event, until when (None, None: nobody holds it)."""
    return event.model_copy(update={"claimed_by": owner, "claimed_until": until})


def begin(event: Event, now: datetime) -> Event:
    if event.status is not EventStatus.PENDING:
        return event
    return event.model_copy(update={"status": EventStatus.RUNNING, "updated_at": now})


def current_service(event: Event, plan: Plan) -> Service:
    """The service the current step runs: its own, or its fallback once that took over."""
    planned = plan.steps[event.step_index]
    step = event.current_step
    if step is not None and step.fallback_from is not None and planned.fallback is not None:
        return planned.fallback
    return planned.service


def step_input(event: Event, plan: Plan) -> tuple[dict[str, Any], ErrorInfo | None]:
    """The payload for the next step, or why it cannot be sent."""
    planned = plan.steps[event.step_index]
    service = current_service(event, plan)
    payload = mapping.build_input(service, planned.operation, event.context)
    problems = check_data(service.spec.inputs, payload, "input")
    if problems:
        summary = _summary(problems)
        return payload, ErrorInfo(
            type="InputInvalid", message=f"step input breaks the spec: {summary}"
        )
    return payload, None


def _summary(problems: list[Detail]) -> str:
    """Validation problems in one line, for an ErrorInfo message."""
    return "; ".join(f"{problem['path']}: {problem['message']}" for problem in problems)


def _current_step(event: Event, plan: Plan, payload: dict[str, Any], now: datetime) -> StepRecord:
    if event.current_step is not None:
        return event.current_step
    return StepRecord(
        index=event.step_index,
        service=plan.steps[event.step_index].service.name,
        status=StepStatus.RUNNING,
        started_at=now,
        input=payload,
    )


def mark_under_way(event: Event, plan: Plan, now: datetime) -> Event:
    """The current step shown RUNNING with the attempt about to be made.

    Written with the claim that precedes the call (the previous step's checkpoint, or an
    invocation's first write), so that readers see the step under way at no extra write.
    A step that already has a record (a retry, a fallback, a handed-back invocation) keeps
    its `started_at`: a step's duration spans all of its attempts.
    """
    if event.step_index >= len(plan.steps) or event.status.terminal:
        return event
    step = event.current_step or StepRecord(
        index=event.step_index,
        service=current_service(event, plan).name,
        status=StepStatus.RUNNING,
        started_at=now,
    )
    if step.status not in (StepStatus.RUNNING, StepStatus.RETRYING):
        return event
    step = step.model_copy(update={"status": StepStatus.RUNNING, "attempt": step.attempts + 1})
    return event.model_copy(update={"steps": _replace_step(event.steps, step)})


def _replace_step(steps: list[StepRecord], step: StepRecord) -> list[StepRecord]:
    updated = list(steps[: step.index])
    updated.append(step)
    return updated


def _fail(event: Event, steps: list[StepRecord], error: ErrorInfo, now: datetime) -> Event:
    return event.model_copy(
        update={
            "status": EventStatus.FAILED,
            "steps": steps,
            "error": error,
            "updated_at": now,
            "ended_at": now,
        }
    )


def wait_for_callback(event: Event, plan: Plan, payload: dict[str, Any], now: datetime) -> Event:
    """The service has the step's input (or is about to): the event waits for its callback."""
    step = _current_step(event, plan, payload, now)
    step = step.model_copy(
        update={"status": StepStatus.WAITING, "ended_at": None, "attempt": step.attempts + 1}
    )
    return event.model_copy(
        update={
            "status": EventStatus.WAITING,
            "steps": _replace_step(event.steps, step),
            "updated_at": now,
        }
    )


def refuse_input(
    event: Event, plan: Plan, payload: dict[str, Any], error: ErrorInfo, now: datetime
) -> Event:
    step = _current_step(event, plan, payload, now).model_copy(
        update={
            "status": StepStatus.FAILED,
            "ended_at": now,
            "duration_ms": 0.0,
            "error": error,
            "attempt": None,
        }
    )
    return _fail(event, _replace_step(event.steps, step), error, now)


def record_call(
    event: Event, plan: Plan, payload: dict[str, Any], outcome: CallOutcome, jitter: float = 1.0
) -> Transition:
    """Fold one service call into the event: next step, retry after a wait, or an end.

    `jitter` (in [0, 1], drawn by the caller) scales the retry delay of a policy with
    full jitter; a Retry-After the service asked for is honoured whatever the draw.
    """
    planned = plan.steps[event.step_index]
    service = current_service(event, plan)
    step = _current_step(event, plan, payload, outcome.started_at)
    attempt_number = step.attempts + 1
    error = outcome.error
    if error is None and outcome.body is not None:
        problems = check_data(service.spec.outputs, outcome.body, "output")
        if problems:
            summary = _summary(problems)
            error = ErrorInfo(
                type="OutputInvalid",
                message=f"the service's answer breaks its spec: {summary}",
                status_code=outcome.status_code,
            )
    attempt = outcome.as_attempt(attempt_number, error)
    now = outcome.ended_at
    step_update: dict[str, Any] = {
        "input": payload,
        "attempts": attempt_number,
        "attempt": None,
        "history": [*step.history, attempt],
        "ended_at": now,
        "duration_ms": milliseconds(step.started_at, now) if step.started_at else None,
    }

    if error is not None:
        if error.retryable and attempt_number < service.retry.max_attempts:
            delay = service.retry.delay_before(attempt_number + 1, jitter)
            wait = max(delay, outcome.retry_after or 0.0)
            step = step.model_copy(
                update={**step_update, "status": StepStatus.RETRYING, "error": error}
            )
            updated = event.model_copy(
                update={
                    "status": EventStatus.RUNNING,
                    "steps": _replace_step(event.steps, step),
                    "updated_at": now,
                }
            )
            return Transition(updated, wait_seconds=wait)
        step = step.model_copy(update={**step_update, "status": StepStatus.FAILED, "error": error})
        return Transition(_on_error(event, plan, step, error, now))

    body = outcome.body or {}
    step = step.model_copy(
        update={**step_update, "status": StepStatus.SUCCEEDED, "output": body, "error": None}
    )
    context = mapping.merge_outputs(service, planned.operation, body, event.context)
    return Transition(
        _next_step(event, plan, now, steps=_replace_step(event.steps, step), context=context)
    )


def _next_step(event: Event, plan: Plan, now: datetime, **update: Any) -> Event:
    """On to the step after the current one, or to the workflow's end after the last."""
    going_on = event.model_copy(
        update={
            "status": EventStatus.RUNNING,
            "step_index": event.step_index + 1,
            "updated_at": now,
            **update,
        }
    )
    if going_on.step_index < len(plan.steps):
        return going_on
    return _finish(going_on, plan, now)


def _on_error(event: Event, plan: Plan, step: StepRecord, error: ErrorInfo, now: datetime) -> Event:
    """A step failed for good: the workflow's on_error policy for it says what comes next."""
    planned = plan.steps[event.step_index]
    if planned.on_error == "fallback" and planned.fallback and step.fallback_from is None:
        # The fallback takes the step over, with its own attempts and retry policy; the
        # history keeps the failed service's attempts before its own.
        taken = step.model_copy(
            update={
                "service": planned.fallback.name,
                "status": StepStatus.RUNNING,
                "attempts": 0,
                "ended_at": None,
                "fallback_from": step.service,
            }
        )
        return event.model_copy(
            update={
                "status": EventStatus.RUNNING,
                "steps": _replace_step(event.steps, taken),
                "updated_at": now,
            }
        )
    if planned.on_error == "continue":
        return _next_step(event, plan, now, steps=_replace_step(event.steps, step))
    return _fail(event, _replace_step(event.steps, step), error, now)


def _finish(event: Event, plan: Plan, now: datetime) -> Event:
    outputs = {name: event.context[name] for name in plan.outputs if name in event.context}
    problems = check_data(plan.outputs, outputs, "outputs")
    if problems:
        summary = _summary(problems)
        error = ErrorInfo(
            type="OutputsInvalid", message=f"the workflow outputs break the spec: {summary}"
        )
        return _fail(event, event.steps, error, now)
    return event.model_copy(
        update={
            "status": EventStatus.SUCCEEDED,
            "outputs": outputs,
            "updated_at": now,
            "ended_at": now,
        }
    )


_UNFINISHED = (StepStatus.RUNNING, StepStatus.RETRYING, StepStatus.WAITING)


def _close_step_under_way(
    steps: list[StepRecord], now: datetime, **update: Any
) -> list[StepRecord]:
    """`steps`, the last one ended with `update` if it was still under way."""
    if not steps or steps[-1].status not in _UNFINISHED:
        return list(steps)
    return [*steps[:-1], steps[-1].model_copy(update={**update, "ended_at": now, "attempt": None})]


def abort(event: Event, error: ErrorInfo, now: datetime) -> Event:
    """The state machine gave up on the event (the step function kept failing)."""
    if event.status.terminal:
        return event
    steps = _close_step_under_way(event.steps, now, status=StepStatus.FAILED, error=error)
    return _fail(event, steps, error, now)


def cancel(event: Event, now: datetime) -> Event:
    """Cancelled by request: the step under way is cancelled with the event."""
    steps = _close_step_under_way(event.steps, now, status=StepStatus.CANCELLED)
    return event.model_copy(
        update={
            "status": EventStatus.CANCELLED,
            "steps": steps,
            "updated_at": now,
            "ended_at": now,
        }
    )


def record_late(event: Event, plan: Plan, outcome: CallOutcome) -> Event:
    """An answer that came after the event was cancelled: kept on its step, never applied."""
    step = event.current_step or StepRecord(
        index=event.step_index,
        service=current_service(event, plan).name,
        status=StepStatus.CANCELLED,
        started_at=outcome.started_at,
    )
    late = outcome.as_attempt(
        step.attempts + 1,
        ErrorInfo(
            type="ArrivedAfterCancel",
            message="the answer came after the event was cancelled and was not applied",
            status_code=outcome.status_code,
        ),
    )
    step = step.model_copy(update={"history": [*step.history, late]})
    return event.model_copy(
        update={"steps": _replace_step(event.steps, step), "updated_at": outcome.ended_at}
    )


def redrive(event: Event, now: datetime) -> Event:
    """A FAILED event runs again from its failed step, keeping what the steps before it gave.

    The failed run is kept in `runs` with the steps it did not complete.
    """
    earlier = RunRecord(
        run=event.run,
        status=event.status,
        error=event.error,
        ended_at=event.ended_at,
        steps=event.steps[event.step_index :],
    )
    notification = event.notification
    if notification is not None:
        notification = Notification(url=notification.url)  # the new end is told anew
    return event.model_copy(
        update={
            "status": EventStatus.PENDING,
            "steps": event.steps[: event.step_index],
            "error": None,
            "ended_at": None,
            "updated_at": now,
            "run": event.run + 1,
            "runs": [*event.runs, earlier],
            "notification": notification,
        }
    )
