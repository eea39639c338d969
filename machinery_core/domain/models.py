"""The user-facing contract (README.md, "Definitions" and "API") as pydantic v2 models."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

from machinery_core.contract import EventStatus as EventStatus  # re-exported: the API schema
from machinery_core.contract import StatsWindow as StatsWindow
from machinery_core.contract import StepStatus as StepStatus
from machinery_core.domain.payloads import put_at

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


HttpUrl = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_http_url)]
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")]
FieldType = Literal["string", "integer", "number", "boolean", "object", "array", "any"]

REDACTED = "<redacted>"

TYPE_ALIASES: dict[str, str] = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "dict": "object",
    "list": "array",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def milliseconds(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds() * 1000, 3)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldSpec(Model):
    type: FieldType
    description: str | None = None
    required: bool = True

    @field_validator("type", mode="before")
    @classmethod
    def _resolve_alias(cls, value: Any) -> Any:
        if isinstance(value, str):
            lowered = value.strip().lower()
            return TYPE_ALIASES.get(lowered, lowered)
        return value


Fields = dict[FieldName, FieldSpec]


def _fields_from_list(value: Any) -> Any:
    """The prototype's list form, `[{"name": .., "type": ..}]`, as the canonical mapping."""
    if not isinstance(value, list):
        return value
    fields: dict[str, Any] = {}
    for item in value:
        if not isinstance(item, dict) or "name" not in item:
            return value  # let the mapping validation report the bad shape
        name = item["name"]
        if name in fields:
            raise ValueError(f"field {name!r} is declared twice")
        fields[name] = {key: val for key, val in item.items() if key != "name"}
    return fields


class Spec(Model):
    inputs: Fields = Field(default_factory=dict)
    outputs: Fields = Field(default_factory=dict)

    @field_validator("inputs", "outputs", mode="before")
    @classmethod
    def _accept_list_form(cls, value: Any) -> Any:
        return _fields_from_list(value)


class RetryPolicy(Model):
    max_attempts: int = Field(3, ge=1, le=10)
    interval_seconds: float = Field(1.0, ge=0, le=3600)
    backoff_rate: float = Field(2.0, ge=1, le=10)
    max_delay_seconds: float = Field(300.0, gt=0, le=86400)
    # full: wait a random part of the delay, so the retries of many events spread out
    # (none by default, as in Step Functions)
    jitter: Literal["none", "full"] = "none"

    def delay_before(self, attempt: int, draw: float = 1.0) -> float:
        """Seconds to wait before `attempt` (2 for the first retry); `draw` in [0, 1]."""
        delay = self.interval_seconds * self.backoff_rate ** max(attempt - 2, 0)
        delay = min(delay, self.max_delay_seconds)
        return float(delay * draw if self.jitter == "full" else delay)


class Service(Model):
    name: Slug
    address: HttpUrl
    description: str | None = Field(None, max_length=1024)
    spec: Spec = Field(default_factory=Spec)
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    timeout_seconds: float = Field(10.0, gt=0, le=900)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    # callback: the service answers 202 at once and POSTs its outputs to the callback URL
    # later; `timeout_seconds` is then how long Machinery waits for that callback.
    mode: Literal["sync", "callback"] = "sync"
    headers: dict[str, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict, max_length=32
    )
    # Sent like `headers` but write-only: the API shows REDACTED, logs never show them,
    # and a PUT that sends REDACTED back keeps the stored value.
    secret_headers: dict[str, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict, max_length=16
    )

    def redacted(self) -> Service:
        hidden = dict.fromkeys(self.secret_headers, REDACTED)
        return self.model_copy(update={"secret_headers": hidden})

    @model_validator(mode="before")
    @classmethod
    def _accept_prototype_form(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and "spec" not in data
            and ("inputs" in data or "outputs" in data)
        ):
            data = dict(data)
            data["spec"] = {"inputs": data.pop("inputs", {}), "outputs": data.pop("outputs", {})}
        return data


@lru_cache(maxsize=1024)
def compile_expression(expression: str) -> ParsedResult:
    return jmespath.compile(expression)


Expression = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


def _compiled(expression: str) -> str:
    try:
        compile_expression(expression)
    except JMESPathError as error:
        raise ValueError(f"invalid JMESPath expression: {error}") from error
    return expression


Condition = Annotated[Expression, AfterValidator(_compiled)]


class StepOperation(Model):
    """JMESPath mappings: service input field <- context, context field <- service response."""

    inputs: dict[FieldName, Expression] = Field(default_factory=dict)
    outputs: dict[FieldName, Expression] = Field(default_factory=dict)

    @field_validator("inputs", "outputs")
    @classmethod
    def _compiles(cls, mappings: dict[str, str]) -> dict[str, str]:
        for name, expression in mappings.items():
            try:
                compile_expression(expression)
            except JMESPathError as error:
                raise ValueError(f"{name}: invalid JMESPath expression: {error}") from error
        return mappings


class Notify(Model):
    """Where to POST an event's summary when it ends."""

    url: HttpUrl


class Fallback(Model):
    """On failure, run this registered service in the step's place."""

    fallback: Slug


# fail: the event fails with the step (default); continue: the step is marked FAILED, its
# outputs absent, and the event goes on; {"fallback": service}: that service takes over.
OnError = Literal["fail", "continue"] | Fallback


class StepEntry(Model):
    """One step calling `service`; with `when`, only when it holds (else it is SKIPPED)."""

    service: Slug
    when: Condition | None = None
    id: Slug | None = None


class ConditionEntry(Model):
    """`steps` when `when` holds, else `otherwise` (nothing when it is empty)."""

    when: Condition
    steps: list[Entry] = Field(min_length=1, max_length=50)
    otherwise: list[Entry] = Field(default_factory=list, max_length=50)
    id: Slug | None = None


class ParallelEntry(Model):
    """Branches that start from the context at the fork and run at the same time."""

    parallel: list[Annotated[list[Entry], Field(min_length=1, max_length=50)]] = Field(
        min_length=1, max_length=10
    )
    id: Slug | None = None


MAX_MAP_CONCURRENCY = 40
MAX_MAP_ITEMS = 1000


class MapEntry(Model):
    """`steps` once per element of the array `map` gives, the element under `as`."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)

    map: Condition
    as_: FieldName = Field("item", alias="as")
    steps: list[Entry] = Field(min_length=1, max_length=50)
    collect: FieldName
    max_concurrency: int = Field(10, ge=1, le=MAX_MAP_CONCURRENCY)
    id: Slug | None = None


def _entry_kind(value: Any) -> str | None:
    """Which form an entry of `services` is, told by its keys (so errors name that form)."""
    if isinstance(value, str):
        return "name entry"
    if isinstance(value, BaseModel):
        return _ENTRY_TAGS.get(type(value).__name__)
    if not isinstance(value, dict):
        return None
    for key, kind in (("parallel", "parallel"), ("map", "map"), ("steps", "condition")):
        if key in value:
            return f"{kind} entry"
    return "step entry"


# A tag ends with " entry": an error's location names the entry's form with it, and the
# API leaves it out of the field path it answers.
_ENTRY_TAGS = {
    "StepEntry": "step entry",
    "ConditionEntry": "condition entry",
    "ParallelEntry": "parallel entry",
    "MapEntry": "map entry",
}

Entry = Annotated[
    Annotated[Slug, Tag("name entry")]
    | Annotated[StepEntry, Tag("step entry")]
    | Annotated[ConditionEntry, Tag("condition entry")]
    | Annotated[ParallelEntry, Tag("parallel entry")]
    | Annotated[MapEntry, Tag("map entry")],
    Discriminator(
        _entry_kind,
        custom_error_type="invalid_entry",
        custom_error_message="a step is a service name or an object with service, steps, "
        "parallel or map",
    ),
]
Group = ConditionEntry | ParallelEntry | MapEntry


@dataclass(frozen=True)
class Located:
    """An entry of a workflow and where it is: its path in errors, its top-level index."""

    entry: str | StepEntry | Group
    path: str  # spec.services[3].parallel[1][0]
    top: int  # the index of the top-level entry it is in

    @property
    def service(self) -> str | None:
        """The service a step calls (None for a group)."""
        if isinstance(self.entry, str):
            return self.entry
        return self.entry.service if isinstance(self.entry, StepEntry) else None

    @property
    def step_id(self) -> str | None:
        return None if isinstance(self.entry, str) else self.entry.id

    @property
    def at_top(self) -> bool:
        return self.path == f"spec.services[{self.top}]"


def children(entry: str | StepEntry | Group, path: str) -> list[tuple[list[Entry], str]]:
    """The lists of entries a group holds, each with its path."""
    if isinstance(entry, ConditionEntry):
        lists = [(entry.steps, f"{path}.steps")]
        return lists + ([(entry.otherwise, f"{path}.otherwise")] if entry.otherwise else [])
    if isinstance(entry, ParallelEntry):
        return [(branch, f"{path}.parallel[{b}]") for b, branch in enumerate(entry.parallel)]
    if isinstance(entry, MapEntry):
        return [(entry.steps, f"{path}.steps")]
    return []


MAX_STEPS = 200  # entries of every depth, groups included


class WorkflowSpec(Model):
    services: list[Entry] = Field(min_length=1, max_length=50)
    inputs: Fields = Field(default_factory=dict)
    outputs: Fields = Field(default_factory=dict)
    # Keyed by a step's id, a top-level index, or a service name (every step calling it)
    operations: dict[str, StepOperation] = Field(default_factory=dict)
    on_error: dict[str, OnError] = Field(default_factory=dict)  # keyed like operations
    notify: Notify | None = None  # the default for the workflow's events

    @field_validator("inputs", "outputs", mode="before")
    @classmethod
    def _accept_list_form(cls, value: Any) -> Any:
        return _fields_from_list(value)

    @field_validator("operations", "on_error", mode="before")
    @classmethod
    def _accept_empty_list(cls, value: Any) -> Any:
        # The prototype's workflow files say `"operations": [ ]` for none.
        return {} if value == [] else value

    def located(self) -> list[Located]:
        """Every entry, groups and what they hold, depth first, in definition order."""
        found: list[Located] = []

        def visit(entries: list[Entry], prefix: str, top: int | None) -> None:
            for index, entry in enumerate(entries):
                path = f"{prefix}[{index}]"
                owner = index if top is None else top
                found.append(Located(entry, path, owner))
                for inner, inner_path in children(entry, path):
                    visit(inner, inner_path, owner)

        visit(self.services, "spec.services", None)
        return found

    @model_validator(mode="after")
    def _keys_name_steps(self) -> WorkflowSpec:
        located = self.located()
        if len(located) > MAX_STEPS:
            raise ValueError(f"a workflow holds at most {MAX_STEPS} steps and groups")
        ids: dict[str, str] = {}
        for place in located:
            if place.step_id is None:
                continue
            if place.step_id in ids:
                first = ids[place.step_id]
                raise ValueError(f"step id {place.step_id!r} is used twice: {first}, {place.path}")
            ids[place.step_id] = place.path
        names = {place.service for place in located if place.service}
        for block, keys in (("operations", self.operations), ("on_error", self.on_error)):
            for key in keys:
                if key in ids or key in names:
                    continue
                if key.isdigit() and int(key) < len(self.services):
                    continue
                raise ValueError(
                    f"{block} key {key!r} names neither a service of the workflow, a step id "
                    "nor a top-level step index"
                )
        for key, policy in self.on_error.items():
            groups = [p for p in located if p.service is None and key in _keys_of(p)]
            if groups and isinstance(policy, Fallback):
                raise ValueError(f"on_error {key!r}: a group cannot fall back to a service")
        return self

    def at(self, index: int) -> Located:
        """The top-level entry `index`."""
        return Located(self.services[index], f"spec.services[{index}]", index)

    def operation_for(self, place: Located | int) -> StepOperation | None:
        place = self.at(place) if isinstance(place, int) else place
        return _first(self.operations, _keys_of(place))

    def on_error_for(self, place: Located | int) -> OnError:
        place = self.at(place) if isinstance(place, int) else place
        return _first(self.on_error, _keys_of(place)) or "fail"

    def fallback_services(self) -> set[str]:
        return {
            policy.fallback for policy in self.on_error.values() if isinstance(policy, Fallback)
        }

    def step_services(self) -> list[str]:
        """The service of every step, in definition order, with repeats."""
        return [place.service for place in self.located() if place.service]

    def all_services(self) -> set[str]:
        """Every service the workflow may call: its steps' and their fallbacks'."""
        return set(self.step_services()) | self.fallback_services()


def _keys_of(place: Located) -> list[str]:
    """The keys of operations and on_error that may name `place`, the most precise first."""
    keys = [place.step_id] if place.step_id else []
    if place.at_top:
        keys.append(str(place.top))
    if place.service:
        keys.append(place.service)
    return keys


V = TypeVar("V")


def _first(mapping: dict[str, V], keys: list[str]) -> V | None:
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None


class Workflow(Model):
    name: Slug
    description: str | None = Field(None, max_length=1024)
    spec: WorkflowSpec

    @model_validator(mode="before")
    @classmethod
    def _accept_prototype_form(cls, data: Any) -> Any:
        # The prototype's files may name the spec's fields beside `name`, as its services do.
        if isinstance(data, dict) and "spec" not in data and "services" in data:
            data = dict(data)
            data["spec"] = {key: data.pop(key) for key in _SPEC_FIELDS if key in data}
        return data


_SPEC_FIELDS = tuple(WorkflowSpec.model_fields)


class ErrorInfo(Model):
    type: str
    message: str
    status_code: int | None = None
    retryable: bool = False


class Attempt(Model):
    attempt: int
    started_at: datetime
    ended_at: datetime
    duration_ms: float
    status_code: int | None = None
    error: ErrorInfo | None = None


class StepRecord(Model):
    """A step as it ran; a group's record holds its branches' or iterations' steps."""

    index: int  # in its list: the workflow's services, or a branch's or an iteration's steps
    service: str | None = None  # None for a group
    kind: Literal["service", "when", "parallel", "map"] = "service"
    id: str | None = None
    branch: int | None = None  # in a parallel group, or 0 (steps) / 1 (otherwise) in a `when`
    iteration: int | None = None  # in a map
    status: StepStatus
    attempts: int = 0  # attempts that have ended
    # The attempt under way (attempts + 1) while the step is RUNNING or WAITING, else None.
    attempt: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: float | None = None
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    history: list[Attempt] = Field(default_factory=list)
    fallback_from: str | None = None  # the service that failed before `service` took over
    retry_at: datetime | None = None  # a RETRYING step in a group: its next attempt's time
    deadline: datetime | None = None  # a WAITING step in a group: when its callback times out
    decision: bool | None = None  # a `when` group: whether its condition held
    total: int | None = None  # a map: its elements
    completed: int | None = None  # a map: the iterations that ended
    steps: list[StepRecord] = Field(default_factory=list)  # a group's
    service_version: int | None = None  # the version of `service` the event was planned with


class RunRecord(Model):
    """An earlier run of a retried event: how it ended and the steps it did not complete."""

    run: int
    status: EventStatus
    error: ErrorInfo | None = None
    ended_at: datetime | None = None
    steps: list[StepRecord] = Field(default_factory=list)


class PlannedStep(Model):
    """A step as it will run: the service definition is pinned when the event is accepted."""

    service: Service
    operation: StepOperation | None = None
    on_error: Literal["fail", "continue", "fallback"] = "fail"
    fallback: Service | None = None
    when: str | None = None
    id: str | None = None
    service_version: int | None = None  # the service's version when the event was accepted
    fallback_version: int | None = None


class PlannedGroup(Model):
    """A group as it will run. `branches`: a `when`'s steps and otherwise, a parallel's
    branches, a map's steps (run once per element)."""

    kind: Literal["when", "parallel", "map"]
    branches: list[list[PlannedNode]]
    when: str | None = None
    map: str | None = None
    as_name: str = "item"
    collect: str | None = None
    max_concurrency: int = 10
    on_error: Literal["fail", "continue"] = "fail"  # a map's applies to each iteration
    id: str | None = None

    def leaves(self) -> Iterator[PlannedStep]:
        for branch in self.branches:
            for node in branch:
                yield from node.leaves() if isinstance(node, PlannedGroup) else (node,)


PlannedNode = PlannedStep | PlannedGroup


class Plan(Model):
    workflow_version: int
    steps: list[PlannedNode]
    outputs: Fields
    callback_base_url: str | None = None  # the API's own URL, for callback services

    def leaves(self) -> Iterator[PlannedStep]:
        for node in self.steps:
            yield from node.leaves() if isinstance(node, PlannedGroup) else (node,)

    @property
    def holds_secrets(self) -> bool:
        """Whether a service of the plan has secret headers (the plan must then stay stored)."""
        return any(
            step.service.secret_headers or (step.fallback and step.fallback.secret_headers)
            for step in self.leaves()
        )


@dataclass(frozen=True)
class Callback:
    """A callback service's pending answer: its single-use token's record."""

    token_hash: str
    event_id: str
    step: int
    attempt: int  # the step attempt that dispatched it: only that attempt may be completed
    dispatched_at: datetime
    expires_at: datetime
    used: bool = False
    path: tuple[int, ...] | None = None  # in a group: the step's path in it


@dataclass(frozen=True)
class IdempotencyClaim:
    """An Idempotency-Key of POST /e/{workflow_id}, as stored."""

    workflow_id: str
    key: str  # as the client sent it; the store keeps only its hash
    request_hash: str  # sha256 of the request: the same key with another body is refused
    expires_at: datetime


class NotificationStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


class Notification(Model):
    """The delivery of an event's completion notification."""

    url: str
    status: NotificationStatus = NotificationStatus.PENDING
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    last_attempt_at: datetime | None = None


class PayloadRef(Model):
    """A payload stored apart from its event (domain/payloads.py): its content address and
    the size of its JSON."""

    ref: str
    bytes: int


class Waiting(Model):
    """What an event waits for outside any execution, its run's last one having ended (a
    segment): a callback (until its timeout's timer) or a backoff (its timer resumes it)."""

    kind: Literal["callback", "backoff"]
    at: datetime  # when its timer fires


class TraceContext(Model):
    """The event's W3C trace (domain/tracecontext.py): every call it makes joins it."""

    trace_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    flags: str = Field("01", pattern=r"^[0-9a-f]{2}$")
    state: str | None = None  # the client's tracestate, passed on
    xray_trace_id: str | None = None  # the intake's X-Ray trace, when Lambda traced it


class Event(Model):
    """An event as stored: its status, its running context and every step so far."""

    event_id: str
    workflow_id: str
    status: EventStatus
    version: int = 0
    data: dict[str, Any]
    context: dict[str, Any] = Field(default_factory=dict)
    step_index: int = 0
    steps: list[StepRecord] = Field(default_factory=list)
    outputs: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    acknowledged_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    notification: Notification | None = None
    run: int = 1  # POST /events/{id}/retry starts run 2, 3...
    runs: list[RunRecord] = Field(default_factory=list)  # the earlier ones
    workflow_version: int | None = None  # the version it runs (None: accepted before versions)
    # The step function invocation advancing the event, until when: a duplicate or
    # concurrent invocation must not call the same service for the same attempt.
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    # Before segments, the task token a group's callbacks resumed: only read, so that an
    # event stored then still loads.
    group_task_token: str | None = None
    # The executions of this event that ended to wait (each a segment of its run): it names
    # the timer of the current wait and the execution that resumes it.
    segment: int = 0
    waiting: Waiting | None = None
    # The execution advancing it (its ARN, as the state machine gave it): what cancel stops.
    execution: str | None = None
    # Its trace (None: accepted before traces; `trace` then derives one from its id).
    trace_context: TraceContext | None = None
    # The payloads not in this copy, by JSON pointer (RFC 6901) into it: empty for what a
    # worker loads (every payload back in place); a view's read leaves those past its budget
    # (placeholders in place), and such a copy is never saved.
    payloads: dict[str, PayloadRef] = Field(default_factory=dict)

    @property
    def current_step(self) -> StepRecord | None:
        """The record of the step under way, once it has one."""
        return self.steps[self.step_index] if len(self.steps) > self.step_index else None

    @property
    def trace(self) -> TraceContext:
        """Its trace; for an event accepted before traces, one derived from its id (the same
        for each of its calls)."""
        if self.trace_context is not None:
            return self.trace_context
        return TraceContext(trace_id=hashlib.sha256(self.event_id.encode()).hexdigest()[:32])

    @property
    def execution_name(self) -> str:
        """The state machine execution that starts the current run."""
        return self.event_id if self.run == 1 else f"{self.event_id}-run-{self.run}"

    @property
    def resumed_execution_name(self) -> str:
        """The execution that resumes the run once its current wait is over (a callback came)."""
        return f"{self.execution_name}-s{self.segment}"

    @property
    def timer_name(self) -> str:
        """The schedule of the current wait (at most 64 characters: a uuid, `-t`, a count)."""
        return f"{self.event_id}-t{self.segment}"


# --- API bodies and answers ------------------------------------------------------------


class EventRequest(Model):
    data: dict[str, Any]
    notify: Notify | None = None


class ServiceAccepted(BaseModel):
    service_id: str
    acknowledged_at: datetime
    version: int


class WorkflowAccepted(BaseModel):
    workflow_id: str
    acknowledged_at: datetime
    version: int  # the latest
    live_version: int | None = None  # what new events run


class EventAccepted(BaseModel):
    event_id: str
    workflow_id: str
    status: EventStatus
    acknowledged_at: datetime
    replayed: bool = False  # an Idempotency-Key named this event already

    @classmethod
    def of(cls, event: Event, replayed: bool = False) -> EventAccepted:
        return cls(
            event_id=event.event_id,
            workflow_id=event.workflow_id,
            status=event.status,
            acknowledged_at=event.acknowledged_at,
            replayed=replayed,
        )


class ServiceRecord(BaseModel):
    service_id: str
    version: int
    created_at: datetime
    updated_at: datetime
    definition: Service
    used_by: list[str] = Field(default_factory=list)


def redact(record: ServiceRecord) -> ServiceRecord:
    return record.model_copy(update={"definition": record.definition.redacted()})


class Canary(Model):
    """A share of new events sent to another version than the live one."""

    version: int = Field(ge=1)
    percent: float = Field(gt=0, lt=100)


class LiveRequest(Model):
    """PUT /workflows/{id}/live: the version new events run (a rollback is this), and
    optionally a canary."""

    version: int = Field(ge=1)
    canary: Canary | None = None


class WorkflowLive(BaseModel):
    workflow_id: str
    live_version: int
    canary: Canary | None = None


class WorkflowRecord(BaseModel):
    workflow_id: str
    version: int  # the latest
    created_at: datetime
    updated_at: datetime
    definition: Workflow  # the latest version's
    live_version: int | None = None  # what POST /e/{id} runs; None: the latest
    canary: Canary | None = None

    @property
    def live(self) -> int:
        return self.live_version or self.version


def definition_hash(definition: BaseModel) -> str:
    """The hash of a definition's canonical JSON: equal definitions, equal hashes."""
    dumped = definition.model_dump(mode="json")
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class WorkflowVersion(BaseModel):
    """A workflow as one of its versions defined it: immutable."""

    workflow_id: str
    version: int
    hash: str
    created_at: datetime
    definition: Workflow


class ServiceVersion(BaseModel):
    """A service as one of its versions defined it: immutable (secret headers redacted)."""

    service_id: str
    version: int
    hash: str
    created_at: datetime
    definition: Service


class PayloadLink(BaseModel):
    """A value this answer does not hold inline: where it is (a JSON pointer into the
    answer), its size, and the route that answers it."""

    path: str = Field(examples=["/steps/3/output/report"])
    ref: str = Field(description="The SHA-256 of the value's JSON")
    bytes: int
    href: str = Field(examples=["/events/0b6d.../payloads/9f86d081..."])


def link_payloads(
    answer: dict[str, Any], event: Event, under: str = "", at: str = ""
) -> list[PayloadLink]:
    """Put a link in `answer` (a view's JSON) at each place of `event` whose payload it does
    not hold: the places under `under`, moved to `at` (a step's answer is rooted at the
    step). The link in place is `{"$ref": href, "bytes": n}`; the list says where each is."""
    links = []
    for pointer, stored in event.payloads.items():
        if pointer.startswith("/context") or not (
            pointer == under or pointer.startswith(under + "/")
        ):
            continue
        path = at + pointer[len(under) :]
        href = f"/events/{event.event_id}/payloads/{stored.ref}"
        put_at(answer, path, {"$ref": href, "bytes": stored.bytes})
        links.append(PayloadLink(path=path, ref=stored.ref, bytes=stored.bytes, href=href))
    return links


class EventView(BaseModel):
    event_id: str
    workflow_id: str
    status: EventStatus
    data: dict[str, Any]
    outputs: dict[str, Any] | None
    error: ErrorInfo | None
    steps: list[StepRecord]
    acknowledged_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    duration_ms: float | None
    notification: Notification | None = None
    run: int = 1
    runs: list[RunRecord] = Field(default_factory=list)
    workflow_version: int | None = None
    trace_id: str | None = Field(
        None,
        description="The event's W3C trace id: every call to its services carries it in "
        "`traceparent` (the client's, if its request carried one)",
    )
    xray_trace_id: str | None = Field(
        None, description="The X-Ray trace of the request that sent it, when Lambda traced it"
    )
    linked_payloads: list[PayloadLink] = Field(
        default_factory=list,
        description="The values past what the answer holds inline (1 MiB of stored payloads),"
        ' each replaced in place by {"$ref": href, "bytes": n}: GET href answers it',
    )

    @classmethod
    def of(cls, event: Event) -> EventView:
        duration = None
        if event.ended_at is not None:
            duration = milliseconds(event.acknowledged_at, event.ended_at)
        view = cls(
            event_id=event.event_id,
            workflow_id=event.workflow_id,
            status=event.status,
            data=event.data,
            outputs=event.outputs,
            error=event.error,
            steps=event.steps,
            acknowledged_at=event.acknowledged_at,
            updated_at=event.updated_at,
            ended_at=event.ended_at,
            duration_ms=duration,
            notification=event.notification,
            run=event.run,
            runs=event.runs,
            workflow_version=event.workflow_version,
            trace_id=event.trace.trace_id,
            xray_trace_id=event.trace.xray_trace_id,
        )
        if not event.payloads:
            return view
        answer = view.model_dump(mode="json")
        links = link_payloads(answer, event)
        return cls.model_validate({**answer, "linked_payloads": links})


class StepView(StepRecord):
    """One step of an event (GET /events/{id}/steps/{step}): its record with its payloads
    inline up to 4 MiB, links past it."""

    event_id: str
    path: str = Field(
        description="The step's place: its top-level index, then branch and index for each"
        " group level (`3.1.0`), and `:iteration` inside a map (`4.0:7`)"
    )
    linked_payloads: list[PayloadLink] = Field(default_factory=list)


class CompletionNotice(BaseModel):
    """What a completion notification POSTs (signed: X-Machinery-Signature)."""

    event_id: str
    workflow_id: str
    status: EventStatus
    outputs: dict[str, Any] | None
    error: ErrorInfo | None
    acknowledged_at: datetime
    ended_at: datetime | None

    @classmethod
    def of(cls, event: Event) -> CompletionNotice:
        return cls.model_validate(event.model_dump(include=set(cls.model_fields)))


class CallbackAccepted(BaseModel):
    event_id: str
    step: int
    status: EventStatus


class EventSummary(BaseModel):
    event_id: str
    workflow_id: str
    status: EventStatus
    acknowledged_at: datetime
    # The listing index is written only when the status changes (each write is billed), so
    # this is when the status last changed; GET /events/{id} has the last step's time.
    updated_at: datetime = Field(description="When the event's status last changed")


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class ErrorDetail(BaseModel):
    path: str
    message: str
    location: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    message: str
    details: list[ErrorDetail] | None = None


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


# --- GET /workflows/{workflow_id}/stats (domain/stats.py computes it) ---------------------


class StatusCounts(BaseModel):
    """The events of the window by status."""

    SUCCEEDED: int = 0
    FAILED: int = 0
    CANCELLED: int = 0
    RUNNING: int = Field(0, description="RUNNING, and PENDING (accepted, not started yet)")
    WAITING: int = 0


class DurationStats(BaseModel):
    """Nearest-rank percentiles and the maximum, in milliseconds (null: none)."""

    p50: float | None = None
    p95: float | None = None
    max: float | None = None


class StepStats(BaseModel):
    """One planned step over the window's events: its attempts (a map's iterations folded
    into the step), how many failed, and their durations."""

    step: str = Field(
        description="The step's path as the step views name it: its top-level index, then "
        "branch and index for each group level (`3.1.0`); a map's steps without the "
        "iteration (`4.0` holds `4.0:7`)",
        examples=["0", "3.1.0", "4.0"],
    )
    service: str = Field(description="The service the step calls (a fallback's calls count here)")
    calls: int = Field(description="Attempts that ended")
    failed: int = Field(description="Attempts that ended with an error")
    retries: int = Field(description="Attempts beyond the first of each step record")
    p50_ms: float | None = Field(description="Nearest-rank median of the attempts' durations")
    p95_ms: float | None = Field(description="Nearest-rank 95th percentile of the same")


class ErrorStats(BaseModel):
    """The FAILED events of one error type."""

    type: str
    count: int
    last_event_id: str = Field(description="The newest such event")


class StatsSample(BaseModel):
    """How many events the statistics read: at most `limit`, the newest of the window."""

    events: int
    limit: int
    cut: bool = Field(description="true: the window held more events than `limit`")


class WorkflowStats(BaseModel):
    """A workflow's events acknowledged within the window, counted and timed."""

    workflow_id: str
    window: StatsWindow
    since: datetime = Field(description="The start of the window")
    events: StatusCounts
    duration_ms: DurationStats = Field(
        description="From acknowledgement to end, over the events that ended"
    )
    steps: list[StepStats]
    errors: list[ErrorStats] = Field(description="By error type, the most frequent first")
    sample: StatsSample
