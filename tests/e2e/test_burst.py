"""A burst of concurrent events: every one acknowledged, every one run to its own outputs."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.e2e

EVENTS = 200
WORKERS = 16
DEADLINE_SECONDS = 120.0


def _message(index: int) -> str:
    # Distinct texts with different numbers of spaces, mixed case and non-ASCII letters.
    return f"Burst n°{index}" + " word" * (index % 9) + f" end-{index:03d}"


def test_a_burst_of_concurrent_events_all_succeed_with_their_own_outputs(local_stack: Any) -> None:
    # Given 200 distinct messages and 16 concurrent clients
    messages = [_message(index) for index in range(EVENTS)]
    sessions = threading.local()

    def send(message: str) -> requests.Response:
        if not hasattr(sessions, "http"):
            sessions.http = requests.Session()
        return sessions.http.post(
            local_stack.url + "/e/process-text", json={"data": {"message": message}}, timeout=30
        )

    # When they are all sent at once
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        answers = list(pool.map(send, messages))

    # Then every one is acknowledged with its own event id
    assert [answer.status_code for answer in answers] == [202] * EVENTS
    event_ids = [answer.json()["event_id"] for answer in answers]
    assert len(set(event_ids)) == EVENTS

    # And every one ends, within a bounded time
    ended: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(ended) < EVENTS:
        for event_id in event_ids:
            if event_id in ended:
                continue
            event = local_stack.get(f"/events/{event_id}").json()
            if event["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                ended[event_id] = event
        if len(ended) < EVENTS:
            if time.monotonic() > deadline:
                stuck = {
                    event_id: local_stack.get(f"/events/{event_id}").json()["status"]
                    for event_id in event_ids
                    if event_id not in ended
                }
                pytest.fail(f"{len(stuck)} events not ended after {DEADLINE_SECONDS}s: {stuck}")
            time.sleep(0.1)

    # And every one SUCCEEDED with the outputs of its own message
    for event_id, message in zip(event_ids, messages, strict=True):
        event = ended[event_id]
        assert event["status"] == "SUCCEEDED", event
        assert event["data"] == {"message": message}
        assert event["outputs"] == {
            "message": message.upper()[::-1],
            "space_count": message.count(" "),
        }
        assert [step["status"] for step in event["steps"]] == ["SUCCEEDED"] * 3
