"""Workflow and event diagrams: the graph, its Mermaid text and its SVG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from machinery_core.domain import diagram
from machinery_core.domain.models import (
    Attempt,
    ErrorInfo,
    Event,
    EventStatus,
    EventView,
    FieldSpec,
    Plan,
    PlannedStep,
    Service,
    ServiceRecord,
    StepOperation,
    StepRecord,
    StepStatus,
    Workflow,
    WorkflowRecord,
    WorkflowSpec,
)
from machinery_core.service.events import planned_steps, workflow_as_run

DEFINITIONS = Path(__file__).resolve().parents[2] / "examples" / "definitions"
SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

# What each status must look like, written out here so that a changed colour or a status
# drawn as another fails a test: (Mermaid class, fill, stroke).
GREEN = ("succeeded", "#dcfce7", "#16a34a")
RED = ("failed", "#fee2e2", "#dc2626")
AMBER = ("waiting", "#fef3c7", "#d97706")
YELLOW = ("retrying", "#fef9c3", "#ca8a04")
BLUE = ("running", "#dbeafe", "#2563eb")
GREY = ("cancelled", "#e5e7eb", "#4b5563")
PALE = ("pending", "#f1f5f9", "#94a3b8")
ORANGE = ("continued", "#ffedd5", "#ea580c")
FELL = ("fell_back", "#ffedd5", "#c2410c")
SKIPPED = ("skipped", "#f8fafc", "#94a3b8")
STEP_LOOKS = {
    StepStatus.RUNNING: BLUE,
    StepStatus.RETRYING: YELLOW,
    StepStatus.WAITING: AMBER,
    StepStatus.SUCCEEDED: GREEN,
    StepStatus.FAILED: RED,
    StepStatus.CANCELLED: GREY,
    StepStatus.SKIPPED: SKIPPED,
}
OUTPUT_LOOKS = {
    EventStatus.PENDING: PALE,
    EventStatus.RUNNING: PALE,
    EventStatus.WAITING: PALE,
    EventStatus.SUCCEEDED: GREEN,
    EventStatus.FAILED: RED,
    EventStatus.CANCELLED: GREY,
}


def _definition(name: str) -> dict[str, Any]:
    import json

    loaded: dict[str, Any] = json.loads((DEFINITIONS / f"{name}.json").read_text())
    return loaded


@pytest.fixture
def services() -> dict[str, Service]:
    names = ("upper", "reverse", "space-counter", "reverse-later")
    return {name: Service.model_validate(_definition(f"service-{name}")) for name in names}


@pytest.fixture
def example() -> Workflow:
    return Workflow.model_validate(_definition("workflow-process-text"))


def _workflow(**spec: Any) -> Workflow:
    base: dict[str, Any] = {
        "services": ["upper", "reverse", "space-counter"],
        "inputs": {"message": {"type": "string"}},
        "outputs": {"space_count": {"type": "integer"}},
    }
    return Workflow.model_validate({"name": "flow", "spec": {**base, **spec}})


def _step(index: int, service: str, status: StepStatus, **fields: Any) -> StepRecord:
    values: dict[str, Any] = {
        "attempts": 1,
        "started_at": T0,
        "ended_at": T0 + timedelta(milliseconds=12),
        "duration_ms": 12.0,
    }
    return StepRecord(index=index, service=service, status=status, **{**values, **fields})


def _event(status: EventStatus, steps: list[StepRecord], **fields: Any) -> EventView:
    values: dict[str, Any] = {
        "event_id": "e-1",
        "workflow_id": "process-text",
        "data": {"message": "hi"},
        "outputs": None,
        "error": None,
        "acknowledged_at": T0,
        "updated_at": T0,
        "ended_at": None,
        "duration_ms": None,
    }
    return EventView(status=status, steps=steps, **{**values, **fields})


def _nodes(text: str) -> dict[str, str]:
    """Mermaid node id -> its whole definition line, in the order defined."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^    (\w+)(\[/|\[\\|\{\{|\(|\[)\"([^\"]*)\"(/\]|\\\]|\}\}|\)|\])$", line)
        if match:
            found[match.group(1)] = line
    return found


def _label(line: str) -> str:
    """The quoted label of a Mermaid node definition line."""
    return line[line.index('"') + 1 : line.rindex('"')]


def _edges(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "-->" in line or "-.->" in line]


def _classes(text: str) -> dict[str, str]:
    """Mermaid node id -> the class statement that styles it."""
    classes = {}
    for line in text.splitlines():
        match = re.match(r"^    class (\S+) (\w+)$", line)
        if match:
            for node in match.group(1).split(","):
                classes[node] = match.group(2)
    return classes


def _class_style(text: str, name: str) -> str:
    [line] = [line for line in text.splitlines() if line.startswith(f"    classDef {name} ")]
    return line


def _svg_node(root: ET.Element, node_id: str) -> ET.Element:
    [group] = [g for g in root.iter(f"{SVG}g") if g.get("data-node") == node_id]
    return group


def _texts(element: ET.Element) -> list[str]:
    return [text.text or "" for text in element.iter(f"{SVG}text")]


# --- the workflow in Mermaid -------------------------------------------------------------


def test_the_example_workflow_draws_inputs_each_step_in_order_then_outputs(
    example: Workflow, services: dict[str, Service]
) -> None:
    # Given the example workflow process-text and its services
    # When it is drawn in Mermaid
    text = diagram.workflow_mermaid(example, services)

    # Then it is a top-down flowchart of inputs, the three steps in order, then outputs
    assert text.splitlines()[1] == "flowchart TD"
    nodes = _nodes(text)
    assert list(nodes) == ["inputs", "s0", "s1", "s2", "outputs"]
    assert nodes["inputs"] == '    inputs[/"inputs<br/>message: string"/]'
    assert nodes["s0"].startswith('    s0["upper<br/>step 1')
    assert nodes["s1"].startswith('    s1["reverse<br/>step 2')
    assert nodes["s2"].startswith('    s2["space-counter<br/>step 3')
    assert "gives: space_count" in nodes["s2"]
    assert (
        nodes["outputs"]
        == '    outputs[\\"outputs<br/>message: string<br/>space_count: integer"\\]'
    )
    # And every edge carries the fields that flow along it
    assert _edges(text) == [
        'inputs -->|"message"| s0',
        's0 -->|"message"| s1',
        's1 -->|"message"| s2',
        's2 -->|"message, space_count"| outputs',
    ]
    # And nothing ran: every node is drawn as planned
    assert set(_classes(text).values()) == {"planned"}


def test_an_operation_names_what_flows_keyed_by_service_or_by_step_index(
    services: dict[str, Service],
) -> None:
    # Given operations keyed by a service name and by a step index (the index wins, as the
    # engine reads it)
    workflow = _workflow(
        inputs={"message": {"type": "string"}, "shout": {"type": "string"}},
        operations={
            "reverse": {"inputs": {"message": "shout"}},
            "space-counter": {"inputs": {"message": "ignored"}},
            "2": {"inputs": {"message": "join(' ', [message, shout])"}},
        },
    )

    # When it is drawn
    edges = _edges(diagram.workflow_mermaid(workflow, services))

    # Then a mapped field shows where it comes from; the others go by their own name
    assert 'inputs -->|"message"| s0' in edges
    assert 's0 -->|"message ← shout"| s1' in edges
    assert "s1 -->|\"message ← join(' ', [message, shout])\"| s2" in edges


def test_a_callback_step_is_drawn_apart_and_says_it_waits(services: dict[str, Service]) -> None:
    # Given a workflow whose second step is a callback service
    workflow = _workflow(services=["upper", "reverse-later", "space-counter"])

    # When it is drawn in both formats
    nodes = _nodes(diagram.workflow_mermaid(workflow, services))
    root = ET.fromstring(diagram.workflow_svg(workflow, services))

    # Then the callback step is a hexagon that says it waits for a callback; the others not
    assert nodes["s1"].startswith('    s1{{"reverse-later<br/>step 2 · waits for callback')
    assert nodes["s0"].startswith('    s0["') and "callback" not in nodes["s0"]
    callback = _svg_node(root, "s1")
    assert callback.find(f"{SVG}polygon") is not None
    assert "step 2 · waits for callback" in _texts(callback)
    assert _svg_node(root, "s0").find(f"{SVG}rect") is not None


def test_error_policies_are_drawn_as_dashed_edges(services: dict[str, Service]) -> None:
    # Given continue on the first step (by index) and a fallback on the last (by name)
    workflow = _workflow(
        on_error={"0": "continue", "space-counter": {"fallback": "reverse"}},
    )

    # When it is drawn
    text = diagram.workflow_mermaid(workflow, services)

    # Then continue skips onward and the fallback is a node aside that resumes the path
    edges = _edges(text)
    assert 's0 -.->|"on error: continue"| s1' in edges
    assert 's2 -.->|"on error: fallback"| f2' in edges
    assert "f2 -.-> outputs" in edges
    assert _nodes(text)["f2"] == '    f2("reverse<br/>fallback of step 3<br/>gives: message")'
    # And the steps without a policy get no dashed edge
    assert not [edge for edge in edges if edge.startswith("s1 -.->")]


def test_continue_on_the_last_step_skips_to_the_outputs(services: dict[str, Service]) -> None:
    workflow = _workflow(on_error={"space-counter": "continue"})

    edges = _edges(diagram.workflow_mermaid(workflow, services))

    assert 's2 -.->|"on error: continue"| outputs' in edges


HOSTILE = 'ev"il]) --> x; #35; <b>&amp;|`%%\\\nclick'


def test_hostile_names_cannot_break_the_mermaid(services: dict[str, Service]) -> None:
    # Given names and fields no registration would accept, built past validation
    hostile_service = Service.model_construct(
        name=HOSTILE,
        address="http://127.0.0.1:9/",
        spec=services["upper"].spec.model_copy(
            update={"inputs": {HOSTILE: FieldSpec(type="string")}}
        ),
        mode="sync",
    )
    spec = WorkflowSpec.model_construct(
        services=[HOSTILE],
        inputs={HOSTILE: FieldSpec(type="string")},
        outputs={},
        operations={},
        on_error={},
        notify=None,
    )
    workflow = Workflow.model_construct(name="w", description=None, spec=spec)

    # When it is drawn
    text = diagram.workflow_mermaid(workflow, {HOSTILE: hostile_service})

    # Then the node ids are plain identifiers and every label stays one quoted string
    nodes = _nodes(text)
    assert list(nodes) == ["inputs", "s0", "outputs"]
    assert len(text.splitlines()) == 2 + 3 + 2 + 2  # header, nodes, edges, style
    # And every special character is an entity code; only our line breaks are markup
    label = nodes["s0"]
    assert "ev#quot;il]) --#gt; x; #35;35; #lt;b#gt;#amp;amp;#124;#96;#37;#37;#92; click" in label
    for quoted in re.findall(r'"([^"]*)"', text):
        assert "<" not in quoted.replace("<br/>", "")
        assert ">" not in quoted.replace("<br/>", "")
        assert re.fullmatch(r"([^#]|#(\w+);)*", quoted), quoted
    [edge] = [e for e in _edges(text) if e.endswith(" s0")]
    assert edge.startswith('inputs -->|"ev#quot;il]')


# --- an event's run ----------------------------------------------------------------------


def test_every_step_status_has_its_class_and_colour(
    example: Workflow, services: dict[str, Service]
) -> None:
    # Given the table above covers every status a step can have
    assert set(STEP_LOOKS) == set(StepStatus)
    for status, (name, fill, stroke) in STEP_LOOKS.items():
        # When an event's last step has that status (a FAILED one failing the event)
        error = ErrorInfo(type="ServiceError", message="boom")
        event_status = EventStatus.FAILED if status is StepStatus.FAILED else EventStatus.RUNNING
        steps = [
            _step(0, "upper", StepStatus.SUCCEEDED),
            _step(1, "reverse", status, error=error if status is StepStatus.FAILED else None),
        ]
        event = _event(event_status, steps, error=error if status is StepStatus.FAILED else None)
        text = diagram.event_mermaid(example, services, event)
        root = ET.fromstring(diagram.event_svg(example, services, event))

        # Then it is drawn in its colour in both formats, and the step after it not reached
        classes = _classes(text)
        assert (classes["s0"], classes["s1"], classes["s2"]) == ("succeeded", name, "pending")
        assert f"fill:{fill},stroke:{stroke}" in _class_style(text, name), status
        shape = _svg_node(root, "s1")[0]
        assert (shape.get("fill"), shape.get("stroke")) == (fill, stroke), status
        assert _svg_node(root, "s1").get("data-status") == name


@pytest.mark.parametrize("status", list(EventStatus))
def test_the_outputs_show_how_the_event_ended(
    example: Workflow, services: dict[str, Service], status: EventStatus
) -> None:
    # Given an event of that status whose own error (if any) is on no step
    error = ErrorInfo(type="OutputsInvalid", message="space_count: required field is missing")
    event = _event(status, [], error=error if status is EventStatus.FAILED else None)

    # When it is drawn
    text = diagram.event_mermaid(example, services, event)

    # Then the outputs node is coloured by the event's end
    name, fill, _ = OUTPUT_LOOKS[status]
    assert _classes(text)["outputs"] == name
    assert f"fill:{fill}" in _class_style(text, name)
    if status is EventStatus.FAILED:
        assert "OutputsInvalid: space_count: required field is missing" in _nodes(text)["outputs"]


def test_the_failed_step_shows_its_error_cut_to_length(
    example: Workflow, services: dict[str, Service]
) -> None:
    # Given an event failed at its second step with a long error
    error = ErrorInfo(type="HttpError", message="the service said: " + "x" * 500, status_code=503)
    steps = [
        _step(0, "upper", StepStatus.SUCCEEDED),
        _step(1, "reverse", StepStatus.FAILED, attempts=3, duration_ms=2041.5, error=error),
    ]
    event = _event(EventStatus.FAILED, steps, error=error)

    # When it is drawn
    text = diagram.event_mermaid(example, services, event)
    root = ET.fromstring(diagram.event_svg(example, services, event))

    # Then the step says it failed, after how many attempts and how long, and why, cut short
    label = _label(_nodes(text)["s1"])
    assert "failed · 3 attempts · 2.04 s" in label
    parts = label.split("<br/>")
    assert all(len(part) <= diagram.MERMAID_LINE for part in parts)  # wrapped for Mermaid
    first = next(i for i, part in enumerate(parts) if part.startswith("HttpError"))
    shown = "".join(parts[first:])  # broken inside the long word: nothing lost between
    start = "HttpError (HTTP 503): the service said: "
    assert shown == start + "x" * (diagram.MAX_ERROR - len(start) - 1) + "…"
    # And the succeeded one its attempt and duration; the outputs were not reached
    assert "succeeded · 1 attempt · 12.0 ms" in _nodes(text)["s0"]
    assert _classes(text)["outputs"] == "pending"
    # And the SVG wraps the error inside the box without losing its start
    texts = _texts(_svg_node(root, "s1"))
    assert any(t.startswith("HttpError (HTTP 503)") for t in texts)
    assert texts[-1].endswith("…")


def test_a_step_that_failed_and_continued_is_drawn_apart(
    example: Workflow, services: dict[str, Service]
) -> None:
    # Given an event that went on past a failed first step (on_error continue)
    error = ErrorInfo(type="ServiceError", message="no")
    steps = [
        _step(0, "upper", StepStatus.FAILED, error=error),
        _step(1, "reverse", StepStatus.SUCCEEDED),
        _step(2, "space-counter", StepStatus.SUCCEEDED),
    ]
    event = _event(EventStatus.SUCCEEDED, steps, outputs={"space_count": 0})

    text = diagram.event_mermaid(example, services, event)

    assert _classes(text)["s0"] == "continued"
    assert "failed, continued · 1 attempt" in _nodes(text)["s0"]
    assert "ServiceError: no" in _nodes(text)["s0"]
    assert f"fill:{ORANGE[1]},stroke:{ORANGE[2]}" in _class_style(text, "continued")
    assert _classes(text)["outputs"] == "succeeded"


def test_a_step_its_fallback_took_over_shows_both_parts(services: dict[str, Service]) -> None:
    # Given the second step fell back to `upper` after two failed attempts, and it succeeded
    workflow = _workflow(on_error={"reverse": {"fallback": "upper"}})
    failure = ErrorInfo(type="HttpError", message="down", status_code=500, retryable=True)
    history = [
        Attempt(
            attempt=1,
            started_at=T0,
            ended_at=T0 + timedelta(milliseconds=5),
            duration_ms=5,
            error=failure,
        ),
        Attempt(
            attempt=2,
            started_at=T0 + timedelta(milliseconds=10),
            ended_at=T0 + timedelta(milliseconds=20),
            duration_ms=10,
            error=failure,
        ),
        Attempt(
            attempt=1,
            started_at=T0 + timedelta(milliseconds=30),
            ended_at=T0 + timedelta(milliseconds=37),
            duration_ms=7,
        ),
    ]
    steps = [
        _step(0, "upper", StepStatus.SUCCEEDED),
        _step(
            1,
            "upper",
            StepStatus.SUCCEEDED,
            fallback_from="reverse",
            history=history,
            ended_at=T0 + timedelta(milliseconds=37),
            duration_ms=37.0,
        ),
    ]
    event = _event(EventStatus.RUNNING, steps)

    # When it is drawn
    text = diagram.event_mermaid(workflow, services, event)

    # Then the step keeps its own service's name, marked fell back with its own attempts and
    # error, and the fallback node shows the fallback's run
    classes = _classes(text)
    assert (classes["s1"], classes["f1"], classes["s2"]) == ("fell_back", "succeeded", "pending")
    assert "fell_back" in _class_style(text, "fell_back") and FELL[2] in _class_style(
        text, "fell_back"
    )
    step = _nodes(text)["s1"]
    assert step.startswith('    s1["reverse<br/>')
    assert "failed, fell back · 2 attempts · 20.0 ms" in step
    assert "HttpError (HTTP 500): down" in step
    assert "succeeded · 1 attempt · 7.0 ms" in _nodes(text)["f1"]


@pytest.mark.parametrize(
    ("duration_ms", "shown"), [(1234.5, "1.23 s"), (12.34, "12.3 ms")], ids=["seconds", "ms"]
)
def test_a_duration_reads_as_in_the_cli_and_the_dashboard(
    example: Workflow, services: dict[str, Service], duration_ms: float, shown: str
) -> None:
    # Given an event whose first step and whole run took that long
    steps = [_step(0, "upper", StepStatus.SUCCEEDED, duration_ms=duration_ms)]
    event = _event(EventStatus.SUCCEEDED, steps, duration_ms=duration_ms)

    # When it is drawn in both formats
    text = diagram.event_mermaid(example, services, event)
    root = ET.fromstring(diagram.event_svg(example, services, event))

    # Then both show the duration as every other view does: ms below a second, s above
    for node, line in (
        ("s0", f"succeeded · 1 attempt · {shown}"),
        ("outputs", f"produced · {shown}"),
    ):
        assert line in _label(_nodes(text)[node]).split("<br/>")
        assert line in _texts(_svg_node(root, node))


def test_a_fallback_not_needed_is_drawn_unused(services: dict[str, Service]) -> None:
    workflow = _workflow(on_error={"reverse": {"fallback": "upper"}})
    steps = [_step(i, name, StepStatus.SUCCEEDED) for i, name in enumerate(workflow.spec.services)]

    text = diagram.event_mermaid(workflow, services, _event(EventStatus.SUCCEEDED, steps))

    assert _classes(text)["f1"] == "pending"
    assert "not used" in _nodes(text)["f1"]


def test_steps_recorded_past_the_definition_are_drawn_from_their_records(
    services: dict[str, Service],
) -> None:
    # Given a one-step definition and an event that recorded two steps
    workflow = _workflow(services=["upper"], outputs={})
    steps = [_step(0, "upper", StepStatus.SUCCEEDED), _step(1, "gone", StepStatus.RUNNING)]

    text = diagram.event_mermaid(workflow, services, _event(EventStatus.RUNNING, steps))

    assert list(_nodes(text)) == ["inputs", "s0", "s1", "outputs"]
    assert _nodes(text)["s1"].startswith('    s1["gone<br/>step 2<br/>(definition not found)')
    assert _classes(text)["s1"] == "running"


# --- SVG ---------------------------------------------------------------------------------


def test_the_svg_is_a_standalone_accessible_document(
    example: Workflow, services: dict[str, Service]
) -> None:
    # When the example workflow is drawn as SVG
    document = diagram.workflow_svg(example, services)
    root = ET.fromstring(document)

    # Then it is an SVG with its size, a view box and a title, and draws every service
    assert root.tag == f"{SVG}svg"
    width, height = float(root.get("width", "0")), float(root.get("height", "0"))
    assert width > 100 and height > 300
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    assert root.findtext(f"{SVG}title") == "workflow process-text"
    texts = _texts(root)
    for name in ("upper", "reverse", "space-counter", "inputs", "outputs"):
        assert name in texts
    assert "message, space_count" in texts  # the edge into the outputs
    # And arrows end in the arrow marker it defines
    assert root.find(f"{SVG}defs/{SVG}marker[@id='machinery-arrow']") is not None
    paths = [p for p in root.iter(f"{SVG}path") if p.get("marker-end")]
    assert len(paths) == 4
    assert {p.get("marker-end") for p in paths} == {"url(#machinery-arrow)"}
    # And the boxes go down in order, inside the view box
    tops = [float(_svg_node(root, n)[0].get("y", "0")) for n in ("s0", "s1", "s2")]
    assert tops == sorted(tops) and tops[-1] < height


def test_svg_text_is_escaped(services: dict[str, Service]) -> None:
    # Given an operation whose expression holds <, & and quotes
    expression = "join('', ['<a href=\"x\">&', message])"
    workflow = _workflow(operations={"reverse": {"inputs": {"message": expression}}})

    # When it is drawn as SVG
    document = diagram.workflow_svg(workflow, services)

    # Then the document stays well-formed and the text reads back as it was
    assert "&lt;a href=&quot;x&quot;&gt;&amp;" in document
    assert "<a " not in document
    texts = " ".join(_texts(ET.fromstring(document)))
    assert "message ← join('', ['<a href=\"x\">&'," in texts


def test_control_characters_never_reach_the_svg(
    example: Workflow, services: dict[str, Service]
) -> None:
    error = ErrorInfo(type="ServiceError", message="bad\x00byte\x1b[31m\ufffe end")
    steps = [_step(0, "upper", StepStatus.FAILED, error=error)]

    document = diagram.event_svg(example, services, _event(EventStatus.FAILED, steps, error=error))

    texts = _texts(ET.fromstring(document))  # would raise on an invalid XML character
    assert "ServiceError: bad byte [31m end" in texts


def test_the_event_svg_has_a_legend_of_every_status(
    example: Workflow, services: dict[str, Service]
) -> None:
    steps = [_step(0, "upper", StepStatus.SUCCEEDED), _step(1, "reverse", StepStatus.WAITING)]

    root = ET.fromstring(diagram.event_svg(example, services, _event(EventStatus.WAITING, steps)))

    [legend] = [g for g in root.iter(f"{SVG}g") if g.get("class") == "legend"]
    swatches = {r.get("data-status"): r.get("fill") for r in legend.iter(f"{SVG}rect")}
    for name, fill, _ in (GREEN, RED, AMBER, YELLOW, BLUE, GREY, PALE, ORANGE, FELL):
        assert swatches[name] == fill
    assert "waiting for callback" in _texts(legend)
    assert _svg_node(root, "s1").get("data-status") == "waiting"
    assert root.findtext(f"{SVG}title") == "event e-1 of workflow process-text · WAITING"


def test_long_text_is_wrapped_to_fit_its_box(services: dict[str, Service]) -> None:
    # Given a service with many inputs and one name-like input far too long for a line
    many = {f"field_number_{i}": FieldSpec(type="string") for i in range(12)}
    many["x" * 120] = FieldSpec(type="string")
    wide = services["upper"].model_copy(
        update={"spec": services["upper"].spec.model_copy(update={"inputs": many})}
    )
    workflow = _workflow(
        services=["upper"],
        inputs={name: {"type": "string"} for name in many},
        outputs={},
    )

    # When it is drawn as SVG
    root = ET.fromstring(diagram.workflow_svg(workflow, {"upper": wide}))

    # Then every line of a box fits its box by the estimate the layout uses
    for node in ("inputs", "s0"):
        group = _svg_node(root, node)
        shape = group[0]
        if shape.tag == f"{SVG}rect":
            box_width = float(shape.get("width", "0"))
        else:
            xs = [float(p.split(",")[0]) for p in shape.get("points", "").split()]
            box_width = max(xs) - min(xs)
        for text in group.iter(f"{SVG}text"):
            size = float(text.get("font-size", "0"))
            assert (
                diagram.text_width(text.text or "", size, bool(text.get("font-weight"))) < box_width
            )
    # And the inputs box lists the long field over more than one line
    assert sum(1 for t in _texts(_svg_node(root, "inputs")) if t.startswith("xxx")) >= 2


def test_wrap_cuts_what_does_not_fit_with_an_ellipsis() -> None:
    lines = diagram.wrap("word " * 200, 100, 12, max_lines=3)

    assert len(lines) == 3
    assert lines[-1].endswith("…")
    assert all(diagram.text_width(line, 12) <= 100 for line in lines)


def test_both_formats_draw_the_same_graph(services: dict[str, Service]) -> None:
    # Given a workflow with a callback, a continue and a fallback
    workflow = _workflow(
        services=["upper", "reverse-later", "space-counter"],
        on_error={"upper": "continue", "1": {"fallback": "reverse"}},
    )
    graph = diagram.workflow_graph(workflow, services)

    # When it is rendered both ways
    text = diagram.mermaid(graph)
    root = ET.fromstring(diagram.svg(graph))

    # Then both have the same nodes and as many edges
    svg_nodes = [g.get("data-node") for g in root.iter(f"{SVG}g") if g.get("data-node")]
    assert list(_nodes(text)) == svg_nodes == [node.id for node in graph.nodes]
    arrows = [p for p in root.iter(f"{SVG}path") if p.get("marker-end")]
    assert len(_edges(text)) == len(arrows) == len(graph.edges) == 7
    dashed = [p for p in arrows if p.get("stroke-dasharray")]
    assert len(dashed) == sum("-.->" in edge for edge in _edges(text)) == 3


# --- the workflow an event ran with ------------------------------------------------------


def _plan(services: dict[str, Service]) -> Plan:
    return Plan(
        workflow_version=2,
        steps=[
            PlannedStep(service=services["upper"], on_error="continue"),
            PlannedStep(
                service=services["reverse"],
                operation=StepOperation(inputs={"message": "shout"}),
                on_error="fallback",
                fallback=services["upper"],
            ),
        ],
        outputs={"message": FieldSpec(type="string")},
    )


def _stored_event(data: dict[str, Any]) -> Event:
    return Event(
        event_id="e-1",
        workflow_id="process-text",
        status=EventStatus.RUNNING,
        data=data,
        acknowledged_at=T0,
        updated_at=T0,
    )


def test_an_event_is_drawn_over_the_plan_it_ran_with(services: dict[str, Service]) -> None:
    # Given an event whose workflow was deleted since it was accepted
    event = _stored_event({"message": "hi", "count": 3, "not a field name": None})

    # When its workflow is rebuilt from its plan
    workflow, used = workflow_as_run(event, _plan(services), None)

    # Then the steps, their policies and operations are the plan's, keyed by step index
    assert workflow.spec.services == ["upper", "reverse"]
    assert workflow.spec.on_error_for(0) == "continue"
    fallback = workflow.spec.on_error_for(1)
    assert not isinstance(fallback, str) and fallback.fallback == "upper"
    operation = workflow.spec.operation_for(1)
    assert operation is not None and operation.inputs == {"message": "shout"}
    assert set(used) == {"upper", "reverse"}
    # And the inputs are what the event's data gave, typed by value
    assert {name: spec.type for name, spec in workflow.spec.inputs.items()} == {
        "message": "string",
        "count": "integer",
    }
    text = diagram.event_mermaid(workflow, used, EventView.of(event))
    assert 's0 -->|"message ← shout"| s1' in _edges(text)


def test_the_current_inputs_are_used_while_the_version_is_the_same(
    services: dict[str, Service],
) -> None:
    current = WorkflowRecord(
        workflow_id="process-text",
        version=2,
        created_at=T0,
        updated_at=T0,
        definition=_workflow(inputs={"message": {"type": "string", "required": False}}),
    )

    same, _ = workflow_as_run(_stored_event({}), _plan(services), current)
    newer, _ = workflow_as_run(
        _stored_event({}), _plan(services), current.model_copy(update={"version": 3})
    )

    assert list(same.spec.inputs) == ["message"] and not same.spec.inputs["message"].required
    assert newer.spec.inputs == {}


# --- groups: a decision, parallel branches, a map ------------------------------------------


@pytest.fixture
def order() -> tuple[Workflow, dict[str, Service]]:
    services = {
        path.stem.removeprefix("service-"): Service.model_validate_json(path.read_text())
        for path in DEFINITIONS.glob("service-*.json")
    }
    workflow = Workflow.model_validate(_definition("workflow-order"))
    return workflow, services


def _box(root: ET.Element, node_id: str) -> tuple[float, float, float, float]:
    """The left, top, right and bottom of a node's shape."""
    shape = _svg_node(root, node_id)[0]
    if shape.tag == f"{SVG}polygon":
        points = [tuple(map(float, p.split(","))) for p in (shape.get("points") or "").split()]
        xs, ys = [x for x, _ in points], [y for _, y in points]
        return min(xs), min(ys), max(xs), max(ys)
    x, y = float(shape.get("x") or 0), float(shape.get("y") or 0)
    return x, y, x + float(shape.get("width") or 0), y + float(shape.get("height") or 0)


def test_a_workflow_with_groups_draws_a_diamond_a_fork_and_join_and_a_map_box(
    order: tuple[Workflow, dict[str, Service]],
) -> None:
    workflow, services = order

    # When the order workflow is drawn
    text = diagram.workflow_mermaid(workflow, services)
    root = ET.fromstring(diagram.workflow_svg(workflow, services))

    # Then Mermaid has the decision as a diamond with its two ways, the fork and its join,
    # and the map as a subgraph holding its step
    assert re.search(r'^\s+s2\{"when country == \'FR\'', text, re.M)
    assert re.search(r'^\s+s3\[\["parallel · 2 branches', text, re.M)
    assert re.search(r'^\s+s3_j\(\("join"\)\)', text, re.M)
    edges = _edges(text)
    assert 's2 -->|"yes · amount"| s2_0_0' in edges and 's2 -->|"no · amount"| s2_1_0' in edges
    assert {'s3 -->|"lines"| s3_0_0', "s3_0_0 --> s3_j", "s3_1_1 --> s3_j"} <= set(edges)
    subgraph = text[text.index("subgraph s4") : text.index("end", text.index("subgraph s4"))]
    assert "s4_0_0[" in subgraph
    # And the SVG draws the decision as a diamond, the branches side by side between the fork
    # and a join bar as wide as they are, and the map's step inside its box
    assert _svg_node(root, "s2")[0].tag == f"{SVG}polygon"
    reserve, charge = _box(root, "s3_0_0"), _box(root, "s3_1_0")
    assert reserve[2] < charge[0] and reserve[1] == charge[1]
    bar = _box(root, "s3_j")
    assert bar[0] <= reserve[0] and bar[2] >= charge[2] and bar[1] > _box(root, "s3_1_1")[3]
    frame, inner = _box(root, "s4"), _box(root, "s4_0_0")
    assert frame[0] < inner[0] and inner[2] < frame[2] and frame[1] < inner[1] < inner[3] < frame[3]
    assert _box(root, "s5")[1] > frame[3]


def test_an_event_with_groups_is_drawn_with_the_way_taken_and_the_map_counts(
    order: tuple[Workflow, dict[str, Service]],
) -> None:
    workflow, services = order
    ok = StepStatus.SUCCEEDED
    # Given an event that skipped the fraud check, took the other way, and whose map of
    # three lines has one iteration failed (continued)
    steps = [
        _step(0, "classify", ok),
        _step(1, "fraud-check", StepStatus.SKIPPED, attempts=0),
        _step(
            2, None, ok, kind="when", decision=False, steps=[_step(0, "vat-default", ok, branch=1)]
        ),  # fmt: skip
        _step(
            3,
            None,
            ok,
            kind="parallel",
            steps=[
                _step(0, "reserve-stock", ok, branch=0),
                _step(0, "charge-card", ok, branch=1),
                _step(1, "receipt", ok, branch=1),
            ],
        ),  # fmt: skip
        _step(
            4,
            None,
            ok,
            kind="map",
            total=3,
            completed=3,
            steps=[
                _step(0, "enrich", ok, iteration=0),
                _step(0, "enrich", StepStatus.FAILED, iteration=1),
                _step(0, "enrich", ok, iteration=2),
            ],
        ),  # fmt: skip
        _step(5, "notify-customer", ok),
    ]
    event = _event(EventStatus.SUCCEEDED, steps)

    # When it is drawn
    text = diagram.event_mermaid(workflow, services, event)
    root = ET.fromstring(diagram.event_svg(workflow, services, event))

    # Then the skipped step and the way not taken are skipped, the map shows its counts
    classes = _classes(text)
    assert (classes["s1"], classes["s2_0_0"], classes["s2_1_0"]) == (
        "skipped",
        "skipped",
        "succeeded",
    )
    assert classes["s4_0_0"] == "continued"
    map_text = " ".join(t.text or "" for t in _svg_node(root, "s4").iter(f"{SVG}text"))
    assert "3/3 iterations" in map_text and "1 failed" in map_text
    inner_text = " ".join(t.text or "" for t in _svg_node(root, "s4_0_0").iter(f"{SVG}text"))
    assert "1 failed" in inner_text and "2 succeeded" in inner_text
    decision = " ".join(t.text or "" for t in _svg_node(root, "s2").iter(f"{SVG}text"))
    assert "took: no" in decision


def test_a_workflow_with_groups_is_rebuilt_from_its_plan(
    order: tuple[Workflow, dict[str, Service]],
) -> None:
    # Given the order workflow's plan, as an event pins it
    workflow, services = order
    spec = workflow.spec
    records = {
        name: ServiceRecord(
            service_id=name, version=1, created_at=T0, updated_at=T0, definition=service
        )
        for name, service in services.items()
    }
    plan = Plan(
        workflow_version=1,
        steps=planned_steps(spec, spec.services, "spec.services", None, records),
        outputs=spec.outputs,
    )

    # When its workflow is rebuilt from the plan
    rebuilt, used = workflow_as_run(_stored_event({}), plan, None)

    # Then its steps nest as they were defined, and its diagram is the same
    assert rebuilt.spec.model_dump()["services"] == spec.model_dump()["services"]
    assert set(used) == set(spec.all_services())
    named = rebuilt.model_copy(update={"name": "order", "spec": spec})
    assert diagram.workflow_mermaid(named, used) == diagram.workflow_mermaid(workflow, services)
