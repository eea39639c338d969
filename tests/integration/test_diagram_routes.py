"""GET /workflows/{workflow_id}/diagram and GET /events/{event_id}/diagram through the API
handler, with recorded API Gateway HTTP API (v2.0) events."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest
from integration_kit import FakeLambdaContext, Wired, at_path_id, load_handler_module, recorded

from machinery_core.domain import engine
from machinery_core.domain.engine import CallOutcome
from machinery_core.domain.models import ErrorInfo

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

api = load_handler_module("api_app", "functions/api/app.py")
SVG = "{http://www.w3.org/2000/svg}"
MERMAID = "text/plain; charset=utf-8"


def with_query(event: dict[str, Any], **params: str) -> dict[str, Any]:
    """The recorded event with exactly these query parameters (none: no query string)."""
    changed = copy.deepcopy(event)
    changed["rawQueryString"] = "&".join(f"{key}={value}" for key, value in params.items())
    changed.pop("queryStringParameters", None)
    if params:
        changed["queryStringParameters"] = dict(params)
    return changed


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    answer = api.handler(event, FakeLambdaContext())
    headers = {key.lower(): value for key, value in (answer.get("headers") or {}).items()}
    assert not answer.get("isBase64Encoded")
    return answer["statusCode"], headers, answer.get("body") or ""


@pytest.fixture
def failed_event(registered: Wired) -> str:
    """An event of `shout` whose only step failed, with an error holding <, & and quotes."""
    status, _, body = invoke(recorded("send_event"))
    assert status == 202, body
    event_id: str = json.loads(body)["event_id"]
    store = registered.store
    event, plan = store.load_with_plan(event_id)
    now = event.acknowledged_at
    event = store.save_event(engine.begin(event, now))
    payload, _ = engine.step_input(event, plan)
    outcome = CallOutcome(
        started_at=now,
        ended_at=now + timedelta(milliseconds=40),
        status_code=400,
        error=ErrorInfo(type="HttpError", message='refused <"x"> & more', status_code=400),
    )
    store.save_event(engine.record_call(event, plan, payload, outcome).event)
    return event_id


# --- the workflow ------------------------------------------------------------------------


def test_the_workflow_diagram_answers_an_svg_image(registered: Wired) -> None:
    # Given the registered workflow `shout` (inputs -> upper -> outputs)
    # When its diagram is asked for as SVG (the recorded request)
    status, headers, body = invoke(recorded("get_workflow_diagram"))

    # Then it is a standalone SVG image drawing the workflow's one step
    assert status == 200, body
    assert headers["content-type"] == "image/svg+xml"
    root = ET.fromstring(body)
    assert root.tag == f"{SVG}svg"
    assert root.findtext(f"{SVG}title") == "workflow shout"
    texts = [text.text for text in root.iter(f"{SVG}text")]
    assert {"inputs", "upper", "outputs"} <= set(texts)


@pytest.mark.parametrize("query", [{}, {"format": "mermaid"}], ids=["default", "mermaid"])
def test_the_workflow_diagram_answers_mermaid_text_by_default(
    registered: Wired, query: dict[str, str]
) -> None:
    status, headers, body = invoke(with_query(recorded("get_workflow_diagram"), **query))

    assert status == 200, body
    assert headers["content-type"] == MERMAID
    lines = body.splitlines()
    assert lines[1] == "flowchart TD"
    assert '    s0["upper<br/>step 1<br/>gives: message"]' in lines
    assert '    inputs -->|"message"| s0' in lines
    assert '    s0 -->|"message"| outputs' in lines


def test_the_diagram_of_an_unknown_workflow_answers_404(wired: Wired) -> None:
    event = at_path_id(recorded("get_workflow_diagram"), "workflow_id", "nope")

    status, headers, body = invoke(event)

    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": "workflow 'nope' does not exist"}


@pytest.mark.parametrize("form", ["png", "SVG", ""])
def test_an_unknown_format_answers_422_naming_the_query(registered: Wired, form: str) -> None:
    status, headers, body = invoke(with_query(recorded("get_workflow_diagram"), format=form))

    assert status == 422
    assert headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["details"][0]["path"] == "format"
    assert answer["details"][0]["location"] == "query"


# --- an event ----------------------------------------------------------------------------


def test_the_event_diagram_draws_the_failed_step_in_mermaid(
    registered: Wired, failed_event: str
) -> None:
    # Given an event of `shout` whose step failed
    # When its diagram is asked for (the recorded request: no format)
    status, headers, body = invoke(
        at_path_id(recorded("get_event_diagram"), "event_id", failed_event)
    )

    # Then the step is drawn failed with its error, its characters coded for Mermaid
    assert status == 200, body
    assert headers["content-type"] == MERMAID
    assert f"%% Machinery event {failed_event} of workflow shout · FAILED" in body
    [step] = [line for line in body.splitlines() if line.startswith("    s0[")]
    assert "failed · 1 attempt · 40.0 ms" in step
    assert "HttpError (HTTP 400): refused #lt;#quot;x#quot;#gt; #amp; more" in step
    assert "    class s0 failed" in body.splitlines()


def test_the_event_diagram_answers_an_svg_image(registered: Wired, failed_event: str) -> None:
    event = with_query(
        at_path_id(recorded("get_event_diagram"), "event_id", failed_event), format="svg"
    )

    status, headers, body = invoke(event)

    assert status == 200, body
    assert headers["content-type"] == "image/svg+xml"
    root = ET.fromstring(body)
    [step] = [g for g in root.iter(f"{SVG}g") if g.get("data-node") == "s0"]
    assert step.get("data-status") == "failed"
    assert step[0].get("fill") == "#fee2e2"
    assert 'HttpError (HTTP 400): refused <"x"> & more' in [t.text for t in step.iter(f"{SVG}text")]


def test_the_event_diagram_outlives_its_workflow(registered: Wired, failed_event: str) -> None:
    # Given the event's workflow deleted since
    delete = at_path_id(recorded("get_workflow_unknown"), "workflow_id", "shout")
    delete["routeKey"] = delete["requestContext"]["routeKey"] = "DELETE /workflows/{workflow_id}"
    delete["requestContext"]["http"]["method"] = "DELETE"
    assert invoke(delete)[0] == 204

    # When the event's diagram is asked for
    status, _, body = invoke(at_path_id(recorded("get_event_diagram"), "event_id", failed_event))

    # Then it is still drawn, from the plan the event ran with
    assert status == 200, body
    assert '    s0["upper<br/>step 1<br/>gives: message<br/>failed' in body
    assert '    inputs[/"inputs<br/>message: string<br/>received"/]' in body


def test_the_diagram_of_an_unknown_event_answers_404(wired: Wired) -> None:
    status, headers, body = invoke(recorded("get_event_diagram"))

    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "message": "event '9b2f6a0e-3c4d-4e5f-8a9b-0c1d2e3f4a5b' does not exist"
    }


def test_openapi_documents_the_diagram_routes_and_their_content_types(wired: Wired) -> None:
    status, _, body = invoke(recorded("openapi"))

    assert status == 200
    paths = json.loads(body)["paths"]
    for path in ("/workflows/{workflow_id}/diagram", "/events/{event_id}/diagram"):
        operation = paths[path]["get"]
        assert set(operation["responses"]["200"]["content"]) == {MERMAID, "image/svg+xml"}
        [query] = [p for p in operation["parameters"] if p["in"] == "query"]
        assert query["name"] == "format"
        assert query["schema"]["enum"] == ["mermaid", "svg"]
        assert query["schema"]["default"] == "mermaid"
        assert {"404", "422"} <= set(operation["responses"])
