"""A diagram's graph as Mermaid text: a top-down flowchart, statuses as classDef styles.

Every label is one quoted string whose special characters are Mermaid entity codes, so no
name, field or error can break the chart.
"""

from __future__ import annotations

import textwrap

from machinery_core.domain.diagram.graph import (
    DASHES,
    STYLES,
    Block,
    Frame,
    Graph,
    Leaf,
    Node,
    Split,
    Status,
)

# Mermaid's entity codes (#name; or #decimal;) for every character that could end a
# quoted label, open an entity, or be read as HTML or a Mermaid comment.
_ESCAPES = {
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
_TABLE = str.maketrans(_ESCAPES)

MERMAID_LINE = 60  # characters: Mermaid does not wrap a plain label by itself


def mermaid_text(text: str) -> str:
    """A line of the model as Mermaid label text: wrapped, every special character coded."""
    lines = textwrap.wrap(text, MERMAID_LINE, break_on_hyphens=False) or [""]
    return "<br/>".join(line.translate(_TABLE) for line in lines)


def _shape(node: Node) -> tuple[str, str]:
    if node.kind == "inputs":
        return "[/", "/]"
    if node.kind == "outputs":
        return "[\\", "\\]"
    if node.kind == "decision":
        return "{", "}"
    if node.kind == "fork":
        return "[[", "]]"
    if node.kind == "join":
        return "((", "))"
    if node.callback:
        return "{{", "}}"
    return ("(", ")") if node.kind == "fallback" else ("[", "]")


def _node_line(node: Node) -> str:
    opening, closing = _shape(node)
    label = "<br/>".join(mermaid_text(text) for text in (node.title, *node.lines))
    return f'{node.id}{opening}"{label}"{closing}'


def _framed(block: Block, frame: str | None = None) -> dict[str, str]:
    """Each node drawn inside a map's box, and that box (the innermost, for nested maps)."""
    inside: dict[str, str] = {}
    for part in block.parts:
        if isinstance(part, Frame):
            inside.update(_framed(part.inner, part.node))
            if frame is not None:
                inside[part.node] = frame
            continue
        ids = [part.node, part.side] if isinstance(part, Leaf) else [part.head, part.tail]
        if frame is not None:
            inside.update((node_id, frame) for node_id in ids if node_id)
        if isinstance(part, Split):
            for way in part.ways:
                inside.update(_framed(way, frame))
    return inside


def mermaid(graph: Graph) -> str:
    """The graph as a Mermaid flowchart (top down), statuses as classDef styles."""
    lines = [f"%% Machinery {graph.title}", "flowchart TD"]
    inside = _framed(graph.layout) if graph.layout is not None else {}
    for node in graph.nodes:
        if node.id in inside or node.kind == "map":
            continue
        lines.append("    " + _node_line(node))
    frames = [node for node in graph.nodes if node.kind == "map"]
    for frame in frames:  # a map is a subgraph: its box, with its steps inside
        label = "<br/>".join(mermaid_text(text) for text in (frame.title, *frame.lines))
        lines.append(f'    subgraph {frame.id} ["{label}"]')
        lines.append("        direction TB")
        lines += [
            "        " + _node_line(node) for node in graph.nodes if inside.get(node.id) == frame.id
        ]
        lines.append("    end")
    for edge in graph.edges:
        arrow = "-.->" if edge.dashed else "-->"
        label = f'|"{mermaid_text(edge.label)}"|' if edge.label else ""
        lines.append(f"    {edge.source} {arrow}{label} {edge.target}")
    used = [status for status in Status if any(node.status is status for node in graph.nodes)]
    for status in used:
        style = STYLES[status]
        dashes = f",stroke-dasharray:{DASHES}" if style.dashed else ""
        lines.append(
            f"    classDef {status.value} fill:{style.fill},stroke:{style.stroke},"
            f"color:{style.text}{dashes}"
        )
    for status in used:
        members = ",".join(node.id for node in graph.nodes if node.status is status)
        lines.append(f"    class {members} {status.value}")
    return "\n".join(lines) + "\n"
