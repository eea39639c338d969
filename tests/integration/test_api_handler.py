"""The API Lambda handler invoked with recorded API Gateway HTTP API (v2.0) events."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from integration_kit import FakeLambdaContext, Wired, at_path_id, load_handler_module, recorded

from machinery_core.domain.errors import NotFound
from machinery_core.domain.models import EventStatus, Plan

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

api = load_handler_module("api_app", "functions/api/app.py")


def with_body(event: dict[str, Any], body: str) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    changed["body"] = body
    changed["headers"]["content-length"] = str(len(body.encode()))
    return changed


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    answer = api.handler(event, FakeLambdaContext())
    headers = {key.lower(): value for key, value in (answer.get("headers") or {}).items()}
    body = json.loads(answer["body"]) if answer.get("body") else None
    return answer["statusCode"], headers, body


# --- services ----------------------------------------------------------------------------


def test_create_service_answers_201_with_the_service_id(wired: Wired) -> None:
    status, headers, body = invoke(recorded("create_service"))

    assert status == 201
    assert body["service_id"] == "upper"
    assert body["version"] == 1
    assert body["acknowledged_at"]
    assert headers["location"] == "/services/upper"
    assert headers["content-type"] == "application/json"
    stored = wired.store.get_service("upper").definition
    assert stored.spec.outputs["message"].description == "The text in upper case"


def test_the_prototype_list_form_is_stored_canonical(wired: Wired) -> None:
    status, _, body = invoke(recorded("create_service_list_form"))

    assert (status, body["service_id"]) == (201, "reverse")
    stored = wired.store.get_service("reverse").definition
    assert stored.spec.inputs["message"].type == "string"
    assert stored.spec.outputs["message"].description == "The text, last character first"


def test_creating_a_service_twice_answers_409(wired: Wired) -> None:
    invoke(recorded("create_service"))

    status, _, body = invoke(recorded("create_service"))

    assert status == 409
    assert "already exists" in body["message"]


def test_malformed_json_answers_400_with_a_message(wired: Wired) -> None:
    status, headers, body = invoke(recorded("malformed_json"))

    assert status == 400
    assert headers["content-type"] == "application/json"
    assert body == {"message": "the request body is not valid JSON"}


def test_a_body_that_breaks_the_model_answers_422_with_field_paths(wired: Wired) -> None:
    status, _, body = invoke(recorded("create_service_invalid"))

    assert status == 422
    paths = {detail["path"] for detail in body["details"]}
    assert {"name", "address", "spec.inputs.message.type"} <= paths
    assert all(detail["message"] for detail in body["details"])
    with pytest.raises(NotFound):
        wired.store.get_service("Upper Case")


def test_a_body_over_256_kib_answers_413(registered: Wired) -> None:
    # Given a well-formed event whose body is just over the limit
    message = "x" * (256 * 1024)
    event = with_body(recorded("send_event"), json.dumps({"data": {"message": message}}))

    status, _, body = invoke(event)

    assert status == 413
    assert "256" in body["message"] or "262144" in body["message"]
    items, _ = registered.store.list_events("shout", 10, None, None)
    assert items == []


@pytest.mark.parametrize(
    "body",
    ["x" * (300 * 1024), json.dumps({"name": "upper", "description": "x" * (300 * 1024)})],
    ids=["not-json", "breaks-the-model"],
)
def test_an_oversized_body_answers_413_whatever_it_holds(wired: Wired, body: str) -> None:
    status, _, answer = invoke(with_body(recorded("create_service"), body))

    assert status == 413, answer


def test_a_base64_encoded_body_is_decoded(wired: Wired) -> None:
    # Given the recorded service as API Gateway passes a binary-typed body
    event = recorded("create_service")
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True

    status, _, body = invoke(event)

    assert (status, body["service_id"]) == (201, "upper")


def test_an_oversized_base64_encoded_body_answers_413(wired: Wired) -> None:
    event = recorded("create_service")
    event["body"] = base64.b64encode(b"{" + b" " * (300 * 1024) + b"}").decode()
    event["isBase64Encoded"] = True

    status, _, _ = invoke(event)

    assert status == 413


def test_deleting_a_service_in_use_answers_409_naming_the_workflow(registered: Wired) -> None:
    status, _, body = invoke(recorded("delete_service"))

    assert status == 409
    assert "shout" in body["message"]
    assert registered.store.get_service("upper").version == 1


def test_deleting_an_unused_service_answers_204(wired: Wired) -> None:
    invoke(recorded("create_service"))

    status, _, body = invoke(recorded("delete_service"))

    assert (status, body) == (204, None)
    with pytest.raises(NotFound):
        wired.store.get_service("upper")


# --- workflows ---------------------------------------------------------------------------


def test_an_unknown_workflow_answers_404(wired: Wired) -> None:
    status, _, body = invoke(recorded("get_workflow_unknown"))

    assert status == 404
    assert body == {"message": "workflow 'nope' does not exist"}


def test_a_workflow_naming_unknown_services_answers_422_listing_them(wired: Wired) -> None:
    invoke(recorded("create_service"))

    status, _, body = invoke(recorded("create_workflow_unknown_services"))

    assert status == 422
    assert "ghost, phantom" in body["message"]
    assert [d["message"] for d in body["details"]] == [
        "unknown service 'ghost'",
        "unknown service 'phantom'",
    ]


def test_create_workflow_answers_201(wired: Wired) -> None:
    invoke(recorded("create_service"))

    status, headers, body = invoke(recorded("create_workflow"))

    assert status == 201
    assert (body["workflow_id"], body["version"]) == ("shout", 1)
    assert headers["location"] == "/workflows/shout"
    assert wired.store.get_workflow("shout").definition.spec.services == ["upper"]


def test_the_prototypes_workflow_form_with_empty_operations_answers_201(wired: Wired) -> None:
    # Given a service, and a workflow in the prototype's form: list fields, "operations": [ ]
    invoke(recorded("create_service"))

    # When it is registered
    status, _, body = invoke(recorded("create_workflow_prototype_form"))

    # Then it is accepted, with no operations
    assert status == 201, body
    stored = wired.store.get_workflow("shout-prototype").definition.spec
    assert stored.operations == {}
    assert stored.inputs["message"].type == "string"


# --- events ------------------------------------------------------------------------------


def test_send_event_answers_202_stores_the_event_and_starts_its_execution(
    registered: Wired,
) -> None:
    # When the recorded event (sent by curl -d, so form-urlencoded) is sent
    status, headers, body = invoke(recorded("send_event"))

    # Then it is acknowledged with a Location to read it back
    assert status == 202
    event_id = body["event_id"]
    assert (body["workflow_id"], body["status"]) == ("shout", "PENDING")
    assert headers["location"] == f"/events/{event_id}"
    # And it was stored PENDING with its data
    stored = registered.store.get_event(event_id)
    assert (stored.status, stored.data) == (EventStatus.PENDING, {"message": "hello world"})
    # And its execution was started with the event id and the plan it was stored with
    executions = registered.stepfunctions.list_executions(
        stateMachineArn=registered.state_machine_arn
    )["executions"]
    assert [e["name"] for e in executions] == [event_id]
    started = registered.stepfunctions.describe_execution(
        executionArn=executions[0]["executionArn"]
    )
    execution_input = json.loads(started["input"])
    assert set(execution_input) == {"event_id", "plan", "wake", "route"}
    assert execution_input["event_id"] == event_id
    _, plan = registered.store.load_with_plan(event_id)
    assert Plan.model_validate(execution_input["plan"]) == plan


def test_data_not_matching_the_inputs_answers_422_with_the_field_path(registered: Wired) -> None:
    status, _, body = invoke(recorded("send_event_invalid_data"))

    assert status == 422
    assert body["details"] == [{"path": "data.message", "message": "expected string, got integer"}]
    executions = registered.stepfunctions.list_executions(
        stateMachineArn=registered.state_machine_arn
    )["executions"]
    assert executions == []


def test_an_event_for_an_unknown_workflow_answers_404(wired: Wired) -> None:
    status, _, body = invoke(recorded("send_event_unknown_workflow"))

    assert (status, body["message"]) == (404, "workflow 'nope' does not exist")


def test_get_event_answers_the_stored_event(registered: Wired) -> None:
    _, _, accepted = invoke(recorded("send_event"))

    status, _, body = invoke(at_path_id(recorded("get_event"), "event_id", accepted["event_id"]))

    assert status == 200
    assert body["event_id"] == accepted["event_id"]
    assert (body["status"], body["data"], body["steps"]) == (
        "PENDING",
        {"message": "hello world"},
        [],
    )
    assert body["outputs"] is None and body["error"] is None


def test_an_unknown_event_answers_404(wired: Wired) -> None:
    status, _, body = invoke(recorded("get_event"))

    assert status == 404
    assert body == {"message": "event '9b2f6a0e-3c4d-4e5f-8a9b-0c1d2e3f4a5b' does not exist"}


def test_list_events_filters_by_the_status_query(registered: Wired) -> None:
    _, _, accepted = invoke(recorded("send_event"))

    status, _, body = invoke(recorded("list_events"))

    assert status == 200
    assert [item["event_id"] for item in body["items"]] == [accepted["event_id"]]
    assert body["next_cursor"] is None


# --- meta --------------------------------------------------------------------------------


def test_openapi_lists_the_routes(wired: Wired) -> None:
    status, _, body = invoke(recorded("openapi"))

    assert status == 200
    assert body["info"]["title"] == "Machinery"
    routes = {(method.upper(), path) for path, item in body["paths"].items() for method in item}
    assert {
        ("POST", "/services"),
        ("GET", "/services/{name}"),
        ("DELETE", "/services/{name}"),
        ("POST", "/workflows"),
        ("GET", "/workflows/{workflow_id}/events"),
        ("POST", "/e/{workflow_id}"),
        ("GET", "/events/{event_id}"),
        ("GET", "/health"),
    } <= routes


def test_health_answers_ok(wired: Wired) -> None:
    status, _, body = invoke(recorded("health"))

    assert status == 200
    assert body["status"] == "ok"
    assert body["version"]


def test_an_unknown_route_answers_404(wired: Wired) -> None:
    event = recorded("health")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/nowhere"

    status, _, body = invoke(event)

    assert (status, body) == (404, {"message": "Not Found"})
