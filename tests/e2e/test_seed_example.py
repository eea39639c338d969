"""The README's first run: the example event sent as `curl -d @file` sends it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.e2e

EVENT_FILE = Path(__file__).resolve().parents[2] / "examples" / "definitions" / "event-text.json"
MESSAGE = "The Sun will rise in the morning !"
EXPECTED_OUTPUTS = {"message": "! GNINROM EHT NI ESIR LLIW NUS EHT", "space_count": 7}


def _send_like_curl(stack: Any, content_type: str | None) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    # Raw bytes and no json=: requests adds no content type, exactly like the body of `curl -d`.
    return stack.http.post(
        stack.url + "/e/process-text", data=EVENT_FILE.read_bytes(), headers=headers, timeout=10
    )


def _moment(value: object) -> datetime:
    assert isinstance(value, str)
    return datetime.fromisoformat(value)


@pytest.mark.parametrize(
    "content_type",
    [None, "application/x-www-form-urlencoded"],
    ids=["no-content-type", "curl-form-urlencoded"],
)
def test_the_example_event_is_accepted_and_runs_to_its_outputs(
    local_stack: Any, content_type: str | None
) -> None:
    # Given the example stack and the example event file, sent as curl sends it
    # When it is posted to the example workflow
    answer = _send_like_curl(local_stack, content_type)

    # Then it is acknowledged with where to read it
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert set(accepted) >= {"event_id", "workflow_id", "status", "acknowledged_at"}
    assert accepted["workflow_id"] == "process-text"
    assert accepted["status"] == "PENDING"
    _moment(accepted["acknowledged_at"])
    assert answer.headers["Location"].endswith(f"/events/{accepted['event_id']}")
    assert local_stack.get(answer.headers["Location"]).status_code == 200

    # And the event ends SUCCEEDED with the outputs the README promises
    event = local_stack.wait_for_end(accepted["event_id"])
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == EXPECTED_OUTPUTS
    assert event["data"] == json.loads(EVENT_FILE.read_text())["data"]
    assert event["error"] is None
    assert _moment(event["ended_at"]) >= _moment(event["acknowledged_at"])

    # And every step is recorded in order, with its timing, input and output
    steps = event["steps"]
    assert [step["service"] for step in steps] == ["upper", "reverse", "space-counter"]
    expected_io = [
        ({"message": MESSAGE}, {"message": MESSAGE.upper()}),
        ({"message": MESSAGE.upper()}, {"message": EXPECTED_OUTPUTS["message"]}),
        ({"message": EXPECTED_OUTPUTS["message"]}, {"space_count": 7}),
    ]
    for index, (step, (step_input, step_output)) in enumerate(zip(steps, expected_io, strict=True)):
        assert set(step) >= {
            "service",
            "status",
            "attempts",
            "started_at",
            "ended_at",
            "duration_ms",
            "input",
            "output",
        }
        assert step["index"] == index
        assert step["status"] == "SUCCEEDED"
        assert step["attempts"] == 1
        assert _moment(step["started_at"]) <= _moment(step["ended_at"])
        assert step["duration_ms"] >= 0
        assert step["input"] == step_input
        assert step["output"] == step_output
        assert step["error"] is None
    assert _moment(steps[0]["ended_at"]) <= _moment(steps[1]["started_at"])
    assert _moment(steps[1]["ended_at"]) <= _moment(steps[2]["started_at"])


def test_the_workflow_lists_its_events_newest_first_page_by_page(local_stack: Any) -> None:
    # Given two example events sent one after the other, both ended
    older = _send_like_curl(local_stack, None).json()["event_id"]
    newer = _send_like_curl(local_stack, None).json()["event_id"]
    for event_id in (older, newer):
        assert local_stack.wait_for_end(event_id)["status"] == "SUCCEEDED"

    # When the workflow's events are listed
    listing = local_stack.get("/workflows/process-text/events")

    # Then the newest comes first, each with its summary
    assert listing.status_code == 200, listing.text
    items = listing.json()["items"]
    assert [item["event_id"] for item in items[:2]] == [newer, older]
    assert items[0]["workflow_id"] == "process-text"
    assert items[0]["status"] == "SUCCEEDED"
    moments = [_moment(item["acknowledged_at"]) for item in items]
    assert moments == sorted(moments, reverse=True)

    # And limit=1 pages through them with next_cursor
    first = local_stack.get("/workflows/process-text/events", params={"limit": 1}).json()
    assert [item["event_id"] for item in first["items"]] == [newer]
    assert first["next_cursor"]
    second = local_stack.get(
        "/workflows/process-text/events", params={"limit": 1, "cursor": first["next_cursor"]}
    ).json()
    assert [item["event_id"] for item in second["items"]] == [older]


def test_the_event_listing_filters_by_status(local_stack: Any) -> None:
    # Given an ended example event
    event_id = _send_like_curl(local_stack, None).json()["event_id"]
    assert local_stack.wait_for_end(event_id)["status"] == "SUCCEEDED"

    # When the events are listed by status
    succeeded = local_stack.get(
        "/workflows/process-text/events", params={"status": "SUCCEEDED", "limit": 100}
    )
    failed = local_stack.get(
        "/workflows/process-text/events", params={"status": "FAILED", "limit": 100}
    )

    # Then only events of that status are listed, ours among the SUCCEEDED ones
    assert succeeded.status_code == 200, succeeded.text
    assert failed.status_code == 200, failed.text
    succeeded_items = succeeded.json()["items"]
    assert event_id in [item["event_id"] for item in succeeded_items]
    assert {item["status"] for item in succeeded_items} == {"SUCCEEDED"}
    assert event_id not in [item["event_id"] for item in failed.json()["items"]]
    assert all(item["status"] == "FAILED" for item in failed.json()["items"])
