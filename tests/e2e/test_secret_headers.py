"""A service's secret headers reach it on every call, yet are never shown back."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from e2e_kit import Registry, StartStub, service_definition, unique, workflow_definition
from loopback import Call, Reply, json_reply

pytestmark = pytest.mark.e2e


def test_a_secret_header_reaches_the_service_and_is_redacted_when_read(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a service registered with a secret API key, in a workflow
    key = secrets.token_urlsafe(24)

    def echo(call: Call, nth: int) -> Reply:
        return json_reply(200, {"text": call.json()["text"].upper()})

    service = stub_service(echo)
    name = unique("svc")
    registry.service(
        service_definition(
            name,
            service.address,
            {"text": "string"},
            {"text": "string"},
            secret_headers={"X-Api-Key": key},
        )
    )
    workflow = unique("wf")
    registry.workflow(workflow_definition(workflow, [name], {"text": "string"}, {"text": "string"}))

    # When an event runs through it (its plan holds a secret, so the execution's input
    # carries none and the step function reads the plan from the table)
    event_id = local_stack.send(workflow, {"text": "hi"})
    event = local_stack.wait_for_end(event_id)

    # Then the service got the key, the event succeeded, and reading shows no key anywhere
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == {"text": "HI"}
    assert [call.headers["X-Api-Key"] for call in service.calls] == [key]
    shown = local_stack.get(f"/services/{name}")
    assert shown.json()["definition"]["secret_headers"] == {"X-Api-Key": "<redacted>"}
    assert key not in shown.text
    assert key not in local_stack.get(f"/events/{event_id}").text
