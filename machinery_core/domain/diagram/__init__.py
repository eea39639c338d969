"""Diagrams of a workflow, and of an event's run over it: Mermaid text and standalone SVG.

`graph` computes what a diagram shows (`workflow_graph`, `event_graph`: nodes, edges and
statuses); `mermaid` and `svg` only draw that graph, so the two formats never disagree.
Pure functions: no I/O, no clock. The SVG needs no external service, script or font, so it
is made in Lambda and offline alike.
"""

from __future__ import annotations

from typing import Literal

from machinery_core.domain.diagram.graph import (
    MAX_ERROR,
    MAX_EXPRESSION,
    MAX_TEXT,
    STATUS_LABELS,
    STYLES,
    Edge,
    Graph,
    Node,
    Status,
    Style,
    clean,
    event_graph,
    workflow_graph,
)
from machinery_core.domain.diagram.mermaid import MERMAID_LINE, mermaid, mermaid_text
from machinery_core.domain.diagram.svg import svg, text_width, wrap
from machinery_core.domain.models import EventView, Service, Workflow

__all__ = [
    "CONTENT_TYPES",
    "MAX_ERROR",
    "MAX_EXPRESSION",
    "MAX_TEXT",
    "MERMAID_LINE",
    "STATUS_LABELS",
    "STYLES",
    "DiagramFormat",
    "Edge",
    "Graph",
    "Node",
    "Status",
    "Style",
    "clean",
    "event_graph",
    "event_mermaid",
    "event_svg",
    "mermaid",
    "mermaid_text",
    "render",
    "svg",
    "text_width",
    "workflow_graph",
    "workflow_mermaid",
    "workflow_svg",
    "wrap",
]

DiagramFormat = Literal["mermaid", "svg"]
# text/plain rather than text/vnd.mermaid: browsers and curl show it instead of saving it.
CONTENT_TYPES: dict[str, str] = {
    "mermaid": "text/plain; charset=utf-8",
    "svg": "image/svg+xml",
}


def render(graph: Graph, form: DiagramFormat) -> str:
    return mermaid(graph) if form == "mermaid" else svg(graph)


def workflow_mermaid(workflow: Workflow, services: dict[str, Service]) -> str:
    return mermaid(workflow_graph(workflow, services))


def workflow_svg(workflow: Workflow, services: dict[str, Service]) -> str:
    return svg(workflow_graph(workflow, services))


def event_mermaid(workflow: Workflow, services: dict[str, Service], event: EventView) -> str:
    return mermaid(event_graph(workflow, services, event))


def event_svg(workflow: Workflow, services: dict[str, Service], event: EventView) -> str:
    return svg(event_graph(workflow, services, event))
