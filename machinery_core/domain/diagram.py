"""Diagrams of a workflow, and of an event's run over it: Mermaid text and standalone SVG.

One place computes what a diagram shows (`workflow_graph`, `event_graph`: nodes, edges and
statuses, every text already cleaned and cut to length); two renderers only draw that
graph (`mermaid`, `svg`), so the two formats never disagree. Pure functions: no I/O, no
clock, nothing beyond the standard library. The SVG needs no external service, script or
font, so it is made in Lambda and offline alike.
"""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from machinery_core.domain import mapping
from machinery_core.domain.models import (
    ErrorInfo,
    EventStatus,
    EventView,
    Fallback,
    Fields,
    Service,
    StepRecord,
    StepStatus,
    Workflow,
    milliseconds,
)

DiagramFormat = Literal["mermaid", "svg"]
# text/plain rather than text/vnd.mermaid: browsers and curl show it instead of saving it.
CONTENT_TYPES: dict[str, str] = {
    "mermaid": "text/plain; charset=utf-8",
    "svg": "image/svg+xml",
}

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
}

# How a recorded step draws. A FAILED one may instead be CONTINUED (the event went on)
# or FELL_BACK (its fallback took over): see `_recorded_status` and `event_graph`.
STEP_STATUSES: dict[StepStatus, Status] = {
    StepStatus.RUNNING: Status.RUNNING,
    StepStatus.RETRYING: Status.RETRYING,
    StepStatus.WAITING: Status.WAITING,
    StepStatus.SUCCEEDED: Status.SUCCEEDED,
    StepStatus.FAILED: Status.FAILED,
    StepStatus.CANCELLED: Status.CANCELLED,
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


# --- the graph -------------------------------------------------------------------------


def workflow_graph(workflow: Workflow, services: dict[str, Service]) -> Graph:
    """The workflow as a graph: inputs, each step in order, fallbacks aside, outputs.

    A service missing from `services` is drawn by its name alone.
    """
    return _graph(workflow, services, list(workflow.spec.services))


def _graph(workflow: Workflow, services: dict[str, Service], names: list[str]) -> Graph:
    """`names`: the service of each step; past the workflow's own steps, as they ran."""
    spec = workflow.spec
    steps = len(spec.services)
    nodes = [Node("inputs", "inputs", "inputs", _field_lines(spec.inputs))]
    edges: list[Edge] = []
    for index, name in enumerate(names):
        service = services.get(name)
        operation_index = index if index < steps else None
        nodes.append(_service_node(f"s{index}", "step", name, service, workflow, operation_index))
        source = f"s{index - 1}" if index else "inputs"
        label = _inputs_label(service, workflow, operation_index)
        edges.append(Edge(source, f"s{index}", "flow", label))
    edges.append(
        Edge(f"s{len(names) - 1}" if names else "inputs", "outputs", "flow", _names(spec.outputs))
    )
    for index in range(min(steps, len(names))):
        policy = spec.on_error_for(index)
        onward = f"s{index + 1}" if index + 1 < len(names) else "outputs"
        if policy == "continue":
            edges.append(Edge(f"s{index}", onward, "continue", "on error: continue"))
        elif isinstance(policy, Fallback):
            service = services.get(policy.fallback)
            nodes.append(
                _service_node(f"f{index}", "fallback", policy.fallback, service, workflow, index)
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
    index: int | None,
) -> Node:
    callback = service is not None and service.mode == "callback"
    number = int(node_id[1:]) + 1
    first = f"step {number}" if kind == "step" else f"fallback of step {number}"
    lines = [first + (" · waits for callback" if callback else "")]
    if service is None:
        lines.append("(definition not found)")
    else:
        operation = workflow.spec.operation_for(index) if index is not None else None
        produced = ", ".join(mapping.output_sources(service, operation)) or "(nothing)"
        lines.append(clean(f"gives: {produced}"))
    return Node(node_id, kind, clean(name), tuple(lines), callback=callback, step=number - 1)


def _inputs_label(service: Service | None, workflow: Workflow, index: int | None) -> str:
    """What flows into a step: its service's input fields, as its operation maps them.

    `field` for one taken from the context by its own name, `field ← expression` for one
    the operation maps.
    """
    if service is None:
        return ""
    operation = workflow.spec.operation_for(index) if index is not None else None
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
    names = list(workflow.spec.services)
    for index in range(len(names), max(records, default=-1) + 1):
        record = records.get(index)
        names.append((record.fallback_from or record.service) if record else "?")
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
    title = clean(record.fallback_from or record.service)
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
        parts.append(f"{_number(duration_ms)} ms")
    return " · ".join(parts)


def _error(error: ErrorInfo) -> str:
    code = f" (HTTP {error.status_code})" if error.status_code is not None else ""
    return clean(f"{error.type}{code}: {error.message}", MAX_ERROR)


def _outputs(node: Node, event: EventView) -> Node:
    status = OUTPUT_STATUSES[event.status]
    lines = [STATUS_LABELS[status]]
    if event.status is EventStatus.SUCCEEDED:
        lines = ["produced" + (f" · {_number(event.duration_ms)} ms" if event.duration_ms else "")]
    elif event.status is EventStatus.FAILED:
        if event.error is not None and all(step.error != event.error for step in event.steps):
            lines.append(_error(event.error))  # the event's own failure, on no step
        else:
            status, lines = Status.PENDING, [STATUS_LABELS[Status.PENDING]]
    return _with(node, status, lines)


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


# --- Mermaid -----------------------------------------------------------------------------

# Mermaid's entity codes (#name; or #decimal;) for every character that could end a
# quoted label, open an entity, or be read as HTML or a Mermaid comment.
_MERMAID_ESCAPES = {
    "#": "#35;",
    '"': "#quot;",
    "&": "#amp;",
    "<": "#lt;",
    ">": "#gt;",
    "|": "#124;",
    "`": "#96;",
    "\\": "#92;",
    "%": "#37;",
}
_MERMAID_TABLE = str.maketrans(_MERMAID_ESCAPES)


MERMAID_LINE = 60  # characters: Mermaid does not wrap a plain label by itself


def mermaid_text(text: str) -> str:
    """A line of the model as Mermaid label text: wrapped, every special character coded."""
    lines = textwrap.wrap(text, MERMAID_LINE, break_on_hyphens=False) or [""]
    return "<br/>".join(line.translate(_MERMAID_TABLE) for line in lines)


def _mermaid_shape(node: Node) -> tuple[str, str]:
    if node.kind == "inputs":
        return "[/", "/]"
    if node.kind == "outputs":
        return "[\\", "\\]"
    if node.callback:
        return "{{", "}}"
    return ("(", ")") if node.kind == "fallback" else ("[", "]")


def mermaid(graph: Graph) -> str:
    """The graph as a Mermaid flowchart (top down), statuses as classDef styles."""
    lines = [f"%% Machinery {graph.title}", "flowchart TD"]
    for node in graph.nodes:
        opening, closing = _mermaid_shape(node)
        label = "<br/>".join(mermaid_text(text) for text in (node.title, *node.lines))
        lines.append(f'    {node.id}{opening}"{label}"{closing}')
    for edge in graph.edges:
        arrow = "-.->" if edge.dashed else "-->"
        label = f'|"{mermaid_text(edge.label)}"|' if edge.label else ""
        lines.append(f"    {edge.source} {arrow}{label} {edge.target}")
    used = [status for status in Status if any(node.status is status for node in graph.nodes)]
    for status in used:
        style = STYLES[status]
        dashes = ",stroke-dasharray:5 3" if style.dashed else ""
        lines.append(
            f"    classDef {status.value} fill:{style.fill},stroke:{style.stroke},"
            f"color:{style.text}{dashes}"
        )
    for status in used:
        members = ",".join(node.id for node in graph.nodes if node.status is status)
        lines.append(f"    class {members} {status.value}")
    return "\n".join(lines) + "\n"


def workflow_mermaid(workflow: Workflow, services: dict[str, Service]) -> str:
    return mermaid(workflow_graph(workflow, services))


def event_mermaid(workflow: Workflow, services: dict[str, Service], event: EventView) -> str:
    return mermaid(event_graph(workflow, services, event))


# --- SVG ---------------------------------------------------------------------------------

FONT = "system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"
TEXT_SIZE = 12.0
TITLE_SIZE = 13.0
LINE = 17.0  # line height in a box
PAD_X, PAD_Y = 14.0, 9.0
BOX_MIN, BOX_TEXT = 170.0, 260.0  # a box's least width; the widest text line in one
LABEL_SIZE, LABEL_LINE, LABEL_TEXT = 11.0, 15.0, 200.0
MARGIN = 20.0
GAP = 44.0  # the least room between two boxes
SIDE_GAP = 170.0  # between the path and the fallback boxes
GUTTER = 20.0  # from the path's widest box to the continue edges
SKEW = 12.0  # of the inputs and outputs parallelograms
TIP = 14.0  # of a callback's hexagon
EDGE_COLOUR = "#475569"


def text_width(text: str, size: float, bold: bool = False) -> float:
    """An estimate of `text`'s width in pixels in a sans-serif face at `size` pixels.

    Generous rather than tight, so text stays inside its box whatever the face.
    """
    ems = 0.0
    for char in text:
        if unicodedata.combining(char):
            continue
        if unicodedata.east_asian_width(char) in ("W", "F"):
            ems += 1.0
        elif char in "il.,:;'|!()[]{}ftjr I":
            ems += 0.34
        elif char in "mwMW@%":
            ems += 0.9
        elif char.isupper() or char.isdigit():
            ems += 0.67
        else:
            ems += 0.56
    return ems * size * (1.07 if bold else 1.0)


def wrap(text: str, width: float, size: float, bold: bool = False, max_lines: int = 3) -> list[str]:
    """`text` in lines of at most `width` pixels, words kept whole where they fit; a cut
    past `max_lines` ends with an ellipsis."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if text_width(candidate, size, bold) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while text_width(current, size, bold) > width:  # a word wider than a line
            cut = len(current) - 1
            while cut > 1 and text_width(current[:cut], size, bold) > width:
                cut -= 1
            lines.append(current[:cut])
            current = current[cut:]
    if current or not lines:
        lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and text_width(last + "…", size, bold) > width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last.rstrip() + "…"]
    return lines


@dataclass
class _Box:
    node: Node
    lines: list[tuple[str, bool]]  # (text, bold)
    width: float
    height: float
    cx: float = 0.0
    top: float = 0.0

    @property
    def bottom(self) -> float:
        return self.top + self.height

    @property
    def left(self) -> float:
        return self.cx - self.width / 2

    @property
    def right(self) -> float:
        return self.cx + self.width / 2


def _measure(node: Node) -> _Box:
    lines = [(text, True) for text in wrap(node.title, BOX_TEXT, TITLE_SIZE, True, 2)]
    for line in node.lines:
        lines += [(text, False) for text in wrap(line, BOX_TEXT, TEXT_SIZE)]
    widest = max(text_width(t, TITLE_SIZE if b else TEXT_SIZE, b) for t, b in lines)
    width = max(BOX_MIN, widest + 2 * PAD_X)
    if node.kind in ("inputs", "outputs"):
        width += 2 * SKEW
    elif node.callback:
        width += 2 * TIP
    return _Box(node, lines, width, 2 * PAD_Y + LINE * len(lines))


def _xml(text: str) -> str:
    text = "".join(c for c in text if c in "\t\n\r" or (" " <= c and c not in "\ufffe\uffff"))
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def _n(value: float) -> str:
    return _number(round(value, 1))


def _points(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{_n(x)},{_n(y)}" for x, y in points)


def _shape(box: _Box) -> str:
    style = STYLES[box.node.status]
    paint = f'fill="{style.fill}" stroke="{style.stroke}" stroke-width="1.5"'
    if style.dashed:
        paint += ' stroke-dasharray="5 3"'
    left, right, top, bottom = box.left, box.right, box.top, box.bottom
    middle = (top + bottom) / 2
    if box.node.kind in ("inputs", "outputs"):
        corners = [(left + SKEW, top), (right, top), (right - SKEW, bottom), (left, bottom)]
        return f'<polygon points="{_points(corners)}" {paint}/>'
    if box.node.callback:
        corners = [
            (left + TIP, top),
            (right - TIP, top),
            (right, middle),
            (right - TIP, bottom),
            (left + TIP, bottom),
            (left, middle),
        ]
        return f'<polygon points="{_points(corners)}" {paint}/>'
    radius = 14 if box.node.kind == "fallback" else 5
    return (
        f'<rect x="{_n(left)}" y="{_n(top)}" width="{_n(box.width)}" '
        f'height="{_n(box.height)}" rx="{radius}" {paint}/>'
    )


def _node_svg(box: _Box) -> list[str]:
    style = STYLES[box.node.status]
    out = [
        f'<g class="node {box.node.kind}" data-node="{box.node.id}" '
        f'data-status="{box.node.status.value}">',
        _shape(box),
    ]
    for number, (text, bold) in enumerate(box.lines):
        baseline = box.top + PAD_Y + LINE * number + LINE * 0.72
        weight = ' font-weight="600"' if bold else ""
        size = TITLE_SIZE if bold else TEXT_SIZE
        out.append(
            f'<text x="{_n(box.cx)}" y="{_n(baseline)}" font-size="{_n(size)}"{weight} '
            f'fill="{style.text}" text-anchor="middle">{_xml(text)}</text>'
        )
    out.append("</g>")
    return out


def _label_svg(lines: list[str], cx: float, cy: float, anchor: str = "middle") -> list[str]:
    """An edge label: its lines on a pale background, centred on (cx, cy) or ending at cx."""
    if not lines or lines == [""]:
        return []
    width = max(text_width(line, LABEL_SIZE) for line in lines) + 8
    height = LABEL_LINE * len(lines) + 4
    left = cx - width / 2 if anchor == "middle" else cx - width
    top = cy - height / 2
    out = [
        f'<rect x="{_n(left)}" y="{_n(top)}" width="{_n(width)}" height="{_n(height)}" '
        f'rx="3" fill="#ffffff" fill-opacity="0.9"/>'
    ]
    for number, line in enumerate(lines):
        baseline = top + 2 + LABEL_LINE * number + LABEL_LINE * 0.75
        out.append(
            f'<text x="{_n(left + width / 2)}" y="{_n(baseline)}" font-size="{_n(LABEL_SIZE)}" '
            f'fill="{EDGE_COLOUR}" text-anchor="middle">{_xml(line)}</text>'
        )
    return out


def _path(points: list[tuple[float, float]], dashed: bool) -> str:
    d = "M" + " L".join(f"{_n(x)},{_n(y)}" for x, y in points)
    dashes = ' stroke-dasharray="6 4"' if dashed else ""
    return (
        f'<path d="{d}" fill="none" stroke="{EDGE_COLOUR}" stroke-width="1.5"{dashes} '
        f'marker-end="url(#machinery-arrow)"/>'
    )


def svg(graph: Graph) -> str:
    """The graph as a standalone SVG document: the path top down, fallbacks to its right,
    continue edges to its left, and a legend of the statuses for an event."""
    boxes = {node.id: _measure(node) for node in graph.nodes}
    path = [boxes[n.id] for n in graph.nodes if n.kind != "fallback"]
    side = {n.step: boxes[n.id] for n in graph.nodes if n.kind == "fallback"}
    flows = {e.target: e for e in graph.edges if e.kind == "flow"}
    flow_labels = {
        target: wrap(edge.label, LABEL_TEXT, LABEL_SIZE) if edge.label else []
        for target, edge in flows.items()
    }
    skips = [e for e in graph.edges if e.kind == "continue"]
    skip_width = max((text_width(e.label, LABEL_SIZE) + 8 for e in skips), default=0.0)
    label_width = max(
        (text_width(line, LABEL_SIZE) + 8 for lines in flow_labels.values() for line in lines),
        default=0.0,
    )
    path_width = max(max(box.width for box in path), label_width + 16)
    gutter = skip_width + GUTTER + 12 if skips else 0.0
    axis = MARGIN + gutter + path_width / 2
    side_left = axis + path_width / 2 + SIDE_GAP
    side_width = max((box.width for box in side.values()), default=0.0)
    content_width = side_left + side_width + MARGIN if side else axis + path_width / 2 + MARGIN

    # wide enough for an event id (a UUID) on one line, the workflow and status on the next
    title_lines = wrap(graph.title, max(content_width - 2 * MARGIN, 380), 15, True, 4)
    width = max(content_width, max(text_width(t, 15, True) for t in title_lines) + 2 * MARGIN)
    out_body: list[str] = []
    for number, line in enumerate(title_lines):
        out_body.append(
            f'<text x="{_n(MARGIN)}" y="{_n(MARGIN + 15 + 20 * number)}" font-size="15" '
            f'font-weight="700" fill="#0f172a">{_xml(line)}</text>'
        )
    cursor = MARGIN + 20 * len(title_lines) + 14
    previous: _Box | None = None
    for box in path:
        if previous is not None:
            label_lines = len(flow_labels.get(box.node.id, []))
            cursor += max(GAP, LABEL_LINE * label_lines + 40)
        box.cx, box.top = axis, cursor
        fallback = side.get(box.node.step) if box.node.kind == "step" else None
        if fallback is not None:
            fallback.cx, fallback.top = side_left + fallback.width / 2, cursor
        cursor = max(box.bottom, fallback.bottom if fallback else 0.0)
        previous = box
    bottom = cursor

    edges: list[str] = []
    labels: list[str] = []
    for edge in graph.edges:
        source, target = boxes[edge.source], boxes[edge.target]
        if edge.kind == "flow":
            edges.append(_path([(axis, source.bottom), (axis, target.top)], False))
            above = (
                max(source.bottom, side[source.node.step].bottom)
                if (source.node.kind == "step" and source.node.step in side)
                else source.bottom
            )
            middle = (above + target.top - 14) / 2
            labels += _label_svg(flow_labels.get(edge.target, []), axis, middle)
        elif edge.kind == "fallback":
            y = source.top + min(source.height, target.height) / 2
            edges.append(_path([(source.right, y), (target.left, y)], True))
            labels += _label_svg([edge.label], (source.right + target.left) / 2, y - 11)
        elif edge.kind == "resume":
            turn = target.top - 14
            entry = target.cx + target.width / 4
            points = [
                (source.cx, source.bottom),
                (source.cx, turn),
                (entry, turn),
                (entry, target.top),
            ]
            edges.append(_path(points, True))
        else:  # continue: round the left of the path
            x = axis - path_width / 2 - GUTTER
            start = (source.top + source.bottom) / 2 - 6
            end = (target.top + target.bottom) / 2 + 6
            inset = SKEW / 2 if target.node.kind in ("inputs", "outputs") else 0.0
            points = [(source.left, start), (x, start), (x, end), (target.left + inset, end)]
            edges.append(_path(points, True))
            labels += _label_svg([edge.label], x - 6, (start + end) / 2, anchor="end")

    legend: list[str] = []
    if graph.event:
        legend, bottom = _legend(bottom + 28, width)
    height = bottom + MARGIN
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" role="img" '
        f'width="{_n(width)}" height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}" '
        f'font-family="{FONT}">',
        f"<title>{_xml(graph.title)}</title>",
        f"<desc>{_xml(graph.description)}</desc>",
        "<defs>",
        '<marker id="machinery-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">',
        f'<path d="M0,0 L10,5 L0,10 z" fill="{EDGE_COLOUR}"/>',
        "</marker>",
        "</defs>",
        f'<rect width="{_n(width)}" height="{_n(height)}" fill="#ffffff"/>',
        *out_body,
        *edges,
        *labels,
    ]
    for box in boxes.values():
        out += _node_svg(box)
    out += legend
    out.append("</svg>")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + "\n".join(out) + "\n"


def _legend(top: float, width: float) -> tuple[list[str], float]:
    """Every status an event's node can show, with its colours, in rows that fit `width`."""
    out = [
        f'<g class="legend"><text x="{_n(MARGIN)}" y="{_n(top + 11)}" font-size="12" '
        f'font-weight="600" fill="#0f172a">legend</text>'
    ]
    x, y = MARGIN + 56, top
    for status in Status:
        if status is Status.PLANNED:
            continue
        style, label = STYLES[status], STATUS_LABELS[status]
        item = 14 + 6 + text_width(label, LABEL_SIZE) + 18
        if x + item > width - MARGIN and x > MARGIN + 56:
            x, y = MARGIN + 56, y + 22
        dashes = ' stroke-dasharray="3 2"' if style.dashed else ""
        out.append(
            f'<rect x="{_n(x)}" y="{_n(y)}" width="14" height="14" rx="3" fill="{style.fill}" '
            f'stroke="{style.stroke}" stroke-width="1.5"{dashes} data-status="{status.value}"/>'
        )
        out.append(
            f'<text x="{_n(x + 20)}" y="{_n(y + 11)}" font-size="{_n(LABEL_SIZE)}" '
            f'fill="#334155">{_xml(label)}</text>'
        )
        x += item
    out.append("</g>")
    return out, y + 14


def workflow_svg(workflow: Workflow, services: dict[str, Service]) -> str:
    return svg(workflow_graph(workflow, services))


def event_svg(workflow: Workflow, services: dict[str, Service], event: EventView) -> str:
    return svg(event_graph(workflow, services, event))


def render(graph: Graph, form: DiagramFormat) -> str:
    return mermaid(graph) if form == "mermaid" else svg(graph)
