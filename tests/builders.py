"""Builders every tier shares: a fixed clock, services, plans, events and call outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from machinery_core.domain.engine import CallOutcome
from machinery_core.domain.models import ErrorInfo, Event, EventStatus, Plan, PlannedStep, Service

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
STRING = {"type": "string"}
INTEGER = {"type": "integer"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_service(
    name: str = "upper",
    *,
    inputs: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    **extra: Any,
) -> Service:
    """A service at 127.0.0.1:5000/{name}; its inputs and outputs default to a string message."""
    return Service.model_validate(
        {
            "name": name,
            "address": f"http://127.0.0.1:5000/{name}",
            "spec": {
                "inputs": {"message": STRING} if inputs is None else inputs,
                "outputs": {"message": STRING} if outputs is None else outputs,
            },
            **extra,
        }
    )


# --- the engine tiers' builders ---------------------------------------------------------

UPPER = make_service(
    "upper",
    inputs={"message": STRING},
    outputs={"message": STRING},
    retry={"max_attempts": 3, "interval_seconds": 2, "backoff_rate": 3},
)
COUNTER = make_service(
    "space-counter", inputs={"message": STRING}, outputs={"space_count": INTEGER}
)


def make_plan(*steps: Service | PlannedStep, outputs: dict[str, Any] | None = None) -> Plan:
    planned = [s if isinstance(s, PlannedStep) else PlannedStep(service=s) for s in steps]
    return Plan.model_validate(
        {
            "workflow_version": 1,
            "steps": [p.model_dump() for p in planned],
            "outputs": outputs if outputs is not None else {"message": STRING},
        }
    )


def make_event(status: EventStatus = EventStatus.RUNNING, **update: Any) -> Event:
    data = update.pop("data", {"message": "a b"})
    return Event(
        event_id="evt-1",
        workflow_id="process-text",
        status=status,
        data=data,
        context=update.pop("context", dict(data)),
        acknowledged_at=T0,
        updated_at=T0,
        **update,
    )


def answered(body: dict[str, Any], start: float = 1, end: float = 1.25) -> CallOutcome:
    return CallOutcome(started_at=at(start), ended_at=at(end), status_code=200, body=body)


def failed(
    error: ErrorInfo, start: float = 1, end: float = 1.5, status: int | None = None
) -> CallOutcome:
    return CallOutcome(started_at=at(start), ended_at=at(end), status_code=status, error=error)


RETRYABLE = ErrorInfo(type="HttpError", message="503", status_code=503, retryable=True)
FATAL = ErrorInfo(type="HttpError", message="404", status_code=404, retryable=False)
