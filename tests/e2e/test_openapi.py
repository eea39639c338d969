"""The API describes itself (every route of template.yaml) and answers its health check."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from machinery_core.local.template import Template

pytestmark = pytest.mark.e2e

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _template_routes() -> list[tuple[str, str]]:
    routes = Template.load(TEMPLATE).functions()["ApiFunction"].routes
    return sorted((route.method.lower(), route.path) for route in routes)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"external $ref {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_openapi_json_is_an_openapi_3_document_of_every_template_route(local_stack: Any) -> None:
    # Given the routes template.yaml deploys for the API function
    routes = _template_routes()
    assert len(routes) >= 15

    # When the API's own description is fetched
    answer = local_stack.get("/openapi.json")

    # Then it is an OpenAPI 3 document
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    document = answer.json()
    assert re.fullmatch(r"3\.\d+\.\d+", document["openapi"])
    assert document["info"]["title"] == "Machinery"
    assert document["info"]["version"]

    # And it lists every route of the template, under the same path and method
    paths = document["paths"]
    documented = sorted(
        (method, path) for path, item in paths.items() for method in item if method in METHODS
    )
    assert documented == routes

    # And each operation is well formed: unique id, answers, and its path parameters declared
    operation_ids = []
    for method, path in routes:
        operation = paths[path][method]
        operation_ids.append(operation["operationId"])
        assert operation["responses"], f"{method} {path} documents no response"
        declared = {
            parameter["name"]
            for parameter in operation.get("parameters", [])
            if parameter["in"] == "path" and parameter["required"] is True
        }
        assert declared == set(re.findall(r"\{(\w+)\}", path)), f"{method} {path}"
    assert len(set(operation_ids)) == len(operation_ids)

    # And every body-taking route documents its body (the event commands take none), and
    # every $ref resolves
    bodiless = {("post", "/events/{event_id}/cancel"), ("post", "/events/{event_id}/retry")}
    for method, path in routes:
        if method in ("post", "put") and (method, path) not in bodiless:
            assert "requestBody" in paths[path][method], f"{method} {path}"
    for ref in set(_refs(document)):
        assert isinstance(_resolve(document, ref), dict), ref


def test_health_answers_ok(local_stack: Any) -> None:
    # Given the running stack
    # When its health is asked
    answer = local_stack.get("/health")

    # Then it is up and says which version runs
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["version"]


@pytest.mark.parametrize(
    ("method", "path", "success"),
    [
        ("post", "/services", {"201"}),
        ("put", "/services/{name}", {"200", "201"}),
        ("delete", "/workflows/{workflow_id}", {"204"}),
        ("post", "/e/{workflow_id}", {"200", "202"}),
        ("get", "/events/{event_id}", {"200"}),
    ],
)
def test_openapi_documents_the_status_codes_and_error_body_each_route_answers(
    local_stack: Any, method: str, path: str, success: set[str]
) -> None:
    # Given the served document
    document = local_stack.get("/openapi.json").json()
    responses = document["paths"][path][method]["responses"]

    # Then the route's success codes are the ones it really answers
    assert {code for code in responses if code.startswith("2")} == success
    # and every error it documents is the API's one error shape
    for code, answer in responses.items():
        if code.startswith(("4", "5")):
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (code, schema)
    error_body = document["components"]["schemas"]["ErrorBody"]
    assert set(error_body["required"]) == {"message"}
