"""A diagram's graph as a standalone SVG document, laid out and drawn here.

The path runs top down, fallbacks stand to its right and continue edges round its left; an
event's diagram ends with a legend of the statuses. Text is measured by an estimate
(`text_width`) and wrapped to fit its box, so the document needs no external service,
script or font: it is made in Lambda and offline alike. Standard library only.

Every length is in pixels unless its comment says otherwise.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from machinery_core.domain.diagram.graph import (
    DASHES,
    STATUS_LABELS,
    STYLES,
    Block,
    Edge,
    Frame,
    Graph,
    Leaf,
    Node,
    Part,
    Split,
    Status,
)

# --- text --------------------------------------------------------------------------------

FONT = "system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"
INK = "#0f172a"  # the diagram's heading and the legend's
BACKGROUND = "#ffffff"  # of the whole image, and behind an edge's label

# How wide a character is, in ems, by `text_width`'s estimate.
WIDTH_FULL = 1.0  # an East Asian wide or full-width character
NARROW = "il.,:;'|!()[]{}ftjr I"
WIDTH_NARROW = 0.34  # one of NARROW
WIDE = "mwMW@%"
WIDTH_WIDE = 0.9  # one of WIDE
WIDTH_CAPITAL = 0.67  # any other capital, or a digit
WIDTH_OTHER = 0.56  # any other character
BOLD_WIDTH = 1.07  # how much wider bold text is

# --- boxes -------------------------------------------------------------------------------

TEXT_SIZE = 12.0  # font size of a box's lines
TITLE_SIZE = 13.0  # font size of a box's title
TITLE_WEIGHT = 600  # font weight of a box's title and of the legend's heading
LINE = 17.0  # line height in a box
BASELINE = 0.72  # a line's baseline below its top, in line heights
PAD_X = 14.0  # between a box's side and its widest line
PAD_Y = 9.0  # between a box's top or bottom and its text
BOX_MIN = 170.0  # a box's least width
BOX_TEXT = 260.0  # the widest text line in a box
TITLE_LINES = 2  # lines of a box's title, past which it is cut with an ellipsis
MAX_LINES = 3  # lines of any other wrapped text, past which it is cut with an ellipsis
STEP_RADIUS = 5  # of a step box's corners
FALLBACK_RADIUS = 14  # of a fallback box's corners: rounder, as in Mermaid
SKEW = 12.0  # of the inputs and outputs parallelograms
TIP = 14.0  # of a callback's hexagon
STROKE = 1.5  # width of every box's border, edge and legend swatch's border

# --- edges and their labels --------------------------------------------------------------

EDGE_COLOUR = "#475569"
EDGE_DASHES = "6 4"  # the dash and gap of a dashed edge
ARROW_SIZE = 7  # the arrowhead's drawn width and height
ARROW_BOX = 10  # the square the arrowhead is drawn in, in its own units; its tip at the right
ARROW_REF = 9  # where along ARROW_BOX the edge's end sits: just short of the tip
APPROACH = 14.0  # an edge's last run into a box: labels stay above it, a resume turns there
RESUME_ENTRY = 0.25  # a resume edge enters its box this part of the box's width right of centre
LABEL_SIZE = 11.0  # font size of an edge's label
LABEL_LINE = 15.0  # line height of an edge's label
LABEL_BASELINE = 0.75  # a label line's baseline below its top, in label line heights
LABEL_TEXT = 200.0  # the widest line of an edge's label
LABEL_PAD_X = 4.0  # a label's background past its text, left and right
LABEL_PAD_Y = 2.0  # a label's background past its text, above and below
LABEL_RADIUS = 3  # of a label background's corners
LABEL_OPACITY = 0.9  # of a label's background
FALLBACK_LABEL_RISE = 11.0  # a fallback edge's label centre above the edge

# --- the layout --------------------------------------------------------------------------

MARGIN = 20.0  # around everything
GAP = 44.0  # the least room between two boxes
FLOW_LABEL_ROOM = 40.0  # between two boxes, besides the lines of the label between them
PATH_LABEL_ROOM = 16.0  # the path's least width past its widest edge label
SIDE_GAP = 170.0  # between the path and the fallback boxes
GUTTER = 20.0  # from the path's widest box to the continue edges
CONTINUE_OFFSET = 6.0  # a continue edge leaves above its box's middle, enters below the next's
CONTINUE_LABEL_GAP = 6.0  # between a continue edge and its label's end; as much again left
HEADING_SIZE = 15.0  # font size of the diagram's heading, and its first baseline below MARGIN
HEADING_WEIGHT = 700  # font weight of the diagram's heading
HEADING_LINE = 20.0  # line height of the diagram's heading
HEADING_LINES = 4  # lines of the heading, past which it is cut with an ellipsis
# the heading's least wrapping width: an event id (a UUID) on one line, the workflow and
# status on the next
HEADING_MIN = 380.0
HEADING_GAP = 14.0  # between the heading's last line and the first box

# --- the legend --------------------------------------------------------------------------

LEGEND_GAP = 28.0  # between the lowest box and the legend
LEGEND_TITLE_SIZE = 12.0  # font size of the word "legend"
LEGEND_INDENT = 56.0  # from the margin to the first swatch: room for the word "legend"
LEGEND_ROW = 22.0  # from one row of the legend to the next
LEGEND_BASELINE = 11.0  # a legend row's text baseline below the row's top
LEGEND_TEXT = "#334155"  # colour of a status's name in the legend
SWATCH = 14.0  # a status's square in the legend
SWATCH_RADIUS = 3  # of a swatch's corners
SWATCH_DASHES = "3 2"  # the dash and gap of a dashed status's swatch border
SWATCH_GAP = 6.0  # between a swatch and its status's name
LEGEND_ITEM_GAP = 18.0  # between a status's name and the next swatch


def text_width(text: str, size: float, bold: bool = False) -> float:
    """An estimate of `text`'s width in pixels in a sans-serif face at `size` pixels.

    Generous rather than tight, so text stays inside its box whatever the face.
    """
    ems = 0.0
    for char in text:
        if unicodedata.combining(char):
            continue
        if unicodedata.east_asian_width(char) in ("W", "F"):
            ems += WIDTH_FULL
        elif char in NARROW:
            ems += WIDTH_NARROW
        elif char in WIDE:
            ems += WIDTH_WIDE
        elif char.isupper() or char.isdigit():
            ems += WIDTH_CAPITAL
        else:
            ems += WIDTH_OTHER
    return ems * size * (BOLD_WIDTH if bold else 1.0)


def wrap(
    text: str, width: float, size: float, bold: bool = False, max_lines: int = MAX_LINES
) -> list[str]:
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
    lines = [(text, True) for text in wrap(node.title, BOX_TEXT, TITLE_SIZE, True, TITLE_LINES)]
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
    """A coordinate or size as the document writes it: to a tenth, no trailing zeros."""
    return f"{round(value, 1):.1f}".rstrip("0").rstrip(".")


def _points(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{_n(x)},{_n(y)}" for x, y in points)


def _shape(box: _Box) -> str:
    style = STYLES[box.node.status]
    paint = f'fill="{style.fill}" stroke="{style.stroke}" stroke-width="{_n(STROKE)}"'
    if style.dashed:
        paint += f' stroke-dasharray="{DASHES}"'
    left, right, top, bottom = box.left, box.right, box.top, box.bottom
    middle = (top + bottom) / 2
    if box.node.kind in ("inputs", "outputs"):
        corners = [(left + SKEW, top), (right, top), (right - SKEW, bottom), (left, bottom)]
        return f'<polygon points="{_points(corners)}" {paint}/>'
    if box.node.kind == "decision":
        corners = [(box.cx, top), (right, middle), (box.cx, bottom), (left, middle)]
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
    radius = FALLBACK_RADIUS if box.node.kind == "fallback" else STEP_RADIUS
    return (
        f'<rect x="{_n(left)}" y="{_n(top)}" width="{_n(box.width)}" '
        f'height="{_n(box.height)}" rx="{radius}" {paint}/>'
    )


def _node_svg(box: _Box) -> list[str]:
    if box.node.kind == "join":
        return _join_svg(box)
    out = [
        f'<g class="node {box.node.kind}" data-node="{box.node.id}" '
        f'data-status="{box.node.status.value}">',
        _shape(box),
    ]
    # centred in the box: a decision's diamond is taller than its text
    out += _lines_svg(box, box.top + (box.height - LINE * len(box.lines)) / 2 - PAD_Y)
    out.append("</g>")
    return out


def _lines_svg(box: _Box, top: float) -> list[str]:
    """A box's lines, centred on it, the first `PAD_Y` below `top`."""
    style = STYLES[box.node.status]
    out = []
    for number, (text, bold) in enumerate(box.lines):
        baseline = top + PAD_Y + LINE * number + LINE * BASELINE
        weight = f' font-weight="{TITLE_WEIGHT}"' if bold else ""
        size = TITLE_SIZE if bold else TEXT_SIZE
        out.append(
            f'<text x="{_n(box.cx)}" y="{_n(baseline)}" font-size="{_n(size)}"{weight} '
            f'fill="{style.text}" text-anchor="middle">{_xml(text)}</text>'
        )
    return out


def _label_width(line: str) -> float:
    """The width of an edge label's background for its widest `line`."""
    return text_width(line, LABEL_SIZE) + 2 * LABEL_PAD_X


def _label_svg(lines: list[str], cx: float, cy: float, anchor: str = "middle") -> list[str]:
    """An edge label: its lines on a pale background, centred on (cx, cy) or ending at cx."""
    if not lines or lines == [""]:
        return []
    width = max(_label_width(line) for line in lines)
    height = LABEL_LINE * len(lines) + 2 * LABEL_PAD_Y
    left = cx - width / 2 if anchor == "middle" else cx - width
    top = cy - height / 2
    out = [
        f'<rect x="{_n(left)}" y="{_n(top)}" width="{_n(width)}" height="{_n(height)}" '
        f'rx="{LABEL_RADIUS}" fill="{BACKGROUND}" fill-opacity="{_n(LABEL_OPACITY)}"/>'
    ]
    for number, line in enumerate(lines):
        baseline = top + LABEL_PAD_Y + LABEL_LINE * number + LABEL_LINE * LABEL_BASELINE
        out.append(
            f'<text x="{_n(left + width / 2)}" y="{_n(baseline)}" font-size="{_n(LABEL_SIZE)}" '
            f'fill="{EDGE_COLOUR}" text-anchor="middle">{_xml(line)}</text>'
        )
    return out


def _path(points: list[tuple[float, float]], dashed: bool) -> str:
    d = "M" + " L".join(f"{_n(x)},{_n(y)}" for x, y in points)
    dashes = f' stroke-dasharray="{EDGE_DASHES}"' if dashed else ""
    return (
        f'<path d="{d}" fill="none" stroke="{EDGE_COLOUR}" stroke-width="{_n(STROKE)}"{dashes} '
        f'marker-end="url(#machinery-arrow)"/>'
    )


def svg(graph: Graph) -> str:
    """The graph as a standalone SVG document: the path top down, fallbacks to its right,
    continue edges to its left, and a legend of the statuses for an event."""
    if graph.layout is not None:
        return _Blocks(graph).draw()
    boxes = {node.id: _measure(node) for node in graph.nodes}
    path = [boxes[n.id] for n in graph.nodes if n.kind != "fallback"]
    side = {n.step: boxes[n.id] for n in graph.nodes if n.kind == "fallback"}
    flows = {e.target: e for e in graph.edges if e.kind == "flow"}
    flow_labels = {
        target: wrap(edge.label, LABEL_TEXT, LABEL_SIZE) if edge.label else []
        for target, edge in flows.items()
    }
    skips = [e for e in graph.edges if e.kind == "continue"]
    skip_width = max((_label_width(e.label) for e in skips), default=0.0)
    label_width = max(
        (_label_width(line) for lines in flow_labels.values() for line in lines),
        default=0.0,
    )
    path_width = max(max(box.width for box in path), label_width + PATH_LABEL_ROOM)
    gutter = skip_width + GUTTER + 2 * CONTINUE_LABEL_GAP if skips else 0.0
    axis = MARGIN + gutter + path_width / 2
    side_left = axis + path_width / 2 + SIDE_GAP
    side_width = max((box.width for box in side.values()), default=0.0)
    content_width = side_left + side_width + MARGIN if side else axis + path_width / 2 + MARGIN

    width, out_body, cursor = _heading(graph, content_width)
    previous: _Box | None = None
    for box in path:
        if previous is not None:
            label_lines = len(flow_labels.get(box.node.id, []))
            cursor += max(GAP, LABEL_LINE * label_lines + FLOW_LABEL_ROOM)
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
            middle = (above + target.top - APPROACH) / 2
            labels += _label_svg(flow_labels.get(edge.target, []), axis, middle)
        elif edge.kind == "fallback":
            y = source.top + min(source.height, target.height) / 2
            edges.append(_path([(source.right, y), (target.left, y)], True))
            rise = y - FALLBACK_LABEL_RISE
            labels += _label_svg([edge.label], (source.right + target.left) / 2, rise)
        elif edge.kind == "resume":
            turn = target.top - APPROACH
            entry = target.cx + target.width * RESUME_ENTRY
            points = [
                (source.cx, source.bottom),
                (source.cx, turn),
                (entry, turn),
                (entry, target.top),
            ]
            edges.append(_path(points, True))
        else:  # continue: round the left of the path
            x = axis - path_width / 2 - GUTTER
            start = (source.top + source.bottom) / 2 - CONTINUE_OFFSET
            end = (target.top + target.bottom) / 2 + CONTINUE_OFFSET
            inset = SKEW / 2 if target.node.kind in ("inputs", "outputs") else 0.0
            points = [(source.left, start), (x, start), (x, end), (target.left + inset, end)]
            edges.append(_path(points, True))
            at = (start + end) / 2
            labels += _label_svg([edge.label], x - CONTINUE_LABEL_GAP, at, anchor="end")

    return _document(graph, width, bottom, out_body + edges + labels, boxes.values())


def _heading(graph: Graph, content_width: float) -> tuple[float, list[str], float]:
    """The document's width, its heading, and where the first box goes."""
    title_width = max(content_width - 2 * MARGIN, HEADING_MIN)
    title_lines = wrap(graph.title, title_width, HEADING_SIZE, True, HEADING_LINES)
    width = max(
        content_width,
        max(text_width(t, HEADING_SIZE, True) for t in title_lines) + 2 * MARGIN,
    )
    out_body: list[str] = []
    for number, line in enumerate(title_lines):
        out_body.append(
            f'<text x="{_n(MARGIN)}" y="{_n(MARGIN + HEADING_SIZE + HEADING_LINE * number)}" '
            f'font-size="{_n(HEADING_SIZE)}" font-weight="{HEADING_WEIGHT}" '
            f'fill="{INK}">{_xml(line)}</text>'
        )
    return width, out_body, MARGIN + HEADING_LINE * len(title_lines) + HEADING_GAP


def _document(
    graph: Graph, width: float, bottom: float, body: list[str], boxes: Iterable[_Box]
) -> str:
    """The standalone document: the heading, edges and labels in `body`, the boxes over
    them, and an event's legend below."""
    legend: list[str] = []
    if graph.event:
        legend, bottom = _legend(bottom + LEGEND_GAP, width)
    height = bottom + MARGIN
    tip = ARROW_BOX // 2
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" role="img" '
        f'width="{_n(width)}" height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}" '
        f'font-family="{FONT}">',
        f"<title>{_xml(graph.title)}</title>",
        f"<desc>{_xml(graph.description)}</desc>",
        "<defs>",
        f'<marker id="machinery-arrow" viewBox="0 0 {ARROW_BOX} {ARROW_BOX}" '
        f'refX="{ARROW_REF}" refY="{tip}" markerWidth="{ARROW_SIZE}" '
        f'markerHeight="{ARROW_SIZE}" orient="auto-start-reverse">',
        f'<path d="M0,0 L{ARROW_BOX},{tip} L0,{ARROW_BOX} z" fill="{EDGE_COLOUR}"/>',
        "</marker>",
        "</defs>",
        f'<rect width="{_n(width)}" height="{_n(height)}" fill="{BACKGROUND}"/>',
        *body,
    ]
    for box in boxes:
        out += _node_svg(box)
    out += legend
    out.append("</svg>")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + "\n".join(out) + "\n"


# --- a workflow with groups ----------------------------------------------------------------

WAY_GAP = 36.0  # between two ways of a decision, or two branches, side by side
EMPTY_WAY = 40.0  # the width of a way with no step (a decision without otherwise)
BAR = 8.0  # the height of a parallel group's join bar
JOIN_RADIUS = 7.0  # of the dot where a decision's ways meet
FRAME_PAD = 14.0  # inside a map's box, around its steps and its heading
DIAMOND = 2.2  # a decision's width, in widths of its widest line (its text fits inside)


class _Blocks:
    """The layout of a graph with groups: a column of parts, a decision's or a fork's ways
    side by side between it and their join, a map's steps inside its box."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes = {node.id: node for node in graph.nodes}
        self.boxes = {node.id: self._measure(node) for node in graph.nodes}
        # a map's heading, as measured: its box grows to hold its steps once placed
        self.headings = {
            box.node.id: (box.width, box.height)
            for box in self.boxes.values()
            if box.node.kind == "map"
        }
        self.entry_labels = {
            edge.target: wrap(edge.label, LABEL_TEXT, LABEL_SIZE)
            for edge in graph.edges
            if edge.kind == "flow" and edge.label
        }

    def _measure(self, node: Node) -> _Box:
        box = _measure(node)
        if node.kind == "decision":
            widest = max(text_width(t, TITLE_SIZE if b else TEXT_SIZE, b) for t, b in box.lines)
            box.width = max(BOX_MIN, widest * DIAMOND + 2 * PAD_X)
            box.height += 2 * PAD_Y + LINE
        elif node.kind == "join":
            box.lines, box.width = [], 2 * JOIN_RADIUS
            box.height = BAR if self._joins_branches(node) else 2 * JOIN_RADIUS
        return box

    def _joins_branches(self, node: Node) -> bool:
        head = self.nodes.get(node.id.removesuffix("_j"))
        return head is not None and head.kind == "fork"

    # sizes

    def _gap(self, part: Part) -> float:
        lines = len(self.entry_labels.get(self._first(part), []))
        return max(GAP, LABEL_LINE * lines + FLOW_LABEL_ROOM)

    def _first(self, part: Part) -> str:
        return part.head if isinstance(part, Split) else part.node

    def size(self, part: Part | Block) -> tuple[float, float]:
        if isinstance(part, Block):
            sizes = [self.size(p) for p in part.parts]
            gaps = sum(self._gap(p) for p in part.parts[1:])
            return max((w for w, _ in sizes), default=EMPTY_WAY), sum(h for _, h in sizes) + gaps
        if isinstance(part, Leaf):
            box = self.boxes[part.node]
            if part.side is None:
                return box.width, box.height
            side = self.boxes[part.side]
            return box.width + SIDE_GAP + side.width, max(box.height, side.height)
        if isinstance(part, Frame):
            inner_width, inner_height = self.size(part.inner)
            head_width, head_height = self.headings[part.node]
            return (
                max(inner_width, head_width) + 2 * FRAME_PAD,
                head_height + inner_height + 2 * FRAME_PAD,
            )
        ways = [self.size(way) if way.parts else (EMPTY_WAY, 0.0) for way in part.ways]
        spread = sum(w for w, _ in ways) + WAY_GAP * (len(ways) - 1)
        head, tail = self.boxes[part.head], self.boxes[part.tail]
        if self._joins_branches(self.nodes[part.tail]):
            tail.width = spread
        height = head.height + max(h for _, h in ways) + tail.height + 2 * GAP + LABEL_LINE
        return max(head.width, spread), height

    # places

    def place(self, part: Part | Block, cx: float, top: float) -> None:
        if isinstance(part, Block):
            for number, inner in enumerate(part.parts):
                if number:
                    top += self._gap(inner)
                self.place(inner, cx, top)
                top += self.size(inner)[1]
            return
        if isinstance(part, Leaf):
            box = self.boxes[part.node]
            width, _ = self.size(part)
            box.cx, box.top = cx - width / 2 + box.width / 2, top
            if part.side is not None:
                side = self.boxes[part.side]
                side.cx, side.top = box.right + SIDE_GAP + side.width / 2, top
            return
        if isinstance(part, Frame):
            frame = self.boxes[part.node]
            width, height = self.size(part)
            frame.cx, frame.top, frame.width, frame.height = cx, top, width, height
            self.place(part.inner, cx, top + FRAME_PAD + self.headings[part.node][1])
            return
        head, tail = self.boxes[part.head], self.boxes[part.tail]
        head.cx, head.top = cx, top
        ways = [self.size(way) if way.parts else (EMPTY_WAY, 0.0) for way in part.ways]
        spread = sum(w for w, _ in ways) + WAY_GAP * (len(ways) - 1)
        left = cx - spread / 2
        inner_top = head.bottom + GAP + LABEL_LINE
        for way, (width, _) in zip(part.ways, ways, strict=True):
            if way.parts:
                self.place(way, left + width / 2, inner_top)
            left += width + WAY_GAP
        tail.cx, tail.top = cx, inner_top + max(h for _, h in ways) + GAP

    # drawing

    def draw(self) -> str:
        layout = self.graph.layout
        assert layout is not None
        width, height = self.size(layout)
        content_width = width + 2 * MARGIN + GUTTER * 2
        page_width, body, top = _heading(self.graph, content_width)
        self.place(layout, page_width / 2, top)
        edges: list[str] = []
        labels: list[str] = []
        for edge in self.graph.edges:
            path, label = self._edge(edge)
            edges.append(path)
            labels += label
        body += self._frames() + edges + labels
        boxes = [
            box for box in self.boxes.values() if box.node.kind not in ("map", "join")
        ] + self._joins()
        return _document(self.graph, page_width, top + height, body, boxes)

    def _frames(self) -> list[str]:
        """Each map's box, under its steps, with its heading inside at the top."""
        out = []
        for box in self.boxes.values():
            if box.node.kind != "map":
                continue
            style = STYLES[box.node.status]
            dashes = f' stroke-dasharray="{DASHES}"' if style.dashed else ""
            out.append(
                f'<g class="node map" data-node="{box.node.id}" '
                f'data-status="{box.node.status.value}">'
            )
            out.append(
                f'<rect x="{_n(box.left)}" y="{_n(box.top)}" width="{_n(box.width)}" '
                f'height="{_n(box.height)}" rx="{FALLBACK_RADIUS}" fill="{style.fill}" '
                f'fill-opacity="0.5" stroke="{style.stroke}" stroke-width="{_n(STROKE)}"{dashes}/>'
            )
            out += _lines_svg(box, box.top)
            out.append("</g>")
        return out

    def _joins(self) -> list[_Box]:
        return [box for box in self.boxes.values() if box.node.kind == "join"]

    def _edge(self, edge: Edge) -> tuple[str, list[str]]:
        source, target = self.boxes[edge.source], self.boxes[edge.target]
        lines = wrap(edge.label, LABEL_TEXT, LABEL_SIZE) if edge.label else []
        if edge.kind == "fallback":
            y = source.top + min(source.height, target.height) / 2
            label = _label_svg(lines, (source.right + target.left) / 2, y - FALLBACK_LABEL_RISE)
            return _path([(source.right, y), (target.left, y)], True), label
        if edge.kind == "continue":
            x = min(source.left, target.left) - GUTTER
            start = (source.top + source.bottom) / 2 - CONTINUE_OFFSET
            end = (target.top + target.bottom) / 2 + CONTINUE_OFFSET
            points = [(source.left, start), (x, start), (x, end), (target.left, end)]
            label = _label_svg(lines, x - CONTINUE_LABEL_GAP, (start + end) / 2, anchor="end")
            return _path(points, True), label
        start_x = source.cx
        end_x = start_x if target.node.kind == "join" and target.height == BAR else target.cx
        if target.node.kind == "map" and source.node.kind != "map":
            end_x = target.cx
        start_y, end_y = source.bottom, target.top
        if abs(start_x - end_x) < 1:
            points = [(start_x, start_y), (end_x, end_y)]
            middle = (start_y + end_y) / 2
        else:
            turn = start_y + min(GAP / 2, (end_y - start_y) / 2)
            points = [(start_x, start_y), (start_x, turn), (end_x, turn), (end_x, end_y)]
            middle = (turn + end_y) / 2
        return _path(points, edge.kind != "flow"), _label_svg(lines, end_x, middle)


def _join_svg(box: _Box) -> list[str]:
    style = STYLES[box.node.status]
    head = f'<g class="node join" data-node="{box.node.id}" data-status="{box.node.status.value}">'
    paint = f'fill="{style.stroke}" stroke="{style.stroke}" stroke-width="{_n(STROKE)}"'
    if box.height == BAR:
        shape = (
            f'<rect x="{_n(box.left)}" y="{_n(box.top)}" width="{_n(box.width)}" '
            f'height="{_n(BAR)}" rx="2" {paint}/>'
        )
    else:
        shape = (
            f'<circle cx="{_n(box.cx)}" cy="{_n(box.top + JOIN_RADIUS)}" '
            f'r="{_n(JOIN_RADIUS)}" {paint}/>'
        )
    return [head, shape, "</g>"]


def _legend(top: float, width: float) -> tuple[list[str], float]:
    """Every status an event's node can show, with its colours, in rows that fit `width`."""
    out = [
        f'<g class="legend"><text x="{_n(MARGIN)}" y="{_n(top + LEGEND_BASELINE)}" '
        f'font-size="{_n(LEGEND_TITLE_SIZE)}" font-weight="{TITLE_WEIGHT}" '
        f'fill="{INK}">legend</text>'
    ]
    first = MARGIN + LEGEND_INDENT
    x, y = first, top
    for status in Status:
        if status is Status.PLANNED:
            continue
        style, label = STYLES[status], STATUS_LABELS[status]
        item = SWATCH + SWATCH_GAP + text_width(label, LABEL_SIZE) + LEGEND_ITEM_GAP
        if x + item > width - MARGIN and x > first:
            x, y = first, y + LEGEND_ROW
        dashes = f' stroke-dasharray="{SWATCH_DASHES}"' if style.dashed else ""
        out.append(
            f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(SWATCH)}" height="{_n(SWATCH)}" '
            f'rx="{SWATCH_RADIUS}" fill="{style.fill}" stroke="{style.stroke}" '
            f'stroke-width="{_n(STROKE)}"{dashes} data-status="{status.value}"/>'
        )
        out.append(
            f'<text x="{_n(x + (SWATCH + SWATCH_GAP))}" y="{_n(y + LEGEND_BASELINE)}" '
            f'font-size="{_n(LABEL_SIZE)}" fill="{LEGEND_TEXT}">{_xml(label)}</text>'
        )
        x += item
    out.append("</g>")
    return out, y + SWATCH
