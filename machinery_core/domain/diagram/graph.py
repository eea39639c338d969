"""What a diagram shows: a workflow, or an event's run over it, as a graph.

`workflow_graph` and `event_graph` compute the nodes, edges and statuses, every text
already cleaned and cut to length; the renderers (`mermaid`, `svg`) only draw that graph,
so the two formats never disagree. The statuses' labels and colours live here too, as both
renderers draw them. Pure functions: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from machinery_core.contract import duration_text
from machinery_core.domain import mapping
from machinery_core.domain.models import (
    ConditionEntry,
    Entry,
    ErrorInfo,
    EventStatus,
    EventView,
    Fallback,
    Fields,
    Located,
    MapEntry,
    ParallelEntry,
    Service,
    StepEntry,
    StepRecord,
    StepStatus,
    Workflow,
    milliseconds,
)

MAX_TEXT = 160  # characters of one line of the model: a name, a field list
MAX_EXPRESSION = 40  # characters of a mapping expression on an edge
MAX_ERROR = 120  # characters of an error shown on a step


class Status(StrEnum):
    """What a node shows; each value has one style in both renderers."""

    PLANNED = "planned"  # a workflow diagram: nothing ran
    PENDING = "pending"  # not reached (yet)
    RUNNING = "running"
    RETRYING = "retrying"  # failed, and waits to be tried again
    WAITING = "waiting"  # for a callback
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CONTINUED = "continued"  # failed, and the workflow went on without its outputs
    FELL_BACK = "fell_back"  # failed, and its fallback service took over
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # its `when` did not hold


STATUS_LABELS: dict[Status, str] = {
    Status.PLANNED: "planned",
    Status.PENDING: "not reached",
    Status.RUNNING: "running",
    Status.RETRYING: "retrying",
    Status.WAITING: "waiting for callback",
    Status.SUCCEEDED: "succeeded",
    Status.FAILED: "failed",
    Status.CONTINUED: "failed, continued",
    Status.FELL_BACK: "failed, fell back",
    Status.CANCELLED: "cancelled",
    Status.SKIPPED: "skipped",
}


@dataclass(frozen=True)
class Style:
    fill: str
    stroke: str
    text: str
    dashed: bool = False


# green, red, amber, blue and grey; orange for a failure the workflow got over
STYLES: dict[Status, Style] = {
    Status.PLANNED: Style("#f8fafc", "#475569", "#0f172a"),
    Status.PENDING: Style("#f1f5f9", "#94a3b8", "#64748b", dashed=True),
    Status.RUNNING: Style("#dbeafe", "#2563eb", "#1e3a8a"),
    Status.RETRYING: Style("#fef9c3", "#ca8a04", "#713f12"),
    Status.WAITING: Style("#fef3c7", "#d97706", "#78350f"),
    Status.SUCCEEDED: Style("#dcfce7", "#16a34a", "#14532d"),
    Status.FAILED: Style("#fee2e2", "#dc2626", "#7f1d1d"),
    Status.CONTINUED: Style("#ffedd5", "#ea580c", "#7c2d12"),
    Status.FELL_BACK: Style("#ffedd5", "#c2410c", "#7c2d12", dashed=True),
    Status.CANCELLED: Style("#e5e7eb", "#4b5563", "#374151"),
    Status.SKIPPED: Style("#f8fafc", "#94a3b8", "#475569", dashed=True),
}
DASHES = "5 3"  # the dash and gap of a dashed style's border, in both formats

# How a recorded step draws. A FAILED one may instead be CONTINUED (the event went on)
# or FELL_BACK (its fallback took over): see `_recorded_status` and `event_graph`.
STEP_STATUSES: dict[StepStatus, Status] = {
    StepStatus.RUNNING: Status.RUNNING,
    StepStatus.RETRYING: Status.RETRYING,
    StepStatus.WAITING: Status.WAITING,
    StepStatus.SUCCEEDED: Status.SUCCEEDED,
    StepStatus.FAILED: Status.FAILED,
    StepStatus.CANCELLED: Status.CANCELLED,
    StepStatus.SKIPPED: Status.SKIPPED,
}

# How the outputs node draws, by the event's status.
OUTPUT_STATUSES: dict[EventStatus, Status] = {
    EventStatus.PENDING: Status.PENDING,
    EventStatus.RUNNING: Status.PENDING,
    EventStatus.WAITING: Status.PENDING,
    EventStatus.SUCCEEDED: Status.SUCCEEDED,
    EventStatus.FAILED: Status.FAILED,
    EventStatus.CANCELLED: Status.CANCELLED,
}

NodeKind = Literal["inputs", "step", "fallback", "outputs"]
# flow: the data path; continue: on_error continue skips onward; fallback: to the fallback
# service; resume: from the fallback back onto the path
EdgeKind = Literal["flow", "continue", "fallback", "resume"]


@dataclass(frozen=True)
class Node:
    id: str  # an identifier safe in both formats: inputs, outputs, s{index}, f{index}
    kind: NodeKind
    title: str
    lines: tuple[str, ...] = ()
    status: Status = Status.PLANNED
    callback: bool = False  # the service answers later, by callback
    step: int | None = None  # the step index; a fallback's is the step it stands in for


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind
    label: str = ""

    @property
    def dashed(self) -> bool:
        return self.kind != "flow"


@dataclass(frozen=True)
class Graph:
    title: str
    description: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    event: bool = False  # an event's run: statuses matter, the SVG draws a legend


def clean(text: str, limit: int = MAX_TEXT) -> str:
    """One line of printable text of at most `limit` characters (an ellipsis ends a cut).

    Control, surrogate, unassigned and format characters become spaces: what is left is
    valid XML character data and cannot break a line of Mermaid.
    """
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def workflow_graph(workflow: Workflow, services: dict[str, Service]) -> Graph:
    """The workflow as a graph: inputs, each step in order, fallbacks aside, outputs.

    A service missing from `services` is drawn by its name alone.
    """
    return _graph(workflow, services, _top_names(workflow))


def _top_names(workflow: Workflow) -> list[str]:
    """What each top-level entry is called: its service, or what its group does."""
    spec = workflow.spec
    return [spec.at(i).service or group_title(entry) for i, entry in enumerate(spec.services)]


def group_title(entry: object) -> str:
    if isinstance(entry, ConditionEntry):
        return clean(f"when {entry.when}", MAX_EXPRESSION + 5)
    if isinstance(entry, ParallelEntry):
        return f"parallel · {len(entry.parallel)} branches"
    if isinstance(entry, MapEntry):
        return clean(f"map {entry.as_} in {entry.map}", MAX_EXPRESSION + 10)
    return "?"


def _group_lines(entry: object) -> tuple[str, ...]:
    """A group's steps, one line per way, branch or the map's steps."""

    def chain(entries: list[Entry]) -> str:
        parts = []
        for inner in entries:
            if isinstance(inner, str):
                parts.append(inner)
            elif isinstance(inner, StepEntry):
                parts.append(
                    f"{inner.service} (when {inner.when})" if inner.when else inner.service
                )
            else:
                parts.append(f"[{group_title(inner)}]")
        return " → ".join(parts)

    if isinstance(entry, ConditionEntry):
        lines = [f"yes: {chain(entry.steps)}", f"no: {chain(entry.otherwise) or '(nothing)'}"]
    elif isinstance(entry, ParallelEntry):
        lines = [f"branch {n + 1}: {chain(branch)}" for n, branch in enumerate(entry.parallel)]
    elif isinstance(entry, MapEntry):
        lines = [f"each: {chain(entry.steps)}", f"collect: {entry.collect}"]
    else:
        lines = []
    return tuple(clean(line) for line in lines)


def _graph(workflow: Workflow, services: dict[str, Service], names: list[str]) -> Graph:
    """`names`: the service of each step; past the workflow's own steps, as they ran."""
    spec = workflow.spec
    steps = len(spec.services)
    places = [spec.at(index) for index in range(steps)]
    nodes = [Node("inputs", "inputs", "inputs", _field_lines(spec.inputs))]
    edges: list[Edge] = []
    for index, name in enumerate(names):
        place = places[index] if index < steps else None
        if place is not None and place.service is None:
            lines = (f"step {index + 1} · {place.entry.__class__.__name__[:-5].lower()}",)
            nodes.append(
                Node(
                    f"s{index}", "step", clean(name), lines + _group_lines(place.entry), step=index
                )
            )
            edges.append(Edge(f"s{index - 1}" if index else "inputs", f"s{index}", "flow"))
            continue
        service = services.get(name)
        nodes.append(_service_node(f"s{index}", "step", name, service, workflow, place))
        source = f"s{index - 1}" if index else "inputs"
        label = _inputs_label(service, workflow, place)
        edges.append(Edge(source, f"s{index}", "flow", label))
    edges.append(
        Edge(f"s{len(names) - 1}" if names else "inputs", "outputs", "flow", _names(spec.outputs))
    )
    for index in range(min(steps, len(names))):
        policy = spec.on_error_for(places[index])
        onward = f"s{index + 1}" if index + 1 < len(names) else "outputs"
        if policy == "continue":
            edges.append(Edge(f"s{index}", onward, "continue", "on error: continue"))
        elif isinstance(policy, Fallback):
            service = services.get(policy.fallback)
            nodes.append(
                _service_node(
                    f"f{index}", "fallback", policy.fallback, service, workflow, places[index]
                )
            )
            edges.append(Edge(f"s{index}", f"f{index}", "fallback", "on error: fallback"))
            edges.append(Edge(f"f{index}", onward, "resume"))
    nodes.append(Node("outputs", "outputs", "outputs", _field_lines(spec.outputs)))
    chain = " → ".join(["inputs", *names, "outputs"])
    return Graph(
        title=clean(f"workflow {workflow.name}"),
        description=clean(f"Workflow {workflow.name}: {chain}", 2000),
        nodes=tuple(nodes),
        edges=tuple(edges),
    )


def _service_node(
    node_id: str,
    kind: NodeKind,
    name: str,
    service: Service | None,
    workflow: Workflow,
    place: Located | None,
) -> Node:
    callback = service is not None and service.mode == "callback"
    number = int(node_id[1:]) + 1
    first = f"step {number}" if kind == "step" else f"fallback of step {number}"
    lines = [first + (" · waits for callback" if callback else "")]
    if service is None:
        lines.append("(definition not found)")
    else:
        operation = workflow.spec.operation_for(place) if place is not None else None
        produced = ", ".join(mapping.output_sources(service, operation)) or "(nothing)"
        lines.append(clean(f"gives: {produced}"))
    return Node(node_id, kind, clean(name), tuple(lines), callback=callback, step=number - 1)


def _inputs_label(service: Service | None, workflow: Workflow, place: Located | None) -> str:
    """What flows into a step: its service's input fields, as its operation maps them.

    `field` for one taken from the context by its own name, `field ← expression` for one
    the operation maps.
    """
    if service is None:
        return ""
    operation = workflow.spec.operation_for(place) if place is not None else None
    mapped = operation.inputs if operation is not None else {}
    parts = []
    for name, expression in mapping.input_sources(service, operation).items():
        own = name not in mapped
        parts.append(name if own else f"{name} ← {clean(expression, MAX_EXPRESSION)}")
    return clean(", ".join(parts))


def _field_lines(fields: Fields) -> tuple[str, ...]:
    if not fields:
        return ("(none)",)
    return tuple(
        clean(f"{name}: {spec.type}" + ("" if spec.required else " (optional)"))
        for name, spec in fields.items()
    )


def _names(fields: Fields) -> str:
    return clean(", ".join(fields))


def event_graph(workflow: Workflow, services: dict[str, Service], event: EventView) -> Graph:
    """The workflow's graph with the event's run drawn on it: each step's status, attempts,
    duration and error, and the outputs by how the event ended.

    Steps the event recorded past the workflow's own (a definition that changed since) are
    drawn from their records.
    """
    records = {record.index: record for record in event.steps}
    names = _top_names(workflow)
    for index in range(len(names), max(records, default=-1) + 1):
        record = records.get(index)
        names.append((record.fallback_from or record.service or record.kind) if record else "?")
    base = _graph(workflow, services, names)
    nodes = tuple(_drawn(node, records, event) for node in base.nodes)
    run = f" (run {event.run})" if event.run > 1 else ""
    title = clean(f"event {event.event_id} of workflow {event.workflow_id} · {event.status}{run}")
    states = ", ".join(
        f"{node.title} {STATUS_LABELS[node.status]}" for node in nodes if node.kind == "step"
    )
    return Graph(
        title=title,
        description=clean(f"Event {event.event_id} {event.status}{run}: {states}", 2000),
        nodes=nodes,
        edges=base.edges,
        event=True,
    )


def _drawn(node: Node, records: dict[int, StepRecord], event: EventView) -> Node:
    if node.kind == "inputs":
        return _with(node, Status.SUCCEEDED, ("received",))
    if node.kind == "outputs":
        return _outputs(node, event)
    assert node.step is not None
    record = records.get(node.step)
    fell_back = record is not None and record.fallback_from is not None
    if node.kind == "fallback":
        if record is None or not fell_back:
            return _with(node, Status.PENDING, ("not used",))
        return _with(node, _recorded_status(record, event), _run_lines(record, event))
    if record is None:
        return _with(node, Status.PENDING, (STATUS_LABELS[Status.PENDING],))
    title = clean(record.fallback_from or record.service or node.title)
    if record.fallback_from is not None:
        return _with(node, Status.FELL_BACK, _fell_back_lines(record), title)
    return _with(node, _recorded_status(record, event), _run_lines(record, event), title)


def _with(node: Node, status: Status, lines: Iterable[str], title: str | None = None) -> Node:
    return Node(
        node.id,
        node.kind,
        title if title is not None else node.title,
        (*node.lines, *lines),
        status,
        node.callback,
        node.step,
    )


def _recorded_status(record: StepRecord, event: EventView) -> Status:
    status = STEP_STATUSES[record.status]
    if record.status is StepStatus.FAILED and _went_on(record, event):
        return Status.CONTINUED
    return status


def _went_on(failed: StepRecord, event: EventView) -> bool:
    """Whether the event went past a failed step (its on_error policy was continue)."""
    if any(step.index > failed.index for step in event.steps):
        return True
    return event.status is not EventStatus.FAILED or event.error != failed.error


def _run_lines(record: StepRecord, event: EventView) -> tuple[str, ...]:
    status = _recorded_status(record, event)
    attempts = record.attempts
    if record.fallback_from is not None:  # the history holds the failed service's first
        duration = _span(record.history[-attempts].started_at if attempts else None, record)
    else:
        duration = record.duration_ms
    lines = [_summary(STATUS_LABELS[status], attempts, duration)]
    if record.error is not None and status is not Status.SUCCEEDED:
        lines.append(_error(record.error))
    return tuple(lines)


def _fell_back_lines(record: StepRecord) -> tuple[str, ...]:
    """The failed service's part of a step its fallback took over."""
    own = record.history[: len(record.history) - record.attempts]
    duration = None
    if own and record.started_at is not None:
        duration = milliseconds(record.started_at, own[-1].ended_at)
    lines = [_summary(STATUS_LABELS[Status.FELL_BACK], len(own), duration)]
    if own and own[-1].error is not None:
        lines.append(_error(own[-1].error))
    lines.append(clean(f"→ fallback {record.service}"))
    return tuple(lines)


def _span(started: datetime | None, record: StepRecord) -> float | None:
    if started is None or record.ended_at is None:
        return None
    return milliseconds(started, record.ended_at)


def _summary(label: str, attempts: int, duration_ms: float | None) -> str:
    parts = [label, f"{attempts} attempt" + ("" if attempts == 1 else "s")]
    if duration_ms is not None:
        parts.append(duration_text(duration_ms))
    return " · ".join(parts)


def _error(error: ErrorInfo) -> str:
    code = f" (HTTP {error.status_code})" if error.status_code is not None else ""
    return clean(f"{error.type}{code}: {error.message}", MAX_ERROR)


def _outputs(node: Node, event: EventView) -> Node:
    status = OUTPUT_STATUSES[event.status]
    lines = [STATUS_LABELS[status]]
    if event.status is EventStatus.SUCCEEDED:
        lines = [
            "produced" + (f" · {duration_text(event.duration_ms)}" if event.duration_ms else "")
        ]
    elif event.status is EventStatus.FAILED:
        if event.error is not None and all(step.error != event.error for step in event.steps):
            lines.append(_error(event.error))  # the event's own failure, on no step
        else:
            status, lines = Status.PENDING, [STATUS_LABELS[Status.PENDING]]
    return _with(node, status, lines)
