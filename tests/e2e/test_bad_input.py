"""Every bad input gets a clear 4xx JSON answer, never a 5xx."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import requests
from e2e_kit import Registry, service_definition, unique, workflow_definition

pytestmark = pytest.mark.e2e

UPPER = {
    "name": "upper",
    "address": "http://127.0.0.1:5001/",
    "spec": {"inputs": {"message": {"type": "string"}}, "outputs": {"message": {"type": "string"}}},
}


def _raw(stack: Any, method: str, path: str, body: bytes, **headers: str) -> requests.Response:
    return stack.http.request(method, stack.url + path, data=body, headers=headers, timeout=10)


def _refused(answer: requests.Response, status: int) -> dict[str, Any]:
    """The answer is `status` with a JSON body that says why."""
    assert answer.status_code == status, f"{answer.status_code}: {answer.text}"
    assert answer.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    assert isinstance(body["message"], str) and body["message"]
    return body


def _paths(body: dict[str, Any]) -> set[str]:
    return {detail["path"] for detail in body["details"]}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/services"),
        ("PUT", "/services/upper"),
        ("POST", "/workflows"),
        ("PUT", "/workflows/process-text"),
        ("POST", "/e/process-text"),
    ],
)
def test_malformed_json_is_400(local_stack: Any, method: str, path: str) -> None:
    # Given a body that is not JSON at all
    body = b'{"name": "upper", "address": '

    # When it is sent to a route that takes a body
    answer = _raw(local_stack, method, path, body, **{"Content-Type": "application/json"})

    # Then it is a 400 that says the body is not JSON
    assert "JSON" in _refused(answer, 400)["message"]


def test_a_body_that_is_not_utf8_is_400(local_stack: Any) -> None:
    # Given bytes that are not even text
    body = b"\xff\xfe\x00{"

    # When they are posted as a service and as an event
    for path in ("/services", "/e/process-text"):
        answer = _raw(local_stack, "POST", path, body, **{"Content-Type": "application/json"})

        # Then each is a 400, not a crash
        _refused(answer, 400)


def test_a_service_that_breaks_the_model_is_422_with_every_path(local_stack: Any) -> None:
    # Given a service with a bad name, a non-HTTP address, an unknown type and an extra field
    definition = {
        "name": "Not A Slug",
        "address": "ftp://example.invalid/",
        "spec": {"inputs": {"message": {"type": "text"}}},
        "colour": "blue",
    }

    # When it is registered
    body = _refused(local_stack.post("/services", json=definition), 422)

    # Then every problem is listed with its path
    assert _paths(body) >= {"name", "address", "spec.inputs.message.type", "colour"}
    assert all(detail["message"] for detail in body["details"])
    assert local_stack.get("/services/Not A Slug").status_code == 404


def test_a_workflow_that_breaks_the_model_is_422_with_its_paths(local_stack: Any) -> None:
    # Given workflows with no services, and with an operation on a step it does not have
    empty = {"name": unique("bad"), "spec": {"services": []}}
    stray = workflow_definition(unique("bad"), ["upper"], {"message": "string"}, {})
    stray["spec"]["operations"] = {"nowhere": {"inputs": {"message": "message"}}}
    bad_expression = workflow_definition(unique("bad"), ["upper"], {"message": "string"}, {})
    bad_expression["spec"]["operations"] = {"upper": {"inputs": {"message": "message[?"}}}

    # When they are registered
    answers = [local_stack.post("/workflows", json=body) for body in (empty, stray, bad_expression)]

    # Then each is a 422 pointing into the spec, and nothing is stored
    assert _paths(_refused(answers[0], 422)) == {"spec.services"}
    assert any("nowhere" in detail["message"] for detail in _refused(answers[1], 422)["details"])
    assert any("JMESPath" in detail["message"] for detail in _refused(answers[2], 422)["details"])
    for body in (empty, stray, bad_expression):
        assert local_stack.get(f"/workflows/{body['name']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "data"),
        ({"data": "text"}, "data"),
        ({"data": {"message": "x"}, "extra": 1}, "extra"),
        ([{"data": {}}], "body"),
    ],
    ids=["no-data", "data-not-object", "extra-field", "array-body"],
)
def test_an_event_body_that_breaks_the_model_is_422(
    local_stack: Any, body: object, path: str
) -> None:
    # Given an event body of the wrong shape
    # When it is sent
    answer = local_stack.post("/e/process-text", json=body)

    # Then it is a 422 naming the offending field
    assert path in _paths(_refused(answer, 422))


def test_a_batch_of_services_in_one_array_is_422_and_registers_none(local_stack: Any) -> None:
    # Given two service definitions sent as one JSON array
    names = [unique("batch"), unique("batch")]
    body = [service_definition(name, "http://127.0.0.1:9/", {}, {"x": "string"}) for name in names]

    # When the array is posted
    answer = local_stack.post("/services", json=body)

    # Then it is refused as a whole: neither the first item nor the rest is registered
    assert _paths(_refused(answer, 422)) == {"body"}
    for name in names:
        assert local_stack.get(f"/services/{name}").status_code == 404


@pytest.mark.parametrize(
    ("data", "problem"),
    [({"message": 5}, "expected string, got integer"), ({}, "required")],
    ids=["wrong-type", "missing"],
)
def test_event_data_that_misses_the_workflow_inputs_is_422(
    local_stack: Any, data: dict[str, Any], problem: str
) -> None:
    # Given event data that does not match process-text's inputs
    # When it is sent
    answer = local_stack.post("/e/process-text", json={"data": data})

    # Then it is a 422 at data.message, and no event was started
    details = _refused(answer, 422)["details"]
    assert [detail["path"] for detail in details] == ["data.message"]
    assert problem in details[0]["message"]
    assert "Location" not in answer.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/e/nope"),
        ("GET", "/workflows/nope"),
        ("DELETE", "/workflows/nope"),
        ("GET", "/workflows/nope/events"),
        ("GET", "/services/nope"),
        ("DELETE", "/services/nope"),
        ("GET", f"/events/{uuid.uuid4()}"),
    ],
)
def test_unknown_things_are_404(local_stack: Any, method: str, path: str) -> None:
    # Given names that were never registered
    body = {"data": {"message": "x"}} if method == "POST" else None

    # When they are used
    answer = local_stack.http.request(method, local_stack.url + path, json=body, timeout=10)

    # Then the answer says what does not exist
    assert "does not exist" in _refused(answer, 404)["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("PATCH", "/services"), ("DELETE", "/health"), ("GET", "/e/process-text")],
)
def test_unknown_routes_are_404(local_stack: Any, method: str, path: str) -> None:
    # Given a route the API does not have
    # When it is called
    answer = local_stack.http.request(method, local_stack.url + path, timeout=10)

    # Then it is a JSON 404
    _refused(answer, 404)


def test_a_duplicate_service_is_409(local_stack: Any) -> None:
    # Given the example service `upper`, already registered
    before = local_stack.get("/services/upper").json()

    # When it is POSTed again
    answer = local_stack.post("/services", json=UPPER)

    # Then it is a 409 that points at PUT, and the stored one is unchanged
    assert "upper" in _refused(answer, 409)["message"]
    assert local_stack.get("/services/upper").json() == before


def test_a_name_that_differs_from_the_path_is_422(local_stack: Any) -> None:
    # Given a service body named differently from the path it is PUT to
    # When it is PUT
    answer = local_stack.put(f"/services/{unique('other')}", json=UPPER)

    # Then it is a 422 at `name`
    assert _paths(_refused(answer, 422)) == {"name"}


def test_a_workflow_naming_unknown_services_is_422_listing_them(local_stack: Any) -> None:
    # Given a workflow over one known and two unknown services
    ghosts = sorted([unique("ghost"), unique("ghost")])
    name = unique("haunted")
    definition = workflow_definition(
        name, ["upper", *ghosts], {"message": "string"}, {"message": "string"}
    )

    # When it is registered
    body = _refused(local_stack.post("/workflows", json=definition), 422)

    # Then both unknown services are named, and the known one is not blamed
    for ghost in ghosts:
        assert ghost in body["message"]
    assert {detail["path"] for detail in body["details"]} == {"spec.services"}
    assert "upper" not in body["message"]
    assert local_stack.get(f"/workflows/{name}").status_code == 404


@pytest.mark.parametrize(
    ("inputs", "outputs", "path", "words"),
    [
        (
            {"message": "integer"},
            {"message": "string"},
            "spec.services[0] (upper).inputs.message",
            "expects string but receives integer",
        ),
        ({}, {"message": "string"}, "spec.services[0] (upper).inputs.message", "not available"),
        ({"message": "string"}, {"count": "integer"}, "spec.outputs.count", "not produced"),
        ({"message": "string"}, {"message": "integer"}, "spec.outputs.message", "declared integer"),
    ],
    ids=["input-type", "input-missing", "output-missing", "output-type"],
)
def test_a_workflow_whose_data_flow_does_not_type_check_is_422(
    local_stack: Any, inputs: dict[str, str], outputs: dict[str, str], path: str, words: str
) -> None:
    # Given a workflow over `upper` whose inputs/outputs do not fit it
    name = unique("untyped")
    definition = workflow_definition(name, ["upper"], inputs, outputs)

    # When it is registered
    body = _refused(local_stack.post("/workflows", json=definition), 422)

    # Then the answer says which field and why
    assert [detail["path"] for detail in body["details"]] == [path]
    assert words in body["details"][0]["message"]
    assert local_stack.get(f"/workflows/{name}").status_code == 404


@pytest.mark.parametrize("path", ["/e/process-text", "/services"])
def test_a_body_over_256_kib_is_413(local_stack: Any, path: str) -> None:
    # Given a JSON body just over 256 KiB
    body = json.dumps({"data": {"message": "x" * (256 * 1024)}}).encode()

    # When it is sent
    answer = _raw(local_stack, "POST", path, body, **{"Content-Type": "application/json"})

    # Then it is a 413 that says so
    assert "exceeds" in _refused(answer, 413)["message"]


def test_event_data_too_large_for_one_item_is_accepted_and_runs(local_stack: Any) -> None:
    # Given event data under the body limit but too large to be stored twice in one item
    message = "x " * (120 * 1024)

    # When it is sent
    event_id = local_stack.send("process-text", {"message": message})

    # Then it is accepted, its payloads stored apart, and it runs to the end
    event = local_stack.wait_for_end(event_id)
    assert event["status"] == "SUCCEEDED", event["error"]
    assert event["data"] == {"message": message}
    assert event["outputs"]["space_count"] == 120 * 1024


@pytest.mark.parametrize(
    ("params", "status", "path"),
    [
        ({"limit": 0}, 422, "limit"),
        ({"limit": 101}, 422, "limit"),
        ({"status": "BOGUS"}, 422, "status"),
        ({"cursor": "not-a-cursor"}, 400, None),
    ],
    ids=["limit-0", "limit-101", "bad-status", "garbage-cursor"],
)
def test_bad_listing_parameters_are_4xx(
    local_stack: Any, params: dict[str, Any], status: int, path: str | None
) -> None:
    # Given a listing parameter out of its range
    # When the events are listed with it
    answer = local_stack.get("/workflows/process-text/events", params=params)

    # Then it is refused, naming the parameter where it is a contract violation
    body = _refused(answer, status)
    if path is not None:
        assert _paths(body) == {path}


@pytest.mark.parametrize(
    "key",
    [
        {"PK": "EVENT#x"},
        {"PK": {"S": "EVENT#x"}},
        {"PK": {"S": "EVENT#x"}, "SK": {"S": "EVENT"}, "GSI1PK": {"N": "1"}, "GSI1SK": {"S": "x"}},
        ["not", "a", "key"],
    ],
    ids=["plain-values", "partial-key", "wrong-types", "a-list"],
)
def test_a_forged_cursor_is_400(local_stack: Any, key: object) -> None:
    # Given a cursor that decodes as JSON but is not a key this API gave out
    cursor = base64.urlsafe_b64encode(json.dumps(key).encode()).decode()

    # When it is used to page through events, services and workflows
    for path in ("/workflows/process-text/events", "/services", "/workflows"):
        answer = local_stack.get(path, params={"cursor": cursor})

        # Then it is a 400 about the cursor, not a crash
        assert "cursor" in _refused(answer, 400)["message"]


def test_a_cursor_from_another_listing_is_400(local_stack: Any, registry: Registry) -> None:
    # Given a cursor handed out by the services listing
    for _ in range(2):
        registry.service(
            service_definition(unique("cur"), "http://127.0.0.1:9/", {}, {"x": "string"})
        )
    cursor = local_stack.get("/services", params={"limit": 1}).json()["next_cursor"]
    assert cursor

    # When it is used on a workflow's events
    answer = local_stack.get("/workflows/process-text/events", params={"cursor": cursor})

    # Then it is refused rather than answering another listing's page
    assert "cursor" in _refused(answer, 400)["message"]
