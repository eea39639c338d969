"""A workflow's statistics (GET /workflows/{workflow_id}/stats): what it reads.

The window's events come from the workflow's listing (its write-sharded index, newest
first), a page at a time until an entry is older than the window or STATS_EVENT_LIMIT are
taken (one more is looked for, to tell whether the window held more); then their states,
100 a BatchGetItem, never their payloads stored apart (the statistics need the steps'
statuses, attempts, durations and errors, which the event item always holds).
domain/stats.py does the counting.
"""

from __future__ import annotations

from datetime import datetime

from machinery_core.contract import STATS_EVENT_LIMIT, StatsWindow
from machinery_core.domain import stats
from machinery_core.domain.models import EventSummary, WorkflowStats
from machinery_core.runtime.dependencies import Dependencies

LISTING_PAGE = 100  # entries a listing page asks for


def workflow_stats(deps: Dependencies, workflow_id: str, window: StatsWindow) -> WorkflowStats:
    """The statistics of the workflow's events acknowledged within the last `window`, at
    most the newest STATS_EVENT_LIMIT of them; NotFound for an unknown workflow."""
    record = deps.store.get_workflow(workflow_id)
    limit = STATS_EVENT_LIMIT
    now = deps.clock()
    since = now - window.length
    listed = _in_window(deps, workflow_id, since, now, limit + 1)
    cut = len(listed) > limit
    events = deps.store.event_states([summary.event_id for summary in listed[:limit]])
    return stats.workflow_stats(
        workflow_id,
        window,
        since,
        events,
        stats.planned_steps(record.definition.spec),
        limit,
        cut,
    )


def _in_window(
    deps: Dependencies, workflow_id: str, since: datetime, now: datetime, most: int
) -> list[EventSummary]:
    """Up to `most` of the workflow's events acknowledged from `since` to `now`, newest
    first (one acknowledged later than `now`, by a clock ahead of this one, is left out)."""
    taken: list[EventSummary] = []
    cursor: str | None = None
    while True:
        wanted = min(LISTING_PAGE, most - len(taken))
        items, cursor = deps.store.list_events(workflow_id, wanted, cursor, None)
        for item in items:
            if item.acknowledged_at < since:
                return taken
            if item.acknowledged_at <= now:
                taken.append(item)
                if len(taken) == most:
                    return taken
        if cursor is None:
            return taken
