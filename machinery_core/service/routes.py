"""The Route protocol: what every Task of the state machine answers, and the Route choice reads.

Every answer has the same keys: `status` is CONTINUE (run again), BACKOFF (Wait
`wait_seconds` in this execution), SUSPEND (this execution ends: the event waits outside
it, for a callback or a timer, which starts the next), or the event's end, SUCCEEDED, FAILED
or CANCELLED (through Notify first when `notify`). template.yaml's Route state and
docs/architecture.md ("The state machine") read the same keys. (AWAIT is a group's hand-back
inside the worker: its callbacks to dispatch; the state machine never sees it.)
"""

from __future__ import annotations

import math
from typing import Any

from machinery_core.domain.models import Event, NotificationStatus


def answer(
    status: str, wait_seconds: float = 0, timeout_seconds: float = 0, notify: bool = False
) -> dict[str, Any]:
    return {
        "status": status,
        "wait_seconds": math.ceil(wait_seconds),
        "timeout_seconds": math.ceil(timeout_seconds),
        "notify": notify,
    }


def answer_for(event: Event, wait_seconds: float = 0) -> dict[str, Any]:
    """What the state machine does next with `event`, as the Route choice reads it."""
    if wait_seconds > 0:
        return answer("BACKOFF", wait_seconds)
    if event.status.terminal:
        note = event.notification
        return answer(
            event.status.value,
            notify=note is not None and note.status is NotificationStatus.PENDING,
        )
    return answer("CONTINUE")
