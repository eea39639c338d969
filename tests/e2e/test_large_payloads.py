"""Payloads past the item limit: stored apart, linked from GET /events/{id}, answered whole by
the step and payload routes."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_kit import Registry, StartStub, service_definition, unique
from loopback import Call, Reply, json_reply

from machinery_core.contract import EVENT_INLINE_BYTES

pytestmark = pytest.mark.e2e

STEPS = 20
ANSWER_BYTES = 200_000
NOTE = "n" * 100_000  # the event's data is large too: stored apart at intake


def _blob(step: int) -> str:
    """What step `step` answers: 200 KB, each step's its own (no two stored as one)."""
    return chr(ord("A") + step) * ANSWER_BYTES


def _grow(call: Call, _: int) -> Reply:
    n = call.json()["n"]
    return json_reply(200, {"n": n + 1, "blob": _blob(n)})


@pytest.fixture
def large_event(local_stack: Any, registry: Registry, stub_service: StartStub) -> dict[str, Any]:
    """A 20-step event each of whose steps answered 200 KB, ended."""
    stub = stub_service(_grow)
    service = unique("grow")
    registry.service(
        service_definition(
            service, stub.address, {"n": "integer"}, {"n": "integer", "blob": "string"}
        )
    )
    workflow = unique("large")
    steps = [{"service": service, "id": f"s{i}"} for i in range(STEPS)]
    registry.workflow(
        {
            "name": workflow,
            "spec": {
                "services": steps,
                "inputs": {"n": {"type": "integer"}, "note": {"type": "string"}},
                "outputs": {
                    "n": {"type": "integer"},
                    "blob0": {"type": "string"},
                    "blob19": {"type": "string"},
                },
                # each step's answer goes into the context under a field of its own: the
                # context grows to 4 MB
                "operations": {
                    f"s{i}": {"outputs": {"n": "n", f"blob{i}": "blob"}} for i in range(STEPS)
                },
            },
        }
    )
    event_id = local_stack.send(workflow, {"n": 0, "note": NOTE})
    event = local_stack.wait_for_end(event_id, timeout=120)
    assert event["status"] == "SUCCEEDED", event
    return event


def _follow(stack: Any, answer: dict[str, Any]) -> dict[str, Any]:
    """The answer with every link replaced by what its href answers."""
    for link in answer["linked_payloads"]:
        value = stack.get(link["href"])
        assert value.status_code == 200, value.text
        assert value.headers["Content-Type"].startswith("application/json")
        container: Any = answer
        *parents, last = link["path"].split("/")[1:]
        for token in parents:
            container = container[int(token)] if isinstance(container, list) else container[token]
        key: Any = int(last) if isinstance(container, list) else last
        assert container[key] == {"$ref": link["href"], "bytes": link["bytes"]}
        container[key] = value.json()
    return answer


def test_an_event_of_twenty_steps_each_answering_200_kb_succeeds_and_reads_whole(
    local_stack: Any, large_event: dict[str, Any]
) -> None:
    # Given the ended 20-step event (4 MB of outputs, 4 MB of context, 100 KB of data)
    event_id = large_event["event_id"]

    # When it is read
    answer = local_stack.get(f"/events/{event_id}")

    # Then the answer stays within the inline budget and links the rest
    assert answer.status_code == 200
    assert len(answer.content) < EVENT_INLINE_BYTES + 64 * 1024
    view = answer.json()
    assert view["linked_payloads"], "4 MB of outputs cannot all be inline"
    # and following the links gives every value back
    whole = _follow(local_stack, view)
    assert whole["data"] == {"n": 0, "note": NOTE}
    assert whole["outputs"] == {"n": STEPS, "blob0": _blob(0), "blob19": _blob(19)}
    assert [step["output"] for step in whole["steps"]] == [
        {"n": i + 1, "blob": _blob(i)} for i in range(STEPS)
    ]
    assert [step["input"] for step in whole["steps"]] == [{"n": i} for i in range(STEPS)]


@pytest.mark.parametrize("name", ["7", "s7"])
def test_a_step_reads_whole_by_its_index_or_its_id(
    local_stack: Any, large_event: dict[str, Any], name: str
) -> None:
    # Given the ended large event
    event_id = large_event["event_id"]

    # When one step is read, by its index or its id
    answer = local_stack.get(f"/events/{event_id}/steps/{name}")

    # Then it holds the step's whole output inline, nothing linked
    assert answer.status_code == 200, answer.text
    step = answer.json()
    assert step["event_id"] == event_id
    assert step["path"] == "7"
    assert step["id"] == "s7"
    assert step["status"] == "SUCCEEDED"
    assert step["output"] == {"n": 8, "blob": _blob(7)}
    assert step["linked_payloads"] == []


def test_a_link_names_a_payload_of_its_own_event_only(
    local_stack: Any, large_event: dict[str, Any]
) -> None:
    # Given a link of the large event
    event_id = large_event["event_id"]
    link = local_stack.get(f"/events/{event_id}").json()["linked_payloads"][0]

    # When it is asked under another event, or a reference nothing has, or a malformed one
    other = local_stack.get(f"/events/{unique('other')}/payloads/{link['ref']}")
    unknown = local_stack.get(f"/events/{event_id}/payloads/{'0' * 64}")
    malformed = local_stack.get(f"/events/{event_id}/payloads/not-a-reference")

    # Then each is refused with a JSON body that says why
    assert other.status_code == 404, other.text
    assert unknown.status_code == 404, unknown.text
    assert malformed.status_code == 422, malformed.text
    assert "message" in unknown.json()


def test_a_step_that_does_not_exist_is_a_404(local_stack: Any, large_event: dict[str, Any]) -> None:
    answer = local_stack.get(f"/events/{large_event['event_id']}/steps/99")
    assert answer.status_code == 404, answer.text
    assert "no step" in answer.json()["message"]


def test_a_small_event_has_no_links(local_stack: Any) -> None:
    # Given the example workflow, whose payloads are a few bytes
    event_id = local_stack.send("process-text", {"message": "small"})

    # When it has ended
    event = local_stack.wait_for_end(event_id)

    # Then everything is inline, and a step reads as GET /events/{id} shows it
    assert event["linked_payloads"] == []
    step = local_stack.get(f"/events/{event_id}/steps/upper").json()
    assert step["output"] == event["steps"][0]["output"]
    assert step["path"] == "0"
