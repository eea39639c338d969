"""on_error over HTTP: a fallback service takes a failed step over; continue goes on without it."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_kit import (
    Registry,
    StartStub,
    on_each_type,  # noqa: F401  (every test here runs on both types)
    service_definition,
    unique,
)
from loopback import json_reply

pytestmark = pytest.mark.e2e


def test_a_fallback_service_takes_over_a_step_whose_service_fails(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a primary that always answers 404 and a fallback that works
    primary = stub_service(lambda call, nth: json_reply(404, {"error": "gone"}))
    backup = stub_service(lambda call, nth: json_reply(200, {"echo": call.json()["text"].upper()}))
    names = unique("primary"), unique("backup")
    for name, stub in zip(names, (primary, backup), strict=True):
        registry.service(
            service_definition(name, stub.address, {"text": "string"}, {"echo": "string"})
        )
    workflow = unique("wf")
    registry.workflow(
        {
            "name": workflow,
            "spec": {
                "services": [names[0]],
                "inputs": {"text": {"type": "string"}},
                "outputs": {"echo": {"type": "string"}},
                "on_error": {names[0]: {"fallback": names[1]}},
            },
        }
    )

    # When an event runs
    event_id = local_stack.post(f"/e/{workflow}", json={"data": {"text": "hi"}}).json()["event_id"]
    event = local_stack.wait_for_end(event_id)

    # Then the fallback's answer is the step's, and the step says what it replaced
    assert event["status"] == "SUCCEEDED"
    assert event["outputs"] == {"echo": "HI"}
    [step] = event["steps"]
    assert (step["service"], step["fallback_from"], step["status"]) == (
        names[1],
        names[0],
        "SUCCEEDED",
    )
    assert [a["status_code"] for a in step["history"]] == [404, 200]
    # and the fallback cannot be deleted while the workflow may call it
    assert local_stack.delete(f"/services/{names[1]}").status_code == 409


def test_continue_lets_the_event_go_on_past_a_failed_step(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    broken = stub_service(lambda call, nth: json_reply(404, {"error": "gone"}))
    optional = unique("optional")
    registry.service(
        service_definition(optional, broken.address, {"message": "string"}, {"extra": "string"})
    )
    workflow = unique("wf")
    registry.workflow(
        {
            "name": workflow,
            "spec": {
                "services": [optional, "space-counter"],
                "inputs": {"message": {"type": "string"}},
                "outputs": {"space_count": {"type": "integer"}},
                "on_error": {"0": "continue"},
            },
        }
    )

    event_id = local_stack.post(f"/e/{workflow}", json={"data": {"message": "a b c"}}).json()[
        "event_id"
    ]
    event = local_stack.wait_for_end(event_id)

    assert event["status"] == "SUCCEEDED"
    assert event["outputs"] == {"space_count": 2}
    assert [s["status"] for s in event["steps"]] == ["FAILED", "SUCCEEDED"]
    assert event["steps"][0]["error"]["status_code"] == 404
