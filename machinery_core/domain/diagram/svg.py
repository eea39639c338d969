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

from machinery_core.domain.diagram.graph import DASHES, STATUS_LABELS, STYLES, Graph, Node, Status

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
    style = STYLES[box.node.status]
    out = [
        f'<g class="node {box.node.kind}" data-node="{box.node.id}" '
        f'data-status="{box.node.status.value}">',
        _shape(box),
    ]
    for number, (text, bold) in enumerate(box.lines):
        baseline = box.top + PAD_Y + LINE * number + LINE * BASELINE
        weight = f' font-weight="{TITLE_WEIGHT}"' if bold else ""
        size = TITLE_SIZE if bold else TEXT_SIZE
        out.append(
            f'<text x="{_n(box.cx)}" y="{_n(baseline)}" font-size="{_n(size)}"{weight} '
            f'fill="{style.text}" text-anchor="middle">{_xml(text)}</text>'
        )
    out.append("</g>")
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
    cursor = MARGIN + HEADING_LINE * len(title_lines) + HEADING_GAP
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
