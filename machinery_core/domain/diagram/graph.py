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
    WorkflowSpec,
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

# decision: a `when` group's diamond; fork and join: a parallel group's bars (join also
# where a decision's two ways meet); map: the box a map's steps are drawn inside
NodeKind = Literal["inputs", "step", "fallback", "outputs", "decision", "fork", "join", "map"]
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
    # in a group: its path below the top-level step (`1.0`: branch 1, its step 0)
    path: str | None = None


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
class Block:
    """How the SVG lays a workflow with groups out: a column of parts, top down."""

    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Split:
    """A decision or a fork (`head`), its ways side by side, and where they meet (`tail`)."""

    head: str
    ways: tuple[Block, ...]
    tail: str


@dataclass(frozen=True)
class Frame:
    """A map's box (`node`) with its steps inside."""

    node: str
    inner: Block


@dataclass(frozen=True)
class Leaf:
    """A step, and its fallback beside it."""

    node: str
    side: str | None = None


Part = Leaf | Split | Frame


@dataclass(frozen=True)
class Graph:
    title: str
    description: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    event: bool = False  # an event's run: statuses matter, the SVG draws a legend
    layout: Block | None = None  # a workflow with groups: how its parts nest


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


def _graph(workflow: Workflow, services: dict[str, Service], names: list[str]) -> Graph:
    """`names`: the service of each step; past the workflow's own steps, as they ran."""
    spec = workflow.spec
    steps = len(spec.services)
    places = [spec.at(index) for index in range(steps)]
    nodes = [Node("inputs", "inputs", "inputs", _field_lines(spec.inputs))]
    edges: list[Edge] = []
    parts: list[Part] = [Leaf("inputs")]
    exits = ["inputs"]  # where the path leaves the previous entry
    grouped = _Groups(workflow, services, nodes, edges)
    for index, name in enumerate(names):
        place = places[index] if index < steps else None
        node_id = f"s{index}"
        if place is not None and place.service is None:
            first, last, part = grouped.group(place, node_id, index, "")
            edges.append(Edge(exits[-1], first, "flow"))
            parts.append(part)
            exits.append(last)
            continue
        service = services.get(name)
        nodes.append(_service_node(node_id, "step", name, service, workflow, place))
        label = _inputs_label(service, workflow, place)
        edges.append(Edge(exits[-1], node_id, "flow", label))
        parts.append(Leaf(node_id, f"f{index}" if _falls_back(spec, place) else None))
        exits.append(node_id)
    edges.append(Edge(exits[-1], "outputs", "flow", _names(spec.outputs)))
    for index in range(min(steps, len(names))):
        policy = spec.on_error_for(places[index])
        onward = f"s{index + 1}" if index + 1 < len(names) else "outputs"
        if policy == "continue":
            edges.append(Edge(exits[index + 1], onward, "continue", "on error: continue"))
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
    parts.append(Leaf("outputs"))
    chain = " → ".join(["inputs", *names, "outputs"])
    return Graph(
        title=clean(f"workflow {workflow.name}"),
        description=clean(f"Workflow {workflow.name}: {chain}", 2000),
        nodes=tuple(nodes),
        edges=tuple(edges),
        layout=Block(tuple(parts)) if grouped.used else None,
    )


def _falls_back(spec: WorkflowSpec, place: Located | None) -> bool:
    return place is not None and isinstance(spec.on_error_for(place), Fallback)


class _Groups:
    """The nodes, edges and layout of a workflow's groups, nested at will.

    A nested node's id extends its group's (`s3_1_0`: branch 1, step 0 of step 3), and its
    `path` says the same as the event's records do (`1.0`), so an event's run finds each.
    """

    def __init__(
        self,
        workflow: Workflow,
        services: dict[str, Service],
        nodes: list[Node],
        edges: list[Edge],
    ) -> None:
        self.workflow, self.services = workflow, services
        self.nodes, self.edges = nodes, edges
        self.used = False

    def group(self, place: Located, node_id: str, top: int, path: str) -> tuple[str, str, Part]:
        """Add a group's nodes and edges: its first node, its last, and its layout part."""
        self.used = True
        entry = place.entry
        number = f"step {top + 1}" + (f" · {place.step_id}" if place.step_id else "")
        if isinstance(entry, MapEntry):
            title = clean(f"map {entry.as_} in {entry.map}", MAX_TEXT)
            lines = (number, clean(f"collects {entry.collect} · {entry.max_concurrency} at once"))
            self.nodes.append(Node(node_id, "map", title, lines, step=top, path=path or None))
            inner, _, _, _ = self.sequence(entry.steps, node_id, top, path, 0)
            return node_id, node_id, Frame(node_id, inner)
        tail = f"{node_id}_j"
        if isinstance(entry, ConditionEntry):
            title = clean(f"when {entry.when}", MAX_TEXT)
            self.nodes.append(
                Node(node_id, "decision", title, (number,), step=top, path=path or None)
            )
            lists = [(entry.steps, "yes"), (entry.otherwise, "no")]
        else:
            assert isinstance(entry, ParallelEntry)
            title = f"parallel · {len(entry.parallel)} branches"
            self.nodes.append(Node(node_id, "fork", title, (number,), step=top, path=path or None))
            lists = [(branch, "") for branch in entry.parallel]
        self.nodes.append(Node(tail, "join", "join", (), step=top, path=path or None))
        ways = []
        for way, (entries, label) in enumerate(lists):
            block, first, last, inputs = self.sequence(entries, node_id, top, path, way)
            joined = " · ".join(part for part in (label, inputs) if part)
            self.edges.append(Edge(node_id, first or tail, "flow", joined))
            if last is not None:
                self.edges.append(Edge(last, tail, "flow"))
            ways.append(block)
        return node_id, tail, Split(node_id, tuple(ways), tail)

    def sequence(
        self, entries: list[Entry], parent: str, top: int, path: str, way: int
    ) -> tuple[Block, str | None, str | None, str]:
        """A list of entries as a column: its first and last node, and the first's inputs."""
        parts: list[Part] = []
        first = last = None
        first_inputs = ""
        for index, entry in enumerate(entries):
            node_id = f"{parent}_{way}_{index}"
            inner_path = f"{path}.{way}.{index}".lstrip(".")
            place = Located(entry, node_id, top)  # keyed by its id or its service's name
            if place.service is None:
                begin, end, part = self.group(place, node_id, top, inner_path)
                label = ""
            else:
                service = self.services.get(place.service)
                node = _service_node(node_id, "step", place.service, service, self.workflow, place)
                lines = (f"in step {top + 1}", *node.lines[1:])
                self.nodes.append(
                    Node(
                        node_id,
                        "step",
                        node.title,
                        lines,
                        callback=node.callback,
                        step=top,
                        path=inner_path,
                    )
                )
                begin = end = node_id
                part = Leaf(node_id)
                label = _inputs_label(service, self.workflow, place)
            if last is not None:
                self.edges.append(Edge(last, begin, "flow", label))
            else:
                first_inputs = label
            first = first or begin
            last = end
            parts.append(part)
        return Block(tuple(parts)), first, last, first_inputs


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
    if place is not None and isinstance(place.entry, StepEntry) and place.entry.when:
        lines.append(clean(f"when {place.entry.when}"))
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
        layout=base.layout,
    )


def _drawn(node: Node, records: dict[int, StepRecord], event: EventView) -> Node:
    if node.kind == "inputs":
        return _with(node, Status.SUCCEEDED, ("received",))
    if node.kind == "outputs":
        return _outputs(node, event)
    assert node.step is not None
    record = records.get(node.step)
    if node.path is not None or node.kind in ("decision", "fork", "join", "map"):
        return _drawn_in_group(node, record, event)
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


def _at(top: StepRecord, path: str | None) -> list[StepRecord]:
    """The records of a group's step at `path`: one, or one per iteration inside a map."""
    found = [top]
    numbers = [int(part) for part in path.split(".")] if path else []
    for depth in range(0, len(numbers), 2):
        way, index = numbers[depth], numbers[depth + 1]
        found = [
            child
            for record in found
            for child in record.steps
            if child.index == index and (record.kind == "map" or child.branch == way)
        ]
    return found


_UNDER_WAY = (StepStatus.RUNNING, StepStatus.RETRYING, StepStatus.WAITING)


def _drawn_in_group(node: Node, top: StepRecord | None, event: EventView) -> Node:
    """A node of a group as the event ran it: a map's step by its iterations' counts."""
    if top is None:
        return _with(node, Status.PENDING, (STATUS_LABELS[Status.PENDING],))
    found = _at(top, node.path)
    if not found:
        ended = top.status not in _UNDER_WAY
        status = Status.SKIPPED if ended else Status.PENDING
        return _with(node, status, ("not run" if ended else STATUS_LABELS[Status.PENDING],))
    single = found[0] if len(found) == 1 and found[0].iteration is None else None
    if single is not None and node.kind in ("decision", "fork", "join", "map"):
        record = single
        status = STEP_STATUSES[record.status]
        lines: list[str] = []
        if node.kind == "decision" and record.decision is not None:
            lines.append("took: " + ("yes" if record.decision else "no"))
        if node.kind == "map" and record.total is not None:
            failed = len({s.iteration for s in record.steps if s.status is StepStatus.FAILED})
            lines.append(f"{record.completed or 0}/{record.total} iterations")
            if failed:
                lines.append(f"{failed} failed")
        if node.kind == "join":
            return _with(node, status, ())
        took = f" · {duration_text(record.duration_ms)}" if record.duration_ms is not None else ""
        return _with(node, status, [STATUS_LABELS[status] + took, *lines])
    if single is not None:
        record = single
        status = STEP_STATUSES[record.status]
        if record.status is StepStatus.FAILED and top.status is not StepStatus.FAILED:
            status = Status.CONTINUED
        lines = [_summary(STATUS_LABELS[status], record.attempts, record.duration_ms)]
        if record.error is not None and status is not Status.SUCCEEDED:
            lines.append(_error(record.error))
        return _with(node, status, lines)
    counts: dict[StepStatus, int] = {}
    for record in found:
        counts[record.status] = counts.get(record.status, 0) + 1
    if StepStatus.FAILED in counts:
        status = Status.CONTINUED if top.status is not StepStatus.FAILED else Status.FAILED
    elif any(state in counts for state in _UNDER_WAY):
        status = Status.RUNNING
    elif set(counts) == {StepStatus.SKIPPED}:
        status = Status.SKIPPED
    else:
        status = STEP_STATUSES[max(counts, key=lambda state: counts[state])]
    summary = " · ".join(f"{n} {state.value.lower()}" for state, n in sorted(counts.items()))
    return _with(node, status, (clean(summary),))


def _with(node: Node, status: Status, lines: Iterable[str], title: str | None = None) -> Node:
    return Node(
        node.id,
        node.kind,
        title if title is not None else node.title,
        (*node.lines, *lines),
        status,
        node.callback,
        node.step,
        node.path,
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
    if record.status is StepStatus.SKIPPED:
        return ("skipped: its when did not hold",)
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
