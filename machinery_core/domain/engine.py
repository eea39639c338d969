"""The state transitions of an event, as pure functions: (event, what happened) -> event.

Nothing here does I/O or reads the clock; the worker supplies both, which keeps every
transition testable on its own and lets the store persist each result with one
conditional write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from machinery_core.domain import mapping
from machinery_core.domain.models import (
    Attempt,
    ErrorInfo,
    Event,
    EventStatus,
    Notification,
    Plan,
    PlannedGroup,
    PlannedStep,
    RunRecord,
    Service,
    StepRecord,
    StepStatus,
    Waiting,
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


def begin(event: Event, now: datetime, execution: str | None = None) -> Event:
    """The event as an execution takes it up: RUNNING, no longer waiting for a timer, and
    (when the state machine named it) advanced by `execution`."""
    update: dict[str, Any] = {}
    if event.waiting is not None:
        update["waiting"] = None
    if execution is not None and execution != event.execution:
        update["execution"] = execution
    if event.status is EventStatus.PENDING:
        update |= {"status": EventStatus.RUNNING, "updated_at": now}
    return event.model_copy(update=update) if update else event


def suspend(event: Event, kind: Literal["callback", "backoff"], at: datetime) -> Event:
    """The event waits outside any execution: this one ends, a timer or a callback starts
    the next (a segment more)."""
    return event.model_copy(
        update={"segment": event.segment + 1, "waiting": Waiting(kind=kind, at=at)}
    )


def planned_step(event: Event, plan: Plan) -> PlannedStep:
    """The current top-level entry, which the caller knows is a step, not a group."""
    planned = plan.steps[event.step_index]
    assert isinstance(planned, PlannedStep), "a group is run by the group runner"
    return planned


def serving(planned: PlannedStep, step: StepRecord | None) -> Service:
    """The service a step runs: its own, or its fallback once that took over."""
    if step is not None and step.fallback_from is not None and planned.fallback is not None:
        return planned.fallback
    return planned.service


def current_service(event: Event, plan: Plan) -> Service:
    return serving(planned_step(event, plan), event.current_step)


def input_for(
    service: Service, planned: PlannedStep, context: dict[str, Any]
) -> tuple[dict[str, Any], ErrorInfo | None]:
    """The payload a step sends from `context`, or why it cannot be sent."""
    payload = mapping.build_input(service, planned.operation, context)
    problems = check_data(service.spec.inputs, payload, "input")
    if problems:
        summary = _summary(problems)
        return payload, ErrorInfo(
            type="InputInvalid", message=f"step input breaks the spec: {summary}"
        )
    return payload, None


def step_input(event: Event, plan: Plan) -> tuple[dict[str, Any], ErrorInfo | None]:
    """The payload for the next step, or why it cannot be sent."""
    return input_for(current_service(event, plan), planned_step(event, plan), event.context)


def settle(event: Event, plan: Plan, now: datetime) -> Event:
    """Past the top-level steps whose `when` does not hold: each is recorded SKIPPED.

    Applied before each step is claimed, so a skip costs no write of its own.
    """
    while not event.status.terminal and event.step_index < len(plan.steps):
        planned = plan.steps[event.step_index]
        if not isinstance(planned, PlannedStep) or planned.when is None:
            return event
        if event.current_step is not None or mapping.holds(planned.when, event.context):
            return event
        skipped = StepRecord(
            index=event.step_index,
            service=planned.service.name,
            service_version=planned.service_version,
            id=planned.id,
            status=StepStatus.SKIPPED,
            started_at=now,
            ended_at=now,
            duration_ms=0.0,
        )
        event = _next_step(event, plan, now, steps=_replace_step(event.steps, skipped))
    return event


def _summary(problems: list[Detail]) -> str:
    """Validation problems in one line, for an ErrorInfo message."""
    return "; ".join(f"{problem['path']}: {problem['message']}" for problem in problems)


def _current_step(event: Event, plan: Plan, payload: dict[str, Any], now: datetime) -> StepRecord:
    if event.current_step is not None:
        return event.current_step
    planned = planned_step(event, plan)
    return StepRecord(
        index=event.step_index,
        service=planned.service.name,
        service_version=planned.service_version,
        id=planned.id,
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
    if (
        event.step_index >= len(plan.steps)
        or event.status.terminal
        or isinstance(plan.steps[event.step_index], PlannedGroup)
    ):
        return event
    planned = planned_step(event, plan)
    step = event.current_step or StepRecord(
        index=event.step_index,
        service=planned.service.name,
        service_version=planned.service_version,
        id=planned.id,
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


def attempt_ended(
    step: StepRecord,
    planned: PlannedStep,
    payload: dict[str, Any],
    outcome: CallOutcome,
    jitter: float = 1.0,
) -> tuple[StepRecord, float]:
    """A step's record once an attempt ended, and the wait before the next one (> 0: RETRYING).

    The record ends SUCCEEDED, RETRYING, FAILED, or RUNNING again when the step's
    fallback takes it over (with its own attempts and retry policy; the history keeps the
    failed service's attempts before its own). `jitter` (in [0, 1], drawn by the caller)
    scales the retry delay of a policy with full jitter; a Retry-After the service asked
    for is honoured whatever the draw.
    """
    service = serving(planned, step)
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
    now = outcome.ended_at
    ended = step.model_copy(
        update={
            "input": payload,
            "attempts": attempt_number,
            "attempt": None,
            "history": [*step.history, outcome.as_attempt(attempt_number, error)],
            "ended_at": now,
            "duration_ms": milliseconds(step.started_at, now) if step.started_at else None,
            "retry_at": None,
        }
    )
    if error is None:
        body = outcome.body or {}
        return ended.model_copy(
            update={"status": StepStatus.SUCCEEDED, "output": body, "error": None}
        ), 0.0
    if error.retryable and attempt_number < service.retry.max_attempts:
        delay = service.retry.delay_before(attempt_number + 1, jitter)
        wait = max(delay, outcome.retry_after or 0.0)
        return ended.model_copy(update={"status": StepStatus.RETRYING, "error": error}), wait
    failed = ended.model_copy(update={"status": StepStatus.FAILED, "error": error})
    if planned.on_error == "fallback" and planned.fallback and step.fallback_from is None:
        taken = failed.model_copy(
            update={
                "service": planned.fallback.name,
                "status": StepStatus.RUNNING,
                "attempts": 0,
                "ended_at": None,
                "fallback_from": step.service,
                "service_version": planned.fallback_version,
            }
        )
        return taken, 0.0
    return failed, 0.0


def record_call(
    event: Event, plan: Plan, payload: dict[str, Any], outcome: CallOutcome, jitter: float = 1.0
) -> Transition:
    """Fold one service call into the event: next step, retry after a wait, or an end. A
    call's outcome (a callback's too, or its timeout) ends whatever the event waited for."""
    event = event.model_copy(update={"waiting": None}) if event.waiting is not None else event
    planned = planned_step(event, plan)
    before = _current_step(event, plan, payload, outcome.started_at)
    step, wait = attempt_ended(before, planned, payload, outcome, jitter)
    now = outcome.ended_at
    steps = _replace_step(event.steps, step)
    if step.status is StepStatus.SUCCEEDED:
        service = serving(planned, step)
        context = mapping.merge_outputs(
            service, planned.operation, step.output or {}, event.context
        )
        return Transition(_next_step(event, plan, now, steps=steps, context=context))
    if step.status is StepStatus.FAILED:
        assert step.error is not None
        return Transition(_on_error(event, plan, planned.on_error, steps, step.error, now))
    update = {"status": EventStatus.RUNNING, "steps": steps, "updated_at": now}
    return Transition(event.model_copy(update=update), wait_seconds=wait)


def record_group(
    event: Event, record: StepRecord, now: datetime, status: EventStatus = EventStatus.RUNNING
) -> Event:
    """A top-level group's progress, as a checkpoint stores it (WAITING: for its callbacks)."""
    steps = _replace_step(event.steps, record)
    return event.model_copy(update={"steps": steps, "updated_at": now, "status": status})


def finish_group(
    event: Event, plan: Plan, record: StepRecord, produced: dict[str, Any], now: datetime
) -> Event:
    """A top-level group ended: its fields join the context, or its failure is handled."""
    group = plan.steps[event.step_index]
    assert isinstance(group, PlannedGroup)
    steps = _replace_step(event.steps, record)
    if record.status is StepStatus.FAILED:
        assert record.error is not None
        policy = "fail" if group.kind == "map" else group.on_error  # a map's is per iteration
        return _on_error(event, plan, policy, steps, record.error, now)
    return _next_step(event, plan, now, steps=steps, context={**event.context, **produced})


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


def _on_error(
    event: Event,
    plan: Plan,
    policy: str,
    steps: list[StepRecord],
    error: ErrorInfo,
    now: datetime,
) -> Event:
    """A step failed for good: the workflow's on_error policy for it says what comes next."""
    if policy == "continue":
        return _next_step(event, plan, now, steps=steps)
    return _fail(event, steps, error, now)


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
    """`steps`, the last one ended with `update` if it was still under way (and in a group,
    each of its steps still under way)."""
    if not steps or steps[-1].status not in _UNFINISHED:
        return list(steps)
    last = steps[-1]
    inner = [
        _close(step, now, update) if step.status in _UNFINISHED else step for step in last.steps
    ]
    closed = last.model_copy(update={**update, "ended_at": now, "attempt": None, "steps": inner})
    return [*steps[:-1], closed]


def _close(step: StepRecord, now: datetime, update: dict[str, Any]) -> StepRecord:
    inner = [_close(s, now, update) if s.status in _UNFINISHED else s for s in step.steps]
    # the group ended (cancelled or aborted): its steps still under way are cancelled
    status = StepStatus.CANCELLED
    return step.model_copy(
        update={
            "status": status,
            "ended_at": now,
            "attempt": None,
            "retry_at": None,
            "steps": inner,
        }
    )


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
    if step.kind != "service":
        return event  # a late answer inside a group: the group's steps were cancelled
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
            "waiting": None,
            "execution": None,
        }
    )


_CATEGORIES = {
    "Timeout": "timeout",
    "ConnectionError": "connection",
    "RequestError": "connection",
    "DnsError": "connection",
    "AddressRefused": "refused",
    "ResponseTooLarge": "invalid_output",
    "InvalidResponse": "invalid_output",
    "OutputInvalid": "invalid_output",
    "InputInvalid": "invalid_input",
    "CallbackTimeout": "callback_timeout",
}


def error_category(error: ErrorInfo) -> str:
    """A failed call's error as the error_type metric dimension names it (contract.ERROR_TYPES):
    a handful of values, whatever a service answers, never an unbounded one."""
    if error.type == "HttpError" and error.status_code is not None:
        if error.status_code == 429:
            return "throttled"
        return "5xx" if error.status_code >= 500 else "4xx"
    if error.type == "ServiceError":
        return "reported"
    return _CATEGORIES.get(error.type, "other")
