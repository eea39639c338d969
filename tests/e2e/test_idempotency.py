"""Idempotency-Key on POST /e/{workflow_id}: a retried request never makes a second event."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

EVENT = {"data": {"message": "say it once"}}


def _send(stack: Any, key: str, body: dict[str, Any] = EVENT, **params: object) -> Any:
    return stack.post("/e/process-text", json=body, headers={"Idempotency-Key": key}, params=params)


def test_the_same_key_and_body_answer_the_original_event(local_stack: Any) -> None:
    # Given an event sent with a key
    key = str(uuid.uuid4())
    first = _send(local_stack, key)
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first.headers
    original = first.json()
    assert original["replayed"] is False
    local_stack.wait_for_end(original["event_id"])

    # When the client sends it again (say its connection dropped before the answer)
    again = _send(local_stack, key)

    # Then it is answered as the first request was (202, the acknowledgement of the same
    # event, now ended), marked replayed, and no second event exists
    assert again.status_code == 202
    assert again.json() == {**original, "status": "SUCCEEDED", "replayed": True}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == f"/events/{original['event_id']}"
    listed = local_stack.get("/workflows/process-text/events", params={"limit": 100}).json()
    assert [e["event_id"] for e in listed["items"]].count(original["event_id"]) == 1


def test_a_replay_with_wait_answers_the_ended_event_as_a_first_request_would(
    local_stack: Any,
) -> None:
    # Given an event sent with a key, which has ended
    key = str(uuid.uuid4())
    original = _send(local_stack, key).json()
    ended = local_stack.wait_for_end(original["event_id"])

    # When the same request is sent again, with ?wait
    again = _send(local_stack, key, wait=5)

    # Then the answer is 200 with the event as GET /events/{event_id} reads it, marked
    # replayed by its header
    assert again.status_code == 200, again.text
    assert again.json() == ended
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == f"/events/{original['event_id']}"


def test_the_same_key_with_another_body_is_a_conflict(local_stack: Any) -> None:
    key = str(uuid.uuid4())
    assert _send(local_stack, key).status_code == 202

    refused = _send(local_stack, key, {"data": {"message": "something else"}})

    assert refused.status_code == 409
    assert "different request" in refused.json()["message"]


def test_concurrent_requests_with_one_key_make_one_event(local_stack: Any) -> None:
    # Given eight identical requests racing with the same key
    key = str(uuid.uuid4())
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: _send(local_stack, key), range(8)))

    # Then exactly one created the event and the others were answered with it, as it was
    assert [a.status_code for a in answers] == [202] * 8
    assert len({a.json()["event_id"] for a in answers}) == 1
    assert sorted(a.json()["replayed"] for a in answers) == [False] + [True] * 7
    assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == [""] + ["true"] * 7


def test_keys_belong_to_their_workflow_and_an_empty_key_is_refused(local_stack: Any) -> None:
    key = str(uuid.uuid4())
    text = _send(local_stack, key).json()
    other = local_stack.post("/e/process-text-async", json=EVENT, headers={"Idempotency-Key": key})
    assert other.status_code == 202
    assert other.json()["event_id"] != text["event_id"]

    for refused in (_send(local_stack, ""), _send(local_stack, "k" * 257)):
        assert refused.status_code == 422
        assert [(d["path"], d["location"]) for d in refused.json()["details"]] == [
            ("Idempotency-Key", "header")
        ]
