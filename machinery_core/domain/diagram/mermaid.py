"""A diagram's graph as Mermaid text: a top-down flowchart, statuses as classDef styles.

Every label is one quoted string whose special characters are Mermaid entity codes, so no
name, field or error can break the chart.
"""

from __future__ import annotations

import textwrap

from machinery_core.domain.diagram.graph import DASHES, STYLES, Graph, Node, Status

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
    if node.callback:
        return "{{", "}}"
    return ("(", ")") if node.kind == "fallback" else ("[", "]")


def mermaid(graph: Graph) -> str:
    """The graph as a Mermaid flowchart (top down), statuses as classDef styles."""
    lines = [f"%% Machinery {graph.title}", "flowchart TD"]
    for node in graph.nodes:
        opening, closing = _shape(node)
        label = "<br/>".join(mermaid_text(text) for text in (node.title, *node.lines))
        lines.append(f'    {node.id}{opening}"{label}"{closing}')
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
