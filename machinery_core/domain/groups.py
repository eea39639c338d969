"""A group (a `when` with steps, parallel branches, a map) as it runs inside one invocation.

`GroupRun` holds the records of a top-level group's steps by path and answers, at each
moment, which calls may start (`ready`), folds each call's outcome in (`ended`), and gives
the group's record for a checkpoint (`record`). It does no I/O and starts no thread: the
worker calls the services, concurrently, and writes the checkpoints.

A path is the top-level group's own `()`, then for each level a pair: the branch (a
parallel's branch, 0 or 1 for a `when`'s steps or otherwise) or the iteration (a map), and
the index in that list. Everything else is recomputed from the records on every walk: the
context each step sees (the fork's, plus what the steps before it in its list produced),
a `when`'s decision (stored once taken), a map's elements (from the fork's context, which
does not change while the group runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from machinery_core.domain import mapping
from machinery_core.domain.engine import CallOutcome, attempt_ended, input_for, serving
from machinery_core.domain.models import (
    MAX_MAP_ITEMS,
    ErrorInfo,
    PlannedGroup,
    PlannedNode,
    PlannedStep,
    Service,
    StepRecord,
    StepStatus,
    milliseconds,
)
from machinery_core.domain.validation import type_of

Path = tuple[int, ...]
_WAITING = StepStatus.WAITING


@dataclass(frozen=True)
class Call:
    """A call the group is ready to make."""

    path: Path
    service: Service
    payload: dict[str, Any]
    label: str  # the step in the Idempotency-Key: `3.1.0`, or `4.0:7` for iteration 7

    @property
    def callback(self) -> bool:
        """The service answers by callback: the call hands it a single-use callback URL."""
        return self.service.mode == "callback"


@dataclass
class _Walked:
    state: Literal["done", "failed", "active"]
    produced: dict[str, Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    retry_at: datetime | None = None
    error: ErrorInfo | None = None
    deadline: datetime | None = None  # the earliest a waiting callback times out


def _earliest(*times: datetime | None) -> datetime | None:
    known = [time for time in times if time is not None]
    return min(known) if known else None


class GroupRun:
    def __init__(
        self,
        index: int,
        group: PlannedGroup,
        context: dict[str, Any],
        record: StepRecord | None,
    ) -> None:
        self.index = index
        self.group = group
        self.context = context  # at the fork: the event's, unchanged while the group runs
        self.records: dict[Path, StepRecord] = {}
        if record is not None:
            self._restore(record, ())
        self.outcome = _Walked("active")

    # --- the walk ---------------------------------------------------------------------

    def ready(self, now: datetime, in_flight: set[Path]) -> list[Call]:
        """Settle what needs no call (skips, decisions, ends), then the calls that may start.

        Once the group has failed, nothing new starts: the calls in flight end first.
        """
        self.outcome = self._group(self.group, (), self.context, now, in_flight)
        return self.outcome.calls if self.outcome.state == "active" else []

    @property
    def ended(self) -> bool:
        return self.outcome.state != "active"

    @property
    def produced(self) -> dict[str, Any]:
        """The fields the group adds to the context once it has succeeded."""
        return self.outcome.produced

    @property
    def retry_at(self) -> datetime | None:
        """When the earliest step waiting out a backoff may run again."""
        return self.outcome.retry_at

    @property
    def deadline(self) -> datetime | None:
        """When the earliest callback the group waits for times out."""
        return self.outcome.deadline

    def waiting(self) -> list[Path]:
        """The steps waiting for their callback."""
        return [path for path, record in self.records.items() if record.status is _WAITING]

    def _sequence(
        self,
        nodes: list[PlannedNode],
        prefix: Path,
        context: dict[str, Any],
        now: datetime,
        in_flight: set[Path],
    ) -> _Walked:
        produced: dict[str, Any] = {}
        for position, node in enumerate(nodes):
            path = (*prefix, position)
            here = {**context, **produced}
            if isinstance(node, PlannedGroup):
                walked = self._group(node, path, here, now, in_flight)
            else:
                walked = self._step(node, path, here, now, in_flight)
            if walked.state != "done":
                return walked
            produced.update(walked.produced)
        return _Walked("done", produced)

    def _step(
        self,
        planned: PlannedStep,
        path: Path,
        context: dict[str, Any],
        now: datetime,
        in_flight: set[Path],
    ) -> _Walked:
        record = self.records.get(path)
        if record is None:
            record = StepRecord(
                index=path[-1],
                service=planned.service.name,
                service_version=planned.service_version,
                id=planned.id,
                status=StepStatus.RUNNING,
                started_at=now,
            )
            if planned.when is not None and not mapping.holds(planned.when, context):
                record = record.model_copy(
                    update={"status": StepStatus.SKIPPED, "ended_at": now, "duration_ms": 0.0}
                )
            self.records[path] = record
        status = record.status
        if status is StepStatus.SKIPPED:
            return _Walked("done")
        service = serving(planned, record)
        if status is StepStatus.SUCCEEDED:
            produced = mapping.merge_outputs(service, planned.operation, record.output or {}, {})
            return _Walked("done", produced)
        if status is StepStatus.FAILED:
            if planned.on_error == "continue":
                return _Walked("done")
            return _Walked("failed", error=record.error)
        if status is _WAITING:
            return _Walked("active", deadline=record.deadline)
        if path in in_flight:
            return _Walked("active")
        if record.retry_at is not None and record.retry_at > now:
            return _Walked("active", retry_at=record.retry_at)
        payload, refusal = input_for(service, planned, context)
        if refusal is not None:
            self.records[path] = record.model_copy(
                update={
                    "status": StepStatus.FAILED,
                    "input": payload,
                    "error": refusal,
                    "ended_at": now,
                    "duration_ms": 0.0,
                    "attempt": None,
                }
            )
            return self._step(planned, path, context, now, in_flight)
        return _Walked("active", calls=[Call(path, service, payload, self._label(path))])

    def _group(
        self,
        group: PlannedGroup,
        path: Path,
        context: dict[str, Any],
        now: datetime,
        in_flight: set[Path],
    ) -> _Walked:
        record = self.records.get(path)
        if record is None:
            record = StepRecord(
                index=path[-1] if path else self.index,
                kind=group.kind,
                id=group.id,
                status=StepStatus.RUNNING,
                started_at=now,
            )
        if record.status is StepStatus.FAILED:
            self.records[path] = record
            if group.on_error == "continue" and group.kind != "map" and path:
                return _Walked("done")
            return _Walked("failed", error=record.error)
        if group.kind == "when":
            walked, record = self._when(group, path, record, context, now, in_flight)
        elif group.kind == "parallel":
            walked = self._parallel(group, path, context, now, in_flight)
        else:
            walked, record = self._map(group, path, record, context, now, in_flight)
        if walked.state != "active" and record.status is StepStatus.RUNNING:
            ended = record.model_copy(
                update={
                    "status": StepStatus.SUCCEEDED if walked.state == "done" else StepStatus.FAILED,
                    "error": walked.error,
                    "ended_at": now,
                    "duration_ms": milliseconds(record.started_at, now)
                    if record.started_at
                    else None,
                }
            )
            record = ended
        self.records[path] = record
        if walked.state == "failed" and group.on_error == "continue" and group.kind != "map":
            if path:  # a top-level group's policy is the engine's to apply
                return _Walked("done")
        return walked

    def _when(
        self,
        group: PlannedGroup,
        path: Path,
        record: StepRecord,
        context: dict[str, Any],
        now: datetime,
        in_flight: set[Path],
    ) -> tuple[_Walked, StepRecord]:
        assert group.when is not None
        if record.decision is None:
            record = record.model_copy(update={"decision": mapping.holds(group.when, context)})
        branch = 0 if record.decision else 1
        walked = self._sequence(group.branches[branch], (*path, branch), context, now, in_flight)
        return walked, record

    def _parallel(
        self,
        group: PlannedGroup,
        path: Path,
        context: dict[str, Any],
        now: datetime,
        in_flight: set[Path],
    ) -> _Walked:
        joined = _Walked("done")
        for number, branch in enumerate(group.branches):
            walked = self._sequence(branch, (*path, number), context, now, in_flight)
            joined = _join(joined, walked)
            if walked.state == "done":
                joined.produced.update(walked.produced)
        return joined

    def _map(
        self,
        group: PlannedGroup,
        path: Path,
        record: StepRecord,
        context: dict[str, Any],
        now: datetime,
        in_flight: set[Path],
    ) -> tuple[_Walked, StepRecord]:
        assert group.map is not None and group.collect is not None
        items = mapping.search(group.map, context)
        if not isinstance(items, list):
            error = ErrorInfo(
                type="MapItemsInvalid",
                message=f"map {group.map!r} gave {type_of(items)}, not an array",
            )
            return _Walked("failed", error=error), record
        if len(items) > MAX_MAP_ITEMS:
            error = ErrorInfo(
                type="MapTooLarge",
                message=f"map {group.map!r} gave {len(items)} elements; a map takes at most "
                f"{MAX_MAP_ITEMS}",
            )
            return _Walked("failed", error=error), record
        collected: list[Any] = []
        joined = _Walked("done")
        running = completed = 0
        steps = group.branches[0]
        for number, item in enumerate(items):
            started = (*path, number, 0) in self.records
            if not started and (running >= group.max_concurrency or joined.state == "failed"):
                joined.state = "active" if joined.state == "done" else joined.state
                continue
            walked = self._sequence(
                steps,
                (*path, number),
                {**context, group.as_name: item},
                now,
                in_flight,
            )
            if walked.state == "failed" and group.on_error == "continue":
                walked = _Walked("done", {})
                collected.append(None)
                completed += 1
                continue
            if walked.state == "done":
                collected.append(walked.produced)
                completed += 1
            else:
                running += walked.state == "active"
            joined = _join(joined, walked)
        record = record.model_copy(update={"total": len(items), "completed": completed})
        if joined.state == "done":
            joined.produced = {group.collect: collected}
        return joined, record

    def _label(self, path: Path) -> str:
        """The step and iterations of a path, as the Idempotency-Key names them."""
        steps, iterations = [str(self.index)], []
        node: PlannedNode = self.group
        for depth in range(0, len(path), 2):
            branch, position = path[depth], path[depth + 1]
            assert isinstance(node, PlannedGroup)
            if node.kind == "map":
                iterations.append(str(branch))
                steps.append(str(position))
            else:
                steps.extend((str(branch), str(position)))
            node = node.branches[0 if node.kind == "map" else branch][position]
        label = ".".join(steps)
        return f"{label}:{'.'.join(iterations)}" if iterations else label

    # --- calls --------------------------------------------------------------------------

    def call_of(self, path: Path) -> Call:
        """The call a step made (or makes), rebuilt from its record: for a callback's answer."""
        planned = self._planned(path)
        record = self.records[path]
        return Call(path, serving(planned, record), record.input or {}, self._label(path))

    def dispatched(self, call: Call, now: datetime) -> None:
        """The callback service is being handed the step: it waits for the callback."""
        self.started(call, now)
        record = self.records[call.path]
        deadline = now + timedelta(seconds=call.service.timeout_seconds)
        self.records[call.path] = record.model_copy(
            update={"status": _WAITING, "deadline": deadline}
        )

    def expire(self, now: datetime) -> list[Path]:
        """Every callback whose time is up fails with CallbackTimeout; the paths it failed."""
        expired = []
        for path in self.waiting():
            record = self.records[path]
            if record.deadline is None or record.deadline > now:
                continue
            service = serving(self._planned(path), record)
            outcome = CallOutcome(
                started_at=record.deadline - timedelta(seconds=service.timeout_seconds),
                ended_at=now,
                error=ErrorInfo(
                    type="CallbackTimeout",
                    message=f"no callback within {service.timeout_seconds:g}s",
                ),
            )
            self.finished(self.call_of(path), outcome)
            expired.append(path)
        return expired

    def _planned(self, path: Path) -> PlannedStep:
        node: PlannedNode = self.group
        for depth in range(0, len(path), 2):
            assert isinstance(node, PlannedGroup)
            node = node.branches[0 if node.kind == "map" else path[depth]][path[depth + 1]]
        assert isinstance(node, PlannedStep)
        return node

    def started(self, call: Call, now: datetime) -> None:
        """The call is about to be made: its step shows the attempt under way."""
        record = self.records[call.path]
        self.records[call.path] = record.model_copy(
            update={
                "status": StepStatus.RUNNING,
                "attempt": record.attempts + 1,
                "input": call.payload,
                "started_at": record.started_at or now,
                "retry_at": None,
            }
        )

    def finished(self, call: Call, outcome: CallOutcome, jitter: float = 1.0) -> None:
        planned = self._planned(call.path)
        record, wait = attempt_ended(
            self.records[call.path], planned, call.payload, outcome, jitter
        )
        record = record.model_copy(update={"deadline": None})
        if wait > 0:
            record = record.model_copy(
                update={"retry_at": outcome.ended_at + timedelta(seconds=wait)}
            )
        self.records[call.path] = record

    # --- the record -----------------------------------------------------------------------

    def record(self) -> StepRecord:
        """The group's record with its steps nested, as the event stores and shows it."""
        nested: dict[Path, list[StepRecord]] = {}
        for path in sorted(self.records, key=len, reverse=True):
            if not path:
                continue
            parent = path[:-2]
            in_map = self._kind(parent) == "map"
            tag = {"iteration" if in_map else "branch": path[-2]}
            inner = _in_order(nested.pop(path, []))
            record = self.records[path].model_copy(update={**tag, "steps": inner})
            if in_map or any(self._kind(path[:depth]) == "map" for depth in range(0, len(path), 2)):
                record = _slim(record)
            nested.setdefault(parent, []).append(record)
        top = self.records.get(()) or StepRecord(
            index=self.index, kind=self.group.kind, status=StepStatus.RUNNING
        )
        return top.model_copy(update={"steps": _in_order(nested.get((), []))})

    def _kind(self, path: Path) -> str:
        node: PlannedNode = self.group
        for depth in range(0, len(path), 2):
            assert isinstance(node, PlannedGroup)
            node = node.branches[0 if node.kind == "map" else path[depth]][path[depth + 1]]
        assert isinstance(node, PlannedGroup)
        return node.kind

    def _restore(self, record: StepRecord, path: Path) -> None:
        self.records[path] = record.model_copy(update={"steps": []})
        for step in record.steps:
            branch = step.iteration if record.kind == "map" else step.branch
            assert branch is not None
            self._restore(step, (*path, branch, step.index))


def _slim(record: StepRecord) -> StepRecord:
    """A map's step that succeeded at its first attempt, without what it repeats: its input
    (the element and the context give it again) and its one attempt's history, so that a
    map of a thousand elements stays within the event's item."""
    if record.status is not StepStatus.SUCCEEDED or record.attempts > 1:
        return record
    return record.model_copy(update={"input": None, "history": []})


def _in_order(steps: list[StepRecord]) -> list[StepRecord]:
    return sorted(steps, key=lambda step: (step.iteration or 0, step.branch or 0, step.index))


def _join(joined: _Walked, walked: _Walked) -> _Walked:
    """Two concurrent parts as one: failed if either failed, else active while either is."""
    state = joined.state
    if "failed" in (state, walked.state):
        state = "failed"
    elif "active" in (state, walked.state):
        state = "active"
    return _Walked(
        state,
        joined.produced,
        joined.calls + walked.calls,
        _earliest(joined.retry_at, walked.retry_at),
        joined.error or walked.error,
        _earliest(joined.deadline, walked.deadline),
    )
