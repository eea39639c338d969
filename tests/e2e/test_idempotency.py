"""Idempotency-Key on POST /e/{workflow_id}: a retried request never makes a second event."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

EVENT = {"data": {"message": "say it once"}}


def _send(stack: Any, key: str, body: dict[str, Any] = EVENT) -> Any:
    return stack.post("/e/process-text", json=body, headers={"Idempotency-Key": key})


def test_the_same_key_and_body_answer_the_original_event(local_stack: Any) -> None:
    # Given an event sent with a key
    key = str(uuid.uuid4())
    first = _send(local_stack, key)
    assert first.status_code == 202
    original = first.json()
    local_stack.wait_for_end(original["event_id"])

    # When the client sends it again (say its connection dropped before the answer)
    again = _send(local_stack, key)

    # Then it gets the original event back, marked replayed, and no second event exists
    assert again.status_code == 200
    assert again.json()["event_id"] == original["event_id"]
    assert again.json()["replayed"] is True
    assert again.json()["status"] == "SUCCEEDED"
    assert again.headers["Location"] == f"/events/{original['event_id']}"
    listed = local_stack.get("/workflows/process-text/events", params={"limit": 100}).json()
    assert [e["event_id"] for e in listed["items"]].count(original["event_id"]) == 1


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

    # Then exactly one created the event and the others were answered with it
    assert sorted(a.status_code for a in answers) == [200] * 7 + [202]
    assert len({a.json()["event_id"] for a in answers}) == 1


def test_keys_belong_to_their_workflow_and_an_empty_key_is_refused(local_stack: Any) -> None:
    key = str(uuid.uuid4())
    text = _send(local_stack, key).json()
    other = local_stack.post("/e/process-text-async", json=EVENT, headers={"Idempotency-Key": key})
    assert other.status_code == 202
    assert other.json()["event_id"] != text["event_id"]

    assert _send(local_stack, "").status_code == 422
    assert _send(local_stack, "k" * 257).status_code == 422
