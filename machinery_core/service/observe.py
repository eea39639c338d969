"""What production records of an event's life: one INFO line and the metrics per moment
(contract.METRICS, through runtime/observability.py's `record`).

Log lines carry the event's correlation keys (observability.event_context) and what the
moment is about: a step, a service, an attempt, an outcome, a duration. Never data,
outputs, headers or secrets: those stay in the event, behind the API's authorization.
"""

from __future__ import annotations

from machinery_core.contract import ENDED
from machinery_core.domain.engine import CallOutcome, error_category
from machinery_core.domain.models import Event, milliseconds
from machinery_core.runtime.observability import logger, record


def event_accepted(event: Event) -> None:
    logger.info("event accepted", event_id=event.event_id, workflow_id=event.workflow_id)
    record({"EventsAccepted": 1}, workflow=event.workflow_id)


def event_ended(event: Event) -> None:
    """An event that reached SUCCEEDED, FAILED or CANCELLED: call once, where it got there."""
    if event.status not in ENDED:
        return
    ended_at = event.ended_at or event.updated_at
    duration = milliseconds(event.acknowledged_at, ended_at)
    logger.info(
        "event ended",
        event_id=event.event_id,
        workflow_id=event.workflow_id,
        status=event.status.value,
        duration_ms=duration,
        error_type=event.error.type if event.error else None,
    )
    name = f"Events{event.status.value.title()}"
    record({name: 1, "EventDuration": duration}, workflow=event.workflow_id)


def call_ended(
    event: Event, step: int | str, service: str, attempt: int, outcome: CallOutcome, retry: bool
) -> None:
    """One HTTP call to a service (or a callback service's dispatch): how it went.
    `retry`: it failed and the step will call again."""
    error = outcome.error
    category = error_category(error) if error is not None else None
    logger.info(
        "service call",
        event_id=event.event_id,
        workflow_id=event.workflow_id,
        step=str(step),
        service=service,
        attempt=attempt,
        outcome="failed" if error is not None else "succeeded",
        status_code=outcome.status_code,
        duration_ms=outcome.duration_ms,
        error_type=category,
        retry=retry,
    )
    values = {"ServiceCalls": 1.0, "ServiceCallLatency": outcome.duration_ms}
    if retry:
        values["ServiceCallRetries"] = 1.0
    record(values, service_name=service)
    if category is not None:
        record({"ServiceCallFailures": 1}, service_name=service, error_type=category)


def call_failed_later(
    event: Event, step: int | str, service: str, category: str, retry: bool
) -> None:
    """A call counted when it was made (a callback service's dispatch) that failed since:
    its callback reported an error (`reported`) or never came (`callback_timeout`)."""
    logger.info(
        "service call failed",
        event_id=event.event_id,
        workflow_id=event.workflow_id,
        step=str(step),
        service=service,
        error_type=category,
        retry=retry,
    )
    record({"ServiceCallFailures": 1}, service_name=service, error_type=category)
    if retry:
        record({"ServiceCallRetries": 1}, service_name=service)


def callback_received(event: Event, step: str, service: str, waited_ms: float) -> None:
    logger.info(
        "callback received",
        event_id=event.event_id,
        workflow_id=event.workflow_id,
        step=step,
        service=service,
        waited_ms=waited_ms,
    )
    record({"CallbackWaitTime": waited_ms}, service_name=service)


def notification_attempted(event: Event, attempt: int, delivered: bool, status: str) -> None:
    logger.info(
        "notification attempted",
        event_id=event.event_id,
        workflow_id=event.workflow_id,
        attempt=attempt,
        outcome=status,
    )
    name = "NotificationsDelivered" if delivered else "NotificationsFailed"
    record({name: 1}, workflow=event.workflow_id)
