"""GET /workflows/{workflow_id}/stats through the API handler (recorded API Gateway HTTP API
v2.0 events), over events stored in the moto table with known statuses, times, attempts and
errors; the clock is the dependencies' own, injected."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from builders import STRING, make_plan, make_service
from integration_kit import FakeLambdaContext, Wired, load_handler_module, recorded

import machinery_core.service.stats as stats_service
from machinery_core.adapters.store import Store
from machinery_core.domain.models import (
    Attempt,
    ErrorInfo,
    Event,
    EventStatus,
    RunRecord,
    StepRecord,
    StepStatus,
    Workflow,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

api = load_handler_module("api_app", "functions/api/app.py")

NOW = datetime(2025, 1, 8, 12, 0, 0, tzinfo=UTC)
WORKFLOW = "stats-flow"
PLAN = make_plan(make_service("upper"))
# upper, then reverse and upper side by side, then reverse over each of `items`
DEFINITION = Workflow.model_validate(
    {
        "name": WORKFLOW,
        "spec": {
            "services": [
                "upper",
                {"parallel": [["reverse"], ["upper"]]},
                {"map": "items", "as": "item", "steps": ["reverse"], "collect": "out"},
            ],
            "inputs": {"message": STRING, "items": {"type": "array"}},
            "outputs": {"message": STRING},
        },
    }
)


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def call(ms: float, error: str | None = None, number: int = 1) -> Attempt:
    """An ended attempt of `ms` milliseconds, failed with `error` (its type) if given."""
    return Attempt(
        attempt=number,
        started_at=NOW,
        ended_at=NOW + timedelta(milliseconds=ms),
        duration_ms=ms,
        error=ErrorInfo(type=error, message=f"{error}!") if error else None,
    )


def step(index: int, service: str, status: StepStatus, *calls: Attempt, **extra: Any) -> StepRecord:
    return StepRecord(
        index=index,
        service=service,
        status=status,
        attempts=len(calls),
        history=list(calls),
        **extra,
    )


OK, FAILED = StepStatus.SUCCEEDED, StepStatus.FAILED


def event(
    event_id: str,
    status: EventStatus,
    acknowledged: datetime,
    took_ms: float | None = None,
    steps: list[StepRecord] | None = None,
    error: str | None = None,
    workflow: str = WORKFLOW,
    **extra: Any,
) -> Event:
    ended = acknowledged + timedelta(milliseconds=took_ms) if took_ms is not None else None
    return Event(
        event_id=event_id,
        workflow_id=workflow,
        status=status,
        data={"message": "hi"},
        acknowledged_at=acknowledged,
        updated_at=ended or acknowledged,
        ended_at=ended,
        steps=steps or [],
        error=ErrorInfo(type=error, message=f"{error}!") if error else None,
        **extra,
    )


def the_events() -> list[Event]:
    """Events of `stats-flow` in and around each window, and one of another workflow."""
    group = StepRecord(
        index=1,
        kind="parallel",
        status=OK,
        steps=[
            step(0, "reverse", OK, call(20), branch=0),
            step(0, "upper", OK, call(30), branch=1),
        ],
    )
    # a map's steps that succeeded at their first attempt keep no history: their own duration
    mapped = StepRecord(
        index=2,
        kind="map",
        status=OK,
        total=3,
        completed=3,
        steps=[
            StepRecord(
                index=0,
                service="reverse",
                iteration=k,
                status=OK,
                attempts=1,
                duration_ms=5 + k,
            )
            for k in range(3)
        ],
    )
    earlier_run = RunRecord(
        run=1,
        status=EventStatus.FAILED,
        error=ErrorInfo(type="HttpError", message="503"),
        steps=[step(0, "upper", FAILED, call(90, "HttpError"))],
    )
    return [
        # the last hour, its first instant included
        event(
            "e1",
            EventStatus.SUCCEEDED,
            ago(hours=1),
            100,
            [step(0, "upper", OK, call(10)), group, mapped],
        ),
        # the last 24 hours
        event(
            "e2",
            EventStatus.SUCCEEDED,
            ago(hours=1, seconds=1),
            300,
            [step(0, "upper", OK, call(40, "HttpError"), call(50, number=2))],
        ),
        event(
            "e3",
            EventStatus.FAILED,
            ago(hours=3),
            200,
            [step(0, "upper", FAILED, call(60, "HttpError"))],
            "HttpError",
        ),
        event(
            "e4",
            EventStatus.FAILED,
            ago(hours=5),
            400,
            [step(0, "upper", FAILED, call(70, "OutputInvalid"))],
            "OutputInvalid",
        ),
        event(
            "e5",
            EventStatus.FAILED,
            ago(hours=6),
            500,
            [step(0, "upper", FAILED, call(80, "HttpError"))],
            "HttpError",
            run=2,
            runs=[earlier_run],
        ),
        event(
            "e6", EventStatus.CANCELLED, ago(hours=7), 600, [step(0, "upper", StepStatus.CANCELLED)]
        ),
        event(
            "e7",
            EventStatus.RUNNING,
            ago(hours=8),
            None,
            [step(0, "upper", StepStatus.RUNNING, attempt=1)],
        ),
        event("e8", EventStatus.PENDING, ago(hours=9)),
        event("e9", EventStatus.WAITING, ago(hours=10)),
        event("e10", EventStatus.SUCCEEDED, ago(hours=24), 900, [step(0, "upper", OK, call(15))]),
        # the last 7 days
        event("e11", EventStatus.SUCCEEDED, ago(hours=24, seconds=1), 1000),
        event("e12", EventStatus.FAILED, ago(days=7), 2000, error="Timeout"),
        # older than any window
        event("e13", EventStatus.FAILED, ago(days=7, seconds=1), 5000, error="Ancient"),
        # another workflow's, within the hour
        event("x1", EventStatus.FAILED, ago(minutes=5), 50, error="Elsewhere", workflow="other"),
    ]


def invoke(query: str, workflow: str = WORKFLOW) -> tuple[int, Any]:
    """GET /workflows/{workflow}/stats?{query}, as the recorded request with that query."""
    request = copy.deepcopy(recorded("get_workflow_stats"))
    path = f"/workflows/{workflow}/stats"
    request["rawPath"] = request["requestContext"]["http"]["path"] = path
    request["pathParameters"] = {"workflow_id": workflow}
    request["rawQueryString"] = query
    request.pop("queryStringParameters", None)
    if query:
        request["queryStringParameters"] = dict(part.split("=", 1) for part in query.split("&"))
    answer = api.handler(request, FakeLambdaContext())
    assert answer["headers"]["Content-Type"] == "application/json"
    return answer["statusCode"], json.loads(answer["body"])


def store_workflow(store: Store) -> None:
    for name in ("upper", "reverse"):
        store.save_service(make_service(name), ago(days=30), create_only=True)
    store.save_workflow(DEFINITION, ago(days=30), None)


@pytest.fixture
def stored(wired: Wired) -> Iterator[Wired]:
    """`stats-flow` and its events in the moto table, and the clock at NOW."""
    store_workflow(wired.store)
    for item in the_events():
        wired.store.create_event(item, PLAN)
    wired.deps.clock = lambda: NOW
    yield wired


def test_a_day_of_events_is_counted_timed_and_broken_down_by_step_and_error(
    stored: Wired,
) -> None:
    # Given stats-flow's events (e1 to e10 acknowledged within the last 24 hours, e10 at
    # its first instant, two older, one of another workflow)
    # When its statistics are asked for, the window left to its default
    status, body = invoke("")

    # Then they count the ten events of the day by status, PENDING as RUNNING
    assert status == 200, body
    assert body["workflow_id"] == WORKFLOW
    assert body["window"] == "24h"
    assert body["since"] == "2025-01-07T12:00:00Z"
    assert body["events"] == {
        "SUCCEEDED": 3,
        "FAILED": 3,
        "CANCELLED": 1,
        "RUNNING": 2,
        "WAITING": 1,
    }
    # And the durations of the seven that ended (100, 200, 300, 400, 500, 600, 900 ms),
    # nearest-rank: p50 the 4th, p95 the 7th
    assert body["duration_ms"] == {"p50": 400.0, "p95": 900.0, "max": 900.0}
    # And a row per planned step, in the workflow's order, a map's iterations folded in;
    # step 0 counts an earlier run's attempt (e5's, 90 ms) and e2's retry
    assert body["steps"] == [
        {
            "step": "0",
            "service": "upper",
            "calls": 8,
            "failed": 5,
            "retries": 1,
            "p50_ms": 50.0,
            "p95_ms": 90.0,
        },
        {
            "step": "1.0.0",
            "service": "reverse",
            "calls": 1,
            "failed": 0,
            "retries": 0,
            "p50_ms": 20.0,
            "p95_ms": 20.0,
        },
        {
            "step": "1.1.0",
            "service": "upper",
            "calls": 1,
            "failed": 0,
            "retries": 0,
            "p50_ms": 30.0,
            "p95_ms": 30.0,
        },
        {
            "step": "2.0",
            "service": "reverse",
            "calls": 3,
            "failed": 0,
            "retries": 0,
            "p50_ms": 6.0,
            "p95_ms": 7.0,
        },
    ]
    # And the failed events by error type, the most frequent first, with the newest of each
    assert body["errors"] == [
        {"type": "HttpError", "count": 2, "last_event_id": "e3"},
        {"type": "OutputInvalid", "count": 1, "last_event_id": "e4"},
    ]
    assert body["sample"] == {"events": 10, "limit": 1000, "cut": False}


def test_the_last_hour_starts_at_its_first_instant(stored: Wired) -> None:
    # Given e1 acknowledged exactly an hour ago and e2 a second before that
    # When the last hour's statistics are asked for
    status, body = invoke("window=1h")

    # Then only e1 is in it (another workflow's event of five minutes ago is not)
    assert status == 200, body
    assert body["since"] == "2025-01-08T11:00:00Z"
    assert body["events"] == {
        "SUCCEEDED": 1,
        "FAILED": 0,
        "CANCELLED": 0,
        "RUNNING": 0,
        "WAITING": 0,
    }
    assert body["duration_ms"] == {"p50": 100.0, "p95": 100.0, "max": 100.0}
    assert body["errors"] == []
    assert body["sample"] == {"events": 1, "limit": 1000, "cut": False}
    assert [row["calls"] for row in body["steps"]] == [1, 1, 1, 3]


def test_the_last_week_takes_the_older_events_up_to_its_first_instant(stored: Wired) -> None:
    # Given e11 a second older than a day, e12 exactly a week old, e13 a second older
    # When the last week's statistics are asked for
    status, body = invoke("window=7d")

    # Then the week holds e1 to e12, not e13
    assert status == 200, body
    assert body["since"] == "2025-01-01T12:00:00Z"
    assert body["events"]["SUCCEEDED"] == 4
    assert body["events"]["FAILED"] == 4
    assert body["sample"]["events"] == 12
    # durations: 100, 200, 300, 400, 500, 600, 900, 1000, 2000
    assert body["duration_ms"] == {"p50": 500.0, "p95": 2000.0, "max": 2000.0}
    assert body["errors"] == [
        {"type": "HttpError", "count": 2, "last_event_id": "e3"},
        {"type": "OutputInvalid", "count": 1, "last_event_id": "e4"},
        {"type": "Timeout", "count": 1, "last_event_id": "e12"},
    ]


def test_a_window_without_events_has_rows_of_zeros_and_no_durations(wired: Wired) -> None:
    # Given stats-flow with no event at all
    store_workflow(wired.store)

    # When its statistics are asked for
    status, body = invoke("window=1h")

    # Then every count is 0, every duration null, and each planned step has its row
    assert status == 200, body
    assert set(body["events"].values()) == {0}
    assert body["duration_ms"] == {"p50": None, "p95": None, "max": None}
    assert [(row["step"], row["service"], row["calls"]) for row in body["steps"]] == [
        ("0", "upper", 0),
        ("1.0.0", "reverse", 0),
        ("1.1.0", "upper", 0),
        ("2.0", "reverse", 0),
    ]
    assert all(row["p50_ms"] is None and row["p95_ms"] is None for row in body["steps"])
    assert body["sample"] == {"events": 0, "limit": 1000, "cut": False}


def test_only_the_newest_events_up_to_the_limit_are_read_and_the_answer_says_so(
    stored: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a limit of 4 events (1,000 in production) and listing pages of 3 entries
    monkeypatch.setattr(stats_service, "STATS_EVENT_LIMIT", 4)
    monkeypatch.setattr(stats_service, "LISTING_PAGE", 3)

    # When the day's statistics are asked for (the day holds 10 events)
    status, body = invoke("window=24h")

    # Then only the 4 newest are counted (e1, e2, e3, e4), and the cut is said
    assert status == 200, body
    assert body["sample"] == {"events": 4, "limit": 4, "cut": True}
    assert body["events"] == {
        "SUCCEEDED": 2,
        "FAILED": 2,
        "CANCELLED": 0,
        "RUNNING": 0,
        "WAITING": 0,
    }
    assert body["duration_ms"] == {"p50": 200.0, "p95": 400.0, "max": 400.0}


def test_a_window_holding_exactly_the_limit_is_not_cut(
    stored: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a limit of exactly the day's 10 events, listed 3 at a time
    monkeypatch.setattr(stats_service, "STATS_EVENT_LIMIT", 10)
    monkeypatch.setattr(stats_service, "LISTING_PAGE", 3)

    # When the day's statistics are asked for
    status, body = invoke("window=24h")

    # Then all ten are counted, and nothing was cut
    assert status == 200, body
    assert body["sample"] == {"events": 10, "limit": 10, "cut": False}
    assert sum(body["events"].values()) == 10


class NoReads:
    """A payload bucket that takes payloads and refuses to be read."""

    def __init__(self) -> None:
        self.stored: list[str] = []

    def put(self, event_id: str, ref: str, body: bytes) -> None:
        self.stored.append(ref)

    def get(self, event_id: str, ref: str) -> bytes:
        raise AssertionError(f"the statistics read payload {ref} of event {event_id}")


@pytest.mark.parametrize("bucket", ["refusing", "none"])
def test_an_event_with_payloads_stored_apart_is_counted_without_reading_them(
    wired: Wired, dynamodb: Any, bucket: str
) -> None:
    # Given an event whose data and step output left its item for the payload bucket
    bucket_writes = NoReads()
    writer = Store(dynamodb, "machinery-test", timedelta(days=30), bucket_writes)  # type: ignore[arg-type]
    store_workflow(writer)
    big = {"message": "x" * 40_000}
    large = event(
        "big-1",
        EventStatus.FAILED,
        ago(minutes=10),
        250,
        [step(0, "upper", FAILED, call(12, "HttpError"), output=big)],
        "HttpError",
    ).model_copy(update={"data": big, "context": big})
    writer.create_event(large, PLAN)
    assert bucket_writes.stored, "nothing was stored apart"
    # And the API's store with a bucket that refuses reads, or with no bucket at all
    reader = Store(
        dynamodb,  # type: ignore[arg-type]
        "machinery-test",
        timedelta(days=30),
        NoReads() if bucket == "refusing" else None,  # type: ignore[arg-type]
    )
    wired.deps.store = reader
    wired.deps.clock = lambda: NOW

    # When the last hour's statistics are asked for
    status, body = invoke("window=1h")

    # Then the event is counted, its step and its error too, and no payload was read
    assert status == 200, body
    assert body["events"]["FAILED"] == 1
    assert body["duration_ms"] == {"p50": 250.0, "p95": 250.0, "max": 250.0}
    assert body["steps"][0] == {
        "step": "0",
        "service": "upper",
        "calls": 1,
        "failed": 1,
        "retries": 0,
        "p50_ms": 12.0,
        "p95_ms": 12.0,
    }
    assert body["errors"] == [{"type": "HttpError", "count": 1, "last_event_id": "big-1"}]


def test_an_unknown_workflow_answers_404(wired: Wired) -> None:
    # Given no workflow named `nope`
    # When its statistics are asked for
    status, body = invoke("window=24h", workflow="nope")

    # Then the answer is a 404 naming it
    assert status == 404
    assert "nope" in body["message"]


def test_a_window_it_does_not_take_answers_422_naming_the_parameter(stored: Wired) -> None:
    # Given stats-flow
    # When a two-hour window is asked for
    status, body = invoke("window=2h")

    # Then it is refused as the API refuses any bad query parameter
    assert status == 422
    assert body["message"] == "the request does not match the contract"
    assert [(d["path"], d["location"]) for d in body["details"]] == [("window", "query")]
    assert "1h" in body["details"][0]["message"] and "7d" in body["details"][0]["message"]


def test_the_recorded_request_reads_the_workflow_it_names(wired: Wired) -> None:
    # Given the recorded request, for `shout`, and `shout` registered with its one step
    store = wired.store
    store.save_service(make_service("upper"), ago(days=1), create_only=True)
    store.save_workflow(
        Workflow.model_validate(
            {
                "name": "shout",
                "spec": {"services": ["upper"], "inputs": {"message": STRING}},
            }
        ),
        ago(days=1),
        None,
    )

    # When it is sent as recorded
    answer = api.handler(recorded("get_workflow_stats"), FakeLambdaContext())

    # Then it answers shout's (empty) day
    assert answer["statusCode"] == 200, answer["body"]
    body = json.loads(answer["body"])
    assert (body["workflow_id"], body["window"]) == ("shout", "24h")
    assert body["steps"] == [
        {
            "step": "0",
            "service": "upper",
            "calls": 0,
            "failed": 0,
            "retries": 0,
            "p50_ms": None,
            "p95_ms": None,
        }
    ]
