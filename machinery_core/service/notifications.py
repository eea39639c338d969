"""Completion notifications: one signed delivery attempt per Notify task, recorded on the event.

The body is signed with HMAC-SHA256 under the deployment's secret (X-Machinery-Signature:
sha256=<hex>), so a receiver can tell that Machinery sent it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from machinery_core.domain.errors import NotificationFailed
from machinery_core.domain.models import CompletionNotice, Event, NotificationStatus
from machinery_core.runtime.dependencies import Dependencies
from machinery_core.runtime.observability import event_context
from machinery_core.service import observe, routes

NOTIFY_MAX_ATTEMPTS = 5  # the Notify state's Retry allows NOTIFY_MAX_ATTEMPTS - 1 more


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def notify(deps: Dependencies, event_id: str) -> dict[str, Any]:
    """Notify's task: one delivery attempt, recorded; NotificationFailed asks for a retry."""
    event = deps.store.get_event(event_id)
    with event_context(event_id, event.workflow_id, event.trace.trace_id):
        return _notify(deps, event)


def _notify(deps: Dependencies, event: Event) -> dict[str, Any]:
    event_id = event.event_id
    note = event.notification
    if note is None or note.status is not NotificationStatus.PENDING or not event.status.terminal:
        return routes.answer_for(event)
    body = CompletionNotice.of(event).model_dump_json().encode()
    status_code, problem = deps.invoker.deliver(
        note.url,
        body,
        {
            "Content-Type": "application/json",
            "X-Machinery-Event-Id": event_id,
            "X-Machinery-Signature": sign(deps.signing_key(), body),
        },
        trace=event.trace,
    )
    attempts = note.attempts + 1
    if problem is None:
        outcome = NotificationStatus.DELIVERED
    elif attempts >= NOTIFY_MAX_ATTEMPTS:
        outcome = NotificationStatus.FAILED
    else:
        outcome = NotificationStatus.PENDING
    note = note.model_copy(
        update={
            "status": outcome,
            "attempts": attempts,
            "last_status_code": status_code,
            "last_error": problem,
            "last_attempt_at": deps.clock(),
        }
    )
    event = deps.store.save_event(event.model_copy(update={"notification": note}))
    delivered = outcome is NotificationStatus.DELIVERED
    observe.notification_attempted(event, attempts, delivered, outcome.value)
    if outcome is NotificationStatus.PENDING:
        raise NotificationFailed(f"attempt {attempts} to {note.url} failed: {problem}")
    return routes.answer_for(event)
