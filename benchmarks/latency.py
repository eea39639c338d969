"""Latency and throughput of the local runtime over HTTP, on the stack load.py starts.

`machinery local` runs as its own process on a free loopback port, the example services
(upper, reverse, space-counter) on free ports too, and the `process-text` workflow is
registered (load.local_stack). Then:

- latency: one event at a time, N times: the time from just before the POST to the
  event's `ended_at` (the same host's clock), read back with GET /events/{id} after a
  pause (so polling does not compete with the event for the GIL). The baseline calls the
  same three services directly, in sequence, with one keep-alive requests.Session.
- throughput: M events from 1, 8 and 32 concurrent senders (load.send_all), each waited
  for and checked (load.poll_all, load.evaluate): events completed per second, from the
  first acknowledgement to the last end.
- burst: the same with many events (2,000 in the full suite): none may be left unended.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import load
import requests

FIRST_LOOK_SECONDS = 0.1
POLL_SECONDS = 0.02
EVENT_SECONDS = 60.0


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"measured": 0, "p50": None, "p95": None, "max": None, "mean": None}
    return {
        "measured": len(values),
        "p50": round(load.percentile(values, 0.50) or 0, 2),
        "p95": round(load.percentile(values, 0.95) or 0, 2),
        "max": round(max(values), 2),
        "mean": round(statistics.fmean(values), 2),
    }


def local_latency(url: str, events: int, warmup: int) -> dict[str, Any]:
    http = requests.Session()
    end_to_end, answers, server_side = [], [], []
    wrong: list[dict[str, Any]] = []
    for index in range(warmup + events):
        message = load.message_for(index)
        sent_at = datetime.now(UTC)
        started = time.perf_counter()
        answer = http.post(
            f"{url}/e/{load.WORKFLOW}", json={"data": {"message": message}}, timeout=30
        )
        answered = (time.perf_counter() - started) * 1000
        if answer.status_code != 202:
            wrong.append({"index": index, "status_code": answer.status_code})
            continue
        event_id = answer.json()["event_id"]
        event = _until_ended(http, url, event_id)
        right = (
            event is not None
            and event["status"] == "SUCCEEDED"
            and event["outputs"] == load.expected_outputs(message)
        )
        if not right:
            wrong.append({"event_id": event_id, "status": event and event["status"]})
            continue
        assert event is not None
        if index < warmup:
            continue
        ended_at = datetime.fromisoformat(event["ended_at"])
        acknowledged_at = datetime.fromisoformat(event["acknowledged_at"])
        end_to_end.append((ended_at - sent_at).total_seconds() * 1000)
        server_side.append((ended_at - acknowledged_at).total_seconds() * 1000)
        answers.append(answered)
    return {
        "events": events,
        "warmup": warmup,
        "end_to_end_ms": summary(end_to_end),
        "acknowledged_to_ended_ms": summary(server_side),
        "post_answer_ms": summary(answers),
        "wrong": wrong[:20],
        "wrong_count": len(wrong),
    }


def _until_ended(http: requests.Session, url: str, event_id: str) -> dict[str, Any] | None:
    time.sleep(FIRST_LOOK_SECONDS)
    deadline = time.monotonic() + EVENT_SECONDS
    while True:
        answer = http.get(f"{url}/events/{event_id}", timeout=30)
        event: dict[str, Any] = answer.json()
        if answer.status_code == 200 and event["status"] in load.TERMINAL:
            return event
        if answer.status_code == 404 or time.monotonic() > deadline:
            return None
        time.sleep(POLL_SECONDS)


def direct_calls(services: dict[str, int], events: int, warmup: int) -> dict[str, Any]:
    """The three example services called in sequence, as the workflow calls them."""
    http = requests.Session()
    order = ["upper", "reverse", "space-counter"]
    durations, wrong = [], 0
    for index in range(warmup + events):
        message = load.message_for(index)
        context: dict[str, Any] = {"message": message}
        started = time.perf_counter()
        for name in order:
            answer = http.post(
                f"http://{load.HOST}:{services[name]}/",
                json={"message": context["message"]},
                timeout=10,
            )
            context.update(answer.json())
        elapsed = (time.perf_counter() - started) * 1000
        wrong += context != load.expected_outputs(message)
        if index >= warmup:
            durations.append(elapsed)
    return {"events": events, "warmup": warmup, "ms": summary(durations), "wrong_count": wrong}


def throughput(url: str, events: int, concurrency: int, deadline: float) -> dict[str, Any]:
    sent, send_seconds = load.send_all(url, events, concurrency)
    ids = [s.event_id for s in sent if s.event_id is not None]
    outcome = load.poll_all(url, ids, deadline)
    args = argparse.Namespace(events=events, concurrency=concurrency, deadline=deadline)
    report = load.evaluate(sent, outcome, send_seconds, args)
    return {
        "events": events,
        "concurrency": concurrency,
        "counts": report["counts"],
        "throughput": report["throughput"],
        "latency_ms": report["latency_ms"],
        "failures": report["failures"],
        "passed": load.passed(report),
    }
