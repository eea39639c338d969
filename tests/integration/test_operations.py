"""Operating Machinery: the metrics production records (EMF), the W3C trace context every
service call carries, and the logs of an event, through the template's state machine in
the local runtime."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from integration_kit import ended_event
from loopback import Call, LoopbackServer, Reply, json_reply

from machinery_core.contract import METRICS
from machinery_core.local.runtime import LocalRuntime
from machinery_core.runtime.observability import logger, send_metrics_to

ROOT = Path(__file__).resolve().parents[2]
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
SECRET = "s3cr3t-header-value-never-logged"
DATA_VALUE = "data-value-never-logged-at-info"
RELAY = {"service": "machinery", "workflow": "relay"}  # the dimensions of the workflow's


def answer(call: Call, nth: int) -> Reply:
    """`fail` in the data: 400 (not retried); `flaky`: 503 on the first call, then 200; a
    completion notification (to /hook): 204."""
    if call.path.endswith("/hook"):
        return 204, {}, b""
    if call.path.endswith(("/later", "/brief")):
        return 202, {}, b""
    word = call.json()["word"]
    if word == "fail":
        return json_reply(400, {"message": "no"})
    if word.startswith("flaky") and call.path.endswith("/first") and _first_call(word):
        return json_reply(503, {"message": "busy"})
    return json_reply(200, {"word": word})


_SEEN: set[str] = set()


def _first_call(word: str) -> bool:
    first = word not in _SEEN
    _SEEN.add(word)
    return first


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    loopback = LoopbackServer(answer).start()
    yield loopback
    loopback.stop()


@pytest.fixture(scope="module")
def runtime(server: LoopbackServer) -> Iterator[LocalRuntime]:
    """Two services on the test's own server, a workflow calling both, time scaled down."""
    local = LocalRuntime(ROOT / "template.yaml", time_scale=0.001).start()
    spec = {"inputs": {"word": {"type": "string"}}, "outputs": {"word": {"type": "string"}}}
    for name in ("first", "second"):
        service = {
            "name": name,
            "address": f"{server.url}/{name}",
            "spec": spec,
            "headers": {"X-Api-Key": SECRET},
            "retry": {"max_attempts": 3, "interval_seconds": 0},
        }
        created = local.handle_http("POST", "/services", {}, json.dumps(service).encode())
        assert created.status == 201, created.body
    workflow = {"name": "relay", "spec": {"services": ["first", "second"], **spec}}
    created = local.handle_http("POST", "/workflows", {}, json.dumps(workflow).encode())
    assert created.status == 201, created.body
    # and two callback services (a dispatch is answered 202), each called by a workflow of
    # its own: one with 15 minutes to call back (0.9 s here), one with 2 s (2 ms here)
    for name, timeout, workflow_name in (("later", 900, "waits"), ("brief", 2, "gives-up")):
        callback = {
            "name": name,
            "address": f"{server.url}/{name}",
            "mode": "callback",
            "timeout_seconds": timeout,
            "spec": spec,
            "retry": {"max_attempts": 1},
        }
        created = local.handle_http("POST", "/services", {}, json.dumps(callback).encode())
        assert created.status == 201, created.body
        waits = {"name": workflow_name, "spec": {"services": [name], **spec}}
        created = local.handle_http("POST", "/workflows", {}, json.dumps(waits).encode())
        assert created.status == 201, created.body
    # and the brief one in a parallel group (of one branch: a group all the same)
    together = {"parallel": [["brief"]]}
    grouped = {"name": "gives-up-together", "spec": {"services": [together], **spec}}
    created = local.handle_http("POST", "/workflows", {}, json.dumps(grouped).encode())
    assert created.status == 201, created.body
    yield local
    local.stop()


@pytest.fixture
def records() -> Iterator[list[dict[str, Any]]]:
    """Every metrics record written, as production would write it (EMF)."""
    written: list[dict[str, Any]] = []
    send_metrics_to(written.append)
    yield written
    send_metrics_to(None)


def send(
    runtime: LocalRuntime,
    word: str,
    headers: dict[str, str] | None = None,
    notify: str | None = None,
    workflow: str = "relay",
    before_end: Callable[[str], None] | None = None,
) -> Any:
    """The event once it ended and its execution with it (what follows its last write, its
    metrics and its last log line, included)."""
    request: dict[str, Any] = {"data": {"word": word}}
    if notify is not None:
        request["notify"] = {"url": notify}
    body = json.dumps(request).encode()
    accepted = runtime.handle_http("POST", f"/e/{workflow}", headers or {}, body)
    assert accepted.status == 202, accepted.body
    if before_end is not None:
        before_end(json.loads(accepted.body)["event_id"])
    event = ended_event(runtime, json.loads(accepted.body)["event_id"])
    deadline = time.monotonic() + 20
    while any(
        json.loads(execution["input"])["event_id"] == event["event_id"]
        for execution in running_executions(runtime)
    ):  # every segment's execution: a callback's, and a timer's (named by a UUID)
        assert time.monotonic() < deadline, "the event's executions did not end"
        time.sleep(0.01)
    return ended_event(runtime, event["event_id"])  # its notification attempted since


def running_executions(runtime: LocalRuntime) -> Iterator[dict[str, Any]]:
    client = runtime.dependencies.executions.client
    pages = client.get_paginator("list_executions").paginate(
        stateMachineArn=runtime.dependencies.executions.state_machine_arn, statusFilter="RUNNING"
    )
    for page in pages:
        for listed in page["executions"]:
            yield client.describe_execution(executionArn=listed["executionArn"])


def metrics_of(records: list[dict[str, Any]], name: str) -> list[tuple[dict[str, str], float]]:
    """(the most detailed dimension set's values, value) of each record of `name`."""
    found = []
    for record in records:
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        if name in [metric["Name"] for metric in directive["Metrics"]]:
            widest = max(directive["Dimensions"], key=len)
            dimensions = {key: record[key] for key in widest}
            for value in record[name]:
                found.append((dimensions, value))
    return found


def calls_of(server: LoopbackServer, word: str) -> list[Call]:
    return [call for call in server.received() if call.json().get("word") == word]


# --- metrics ------------------------------------------------------------------------------


def test_a_succeeded_event_records_its_events_and_calls_metrics(
    runtime: LocalRuntime, records: list[dict[str, Any]]
) -> None:
    # When an event runs both services
    event = send(runtime, "fine")

    # Then the workflow's counters and the event's duration are recorded, per workflow
    assert event["status"] == "SUCCEEDED"
    assert metrics_of(records, "EventsAccepted") == [
        ({"service": "machinery", "workflow": "relay"}, 1.0)
    ]
    assert metrics_of(records, "EventsSucceeded") == [
        ({"service": "machinery", "workflow": "relay"}, 1.0)
    ]
    [(dimensions, duration)] = metrics_of(records, "EventDuration")
    assert dimensions == RELAY
    assert abs(duration - event["duration_ms"]) < 1
    # and each call, per service, with its latency
    calls = metrics_of(records, "ServiceCalls")
    assert sorted(d["service_name"] for d, _ in calls) == ["first", "second"]
    latencies = {d["service_name"]: v for d, v in metrics_of(records, "ServiceCallLatency")}
    attempts = {step["service"]: step["history"][-1]["duration_ms"] for step in event["steps"]}
    assert latencies == pytest.approx(attempts, abs=0.01)
    assert metrics_of(records, "ServiceCallFailures") == []
    assert metrics_of(records, "EventsFailed") == []
    # every record in the catalogue's units and dimension sets, none unbounded
    for record in records:
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "Machinery"
        for metric in directive["Metrics"]:
            spec = METRICS[metric["Name"]]
            assert metric["Unit"] == spec.unit
            assert tuple(map(tuple, directive["Dimensions"])) == spec.dimension_sets
        assert "event_id" not in json.dumps(directive)


def test_a_failed_event_records_the_failure_by_error_type(
    runtime: LocalRuntime, records: list[dict[str, Any]]
) -> None:
    # When the first service answers 400 (not retried)
    event = send(runtime, "fail")

    # Then the event failed, and the failure is counted for the service by its type
    assert event["status"] == "FAILED"
    assert metrics_of(records, "EventsFailed") == [
        ({"service": "machinery", "workflow": "relay"}, 1.0)
    ]
    assert metrics_of(records, "ServiceCallFailures") == [
        ({"service": "machinery", "service_name": "first", "error_type": "4xx"}, 1.0)
    ]
    assert metrics_of(records, "ServiceCallRetries") == []
    assert metrics_of(records, "EventsSucceeded") == []


def test_a_retried_call_records_the_failure_and_the_retry(
    runtime: LocalRuntime, records: list[dict[str, Any]]
) -> None:
    # When the first service answers 503 once, then 200
    event = send(runtime, "flaky-1")

    # Then the event succeeded after a retry: 3 calls, one failed (5xx) and retried
    assert event["status"] == "SUCCEEDED"
    assert event["steps"][0]["attempts"] == 2
    calls = [d["service_name"] for d, _ in metrics_of(records, "ServiceCalls")]
    assert sorted(calls) == ["first", "first", "second"]
    assert metrics_of(records, "ServiceCallFailures") == [
        ({"service": "machinery", "service_name": "first", "error_type": "5xx"}, 1.0)
    ]
    assert metrics_of(records, "ServiceCallRetries") == [
        ({"service": "machinery", "service_name": "first"}, 1.0)
    ]


WAITS = {"service": "machinery", "workflow": "waits"}
LATER = {"service": "machinery", "service_name": "later"}


def test_a_callbacks_reported_error_and_its_wait_are_recorded(
    runtime: LocalRuntime, server: LoopbackServer, records: list[dict[str, Any]]
) -> None:
    # Given a callback service that reports an error once it has been handed the step
    def report_an_error(_: str) -> None:
        deadline = time.monotonic() + 20
        while not calls_of(server, "reported"):
            assert time.monotonic() < deadline, "the step was never dispatched"
            time.sleep(0.01)
        url = calls_of(server, "reported")[0].headers["X-Machinery-Callback-Url"]
        error = {"error": {"type": "Declined", "message": "no"}}
        path = "/callbacks/" + url.rsplit("/callbacks/", 1)[1]
        answer = runtime.handle_http("POST", path, {}, json.dumps(error).encode())
        assert answer.status == 200, answer.body

    # When an event waits for it
    event = send(runtime, "reported", workflow="waits", before_end=report_an_error)

    # Then the dispatch is a call, the wait is timed, and the report is a failure of its own
    assert event["status"] == "FAILED"
    assert [d for d, _ in metrics_of(records, "ServiceCalls")] == [LATER]
    [(dimensions, waited)] = metrics_of(records, "CallbackWaitTime")
    assert dimensions == LATER and waited > 0
    assert metrics_of(records, "ServiceCallFailures") == [
        ({**LATER, "error_type": "reported"}, 1.0)
    ]
    assert metrics_of(records, "EventsFailed") == [(WAITS, 1.0)]


def test_a_callback_that_never_comes_is_a_callback_timeout(
    runtime: LocalRuntime, records: list[dict[str, Any]]
) -> None:
    # When an event waits for a callback that never comes (2 s, time-scaled)
    event = send(runtime, "never", workflow="gives-up")

    # Then its step failed on the timeout, counted as such
    assert event["status"] == "FAILED"
    assert event["error"]["type"] == "CallbackTimeout"
    brief = {"service": "machinery", "service_name": "brief", "error_type": "callback_timeout"}
    assert metrics_of(records, "ServiceCallFailures") == [(brief, 1.0)]
    assert metrics_of(records, "EventsFailed") == [({**WAITS, "workflow": "gives-up"}, 1.0)]
    assert metrics_of(records, "CallbackWaitTime") == []


# --- trace context ------------------------------------------------------------------------


def test_every_call_carries_the_events_trace_with_a_parent_of_its_own(
    runtime: LocalRuntime, server: LoopbackServer
) -> None:
    # When two events run
    first, second = send(runtime, "trace-a"), send(runtime, "trace-b")

    # Then each call carried a valid traceparent: one trace id per event, the event's
    for event, word in ((first, "trace-a"), (second, "trace-b")):
        parsed = [TRACEPARENT.match(call.headers["traceparent"]) for call in calls_of(server, word)]
        assert len(parsed) == 2 and all(parsed)
        trace_ids = {match.group(1) for match in parsed if match}
        assert trace_ids == {event["trace_id"]}
        parents = [match.group(2) for match in parsed if match]
        assert len(set(parents)) == 2  # a fresh parent id per call
        assert "tracestate" not in calls_of(server, word)[0].headers
    assert first["trace_id"] != second["trace_id"]
    assert first.get("xray_trace_id") is None


def test_a_clients_traceparent_is_continued_and_its_tracestate_passed_on(
    runtime: LocalRuntime, server: LoopbackServer
) -> None:
    # Given a client's trace context
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"traceparent": f"00-{trace_id}-{parent}-01", "tracestate": "rojo=00f067aa0ba902b7"}

    # When it sends an event with it
    event = send(runtime, "trace-client", headers)

    # Then the event joins that trace, and every call carries it on, parented anew
    assert event["trace_id"] == trace_id
    for call in calls_of(server, "trace-client"):
        match = TRACEPARENT.match(call.headers["traceparent"])
        assert match and match.group(1) == trace_id and match.group(2) != parent
        assert call.headers["tracestate"] == "rojo=00f067aa0ba902b7"


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "garbage",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(
    runtime: LocalRuntime, server: LoopbackServer, traceparent: str
) -> None:
    event = send(runtime, f"trace-bad-{traceparent[:2]}", {"traceparent": traceparent})
    assert re.fullmatch(r"[0-9a-f]{32}", event["trace_id"])
    assert event["trace_id"] not in traceparent.lower().replace("-", "")


def test_under_xray_the_trace_is_the_invocations(
    runtime: LocalRuntime, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Lambda's X-Ray trace header for the API invocation
    root = "1-5759e988-bd862e3fe1be46a994272793"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1")

    # When an event is sent without a traceparent
    event = send(runtime, "trace-xray")

    # Then its trace is the X-Ray trace (in W3C form), recorded as such
    assert event["xray_trace_id"] == root
    assert event["trace_id"] == "5759e988bd862e3fe1be46a994272793"
    for call in calls_of(server, "trace-xray"):
        assert call.headers["traceparent"].startswith(f"00-{event['trace_id']}-")


def test_the_completion_notification_carries_the_trace_and_is_counted(
    runtime: LocalRuntime, server: LoopbackServer, records: list[dict[str, Any]]
) -> None:
    # When an event asks for a completion notification
    event = send(runtime, "trace-notify", notify=f"{server.url}/hook")

    # Then the notification joined the event's trace, and its delivery was counted
    [hook] = [call for call in server.received() if call.path.endswith("/hook")]
    match = TRACEPARENT.match(hook.headers["traceparent"])
    assert match and match.group(1) == event["trace_id"]
    assert event["notification"]["status"] == "DELIVERED"
    assert metrics_of(records, "NotificationsDelivered") == [(RELAY, 1.0)]
    assert metrics_of(records, "NotificationsFailed") == []


# --- logs ---------------------------------------------------------------------------------


class Captured:
    """What the logger writes, as the JSON lines CloudWatch Logs would get."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]


@pytest.fixture
def info_log() -> Iterator[Captured]:
    captured = Captured()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(logger.registered_formatter)
    level = logger.log_level
    logger.addHandler(handler)
    logger.setLevel("INFO")
    yield captured
    logger.setLevel(level)
    logger.removeHandler(handler)


def test_an_events_log_lines_are_correlated_and_hold_no_data_or_secret(
    runtime: LocalRuntime, info_log: Captured
) -> None:
    # When an event runs (a secret header on both services, a value of its own in its data)
    event = send(runtime, DATA_VALUE)

    # Then neither the secret nor the data (nor the outputs, which echo it) is logged at INFO
    assert SECRET not in info_log.stream.getvalue()
    assert DATA_VALUE not in info_log.stream.getvalue()
    # and every line carries the event's correlation keys
    lines = info_log.lines()
    assert lines
    for line in lines:
        assert line["event_id"] == event["event_id"], line
        assert line["workflow_id"] == "relay", line
        assert line["trace_id"] == event["trace_id"], line
    # and each service call is one line with its outcome and duration
    calls = [line for line in lines if line["message"] == "service call"]
    assert [(c["service"], c["step"], c["attempt"], c["outcome"]) for c in calls] == [
        ("first", "0", 1, "succeeded"),
        ("second", "1", 1, "succeeded"),
    ]
    assert all(c["duration_ms"] > 0 and c["status_code"] == 200 for c in calls)
    assert {"event accepted", "service call", "event ended"} <= {line["message"] for line in lines}


# --- machinery local --metrics ---------------------------------------------------------------


def test_machinery_local_prints_metrics_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the local runtime's entry point replaced by one that records what it is given
    from click.testing import CliRunner

    from machinery_core.cli.command import main
    from machinery_core.local import command as local_command

    runs: list[tuple[Any, ...]] = []
    monkeypatch.setattr(local_command, "run", lambda *args: runs.append(args))

    # When `machinery local` runs with and without --metrics, Then only --metrics asks for them
    for flags, wanted in (([], False), (["--metrics"], True)):
        result = CliRunner().invoke(main, ["local", "--port", "0", *flags])
        assert result.exit_code == 0, result.output
        assert runs.pop()[-1] is wanted


def test_each_metrics_record_is_one_readable_line(records: list[dict[str, Any]]) -> None:
    # Given records as production writes them
    from machinery_core.local.command import metrics_line
    from machinery_core.runtime.observability import record

    record({"ServiceCalls": 1, "ServiceCallLatency": 12.5}, service_name="upper")
    record({"ServiceCallFailures": 1}, service_name="upper", error_type="5xx")

    # Then each is one line: the metrics with their values and units, then its dimensions
    assert [metrics_line(written) for written in records] == [
        "metrics ServiceCalls=1 Count ServiceCallLatency=12.5 Milliseconds"
        " [service=machinery service_name=upper]",
        "metrics ServiceCallFailures=1 Count [service=machinery service_name=upper error_type=5xx]",
    ]


def test_the_readme_names_every_metric_and_error_type() -> None:
    from machinery_core.contract import ERROR_TYPES

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Operating Machinery") : readme.index("## Performance")]
    for name, spec in METRICS.items():
        assert f"`{name}`" in section, name
        assert spec.unit in section, name
    for error_type in ERROR_TYPES:
        assert f"`{error_type}`" in section, error_type


def test_a_group_callback_that_never_comes_is_a_callback_timeout(
    runtime: LocalRuntime, records: list[dict[str, Any]]
) -> None:
    # When a parallel group waits for a callback that never comes (2 s, time-scaled)
    event = send(runtime, "never-together", workflow="gives-up-together")

    # Then the group's callback step failed on its timeout, counted as such
    assert event["status"] == "FAILED"
    brief = {"service": "machinery", "service_name": "brief", "error_type": "callback_timeout"}
    assert metrics_of(records, "ServiceCallFailures") == [(brief, 1.0)]
    assert [d["service_name"] for d, _ in metrics_of(records, "ServiceCalls")] == ["brief"]
