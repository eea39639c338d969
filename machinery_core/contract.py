"""What the server and the `machinery` command must agree on: statuses, limits, durations.

Standard library only: the command imports it at start-up, where pydantic and boto3 would
cost it about 100 ms (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from enum import StrEnum


class EventStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in ENDED


ENDED = frozenset({EventStatus.SUCCEEDED, EventStatus.FAILED, EventStatus.CANCELLED})


class StepStatus(StrEnum):
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    WAITING = "WAITING"  # for a callback
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# The longest sync wait on POST /e/{workflow_id}?wait=N: API Gateway answers within 30 s.
MAX_WAIT_SECONDS = 25
# The largest request body the API reads (API Gateway's own limit is 10 MB).
MAX_BODY_BYTES = 256 * 1024
MAX_IDEMPOTENCY_KEY = 256


def duration_text(milliseconds: float | None) -> str:
    """A duration as every view shows it (CLI, diagrams, dashboard): ms below a second."""
    if milliseconds is None:
        return "-"
    if milliseconds < 1000:
        return f"{milliseconds:.1f} ms"
    return f"{milliseconds / 1000:.2f} s"
