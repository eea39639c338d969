"""A step under way is visible while it runs; cancel answers 200 or 409, never 5xx."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import pytest
from e2e_kit import Registry, StartStub, service_definition, unique, workflow_definition
from loopback import Call, Reply, json_reply

pytestmark = pytest.mark.e2e


def _workflow_of(registry: Registry, *addresses: str) -> str:
    names = []
    for address in addresses:
        name = unique("svc")
        registry.service(service_definition(name, address, {"text": "string"}, {"text": "string"}))
        names.append(name)
    workflow = unique("wf")
    registry.workflow(workflow_definition(workflow, names, {"text": "string"}, {"text": "string"}))
    return workflow


def test_a_step_shows_running_with_its_start_and_attempt_while_the_service_works(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a two-step workflow whose second service holds its answer until released
    def quick(call: Call, nth: int) -> Reply:
        return json_reply(200, {"text": call.json()["text"]})

    called = threading.Event()

    def held(call: Call, nth: int) -> Reply:
        called.set()
        slow.release.wait(10)
        return json_reply(200, {"text": call.json()["text"]})

    fast = stub_service(quick)
    slow = stub_service(held)
    workflow = _workflow_of(registry, fast.address, slow.address)

    # When an event is sent and the second service is working on it
    sent = local_stack.post(f"/e/{workflow}", json={"data": {"text": "hi"}}).json()
    assert called.wait(10)
    running = local_stack.get(f"/events/{sent['event_id']}").json()
    slow.release.set()

    # Then the event shows the first step done and the second under way, with when it
    # started and which attempt it is
    assert running["status"] == "RUNNING"
    assert [step["status"] for step in running["steps"]] == ["SUCCEEDED", "RUNNING"]
    under_way = running["steps"][1]
    assert under_way["attempt"] == 1
    assert under_way["attempts"] == 0
    assert under_way["ended_at"] is None
    started = datetime.fromisoformat(under_way["started_at"])
    assert started >= datetime.fromisoformat(running["steps"][0]["ended_at"])
    # and once it ends, the step is SUCCEEDED with no attempt under way
    ended = local_stack.wait_until(
        sent["event_id"], lambda event: event["status"] == "SUCCEEDED", "{event_id} never ended"
    )
    assert ended["steps"][1]["status"] == "SUCCEEDED"
    assert ended["steps"][1]["attempt"] is None
    assert ended["steps"][1]["attempts"] == 1
    assert ended["steps"][1]["started_at"] == under_way["started_at"]


def test_cancel_right_after_sending_answers_200_or_409_never_5xx(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a one-step workflow
    def echo(call: Call, nth: int) -> Reply:
        return json_reply(200, {"text": call.json()["text"]})

    workflow = _workflow_of(registry, stub_service(echo).address)

    # When events are cancelled at once after they are sent, and again after they ended
    answers = []
    for _ in range(15):
        event_id = local_stack.post(f"/e/{workflow}", json={"data": {"text": "x"}}).json()[
            "event_id"
        ]
        answers.append(local_stack.post(f"/events/{event_id}/cancel").status_code)
        local_stack.wait_until(
            event_id, lambda event: event["status"] != "RUNNING", "{event_id} still RUNNING"
        )
        answers.append(local_stack.post(f"/events/{event_id}/cancel").status_code)

    # Then every answer is 200 (cancelled) or 409 (it had already ended)
    assert set(answers) <= {200, 409}, answers
    assert 200 in answers
