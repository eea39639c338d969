"""A workflow's statistics over the events of a window: pure (service/stats.py reads them).

Percentiles are nearest-rank: the p-th percentile of N values sorted ascending is the value
of rank ceil(p × N / 100), counted from 1. It is always one of the values (never an
interpolation between two), and there is none of no values: of [10, 20, 30, 40] the p50 is
20 and the p95 is 40; of one value, every percentile is that value.

- `events`: by status, PENDING (accepted, not started yet) counted as RUNNING.
- `duration_ms`: from each ended event's acknowledgement to its end.
- `steps`: a row per planned step, by its path as the step views name it (`0`, `3.1.0` in
  a group; a map's steps without the iteration, so `4.0` holds `4.0:7`) and its service: the
  workflow's planned steps first, in their order (a step no event reached has a row of
  zeros), then any other path the events ran (an earlier version's). Each ended attempt of
  a step's records counts (earlier runs of a retried event included, and a fallback's
  attempts under the step it stands in for): `failed` those that ended with an error,
  `retries` those beyond the first of each record, p50 and p95 over their durations. A map's
  step that succeeded at its first attempt keeps no history (groups.py `_slim`): its record's
  own duration is that attempt's.
- `errors`: the FAILED events by their error's type, the most frequent first (then by
  type), each with the newest such event's id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from machinery_core.contract import ENDED, StatsWindow
from machinery_core.domain.models import (
    ConditionEntry,
    DurationStats,
    Entry,
    ErrorStats,
    Event,
    EventStatus,
    MapEntry,
    ParallelEntry,
    StatsSample,
    StatusCounts,
    StepEntry,
    StepRecord,
    StepStats,
    StepStatus,
    WorkflowSpec,
    WorkflowStats,
    milliseconds,
)


def percentile(values: Sequence[float], p: int) -> float | None:
    """The nearest-rank p-th percentile (0 < p <= 100) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))  # ceil(p × N / 100) in whole numbers
    return ordered[rank - 1]


def planned_steps(spec: WorkflowSpec) -> list[tuple[str, str]]:
    """Every step the workflow calls a service in, as (path, service), in its order."""
    return list(_planned(spec.services, ""))


def _planned(entries: list[Entry], prefix: str) -> Iterator[tuple[str, str]]:
    for index, entry in enumerate(entries):
        path = f"{prefix}{index}"
        if isinstance(entry, str):
            yield path, entry
        elif isinstance(entry, StepEntry):
            yield path, entry.service
        elif isinstance(entry, MapEntry):
            yield from _planned(entry.steps, f"{path}.")
        elif isinstance(entry, ConditionEntry):
            for branch, inner in enumerate((entry.steps, entry.otherwise)):
                yield from _planned(inner, f"{path}.{branch}.")
        else:
            assert isinstance(entry, ParallelEntry)
            for branch, inner in enumerate(entry.parallel):
                yield from _planned(inner, f"{path}.{branch}.")


def step_records(records: list[StepRecord]) -> Iterator[tuple[str, StepRecord]]:
    """Each record of a service call (nested ones too) with its path, a map's iterations
    folded into their step (`4.0`, where GET /events/{id}/steps names `4.0:7`)."""
    for record in records:
        yield from _records(record, str(record.index))


def _records(record: StepRecord, path: str) -> Iterator[tuple[str, StepRecord]]:
    if record.kind == "service":
        yield path, record
        return
    for inner in record.steps:
        if record.kind == "map":
            inner_path = f"{path}.{inner.index}"
        else:
            inner_path = f"{path}.{inner.branch}.{inner.index}"
        yield from _records(inner, inner_path)


def attempts(record: StepRecord) -> list[tuple[float | None, bool]]:
    """Each ended attempt of a step's record: (its duration in ms, whether it failed)."""
    if record.history:
        return [(attempt.duration_ms, attempt.error is not None) for attempt in record.history]
    if not record.attempts:
        return []
    # no history: a map's step that succeeded at its first attempt (groups.py `_slim`)
    last_failed = record.status is not StepStatus.SUCCEEDED and record.error is not None
    duration = record.duration_ms if record.attempts == 1 else None
    return [(None, True)] * (record.attempts - 1) + [(duration, last_failed)]


@dataclass
class _Step:
    calls: int = 0
    failed: int = 0
    retries: int = 0
    durations: list[float] = field(default_factory=list)

    def add(self, record: StepRecord) -> None:
        made = attempts(record)
        self.calls += len(made)
        self.failed += sum(1 for _, failed in made if failed)
        self.retries += max(0, len(made) - 1)
        self.durations += [duration for duration, _ in made if duration is not None]


def workflow_stats(
    workflow_id: str,
    window: StatsWindow,
    since: datetime,
    events: Sequence[Event],
    planned: Sequence[tuple[str, str]],
    limit: int,
    cut: bool,
) -> WorkflowStats:
    """The statistics of `events` (the window's, at most `limit` of them: `cut` if the
    window held more), a step row for each of `planned` (path, service) and each other
    step the events ran."""
    newest_first = sorted(events, key=lambda event: event.acknowledged_at, reverse=True)
    counts: Counter[str] = Counter()
    durations: list[float] = []
    steps: dict[tuple[str, str], _Step] = {key: _Step() for key in planned}
    errors: Counter[str] = Counter()
    last_error: dict[str, str] = {}
    for event in newest_first:
        status = EventStatus.RUNNING if event.status is EventStatus.PENDING else event.status
        counts[status.value] += 1
        if event.status in ENDED and event.ended_at is not None:
            durations.append(milliseconds(event.acknowledged_at, event.ended_at))
        if event.status is EventStatus.FAILED and event.error is not None:
            errors[event.error.type] += 1
            last_error.setdefault(event.error.type, event.event_id)
        records = [*event.steps, *(record for run in event.runs for record in run.steps)]
        for path, record in step_records(records):
            service = record.fallback_from or record.service or ""
            steps.setdefault((path, service), _Step()).add(record)
    known = set(planned)
    extra = sorted((key for key in steps if key not in known), key=_path_order)
    return WorkflowStats(
        workflow_id=workflow_id,
        window=window,
        since=since,
        events=StatusCounts.model_validate(dict(counts)),
        duration_ms=DurationStats(
            p50=percentile(durations, 50),
            p95=percentile(durations, 95),
            max=max(durations, default=None),
        ),
        steps=[
            StepStats(
                step=path,
                service=service,
                calls=steps[(path, service)].calls,
                failed=steps[(path, service)].failed,
                retries=steps[(path, service)].retries,
                p50_ms=percentile(steps[(path, service)].durations, 50),
                p95_ms=percentile(steps[(path, service)].durations, 95),
            )
            for path, service in [*planned, *extra]
        ],
        errors=[
            ErrorStats(type=kind, count=count, last_event_id=last_error[kind])
            for kind, count in sorted(errors.items(), key=lambda pair: (-pair[1], pair[0]))
        ],
        sample=StatsSample(events=len(newest_first), limit=limit, cut=cut),
    )


def _path_order(key: tuple[str, str]) -> tuple[tuple[int, ...], str]:
    path, service = key
    return tuple(int(part) for part in path.split(".")), service
