"""The example event's run, drawn: GET /events/{event_id}/diagram on the local runtime."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

EVENT_FILE = Path(__file__).resolve().parents[2] / "examples" / "definitions" / "event-text.json"
SVG = "{http://www.w3.org/2000/svg}"
STEPS = ["upper", "reverse", "space-counter"]


def test_the_example_event_is_drawn_with_every_step_succeeded(local_stack: Any) -> None:
    # Given the example event sent to the example workflow, run to its end
    answer = local_stack.post("/e/process-text", json=json.loads(EVENT_FILE.read_text()))
    assert answer.status_code == 202, answer.text
    event_id = answer.json()["event_id"]
    assert local_stack.wait_for_end(event_id)["status"] == "SUCCEEDED"

    # When its diagram is asked for as Mermaid
    mermaid = local_stack.get(f"/events/{event_id}/diagram")

    # Then every step is drawn in order, succeeded after one attempt, and so are the outputs
    assert mermaid.status_code == 200, mermaid.text
    assert mermaid.headers["Content-Type"] == "text/plain; charset=utf-8"
    lines = mermaid.text.splitlines()
    assert lines[:2] == [
        f"%% Machinery event {event_id} of workflow process-text · SUCCEEDED",
        "flowchart TD",
    ]
    steps = [line for line in lines if re.match(r"^    s\d\[", line)]
    assert len(steps) == 3
    for index, (line, name) in enumerate(zip(steps, STEPS, strict=True)):
        assert line.startswith(f'    s{index}["{name}<br/>step {index + 1}<br/>'), line
        assert re.search(r"<br/>succeeded · 1 attempt · [\d.]+ ms\"\]$", line), line
    assert "    class inputs,s0,s1,s2,outputs succeeded" in lines

    # And as SVG, the same: each step's box green, its status in its text
    drawn = local_stack.get(f"/events/{event_id}/diagram", params={"format": "svg"})
    assert drawn.status_code == 200, drawn.text
    assert drawn.headers["Content-Type"] == "image/svg+xml"
    root = ET.fromstring(drawn.content)
    groups = {g.get("data-node"): g for g in root.iter(f"{SVG}g") if g.get("data-node")}
    assert list(groups) == ["inputs", "s0", "s1", "s2", "outputs"]
    for index, name in enumerate(STEPS):
        group = groups[f"s{index}"]
        texts = [text.text or "" for text in group.iter(f"{SVG}text")]
        assert texts[0] == name
        assert any(text.startswith("succeeded · 1 attempt") for text in texts), texts
        assert group.get("data-status") == "succeeded"
        assert group[0].get("fill") == "#dcfce7"


def test_the_example_workflow_diagram_and_its_refusals(local_stack: Any) -> None:
    # When the example workflow's diagram is asked for, then for things that are not there
    drawn = local_stack.get("/workflows/process-text/diagram", params={"format": "svg"})
    unknown = local_stack.get("/events/no-such-event/diagram")
    bad = local_stack.get("/workflows/process-text/diagram", params={"format": "gif"})

    # Then the workflow is drawn, and the others are refused with the API's error body
    assert drawn.status_code == 200, drawn.text
    assert ET.fromstring(drawn.content).findtext(f"{SVG}title") == "workflow process-text"
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"message": "event 'no-such-event' does not exist"},
    )
    assert bad.status_code == 422
    assert bad.json()["details"][0]["path"] == "format"
