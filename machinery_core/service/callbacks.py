"""A callback service reporting back: POST /callbacks/{token}.

The token is the credential: single use, at least 256 random bits, stored only as its
SHA-256. Unknown, expired or superseded tokens are all 404 with no detail.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from machinery_core.domain import engine, tokens
from machinery_core.domain.engine import CallOutcome
from machinery_core.domain.errors import Conflict, InvalidInput, NotFound, StaleVersion, Throttled
from machinery_core.domain.groups import GroupRun
from machinery_core.domain.models import (
    Callback,
    CallbackAccepted,
    ErrorInfo,
    Event,
    EventStatus,
    Plan,
    PlannedGroup,
    Service,
    StepStatus,
    Waiting,
    milliseconds,
)
from machinery_core.domain.validation import check_data
from machinery_core.runtime.dependencies import Dependencies
from machinery_core.runtime.observability import event_context, logger
from machinery_core.service import observe
from machinery_core.service.events import execution_input

MAX_TOKEN_LENGTH = 256


def complete(deps: Dependencies, token: str, body: Any) -> CallbackAccepted:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise NotFound("not found")
    callback = deps.store.get_callback(tokens.hash_token(token))
    now = deps.clock()
    if callback is None or callback.expires_at <= now:
        raise NotFound("not found")
    if callback.used:
        raise Conflict("this callback was already used")
    if callback.path is not None:
        return _complete_in_group(deps, callback, body)
    event, plan = deps.store.load_with_plan(callback.event_id)
    if event.status is EventStatus.CANCELLED and event.step_index == callback.step:
        late = CallOutcome(started_at=callback.dispatched_at, ended_at=now)
        deps.store.save_event(engine.record_late(event, plan, late))
        raise Conflict("the event was cancelled; this callback was recorded but not applied")
    step = event.steps[callback.step] if len(event.steps) > callback.step else None
    if (
        step is None
        or event.step_index != callback.step
        or step.status is not StepStatus.WAITING
        or step.attempts + 1 != callback.attempt
    ):
        again = deps.store.get_callback(callback.token_hash)
        if again is not None and again.used:
            # A concurrent call with this token was accepted since it was read above.
            raise Conflict("this callback was already used")
        raise NotFound("not found")  # timed out, ended or superseded: the token has expired

    service = engine.current_service(event, plan)
    outcome = _outcome(callback, service, body, now)

    transition = engine.record_call(event, plan, step.input or {}, outcome)
    after = transition.event
    if transition.wait_seconds > 0:  # the service reported an error: a retry, after its backoff
        after = after.model_copy(
            update={
                "waiting": Waiting(
                    kind="backoff", at=now + timedelta(seconds=transition.wait_seconds)
                )
            }
        )
    try:
        resumed = deps.store.use_callback(callback, after)
    except StaleVersion:
        # Only what ends the wait (its timeout, an abort) writes to a waiting event.
        raise NotFound("not found") from None
    with event_context(event.event_id, event.workflow_id, event.trace.trace_id):
        _resume(deps, event, resumed, plan)
        waited = milliseconds(callback.dispatched_at, now)
        observe.callback_received(resumed, str(callback.step), service.name, waited)
        if outcome.error is not None:
            retry = transition.wait_seconds > 0
            observe.call_failed_later(resumed, callback.step, service.name, "reported", retry)
        observe.event_ended(resumed)  # a reported error its policy does not retry ends it
    event = resumed
    return CallbackAccepted(event_id=event.event_id, step=callback.step, status=event.status)


def _outcome(callback: Callback, service: Service, body: Any, now: datetime) -> CallOutcome:
    """What the callback brought: the outputs, or the error the service reported."""
    if isinstance(body, dict) and body.get("error") is not None:
        error = _reported_error(body["error"])
        return CallOutcome(started_at=callback.dispatched_at, ended_at=now, error=error)
    problems = check_data(service.spec.outputs, body, "body")
    if problems:
        # The step keeps waiting: the service may call again with correct outputs.
        raise InvalidInput("the outputs do not match the service's spec", problems)
    return CallOutcome(started_at=callback.dispatched_at, ended_at=now, body=body)


# How often a callback in a group is applied again when another of the group's callbacks
# saved the event first (each reads the event, folds its answer in, and writes it back).
GROUP_RACES = 5


def _complete_in_group(deps: Dependencies, callback: Callback, body: Any) -> CallbackAccepted:
    """A callback of a step in a group: recorded on its step; the last of the group's
    callbacks to answer resumes the state machine's one wait for them."""
    assert callback.path is not None
    for _ in range(GROUP_RACES):
        now = deps.clock()
        event, plan = deps.store.load_with_plan(callback.event_id)
        if event.status is EventStatus.CANCELLED:
            raise Conflict("the event was cancelled; this callback was not applied")
        group = plan.steps[event.step_index] if event.step_index == callback.step else None
        if event.status.terminal or not isinstance(group, PlannedGroup):
            raise NotFound("not found")
        run = GroupRun(event.step_index, group, event.context, event.current_step)
        step = run.records.get(callback.path)
        if step is None or step.status is not StepStatus.WAITING:
            raise NotFound("not found")  # timed out, or superseded: the token has expired
        if step.attempts + 1 != callback.attempt:
            raise NotFound("not found")
        call = run.call_of(callback.path)
        run.finished(call, _outcome(callback, call.service, body, now))
        still_waiting = bool(run.waiting())
        status = EventStatus.WAITING if still_waiting else EventStatus.RUNNING
        after = engine.record_group(event, run.record(), now, status)
        if not still_waiting:
            after = after.model_copy(update={"waiting": None})
        try:
            event = deps.store.use_callback(callback, after)
        except StaleVersion:
            continue
        break
    else:
        raise Conflict("the event is busy with this group's other callbacks; send it again")
    with event_context(event.event_id, event.workflow_id, event.trace.trace_id):
        if not still_waiting:
            _resume(deps, event, event, plan)
        waited = milliseconds(callback.dispatched_at, now)
        observe.callback_received(event, call.label, call.service.name, waited)
        if isinstance(body, dict) and body.get("error") is not None:
            retry = run.records[callback.path].status is StepStatus.RETRYING
            observe.call_failed_later(event, call.label, call.service.name, "reported", retry)
    return CallbackAccepted(event_id=event.event_id, step=callback.step, status=event.status)


def _resume(deps: Dependencies, waited: Event, resumed: Event, plan: Plan) -> None:
    """The event's wait is over: start the execution that goes on, named after the segment
    that ended to wait (a second start of it is no second run), then take the wait's timer
    down. A start that fails leaves the timer: when it fires, it finds the wait over and the
    event goes on from what was recorded, late but not lost."""
    try:
        deps.executions.start(
            resumed.resumed_execution_name, execution_input(resumed.event_id, plan)
        )
    except (ClientError, BotoCoreError, Throttled):
        logger.exception("the event's next execution did not start", event_id=resumed.event_id)
        return
    if deps.timers is not None:
        try:
            deps.timers.cancel(waited.timer_name)
        except (ClientError, BotoCoreError, Throttled):
            # recorded and resumed: the timer, firing, finds the wait over and does nothing
            logger.warning("the wait's timer was not deleted", event_id=resumed.event_id)


def _reported_error(report: Any) -> ErrorInfo:
    if isinstance(report, dict):
        return ErrorInfo(
            type=str(report.get("type") or "ServiceError")[:256],
            message=str(report.get("message") or "the service reported an error")[:4096],
        )
    return ErrorInfo(type="ServiceError", message=str(report)[:4096])
