"""Registering services and workflows over HTTP, and a workflow's data mapping at run time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from e2e_kit import Registry, StartStub, service_definition, unique, workflow_definition
from loopback import json_reply

pytestmark = pytest.mark.e2e

UNUSED_ADDRESS = "http://127.0.0.1:9/"


def _all(stack: Any, collection: str) -> list[dict[str, Any]]:
    """Every item of a listing, following next_cursor to the end."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = stack.get(f"/{collection}", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        if not body["next_cursor"]:
            return items
        params["cursor"] = body["next_cursor"]


def _text_service(name: str, **options: Any) -> dict[str, Any]:
    return service_definition(
        name, UNUSED_ADDRESS, {"message": "string"}, {"message": "string"}, **options
    )


def test_a_service_is_created_read_listed_updated_and_deleted(
    local_stack: Any, registry: Registry
) -> None:
    # Given a new service definition
    name = unique("svc")
    definition = _text_service(name, description="first")

    # When it is created
    created = local_stack.post("/services", json=definition)
    registry.track_service(name)

    # Then it is acknowledged as version 1 with its Location
    assert created.status_code == 201, created.text
    assert created.json()["service_id"] == name
    assert created.json()["version"] == 1
    datetime.fromisoformat(created.json()["acknowledged_at"])
    assert created.headers["Location"] == f"/services/{name}"

    # And it reads back with every default filled in
    record = local_stack.get(f"/services/{name}").json()
    assert record["service_id"] == name
    assert record["version"] == 1
    stored = record["definition"]
    assert stored["address"] == UNUSED_ADDRESS
    assert stored["description"] == "first"
    assert stored["method"] == "POST"
    assert stored["mode"] == "sync"
    assert stored["headers"] == {}
    assert stored["timeout_seconds"] > 0
    assert set(stored["retry"]) == {
        "max_attempts",
        "interval_seconds",
        "backoff_rate",
        "max_delay_seconds",
        "jitter",
    }
    assert stored["spec"]["inputs"]["message"]["type"] == "string"

    # And it is listed among the services, next to the examples
    listed = {item["service_id"]: item for item in _all(local_stack, "services")}
    assert listed[name]["definition"] == stored
    assert {"upper", "reverse", "space-counter"} <= set(listed)

    # When the same name is POSTed again
    duplicate = local_stack.post("/services", json=definition)

    # Then it is refused and the stored one is untouched
    assert duplicate.status_code == 409, duplicate.text
    assert name in duplicate.json()["message"]
    assert local_stack.get(f"/services/{name}").json()["version"] == 1

    # When it is PUT with a change
    updated = local_stack.put(f"/services/{name}", json=_text_service(name, description="second"))

    # Then the version goes up and the change is what reads back
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    after = local_stack.get(f"/services/{name}").json()
    assert after["version"] == 2
    assert after["definition"]["description"] == "second"
    assert after["created_at"] == record["created_at"]
    assert datetime.fromisoformat(after["updated_at"]) >= datetime.fromisoformat(
        record["updated_at"]
    )

    # When it is deleted
    deleted = local_stack.delete(f"/services/{name}")

    # Then it is gone, from reads, listings and further deletes
    assert deleted.status_code == 204
    assert local_stack.get(f"/services/{name}").status_code == 404
    assert name not in {item["service_id"] for item in _all(local_stack, "services")}
    assert local_stack.delete(f"/services/{name}").status_code == 404


def test_put_on_a_new_service_name_creates_it(local_stack: Any, registry: Registry) -> None:
    # Given a name nothing uses
    name = unique("svc-put")

    # When a definition is PUT under it
    answer = local_stack.put(f"/services/{name}", json=_text_service(name))
    registry.track_service(name)

    # Then it is created as version 1
    assert answer.status_code == 201, answer.text
    assert answer.json()["service_id"] == name
    assert answer.json()["version"] == 1
    assert local_stack.get(f"/services/{name}").json()["version"] == 1


def test_the_prototype_list_form_is_stored_in_the_canonical_form(
    local_stack: Any, registry: Registry
) -> None:
    # Given a service in the original prototype's list form, with type aliases
    name = unique("svc-proto")
    prototype = {
        "name": name,
        "address": UNUSED_ADDRESS,
        "inputs": [{"name": "message", "type": "str", "description": "The text"}],
        "outputs": [
            {"name": "count", "type": "int", "description": "How many"},
            {"name": "note", "type": "string", "required": False},
        ],
    }

    # When it is registered
    registry.service(prototype)

    # Then it reads back in the canonical form
    stored = local_stack.get(f"/services/{name}").json()["definition"]
    assert "inputs" not in stored and "outputs" not in stored
    assert stored["spec"] == {
        "inputs": {"message": {"type": "string", "description": "The text", "required": True}},
        "outputs": {
            "count": {"type": "integer", "description": "How many", "required": True},
            "note": {"type": "string", "description": None, "required": False},
        },
    }


def test_a_workflow_is_created_read_listed_updated_and_deleted(
    local_stack: Any, registry: Registry
) -> None:
    # Given two registered services
    first, second = unique("wf-a"), unique("wf-b")
    registry.service(_text_service(first))
    registry.service(_text_service(second))
    name = unique("wf")
    definition = workflow_definition(
        name, [first, second], {"message": "string"}, {"message": "string"}
    )

    # When a workflow over both is created
    created = local_stack.post("/workflows", json=definition)
    registry.track_workflow(name)

    # Then it is acknowledged as version 1 and reads back as sent
    assert created.status_code == 201, created.text
    assert created.json()["workflow_id"] == name
    assert created.json()["version"] == 1
    datetime.fromisoformat(created.json()["acknowledged_at"])
    assert created.headers["Location"] == f"/workflows/{name}"
    record = local_stack.get(f"/workflows/{name}").json()
    assert record["version"] == 1
    assert record["definition"]["spec"]["services"] == [first, second]
    listed = {item["workflow_id"] for item in _all(local_stack, "workflows")}
    assert {name, "process-text"} <= listed

    # When it is POSTed again
    duplicate = local_stack.post("/workflows", json=definition)

    # Then it is refused
    assert duplicate.status_code == 409, duplicate.text
    assert name in duplicate.json()["message"]

    # When it is PUT with only the first service
    updated = local_stack.put(
        f"/workflows/{name}",
        json=workflow_definition(name, [first], {"message": "string"}, {"message": "string"}),
    )

    # Then it is version 2, and the service it dropped is free to delete
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    assert local_stack.get(f"/workflows/{name}").json()["definition"]["spec"]["services"] == [first]
    assert local_stack.delete(f"/services/{second}").status_code == 204

    # When it is deleted
    deleted = local_stack.delete(f"/workflows/{name}")

    # Then it is gone
    assert deleted.status_code == 204
    assert local_stack.get(f"/workflows/{name}").status_code == 404
    assert name not in {item["workflow_id"] for item in _all(local_stack, "workflows")}
    assert local_stack.delete(f"/workflows/{name}").status_code == 404
    assert local_stack.post(f"/e/{name}", json={"data": {"message": "x"}}).status_code == 404


def test_put_on_a_new_workflow_name_creates_it(local_stack: Any, registry: Registry) -> None:
    # Given a registered service and a workflow name nothing uses
    service = unique("wf-svc")
    registry.service(_text_service(service))
    name = unique("wf-put")

    # When a workflow is PUT under that name
    answer = local_stack.put(
        f"/workflows/{name}",
        json=workflow_definition(name, [service], {"message": "string"}, {"message": "string"}),
    )
    registry.track_workflow(name)

    # Then it is created as version 1
    assert answer.status_code == 201, answer.text
    assert answer.json()["workflow_id"] == name
    assert answer.json()["version"] == 1
    assert local_stack.get(f"/workflows/{name}").json()["version"] == 1


def test_a_service_in_use_cannot_be_deleted_until_its_workflow_is(
    local_stack: Any, registry: Registry
) -> None:
    # Given a workflow that uses a service
    service, name = unique("used"), unique("user")
    registry.service(_text_service(service))
    registry.workflow(
        workflow_definition(name, [service], {"message": "string"}, {"message": "string"})
    )

    # When the service is deleted
    refused = local_stack.delete(f"/services/{service}")

    # Then it is refused, naming the workflow, and the service is still there
    assert refused.status_code == 409, refused.text
    assert name in refused.json()["message"]
    assert local_stack.get(f"/services/{service}").status_code == 200

    # When the workflow is deleted first
    assert local_stack.delete(f"/workflows/{name}").status_code == 204

    # Then the service deletes, and is gone
    assert local_stack.delete(f"/services/{service}").status_code == 204
    assert local_stack.get(f"/services/{service}").status_code == 404


def test_operations_map_the_context_to_a_service_and_back(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a service that takes `text` and answers `count` (its spaces)
    counter = stub_service(
        lambda call, _: json_reply(200, {"count": call.json()["text"].count(" ")})
    )
    service = unique("counter")
    registry.service(
        service_definition(service, counter.address, {"text": "string"}, {"count": "integer"})
    )
    # And a workflow that feeds it the upper-cased `message` and keeps `count` as `space_count`
    name = unique("mapped")
    accepted = registry.workflow(
        workflow_definition(
            name,
            ["upper", service],
            {"message": "string"},
            {"message": "string", "space_count": "integer"},
            operations={
                service: {"inputs": {"text": "message"}, "outputs": {"space_count": "count"}}
            },
        )
    )
    assert accepted["version"] == 1

    # When an event is sent
    answer = local_stack.post(f"/e/{name}", json={"data": {"message": "a b c d"}})
    assert answer.status_code == 202, answer.text
    event = local_stack.wait_for_end(answer.json()["event_id"])

    # Then the service got its input under its own name, and its answer landed mapped
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == {"message": "A B C D", "space_count": 3}
    assert event["steps"][1]["input"] == {"text": "A B C D"}
    assert event["steps"][1]["output"] == {"count": 3}
    assert [call.json() for call in counter.received()] == [{"text": "A B C D"}]


def test_operations_accept_jmespath_expressions_and_step_indexes(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a service answering a nested document
    nested = stub_service(
        lambda call, _: json_reply(
            200, {"result": {"words": call.json()["words"], "total": len(call.json()["words"])}}
        )
    )
    service = unique("nested")
    registry.service(
        service_definition(service, nested.address, {"words": "array"}, {"result": "object"})
    )
    # And a workflow whose operation (keyed by step index) builds the input and digs the output
    name = unique("jmes")
    registry.workflow(
        workflow_definition(
            name,
            [service],
            {"first": "string", "second": "string"},
            {"total": "integer", "last": "string"},
            operations={
                "0": {
                    "inputs": {"words": "[first, second]"},
                    "outputs": {"total": "result.total", "last": "result.words[-1]"},
                }
            },
        )
    )

    # When an event is sent
    answer = local_stack.post(f"/e/{name}", json={"data": {"first": "alpha", "second": "beta"}})
    assert answer.status_code == 202, answer.text
    event = local_stack.wait_for_end(answer.json()["event_id"])

    # Then the expressions were evaluated against the context and the response
    assert event["status"] == "SUCCEEDED", event
    assert nested.received()[0].json() == {"words": ["alpha", "beta"]}
    assert event["outputs"] == {"total": 2, "last": "beta"}
