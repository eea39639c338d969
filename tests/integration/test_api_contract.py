"""The API's contract as its OpenAPI document states it, and the answers that must agree with it:
operation ids and tags, security, headers, and a replayed Idempotency-Key (one status, one
schema)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from integration_kit import FakeLambdaContext, Wired, load_handler_module, recorded

from machinery_core.domain.models import EventStatus

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

api = load_handler_module("api_app", "functions/api/app.py")

# The operation ids are a contract: a generated client names its functions after them.
OPERATION_IDS = {
    ("post", "/services"): ("createService", "services"),
    ("get", "/services"): ("listServices", "services"),
    ("get", "/services/{name}"): ("getService", "services"),
    ("put", "/services/{name}"): ("putService", "services"),
    ("delete", "/services/{name}"): ("deleteService", "services"),
    ("post", "/workflows"): ("createWorkflow", "workflows"),
    ("get", "/workflows"): ("listWorkflows", "workflows"),
    ("get", "/workflows/{workflow_id}"): ("getWorkflow", "workflows"),
    ("put", "/workflows/{workflow_id}"): ("putWorkflow", "workflows"),
    ("delete", "/workflows/{workflow_id}"): ("deleteWorkflow", "workflows"),
    ("get", "/workflows/{workflow_id}/events"): ("listEvents", "events"),
    ("get", "/workflows/{workflow_id}/diagram"): ("getWorkflowDiagram", "workflows"),
    ("get", "/workflows/{workflow_id}/stats"): ("getWorkflowStats", "workflows"),
    ("post", "/e/{workflow_id}"): ("sendEvent", "events"),
    ("get", "/events/{event_id}"): ("getEvent", "events"),
    ("get", "/events/{event_id}/diagram"): ("getEventDiagram", "events"),
    ("get", "/events/{event_id}/steps/{step}"): ("getEventStep", "events"),
    ("get", "/events/{event_id}/payloads/{ref}"): ("getEventPayload", "events"),
    ("post", "/events/{event_id}/cancel"): ("cancelEvent", "events"),
    ("post", "/events/{event_id}/retry"): ("retryEvent", "events"),
    ("post", "/callbacks/{token}"): ("completeCallback", "callbacks"),
    ("get", "/health"): ("getHealth", "meta"),
    ("get", "/services/{name}/versions"): ("listServiceVersions", "services"),
    ("get", "/services/{name}/versions/{version}"): ("getServiceVersion", "services"),
    ("get", "/workflows/{workflow_id}/versions"): ("listWorkflowVersions", "workflows"),
    ("get", "/workflows/{workflow_id}/versions/{version}"): ("getWorkflowVersion", "workflows"),
    ("put", "/workflows/{workflow_id}/live"): ("setLiveVersion", "workflows"),
    ("get", "/openapi.json"): ("getOpenApi", "meta"),
    ("get", "/ui"): ("getDashboard", "meta"),
}


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    answer = api.handler(event, FakeLambdaContext())
    headers = {key.lower(): value for key, value in (answer.get("headers") or {}).items()}
    body = json.loads(answer["body"]) if answer.get("body") else None
    return answer["statusCode"], headers, body


def _document(wired: Wired) -> dict[str, Any]:
    status, _, body = invoke(recorded("openapi"))
    assert status == 200
    document: dict[str, Any] = body
    return document


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    return set()


# --- the document ------------------------------------------------------------------------


def test_every_operation_has_its_contract_operation_id_and_one_tag(wired: Wired) -> None:
    # Given the served document
    paths = _document(wired)["paths"]

    # Then each operation has its stable id, one tag, a summary and a description
    found = {
        (method, path): (operation["operationId"], *operation["tags"])
        for path, item in paths.items()
        for method, operation in item.items()
    }
    assert found == OPERATION_IDS
    for item in paths.values():
        for operation in item.values():
            assert operation["summary"] and operation["description"]


def test_the_tags_are_declared_with_descriptions(wired: Wired) -> None:
    document = _document(wired)

    declared = {tag["name"]: tag.get("description") for tag in document["tags"]}

    assert set(declared) == {"services", "workflows", "events", "callbacks", "meta"}
    assert all(declared.values())


def test_sigv4_secures_every_route_but_the_callback_whose_token_is_the_credential(
    wired: Wired,
) -> None:
    # Given the served document
    document = _document(wired)

    # Then SigV4 is declared as API Gateway names it, and required at the top
    scheme = document["components"]["securitySchemes"]["sigv4"]
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert document["security"] == [{"sigv4": []}]
    # And only POST /callbacks/{token} opts out
    overridden = {
        (method, path): operation["security"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "security" in operation
    }
    assert overridden == {("post", "/callbacks/{token}"): []}


def test_idempotency_key_and_the_answer_headers_are_documented(wired: Wired) -> None:
    # Given the document's POST /e/{workflow_id}
    operation = _document(wired)["paths"]["/e/{workflow_id}"]["post"]

    # Then the Idempotency-Key request header is a parameter, 1 to 256 characters
    # (header names are case-insensitive; powertools writes them capitalized)
    headers = {p["name"].lower(): p for p in operation["parameters"] if p["in"] == "header"}
    assert set(headers) == {"idempotency-key", "traceparent", "tracestate"}
    key = headers["idempotency-key"]
    assert (key["name"], key["required"]) == ("Idempotency-Key", False)
    assert (key["schema"]["type"], key["schema"]["minLength"], key["schema"]["maxLength"]) == (
        "string",
        1,
        256,
    )
    # And 200 (the ended event) and 202 (the acknowledgement) both carry Location and
    # Idempotent-Replayed, each with its one schema
    responses = operation["responses"]
    for code, schema in (("200", "EventView"), ("202", "EventAccepted")):
        assert set(responses[code]["headers"]) == {"Location", "Idempotent-Replayed"}
        assert responses[code]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{schema}"
        }
    # And the W3C trace context headers are optional and described
    for name in ("traceparent", "tracestate"):
        assert headers[name]["required"] is False
        assert "W3C" in headers[name]["description"]


def test_the_routes_that_create_document_their_location_header(wired: Wired) -> None:
    paths = _document(wired)["paths"]

    for path, method, code in (
        ("/services", "post", "201"),
        ("/workflows", "post", "201"),
        ("/events/{event_id}/retry", "post", "202"),
    ):
        assert "Location" in paths[path][method]["responses"][code]["headers"], path


def test_only_the_schemas_something_refers_to_are_left(wired: Wired) -> None:
    # Given the served document
    document = _document(wired)
    schemas = document["components"]["schemas"]

    # Then the resolver's own validation error schemas are gone
    assert not {"HTTPValidationError", "ValidationError", "ResponseValidationError"} & set(schemas)
    # And every schema left is referred to, from the paths or from another schema
    referred = {ref.rsplit("/", 1)[1] for ref in _refs(document)}
    assert set(schemas) <= referred
    # And every reference resolves
    assert referred <= set(schemas)


def test_the_route_serves_the_document_the_linters_lint(wired: Wired) -> None:
    _, _, served = invoke(recorded("openapi"))

    assert served == api.openapi_document()


# --- the answers -------------------------------------------------------------------------


def test_a_replay_answers_as_the_first_request_marked_replayed(registered: Wired) -> None:
    # Given an event sent with an Idempotency-Key
    status, headers, first = invoke(recorded("send_event_idempotent"))
    assert status == 202
    assert "idempotent-replayed" not in headers

    # When the same request is sent again
    status, headers, again = invoke(recorded("send_event_idempotent"))

    # Then it is answered as the first was (202, the acknowledgement, the same Location),
    # marked replayed in the body and in a header
    assert status == 202
    assert again == {**first, "replayed": True}
    assert headers["location"] == f"/events/{first['event_id']}"
    assert headers["idempotent-replayed"] == "true"


def test_a_replay_with_wait_answers_the_ended_event_as_a_first_request_would(
    registered: Wired,
) -> None:
    # Given an event sent with an Idempotency-Key, which has since ended
    _, _, first = invoke(recorded("send_event_idempotent"))
    stored = registered.store.get_event(first["event_id"])
    registered.store.save_event(stored.model_copy(update={"status": EventStatus.SUCCEEDED}))

    # When the same request is sent again with ?wait
    event = recorded("send_event_idempotent")
    event["rawQueryString"] = "wait=1"
    event["queryStringParameters"] = {"wait": "1"}
    status, headers, again = invoke(event)

    # Then it answers 200 with the event, as GET /events/{event_id} reads it
    assert status == 200
    assert (again["event_id"], again["status"]) == (first["event_id"], "SUCCEEDED")
    assert "steps" in again and "replayed" not in again
    assert headers["idempotent-replayed"] == "true"
    assert headers["location"] == f"/events/{first['event_id']}"


@pytest.mark.parametrize("key", ["", "k" * 257])
def test_an_empty_or_too_long_key_answers_422_naming_the_header(
    registered: Wired, key: str
) -> None:
    event = recorded("send_event_idempotent")
    event["headers"]["idempotency-key"] = key

    status, _, body = invoke(event)

    assert status == 422
    assert body["message"] == "the request does not match the contract"
    [detail] = body["details"]
    assert (detail["path"], detail["location"]) == ("Idempotency-Key", "header")


def test_a_key_of_256_characters_is_taken(registered: Wired) -> None:
    event = recorded("send_event_idempotent")
    event["headers"]["idempotency-key"] = "k" * 256

    status, _, _ = invoke(event)

    assert status == 202


def test_no_route_answers_api_gateways_own_404(wired: Wired) -> None:
    # Given a method and path no route takes (as a catch-all route would pass it on)
    event = recorded("health")
    event["requestContext"]["http"]["method"] = "PATCH"

    status, headers, body = invoke(event)

    assert (status, body) == (404, {"message": "Not Found"})
    assert headers["content-type"] == "application/json"
