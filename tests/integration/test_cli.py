"""The `machinery` command against a fake Machinery API on loopback (CliRunner, in-process).

Nothing here connects beyond 127.0.0.1: the SigV4 tests give the client a requests adapter
that records the prepared request and answers it itself.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
from click.testing import CliRunner, Result
from loopback import Call, LoopbackServer, Reply, json_reply
from requests.adapters import BaseAdapter

import machinery_core.cli.client as client_module
from machinery_core.cli.client import MachineryClient, SigV4
from machinery_core.cli.command import is_event_id, main
from machinery_core.cli.terminal import event_duration, step_rows
from machinery_core.domain.models import Service, Workflow
from machinery_core.domain.payloads import encoded, put_at, reference
from machinery_core.local.launch import free_port

EVENT_ID = "6f1c2d3e-4b5a-4c6d-8e7f-0123456789ab"
MOMENT = "2025-01-01T00:00:00Z"
EXECUTE_API = "https://abc123defg.execute-api.eu-west-1.amazonaws.com"

SERVICE = {
    "name": "greeter",
    "address": "http://127.0.0.1:5009/",
    "spec": {"inputs": {"name": {"type": "string"}}, "outputs": {"greeting": {"type": "string"}}},
}
WORKFLOW = {
    "name": "greet",
    "spec": {
        "services": ["greeter"],
        "inputs": {"name": {"type": "string"}},
        "outputs": {"greeting": {"type": "string"}},
    },
}
EVENT_FILE = {"data": {"name": "Ada"}}
# An emulated interactive terminal: rich draws its live view there
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "120"}
REPLAYED_LINE = f"replayed: this Idempotency-Key already created event {EVENT_ID}"


def step(index: int, service: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "index": index,
        "service": service,
        "status": status,
        "attempts": 1,
        "duration_ms": 2.5,
        "error": None,
        **extra,
    }


def view(status: str, steps: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """An event as GET /events/{id} answers it."""
    ended = status in ("SUCCEEDED", "FAILED", "CANCELLED")
    return {
        "event_id": EVENT_ID,
        "workflow_id": "greet",
        "status": status,
        "data": {"name": "Ada"},
        "outputs": None,
        "error": None,
        "steps": steps or [],
        "acknowledged_at": MOMENT,
        "updated_at": MOMENT,
        "ended_at": MOMENT if ended else None,
        "duration_ms": 12.0 if ended else None,
        "notification": None,
        "run": 1,
        "runs": [],
        **extra,
    }


ACCEPTED = {
    "event_id": EVENT_ID,
    "workflow_id": "greet",
    "status": "PENDING",
    "acknowledged_at": MOMENT,
    "replayed": False,
}
SUCCEEDED = view("SUCCEEDED", [step(0, "greeter", "SUCCEEDED")], outputs={"greeting": "Hello, Ada"})
STEP_ERROR = {"type": "HttpError", "message": "answered 400", "status_code": 400}
FAILED = view(
    "FAILED",
    [step(0, "greeter", "FAILED", attempts=3, error=STEP_ERROR)],
    error=STEP_ERROR,
)


class FakeApi:
    """The routes the CLI uses, in memory; records are canonical and redacted like the API's."""

    def __init__(self) -> None:
        self.definitions: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self.send_answers: list[Reply] = []  # POST /e/...: in turn, the last one repeating
        self.event_states: list[dict[str, Any]] = [SUCCEEDED]  # GET /events/{id}: likewise
        self.event_pages: list[dict[str, Any]] = []  # GET /workflows/{id}/events: in turn
        self.diagrams: dict[str, Reply] = {}  # path -> answer
        self.payloads: dict[str, Any] = {}  # GET /events/{id}/payloads/{ref}: href -> value
        self.steps: dict[str, dict[str, Any]] = {}  # GET /events/{id}/steps/{step}: step -> it
        self.stats: dict[str, dict[str, Any]] = {}  # GET /workflows/{id}/stats: id -> answer
        self.stats_asked: list[dict[str, str]] = []  # the query of each stats request
        self._gets = 0
        self.server = LoopbackServer(self.respond).start()

    @property
    def url(self) -> str:
        return self.server.url

    def calls(self, method: str | None = None) -> list[Call]:
        return [call for call in self.server.received() if method in (None, call.method)]

    def writes(self) -> list[str]:
        """`PUT /services/x` for each definition write, in order."""
        return [f"{call.method} {call.path}" for call in self.calls("PUT")]

    def respond(self, call: Call, _: int) -> Reply:
        parts = urlsplit(call.path)
        path = [unquote(part) for part in parts.path.strip("/").split("/")]
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        if call.method == "GET" and parts.path == "/openapi.json":
            return json_reply(200, {"openapi": "3.1.0", "info": {"title": "Machinery"}})
        if parts.path in self.diagrams:
            return self.diagrams[parts.path]
        if len(path) == 2 and path[0] in ("services", "workflows"):
            return self._definition(call, path[0][:-1], path[1])
        if call.method == "POST" and path[0] == "e":
            answer = self.send_answers.pop(0) if len(self.send_answers) > 1 else None
            return answer or (
                self.send_answers[0] if self.send_answers else json_reply(202, ACCEPTED)
            )
        if call.method == "GET" and parts.path in self.payloads:
            return json_reply(200, self.payloads[parts.path])
        if call.method == "GET" and path[0] == "events" and path[2:3] == ["steps"]:
            found = self.steps.get(path[3])
            return json_reply(200, found) if found else json_reply(404, {"message": "no step"})
        if call.method == "GET" and path[0] == "events" and len(path) == 2:
            if path[1] != EVENT_ID:
                return json_reply(404, {"message": f"event {path[1]!r} not found"})
            state = self.event_states[min(self._gets, len(self.event_states) - 1)]
            self._gets += 1
            return json_reply(200, state)
        if call.method == "GET" and path[0] == "workflows" and path[2:] == ["stats"]:
            self.stats_asked.append(query)
            if query.get("window") not in ("1h", "24h", "7d"):
                detail = {"path": "window", "location": "query", "message": "bad window"}
                return json_reply(
                    422, {"message": "the request does not match the contract", "details": [detail]}
                )
            if path[1] not in self.stats:
                return json_reply(404, {"message": f"workflow {path[1]!r} does not exist"})
            return json_reply(200, {**self.stats[path[1]], "window": query["window"]})
        if call.method == "GET" and path[0] == "workflows" and path[2:] == ["events"]:
            page = self.event_pages.pop(0)
            page["asked"] = query
            return json_reply(200, {"items": page["items"], "next_cursor": page["next"]})
        return json_reply(404, {"message": "no such route"})

    def _definition(self, call: Call, kind: str, name: str) -> Reply:
        model = Service if kind == "service" else Workflow
        if call.method == "GET":
            if (kind, name) not in self.definitions:
                return json_reply(404, {"message": f"{kind} {name!r} not found"})
            version, document = self.definitions[kind, name]
            parsed = model.model_validate(document)
            if isinstance(parsed, Service):
                parsed = parsed.redacted()
            record = {
                f"{kind}_id": name,
                "version": version,
                "created_at": MOMENT,
                "updated_at": MOMENT,
                "definition": parsed.model_dump(mode="json"),
            }
            return json_reply(200, record)
        document = call.json()
        if kind == "workflow":
            unknown = [
                s for s in document["spec"]["services"] if ("service", s) not in self.definitions
            ]
            if unknown:
                details = [
                    {"path": "spec.services", "message": f"unknown service {s!r}"} for s in unknown
                ]
                return json_reply(422, {"message": "unknown services", "details": details})
        version = self.definitions.get((kind, name), (0, {}))[0] + 1
        self.definitions[kind, name] = (version, document)
        answer = {f"{kind}_id": name, "acknowledged_at": MOMENT, "version": version}
        return json_reply(201 if version == 1 else 200, answer)


class Recorder(BaseAdapter):
    """A transport that keeps each prepared request and answers it itself: it connects nowhere."""

    def __init__(self, body: object, status: int = 200, reason: str = "OK") -> None:
        super().__init__()
        self.body = body
        self.status, self.reason = status, reason
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(request)
        response = requests.Response()
        response.status_code = self.status
        response.reason = self.reason
        response.headers["Content-Type"] = "application/json"
        response._content = json.dumps(self.body).encode()
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


class RoutedRecorder(Recorder):
    """A Recorder that answers each path with its own body."""

    def __init__(self, bodies: dict[str, object]) -> None:
        super().__init__(None)
        self.bodies = bodies

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.body = self.bodies[urlsplit(str(request.url)).path]
        return super().send(request, *args, **kwargs)


def recording_session(recorder: Recorder) -> requests.Session:
    session = requests.Session()
    session.mount("https://", recorder)
    session.mount("http://", recorder)
    return session


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No terminal forced, no API URL, and AWS credentials only when a test sets them."""
    for name in (
        "MACHINERY_API_URL",
        "FORCE_COLOR",
        "TTY_COMPATIBLE",
        "TTY_INTERACTIVE",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    # botocore must find no profile and never ask the instance metadata endpoint
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    yield fake
    fake.server.stop()


def run(
    api_url: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> Result:
    return CliRunner().invoke(main, ["--api-url", api_url, *args], input=stdin, env=env)


def write(folder: Path, name: str, document: object) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def apply_json(api: FakeApi, *paths: Path) -> dict[str, Any]:
    result = run(api.url, "apply", *map(str, paths), "--output", "json")
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def results(summary: dict[str, Any]) -> list[tuple[str | None, str | None, str]]:
    return [(item["kind"], item["name"], item["result"]) for item in summary["results"]]


# --- apply -----------------------------------------------------------------------------------


def test_apply_registers_every_service_before_any_workflow_whatever_the_file_order(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given a workflow file that sorts (and is named) before the service it needs
    workflow = write(tmp_path / "defs", "a-workflow.json", WORKFLOW)
    write(tmp_path / "defs" / "nested", "z-service.json", SERVICE)

    # When the workflow file is named first, then the folder holding both
    summary = apply_json(api, workflow, tmp_path / "defs")

    # Then the service (found recursively) is written before the workflow, each once
    assert api.writes() == ["PUT /services/greeter", "PUT /workflows/greet"]
    assert results(summary) == [("service", "greeter", "created"), ("workflow", "greet", "created")]
    assert summary["counts"]["created"] == 2


def test_apply_reports_created_then_unchanged_then_updated_and_is_idempotent(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given a service in the prototype's list form (stored canonically) and a workflow
    prototype = {
        "name": "greeter",
        "address": "http://127.0.0.1:5009/",
        "inputs": [{"name": "name", "type": "str"}],
        "outputs": [{"name": "greeting", "type": "str"}],
    }
    write(tmp_path, "service.json", prototype)
    write(tmp_path, "workflow.json", WORKFLOW)

    # When they are applied twice
    first = apply_json(api, tmp_path)
    writes_after_first = len(api.writes())
    second = apply_json(api, tmp_path)

    # Then the first run creates both and the second changes nothing: no write at all
    assert results(first) == [("service", "greeter", "created"), ("workflow", "greet", "created")]
    assert results(second) == [
        ("service", "greeter", "unchanged"),
        ("workflow", "greet", "unchanged"),
    ]
    assert len(api.writes()) == writes_after_first == 2
    assert [item["version"] for item in second["results"]] == [1, 1]

    # And when the workflow's description changes, only the workflow is updated
    write(tmp_path, "workflow.json", {**WORKFLOW, "description": "Greets people"})
    third = apply_json(api, tmp_path)
    assert results(third) == [("service", "greeter", "unchanged"), ("workflow", "greet", "updated")]
    assert third["results"][1]["version"] == 2
    assert api.writes()[-1] == "PUT /workflows/greet"


def test_apply_sends_secret_headers_again_since_they_cannot_be_read_back(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given a service with a secret header, applied once
    write(tmp_path, "service.json", {**SERVICE, "secret_headers": {"Authorization": "Bearer s3"}})
    apply_json(api, tmp_path)

    # When it is applied again
    again = apply_json(api, tmp_path)

    # Then it is sent again (the API shows the value redacted) and says why
    assert results(again) == [("service", "greeter", "updated")]
    assert "write-only" in again["results"][0]["note"]
    assert api.calls("PUT")[-1].json()["secret_headers"] == {"Authorization": "Bearer s3"}

    # And a file that carries the redacted value (as read from the API) compares equal
    write(tmp_path, "service.json", {**SERVICE, "secret_headers": {"Authorization": "<redacted>"}})
    assert results(apply_json(api, tmp_path)) == [("service", "greeter", "unchanged")]


def test_apply_skips_a_file_that_is_not_a_definition_with_a_note(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given an event file beside a service definition
    write(tmp_path, "event-text.json", EVENT_FILE)
    write(tmp_path, "service.json", SERVICE)

    # When the folder is applied (text output)
    result = run(api.url, "apply", str(tmp_path))

    # Then the service is created and the event file skipped, saying why; nothing failed
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["result", "kind", "name"]
    created = next(line for line in lines if line.startswith("created"))
    assert "greeter" in created
    skipped = next(line for line in lines if line.startswith("skipped"))
    assert "event-text.json" in skipped
    assert "neither a service" in skipped
    assert api.writes() == ["PUT /services/greeter"]


def test_apply_reports_a_refused_definition_with_its_details_and_exits_2(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given a workflow over a service nobody registered, and a file that is not JSON
    write(tmp_path, "workflow.json", WORKFLOW)
    (tmp_path / "broken.json").write_text("{not json")

    # When they are applied
    result = run(api.url, "apply", str(tmp_path))

    # Then both fail, the API's message and details are on stderr, and it exits 2
    assert result.exit_code == 2, result.output
    assert "unknown services" in result.stderr
    assert "spec.services: unknown service 'greeter'" in result.stderr
    assert "broken.json" in result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()[1:3]] == [
        "failed",
        "failed",
    ]


def test_apply_refuses_two_files_defining_the_same_name_before_any_request(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given two files, in two folders, that both define the service "greeter"
    first = write(tmp_path / "team-a", "greeter.json", SERVICE)
    second = write(tmp_path / "team-b", "service.json", {**SERVICE, "description": "the other"})
    write(tmp_path / "team-b", "workflow.json", WORKFLOW)

    # When both folders are applied, as text and as JSON
    result = run(api.url, "apply", str(tmp_path / "team-a"), str(tmp_path / "team-b"))
    as_json = run(api.url, "apply", str(tmp_path), "--output", "json")

    # Then it exits 2 naming the kind, the name and both files, and sent nothing at all
    assert result.exit_code == as_json.exit_code == 2, result.output
    assert result.stderr.splitlines()[0] == (
        f"Error: service 'greeter' is defined in both {first} and {second}: nothing was applied"
    )
    assert result.stdout == ""
    assert json.loads(as_json.stdout)["message"].startswith("service 'greeter' is defined in both")
    assert api.calls() == []


def test_apply_names_every_name_defined_more_than_once(api: FakeApi, tmp_path: Path) -> None:
    # Given a service in three files and a workflow in two
    services = [write(tmp_path, f"s{n}.json", SERVICE) for n in range(3)]
    workflows = [write(tmp_path, f"w{n}.json", WORKFLOW) for n in range(2)]

    # When the folder is applied
    result = run(api.url, "apply", str(tmp_path), "--output", "json")

    # Then each duplicate is a detail naming its files, and nothing was sent
    assert result.exit_code == 2, result.output
    body = json.loads(result.stdout)
    assert body["message"] == (
        "2 definitions are each defined in more than one file: nothing was applied"
    )
    assert body["details"] == [
        {
            "path": "service greeter",
            "message": f"service 'greeter' is defined in {services[0]}, {services[1]} and "
            f"{services[2]}",
        },
        {
            "path": "workflow greet",
            "message": f"workflow 'greet' is defined in both {workflows[0]} and {workflows[1]}",
        },
    ]
    assert f"  service greeter: service 'greeter' is defined in {services[0]}" in result.stderr
    assert api.calls() == []


def test_apply_reads_a_file_named_twice_once_and_a_service_and_workflow_may_share_a_name(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given a service and a workflow both named "greeter"
    service = write(tmp_path / "defs", "service.json", SERVICE)
    write(tmp_path / "defs", "workflow.json", {**WORKFLOW, "name": "greeter"})

    # When the service file is named, by another spelling of its path too, then its folder
    again = tmp_path / "defs" / ".." / "defs" / "service.json"
    summary = apply_json(api, service, again, tmp_path / "defs")

    # Then each file counts once, and both definitions are applied
    assert results(summary) == [
        ("service", "greeter", "created"),
        ("workflow", "greeter", "created"),
    ]


# --- send ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [{"name": "Ada"}, {"data": {"name": "Ada"}}],
    ids=["bare-data", "request"],
)
def test_send_posts_the_data_whether_the_file_holds_it_bare_or_as_a_request(
    api: FakeApi, tmp_path: Path, document: dict[str, Any]
) -> None:
    # Given an event file
    path = write(tmp_path, "event.json", document)

    # When it is sent without waiting
    result = run(api.url, "send", "greet", str(path))

    # Then the body is {"data": ...} and the event id is printed
    assert result.exit_code == 0, result.output
    [call] = api.calls("POST")
    assert call.path == "/e/greet"
    assert call.json() == {"data": {"name": "Ada"}}
    assert result.stdout.split() == [EVENT_ID, "PENDING"]


def test_send_reads_stdin_and_keeps_notify(api: FakeApi) -> None:
    # Given a request with a completion notification, on stdin
    request = {"data": {"name": "Ada"}, "notify": {"url": "https://example.com/hook"}}

    # When it is sent as `-` with --output json
    result = run(api.url, "send", "greet", "-", "--output", "json", stdin=json.dumps(request))

    # Then the request goes as it is, and stdout is the API's acknowledgement alone
    assert result.exit_code == 0, result.output
    assert api.calls("POST")[0].json() == request
    assert json.loads(result.stdout) == ACCEPTED


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's waits, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(client_module, "time", SimpleNamespace(sleep=waited.append))
    return waited


BUSY = {"message": "AWS throttled StartExecution (ThrottlingException); try again shortly"}


def test_send_honours_retry_after_when_the_api_is_throttled(
    api: FakeApi, sleeps: list[float]
) -> None:
    # Given an API that answers 503 with Retry-After twice, then accepts the event
    busy = json_reply(503, BUSY, {"Retry-After": "2"})
    api.send_answers = [busy, busy, json_reply(202, ACCEPTED)]

    # When an event is sent
    result = run(api.url, "send", "greet", "-", stdin="{}")

    # Then it is sent three times, after waiting what the API asked, and accepted
    assert result.exit_code == 0, result.output
    assert len(api.calls("POST")) == 3
    assert sleeps == [2.0, 2.0]
    assert result.stdout.split() == [EVENT_ID, "PENDING"]
    assert "503: AWS throttled StartExecution" in result.stderr
    assert "sending again in 2 s (retry 1 of 5)" in result.stderr


def test_send_backs_off_on_429_without_retry_after_and_reads_an_http_date(
    api: FakeApi, sleeps: list[float]
) -> None:
    # Given API Gateway's own throttling (429, no Retry-After), then a 503 with a date
    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    throttled = json_reply(429, {"message": "Too Many Requests"})
    api.send_answers = [
        throttled,
        throttled,
        json_reply(503, BUSY, {"Retry-After": later}),
        json_reply(202, ACCEPTED),
    ]

    # When an event is sent
    result = run(api.url, "send", "greet", "-", stdin="{}")

    # Then it waits 1 s, then 2 s, then about what the date says
    assert result.exit_code == 0, result.output
    assert sleeps[:2] == [1.0, 2.0]
    assert 25 <= sleeps[2] <= 30


def test_send_gives_up_after_its_retries_and_never_retries_other_errors(
    api: FakeApi, sleeps: list[float]
) -> None:
    # Given an API that stays throttled
    api.send_answers = [json_reply(503, BUSY, {"Retry-After": "1"})]

    # When an event is sent with one retry
    result = run(api.url, "send", "greet", "-", "--retries", "1", stdin="{}")

    # Then it was sent twice and the command fails with the API's message (exit 3: 5xx)
    assert result.exit_code == 3, result.output
    assert len(api.calls("POST")) == 2
    assert sleeps == [1.0]
    assert "AWS throttled StartExecution" in result.stderr

    # And a 500 or a 4xx is not sent again
    for status in (500, 422):
        before = len(api.calls("POST"))
        api.send_answers = [json_reply(status, {"message": "no"}, {"Retry-After": "1"})]
        assert run(api.url, "send", "greet", "-", stdin="{}").exit_code in (2, 3)
        assert len(api.calls("POST")) == before + 1
    assert sleeps == [1.0]


def test_send_wait_uses_the_sync_wait_then_polls_until_the_event_ends(api: FakeApi) -> None:
    # Given an event still running when the sync wait ends, then running, then succeeded
    api.event_states = [view("RUNNING"), view("RUNNING"), SUCCEEDED]

    # When it is sent with --wait
    result = run(
        api.url,
        "send",
        "greet",
        "-",
        "--wait",
        "--interval",
        "0.05",
        "--output",
        "json",
        stdin=json.dumps(EVENT_FILE),
    )

    # Then it asked the API to wait 25 s, polled to the end, and exits 0 with the event
    assert result.exit_code == 0, result.output
    assert api.calls("POST")[0].path == "/e/greet?wait=25"
    assert len(api.calls("GET")) >= 3
    assert json.loads(result.stdout) == SUCCEEDED


def test_send_wait_exits_1_when_the_event_failed(api: FakeApi) -> None:
    # Given an event that ends FAILED within the sync wait
    api.send_answers = [json_reply(200, FAILED)]

    # When it is sent with --wait
    result = run(api.url, "send", "greet", "-", "--wait", stdin=json.dumps(EVENT_FILE))

    # Then it exits 1 and shows the failed step with its error and attempts
    assert result.exit_code == 1, result.output
    assert "status: FAILED" in result.stdout
    step_line = next(line for line in result.stdout.splitlines() if line.startswith("0\t"))
    assert step_line.split("\t") == [
        "0",
        "greeter",
        "FAILED",
        "3",
        "2.5 ms",
        "HttpError: answered 400 (HTTP 400)",
    ]


def test_a_refused_event_prints_the_api_message_and_details_and_exits_2(api: FakeApi) -> None:
    # Given an API that refuses the data
    details = [{"path": "data.name", "location": "body", "message": "Field required"}]
    api.send_answers = [json_reply(422, {"message": "the data does not match", "details": details})]

    # When an event is sent, once as text and once as JSON
    text = run(api.url, "send", "greet", "-", stdin="{}")
    as_json = run(api.url, "send", "greet", "-", "--output", "json", stdin="{}")

    # Then it exits 2, with the message and each detail readable on stderr
    assert text.exit_code == as_json.exit_code == 2
    assert "Error: the data does not match" in text.stderr
    assert "  data.name: Field required" in text.stderr
    assert text.stdout == ""
    # And with --output json, stdout is the API's error body and nothing else
    assert json.loads(as_json.stdout)["details"] == details


@pytest.mark.parametrize("content", ["[1, 2]", "{oops", '{"data": 3}'])
def test_send_refuses_a_file_it_cannot_use_with_exit_2(api: FakeApi, content: str) -> None:
    # When the event file is not a JSON object (or its data is not one)
    result = run(api.url, "send", "greet", "-", stdin=content)

    # Then it is a usage error and nothing is sent
    assert result.exit_code == 2
    assert "FILE" in result.stderr
    assert api.calls("POST") == []


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def plain(frames: str) -> list[str]:
    """What a live view drew, without its terminal escapes: one string per line."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frames).splitlines()


def test_send_wait_on_a_terminal_shows_each_step_live_with_its_real_duration(
    api: FakeApi,
) -> None:
    # Given a one-step workflow whose step has been running for 2 s (the event for 3 s)
    api.definitions["workflow", "greet"] = (1, WORKFLOW)
    api.definitions["service", "greeter"] = (1, SERVICE)
    now = datetime.now(UTC)
    under_way = step(
        0, "greeter", "RUNNING", attempts=0, attempt=1, duration_ms=None,
        started_at=iso(now - timedelta(seconds=2)),
    )  # fmt: skip
    running = view("RUNNING", [under_way], acknowledged_at=iso(now - timedelta(seconds=3)))
    done = view(
        "SUCCEEDED",
        [step(0, "greeter", "SUCCEEDED", duration_ms=2340.0)],
        duration_ms=3456.0,
        outputs={"greeting": "Hello, Ada"},
    )
    api.event_states = [view("PENDING"), running, running, done]

    # When it is sent with --wait on an (emulated) interactive terminal
    result = run(
        api.url, "send", "greet", "-", "--wait", "--interval", "0.05",
        stdin=json.dumps(EVENT_FILE), env=TERMINAL,
    )  # fmt: skip

    # Then no sync wait held the answer: the view followed the event from its acceptance
    assert result.exit_code == 0, result.output
    assert [call.path for call in api.calls("POST")] == ["/e/greet"]
    assert len([c for c in api.calls("GET") if c.path.startswith("/events/")]) >= 4
    lines = plain(result.stdout)
    # And the step showed while it ran: attempt 1, running for 2 s so far
    cells = [[cell.strip() for cell in line.split("│")] for line in lines if "│" in line]
    assert any(
        row[1:3] == ["greeter", "RUNNING"] and row[3] == "1" and re.fullmatch(r"2\.\d\d s", row[4])
        for row in cells
    ), lines
    # And the event's duration so far ran from its acceptance (3 s), not from the poll
    assert any(re.search(r"0/1 steps\s+RUNNING\s+3\.\d\d s", line) for line in lines), lines
    # And once it ended, the durations the API recorded, read as everywhere else
    assert any(row[1:5] == ["greeter", "SUCCEEDED", "1", "2.34 s"] for row in cells), lines
    assert any(re.search(r"1/1 steps\s+SUCCEEDED\s+3\.46 s", line) for line in lines), lines
    assert not any("0.0 s" in line for line in lines)


def test_send_wait_without_a_terminal_prints_the_ended_event_only(api: FakeApi) -> None:
    # Given an event still running when the sync wait ends
    api.event_states = [view("RUNNING"), SUCCEEDED]

    # When it is sent with --wait into a pipe
    result = run(api.url, "send", "greet", "-", "--wait", "--interval", "0.05", stdin="{}")

    # Then the sync wait is used and the ended event is printed once, as `status` prints it
    assert result.exit_code == 0, result.output
    assert api.calls("POST")[0].path == "/e/greet?wait=25"
    assert result.stdout.splitlines()[:3] == [
        f"event: {EVENT_ID}",
        "workflow: greet",
        "status: SUCCEEDED",
    ]
    assert "duration: 12.0 ms" in result.stdout.splitlines()
    assert "replayed" not in result.stdout


def replay_answers() -> dict[str, Reply]:
    """How an API answers a replayed request: each way the CLI must recognise."""
    header = {"Idempotent-Replayed": "true"}
    return {
        # the API now: 202 and the acknowledgement, marked (and the header)
        "accepted": json_reply(202, {**ACCEPTED, "replayed": True}, header),
        # the header alone: the body carries no mark
        "header-only": json_reply(
            202, {k: v for k, v in ACCEPTED.items() if k != "replayed"}, header
        ),
        # with ?wait and the event ended: 200 with the event view, marked by the header only
        "ended-view": json_reply(200, SUCCEEDED, header),
        # an older API: 200 with the acknowledgement, marked in the body, no header
        "older-api": json_reply(200, {**ACCEPTED, "replayed": True}),
    }


@pytest.mark.parametrize("answer", replay_answers().values(), ids=replay_answers().keys())
def test_a_replayed_send_says_it_was_a_replay(api: FakeApi, answer: Reply) -> None:
    # Given an API that answers as to a request whose Idempotency-Key was used already
    api.send_answers = [answer]
    send = ("send", "greet", "-", "--idempotency-key", "k-1", "--interval", "0.05")

    # When it is sent as text and JSON, with and without --wait
    text = run(api.url, *send, stdin="{}")
    as_json = run(api.url, *send, "--output", "json", stdin="{}")
    waited = run(api.url, *send, "--wait", stdin="{}")
    waited_json = run(api.url, *send, "--wait", "--output", "json", stdin="{}")

    # Then every one says it was a replay of the event the key created
    for result in (text, as_json, waited, waited_json):
        assert result.exit_code == 0, result.output
    assert all(call.headers["Idempotency-Key"] == "k-1" for call in api.calls("POST"))
    assert REPLAYED_LINE in text.stdout.splitlines()
    assert text.stdout.split()[0] == EVENT_ID
    assert json.loads(as_json.stdout)["replayed"] is True
    assert json.loads(as_json.stdout)["event_id"] == EVENT_ID
    # And with --wait, the line comes before the event, which ends as it ended
    assert waited.stdout.splitlines()[0] == REPLAYED_LINE
    assert "status: SUCCEEDED" in waited.stdout
    assert json.loads(waited_json.stdout) == {**SUCCEEDED, "replayed": True}


def test_a_replayed_send_on_a_terminal_says_so_above_the_live_view(api: FakeApi) -> None:
    # Given a replay of an event that already ended
    api.send_answers = [replay_answers()["accepted"]]

    # When it is sent with --wait on an (emulated) interactive terminal
    result = run(
        api.url, "send", "greet", "-", "--idempotency-key", "k-1", "--wait",
        stdin="{}", env=TERMINAL,
    )  # fmt: skip

    # Then the replay is said first, then the event shows as it ended
    assert result.exit_code == 0, result.output
    lines = plain(result.stdout)
    assert lines[0] == REPLAYED_LINE
    assert any("SUCCEEDED" in line for line in lines[1:])


def test_a_first_send_with_a_key_is_no_replay(api: FakeApi) -> None:
    api.send_answers = [json_reply(202, ACCEPTED)]
    result = run(api.url, "send", "greet", "-", "--idempotency-key", "k-2", stdin="{}")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [EVENT_ID, "PENDING"]
    as_json = run(api.url, "send", "greet", "-", "--idempotency-key", "k-2", "--output", "json",
                  stdin="{}")  # fmt: skip
    assert json.loads(as_json.stdout)["replayed"] is False


def test_a_step_under_way_shows_the_attempt_it_is_making_and_how_long_it_has_run() -> None:
    # Given an event accepted 90 s ago whose second step started 1.5 s ago, on its 2nd attempt
    now = datetime(2025, 1, 1, 0, 1, 30, tzinfo=UTC)
    event = view(
        "RUNNING",
        [
            step(0, "greeter", "SUCCEEDED", duration_ms=0.25),
            step(1, "shouter", "RUNNING", attempts=1, attempt=2, duration_ms=None,
                 started_at="2025-01-01T00:01:28.500000Z"),
            step(2, "waiter", "WAITING", attempts=0, duration_ms=None,
                 started_at="2025-01-01T00:01:29.987500+00:00"),
        ],
    )  # fmt: skip

    # Then a live view shows the time each has run so far, `status` only what was recorded
    assert [row[3:5] for row in step_rows(event, now)] == [
        ("1", "0.2 ms"),  # 0.25 ms: to even, as Python and the dashboard both round
        ("2", "1.50 s"),
        ("0", "12.5 ms"),
    ]
    assert [row[4] for row in step_rows(event)] == ["0.2 ms", "-", "-"]
    assert event_duration(event, now) == 90_000.0
    assert event_duration(event) is None
    assert event_duration(SUCCEEDED, now) == 12.0


def _grouped_event() -> dict[str, Any]:
    """A running order: a skipped step, a parallel group, a map part way through."""
    return view(
        "RUNNING",
        [
            step(0, "fraud-check", "SKIPPED", attempts=0),
            step(1, None, "SUCCEEDED", kind="parallel", steps=[  # type: ignore[arg-type]
                step(0, "reserve-stock", "SUCCEEDED", branch=0),
                step(0, "charge-card", "SUCCEEDED", branch=1),
                step(1, "receipt", "SUCCEEDED", branch=1),
            ]),
            step(2, None, "RUNNING", kind="map", id="prices", total=4, completed=2, steps=[  # type: ignore[arg-type]
                step(0, "enrich", "SUCCEEDED", iteration=0),
                step(0, "enrich", "FAILED", iteration=1),
                step(0, "enrich", "RUNNING", iteration=2),
            ]),
        ],
    )  # fmt: skip


def test_a_group_lists_its_branches_and_a_map_its_iterations_counted() -> None:
    # Given an event with a parallel group and a map under way
    rows = step_rows(_grouped_event())

    # Then each group has its row, its branches' steps indented under it, and the map one
    # row per step of its iterations, counted
    assert [row[:3] for row in rows] == [
        ("0", "fraud-check", "SKIPPED"),
        ("1", "parallel · 2 branches", "SUCCEEDED"),
        ("  b1.0", "  reserve-stock", "SUCCEEDED"),
        ("  b2.0", "  charge-card", "SUCCEEDED"),
        ("  b2.1", "  receipt", "SUCCEEDED"),
        ("2", "map prices · 2/4 iterations · 1 failed", "RUNNING"),
        ("  0", "  enrich × 3", "RUNNING"),
    ]
    assert rows[-1][3] == "1 failed, 1 running, 1 succeeded"


def test_status_watch_shows_branches_side_by_side_and_the_map_progress(api: FakeApi) -> None:
    # Given the grouped event, then its end
    api.definitions["workflow", "greet"] = (1, WORKFLOW)
    api.definitions["service", "greeter"] = (1, SERVICE)
    api.event_states = [_grouped_event(), SUCCEEDED]

    # When it is watched on an (emulated) interactive terminal
    terminal = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "160"}
    result = run(api.url, "status", EVENT_ID, "--watch", "--interval", "0.05", env=terminal)

    # Then a frame showed the two branches as panels on one line, and the map's progress
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("branch 1" in line and "branch 2" in line for line in lines), result.stdout
    assert any("reserve-stock" in line and "charge-card" in line for line in lines)
    assert "step 2 · map prices · 2/4 iterations · 1 failed" in result.stdout


# --- status, events, diagram, openapi ---------------------------------------------------------


def test_status_prints_each_step_and_exits_by_the_event_status(api: FakeApi) -> None:
    # Given a succeeded event, then a cancelled one
    succeeded = run(api.url, "status", EVENT_ID)
    api.event_states = [view("CANCELLED", [step(0, "greeter", "CANCELLED")])]
    api._gets = 0
    cancelled = run(api.url, "status", EVENT_ID)

    # Then each step shows, and the cancelled event exits 1
    assert succeeded.exit_code == 0, succeeded.output
    assert "status: SUCCEEDED" in succeeded.stdout
    assert 'outputs: {"greeting": "Hello, Ada"}' in succeeded.stdout
    assert "0\tgreeter\tSUCCEEDED\t1\t2.5 ms\t" in succeeded.stdout
    assert cancelled.exit_code == 1


def test_status_of_an_unknown_event_exits_2(api: FakeApi) -> None:
    result = run(api.url, "status", "00000000-0000-4000-8000-000000000000")
    assert result.exit_code == 2
    assert "not found" in result.stderr


def test_status_watch_shows_a_live_view_on_a_terminal_until_the_event_ends(
    api: FakeApi,
) -> None:
    # Given an event that runs a while; the workflow has one step
    api.definitions["workflow", "greet"] = (1, WORKFLOW)
    api.definitions["service", "greeter"] = (1, SERVICE)
    api.event_states = [view("RUNNING", [step(0, "greeter", "RUNNING")])] * 3 + [SUCCEEDED]

    # When it is watched on an (emulated) interactive terminal
    terminal = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "120"}
    result = run(api.url, "status", EVENT_ID, "--watch", "--interval", "0.05", env=terminal)

    # Then it polled until the end and the live view shows the finished progress
    assert result.exit_code == 0, result.output
    assert len(api.calls("GET")) >= 5
    assert "1/1 steps" in result.stdout
    assert "SUCCEEDED" in result.stdout


def test_status_watch_without_a_terminal_prints_only_the_ended_event_as_json(
    api: FakeApi,
) -> None:
    api.event_states = [view("WAITING"), FAILED]
    result = run(api.url, "status", EVENT_ID, "--watch", "--interval", "0.05", "--output", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == FAILED


# --- large events: the values the API links rather than holds inline ---------------------------

BLOB = "b" * 50_000
NOTE = "n" * 30_000
# An ended event as it is whole: its data, its outputs and its steps' outputs large
LARGE = view(
    "SUCCEEDED",
    [
        step(0, "greeter", "SUCCEEDED", input={"name": "Ada"}, output={"blob": BLOB}),
        step(1, "greeter", "SUCCEEDED", input={"text": "i" * 20_000}, output={"n": 1}),
    ],
    data={"name": "Ada", "pa/th~": NOTE},
    outputs={"greeting": "Hello, Ada", "blob": BLOB},
)
# What its answer links: a field (its key escaped as RFC 6901 says), a whole payload, and
# one value in two places (the same href)
LARGE_LINKS = ("/data/pa~1th~0", "/outputs/blob", "/steps/0/output/blob", "/steps/1/input")


def linking(whole: dict[str, Any], paths: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`whole` as the API answers it past its inline budget: each value at `paths` replaced
    by a link, listed in linked_payloads; the value each href answers)."""
    answer = copy.deepcopy(whole)
    values, links = {}, []
    for path in paths:
        container: Any = whole
        *parents, last = [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]
        for token in parents:
            container = container[int(token)] if isinstance(container, list) else container[token]
        value = container[int(last)] if isinstance(container, list) else container[last]
        body = encoded(value)
        href = f"/events/{whole.get('event_id', EVENT_ID)}/payloads/{reference(body)}"
        values[href] = value
        put_at(answer, path, {"$ref": href, "bytes": len(body)})
        links.append({"path": path, "ref": reference(body), "bytes": len(body), "href": href})
    answer["linked_payloads"] = links
    return answer, values


def payload_gets(api: FakeApi) -> list[str]:
    return [call.path for call in api.calls("GET") if "/payloads/" in call.path]


def test_status_prints_a_large_event_whole_each_linked_value_fetched_once(
    api: FakeApi,
) -> None:
    # Given an event whose answer links four values, two of them the same
    answer, api.payloads = linking(LARGE, LARGE_LINKS)
    api.event_states = [answer]
    assert len(api.payloads) == 3

    # When its status is printed as JSON
    result = run(api.url, "status", EVENT_ID, "--output", "json")

    # Then every link was followed: the event prints whole, each value where it belongs
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == {**LARGE, "linked_payloads": answer["linked_payloads"]}
    assert '"$ref"' not in result.stdout
    # And each distinct value was asked for once
    assert sorted(payload_gets(api)) == sorted(api.payloads)


def test_status_as_a_table_shows_a_large_event_values_cut_not_its_links(api: FakeApi) -> None:
    # Given an event whose outputs (and more) are linked
    answer, api.payloads = linking(LARGE, LARGE_LINKS)
    api.event_states = [answer]

    # When its status is printed as text
    result = run(api.url, "status", EVENT_ID)

    # Then the outputs line shows the value followed, cut, saying how large it is whole
    assert result.exit_code == 0, result.output
    [outputs] = [line for line in result.stdout.splitlines() if line.startswith("outputs: ")]
    assert outputs.startswith('outputs: {"greeting": "Hello, Ada", "blob": "bbbb')
    assert outputs.endswith("… (49 KB in all; --output json prints it whole)")
    assert len(outputs) < 2200
    assert "$ref" not in result.stdout
    assert "1\tgreeter\tSUCCEEDED\t1\t2.5 ms\t" in result.stdout


def test_send_wait_and_watch_print_a_large_event_whole_reading_each_value_once(
    api: FakeApi,
) -> None:
    # Given a send whose sync wait answers the ended large event, links in place
    answer, api.payloads = linking(LARGE, LARGE_LINKS)
    api.send_answers = [json_reply(200, answer)]

    # When it is sent with --wait
    sent = run(api.url, "send", "greet", "-", "--wait", "--output", "json", stdin="{}")

    # Then the event prints whole
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.stdout) == {**LARGE, "linked_payloads": answer["linked_payloads"]}

    # Given an event that links its data while it runs, then everything once it ended
    running, _ = linking(view("RUNNING", data=LARGE["data"]), LARGE_LINKS[:1])
    api.event_states, api._gets = [running, running, answer], 0
    before = len(payload_gets(api))

    # When it is watched
    watched = run(api.url, "status", EVENT_ID, "--watch", "--interval", "0.05", "--output", "json")

    # Then it prints whole, and a value read at one poll was not read again at the next
    assert watched.exit_code == 0, watched.output
    assert json.loads(watched.stdout) == {**LARGE, "linked_payloads": answer["linked_payloads"]}
    assert len(api.calls("GET")) - before >= 3 + 3
    assert sorted(payload_gets(api)[before:]) == sorted(api.payloads)


def test_status_step_prints_one_step_whole(api: FakeApi) -> None:
    # Given a step of a map's iteration, its output linked
    whole = {
        **step(0, "greeter", "FAILED", error=STEP_ERROR, iteration=7),
        "input": {"name": "Ada"},
        "output": {"blob": BLOB},
        "event_id": EVENT_ID,
        "path": "4.0:7",
    }
    answer, api.payloads = linking(whole, ("/output",))
    api.steps["4.0:7"] = answer

    # When it is shown by its path, as JSON and as text
    as_json = run(api.url, "status", EVENT_ID, "--step", "4.0:7", "--output", "json")
    text = run(api.url, "status", EVENT_ID, "--step", "4.0:7")

    # Then it was asked for by its path, sent as written, and prints whole
    assert as_json.exit_code == 1, as_json.output  # the step FAILED
    assert api.calls("GET")[0].path == f"/events/{EVENT_ID}/steps/4.0:7"
    assert json.loads(as_json.stdout) == {**whole, "linked_payloads": answer["linked_payloads"]}
    # And as text: where it is, how it ran, its input and its output (cut)
    assert text.exit_code == 1, text.output
    lines = text.stdout.splitlines()
    assert lines[:4] == [f"event: {EVENT_ID}", "step: 4.0:7", "service: greeter", "status: FAILED"]
    assert "error: HttpError: answered 400 (HTTP 400)" in lines
    assert 'input: {"name": "Ada"}' in lines
    assert any(line.startswith('output: {"blob": "bbb') for line in lines), lines
    assert "$ref" not in text.stdout


def test_status_step_refuses_watch_and_says_when_there_is_no_such_step(api: FakeApi) -> None:
    watched = run(api.url, "status", EVENT_ID, "--step", "0", "--watch")
    assert watched.exit_code == 2
    assert "--watch" in watched.stderr
    missing = run(api.url, "status", EVENT_ID, "--step", "9")
    assert missing.exit_code == 2
    assert "no step" in missing.stderr


def test_a_link_that_names_nothing_in_the_answer_is_an_error_not_a_silent_gap(
    api: FakeApi,
) -> None:
    # Given an answer whose link points past its steps
    answer, api.payloads = linking(LARGE, ("/outputs/blob",))
    answer["linked_payloads"][0]["path"] = "/steps/9/output"
    api.event_states = [answer]

    # When its status is read
    result = run(api.url, "status", EVENT_ID, "--output", "json")

    # Then the command says what is wrong and exits 2
    assert result.exit_code == 2
    assert "a link's path names nothing in the answer: '/steps/9/output'" in result.stderr


def test_events_pages_through_short_filtered_pages_up_to_the_limit(api: FakeApi) -> None:
    # Given filtered pages that come back short, with an opaque cursor needing encoding
    summary = {"workflow_id": "greet", "status": "FAILED", "acknowledged_at": MOMENT}
    item = {**summary, "updated_at": MOMENT}
    api.event_pages = [
        {"items": [], "next": "eyJQSyI6IjEifQ=="},
        {"items": [{**item, "event_id": "e1"}], "next": "eyJQSyI6IjIifQ=="},
        {"items": [{**item, "event_id": "e2"}], "next": "eyJQSyI6IjMifQ=="},
    ]
    pages = list(api.event_pages)

    # When three FAILED events are listed as JSON
    result = run(
        api.url, "events", "greet", "--status", "failed", "--limit", "2", "--output", "json"
    )

    # Then it kept paging until it had them, asking for what was still missing
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert [entry["event_id"] for entry in body["items"]] == ["e1", "e2"]
    assert body["next_cursor"] == "eyJQSyI6IjMifQ=="
    assert [page["asked"] for page in pages] == [
        {"limit": "2", "status": "FAILED"},
        {"limit": "2", "status": "FAILED", "cursor": "eyJQSyI6IjEifQ=="},
        {"limit": "1", "status": "FAILED", "cursor": "eyJQSyI6IjIifQ=="},
    ]


def test_events_prints_a_table_with_the_duration_of_each_ended_event(api: FakeApi) -> None:
    # Given events that ended after 1.234567 s and 12.5 ms, and one still running
    item = {"workflow_id": "greet", "acknowledged_at": MOMENT}
    slow = "2025-01-01T00:00:01.234567Z"
    quick = "2025-01-01T00:00:00.012500Z"
    api.event_pages = [
        {
            "items": [
                {**item, "event_id": "e1", "status": "SUCCEEDED", "updated_at": slow},
                {**item, "event_id": "e2", "status": "FAILED", "updated_at": quick},
                {**item, "event_id": "e3", "status": "RUNNING", "updated_at": quick},
            ],
            "next": None,
        }
    ]

    # When they are listed
    result = run(api.url, "events", "greet")

    # Then each ended one reads its duration as `status` and the dashboard do: ms below 1 s
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "event\tstatus\taccepted\tupdated\tduration",
        f"e1\tSUCCEEDED\t{MOMENT}\t{slow}\t1.23 s",
        f"e2\tFAILED\t{MOMENT}\t{quick}\t12.5 ms",
        f"e3\tRUNNING\t{MOMENT}\t{quick}\t-",
    ]


STATS = {
    "workflow_id": "greet",
    "window": "24h",
    "since": "2025-01-07T12:00:00Z",
    "events": {"SUCCEEDED": 3, "FAILED": 2, "CANCELLED": 0, "RUNNING": 1, "WAITING": 0},
    "duration_ms": {"p50": 12.5, "p95": 1234.5, "max": 1500.0},
    "steps": [
        {
            "step": "0",
            "service": "greeter",
            "calls": 6,
            "failed": 2,
            "retries": 1,
            "p50_ms": 2.5,
            "p95_ms": 2040.0,
        },
        {
            "step": "1.0",
            "service": "shouter",
            "calls": 0,
            "failed": 0,
            "retries": 0,
            "p50_ms": None,
            "p95_ms": None,
        },
    ],
    "errors": [{"type": "HttpError", "count": 2, "last_event_id": "e7"}],
    "sample": {"events": 6, "limit": 1000, "cut": False},
}


def test_stats_prints_the_counts_the_durations_and_a_table_of_the_steps(api: FakeApi) -> None:
    # Given a workflow's statistics
    api.stats["greet"] = STATS

    # When they are asked for without a window
    result = run(api.url, "stats", "greet")

    # Then the day's are asked for, and printed: counts, durations as every view reads
    # them, a row per step and one per error type
    assert result.exit_code == 0, result.output
    assert api.stats_asked == [{"window": "24h"}]
    assert result.stdout.splitlines() == [
        "workflow: greet",
        "window: 24h, since 2025-01-07T12:00:00Z",
        "events: 3 SUCCEEDED, 2 FAILED, 0 CANCELLED, 1 RUNNING, 0 WAITING",
        "read: 6 events",
        "duration: p50 12.5 ms, p95 1.23 s, max 1.50 s",
        "steps:",
        "step\tservice\tcalls\tfailed\tretries\tp50\tp95",
        "0\tgreeter\t6\t2\t1\t2.5 ms\t2.04 s",
        "1.0\tshouter\t0\t0\t0\t-\t-",
        "errors:",
        "error\tevents\tlast event",
        "HttpError\t2\te7",
    ]


def test_stats_says_when_the_window_held_more_than_was_read(api: FakeApi) -> None:
    # Given statistics cut at 1,000 events, and none that ended
    api.stats["greet"] = {
        **STATS,
        "duration_ms": {"p50": None, "p95": None, "max": None},
        "errors": [],
        "sample": {"events": 1000, "limit": 1000, "cut": True},
    }

    # When the week's are asked for
    result = run(api.url, "stats", "greet", "--window", "7d")

    # Then the window asked for is the week's, and the cut is said
    assert result.exit_code == 0, result.output
    assert api.stats_asked == [{"window": "7d"}]
    assert "read: 1000 events, the newest 1000: the window held more" in result.stdout
    assert "duration: p50 -, p95 -, max -" in result.stdout
    assert "errors:" not in result.stdout


def test_stats_as_json_prints_the_api_answer(api: FakeApi) -> None:
    # Given a workflow's statistics
    api.stats["greet"] = STATS

    # When they are asked for as JSON, for the last hour
    result = run(api.url, "stats", "greet", "--window", "1h", "--output", "json")

    # Then the API's answer is printed as it came
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {**STATS, "window": "1h"}


def test_stats_refuses_a_window_it_does_not_know_and_an_unknown_workflow_exits_2(
    api: FakeApi,
) -> None:
    # When a window the API does not take is asked for, nothing is sent
    refused = run(api.url, "stats", "greet", "--window", "2h")
    assert refused.exit_code == 2
    assert "2h" in refused.stderr and api.stats_asked == []

    # When an unknown workflow's statistics are asked for, the API's 404 is said
    missing = run(api.url, "stats", "nope")
    assert missing.exit_code == 2
    assert "workflow 'nope' does not exist" in missing.stderr


def test_event_ids_are_told_from_workflow_names_by_their_uuid_form() -> None:
    assert is_event_id(EVENT_ID)
    assert is_event_id(EVENT_ID.upper())
    assert not is_event_id("process-text")
    assert not is_event_id(EVENT_ID.replace("-", ""))


def test_diagram_asks_for_an_event_then_falls_back_to_a_workflow(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given a workflow diagram and an event diagram
    mermaid = (200, {"Content-Type": "text/plain"}, b"flowchart LR\n  a --> b\n")
    svg = (200, {"Content-Type": "image/svg+xml"}, b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    api.diagrams["/workflows/greet/diagram"] = mermaid
    api.diagrams[f"/events/{EVENT_ID}/diagram"] = svg

    # When each is drawn
    workflow = run(api.url, "diagram", "greet")
    event = run(api.url, "diagram", EVENT_ID, "--format", "svg", "-o", str(tmp_path / "e.svg"))
    unknown = "00000000-0000-4000-8000-000000000000"
    fallback = run(api.url, "diagram", unknown, "--output", "json")

    # Then a name is a workflow, an event id an event, written to the file asked for
    assert workflow.exit_code == 0, workflow.output
    assert workflow.stdout == "flowchart LR\n  a --> b\n"
    assert event.exit_code == 0, event.output
    assert (tmp_path / "e.svg").read_bytes() == svg[2]
    assert f"/events/{EVENT_ID}/diagram?format=svg" in [c.path for c in api.calls("GET")]
    # And a UUID that names no event is tried as a workflow (which does not exist: 404, exit 2)
    assert [c.path for c in api.calls("GET")][-2:] == [
        f"/events/{unknown}/diagram?format=mermaid",
        f"/workflows/{unknown}/diagram?format=mermaid",
    ]
    assert fallback.exit_code == 2
    assert json.loads(fallback.stdout)["status_code"] == 404


def test_openapi_prints_the_document(api: FakeApi) -> None:
    result = run(api.url, "openapi")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["openapi"] == "3.1.0"


# --- exit codes for an unreachable or failing API --------------------------------------------


def test_an_api_that_cannot_be_reached_exits_3_with_a_hint(tmp_path: Path) -> None:
    # Given a loopback port nobody listens on
    url = f"http://127.0.0.1:{free_port()}"

    # When a command needs the API (text and JSON)
    result = run(url, "status", EVENT_ID)
    as_json = run(url, "openapi", "--output", "json")

    # Then it exits 3, says it cannot reach the API and how to start one
    assert result.exit_code == as_json.exit_code == 3
    assert f"cannot reach the Machinery API at {url}" in result.stderr
    assert "machinery local" in result.stderr
    assert "cannot reach" in json.loads(as_json.stdout)["message"]


def test_an_api_answering_5xx_exits_3(api: FakeApi) -> None:
    api.send_answers = [json_reply(503, {"message": "could not start the execution"})]
    result = run(api.url, "send", "greet", "-", stdin="{}")
    assert result.exit_code == 3
    assert "could not start the execution" in result.stderr


def test_usage_errors_exit_2(api: FakeApi) -> None:
    assert run(api.url, "send", "greet").exit_code == 2
    assert run(api.url, "events", "greet", "--limit", "0").exit_code == 2
    assert run(api.url, "diagram", "greet", "--format", "png").exit_code == 2


def test_json_output_is_only_json_on_stdout(api: FakeApi, tmp_path: Path) -> None:
    # Given definitions, an event file and an API with an event listing
    write(tmp_path, "service.json", SERVICE)
    write(tmp_path, "event.json", EVENT_FILE)
    api.event_pages = [{"items": [], "next": None}]

    # When every command runs with --output json (given before or after the command)
    outputs = [
        run(api.url, "--output", "json", "apply", str(tmp_path)),
        run(api.url, "send", "greet", str(tmp_path / "event.json"), "--wait", "--output", "json"),
        run(api.url, "status", EVENT_ID, "--output", "json"),
        run(api.url, "events", "greet", "--output", "json"),
        run(api.url, "openapi", "--output", "json"),
    ]

    # Then each stdout parses as one JSON document
    for result in outputs:
        assert result.exit_code == 0, result.output
        json.loads(result.stdout)


def test_the_api_url_comes_from_the_environment(api: FakeApi) -> None:
    result = CliRunner().invoke(main, ["openapi"], env={"MACHINERY_API_URL": api.url})
    assert result.exit_code == 0, result.output
    assert len(api.calls("GET")) == 1


def test_local_is_still_a_command() -> None:
    result = CliRunner().invoke(main, ["local", "--help"])
    assert result.exit_code == 0
    assert "--examples" in result.output


# --- SigV4 -----------------------------------------------------------------------------------


def test_a_request_to_a_non_loopback_api_is_signed_with_sigv4() -> None:
    # Given fixed credentials in the environment and a transport that connects nowhere
    recorder = Recorder({"event_id": EVENT_ID})
    client = MachineryClient(EXECUTE_API, session=recording_session(recorder))

    # When an event is sent to the execute-api URL
    client.send("greet", {"data": {"name": "Ada"}}, wait=25, idempotency_key="k-1")

    # Then the request carries a SigV4 signature for execute-api in the URL's region
    [request] = recorder.sent
    assert client.signed
    authorization = request.headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert re.search(
        r"Credential=AKIDEXAMPLE/\d{8}/eu-west-1/execute-api/aws4_request", authorization
    )
    assert "SignedHeaders=content-type;host;idempotency-key;x-amz-date" in authorization
    assert re.search(r"Signature=[0-9a-f]{64}$", authorization)
    assert re.fullmatch(r"\d{8}T\d{6}Z", request.headers["X-Amz-Date"])
    assert request.url == f"{EXECUTE_API}/e/greet?wait=25"


def test_the_values_of_a_deployed_api_event_are_read_under_its_stage_and_signed() -> None:
    # Given an event of a deployed API (its URL has a stage) that links a value
    answer, values = linking(LARGE, ("/outputs/blob",))
    [href] = values
    recorder = RoutedRecorder({f"/Prod/events/{EVENT_ID}": answer, f"/Prod{href}": BLOB})
    client = MachineryClient(EXECUTE_API + "/Prod", session=recording_session(recorder))

    # When the event is read
    event = client.event(EVENT_ID)

    # Then the value was read under the API's URL, signed as every request is
    assert event["outputs"] == LARGE["outputs"]
    assert [request.url for request in recorder.sent] == [
        f"{EXECUTE_API}/Prod/events/{EVENT_ID}",
        f"{EXECUTE_API}/Prod{href}",
    ]
    assert all(
        "/eu-west-1/execute-api/" in request.headers["Authorization"] for request in recorder.sent
    )


def test_temporary_credentials_send_their_session_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-example")
    recorder = Recorder({})
    MachineryClient(EXECUTE_API, session=recording_session(recorder)).openapi()
    assert recorder.sent[0].headers["X-Amz-Security-Token"] == "session-token-example"


def test_the_cli_signs_for_a_deployed_api_and_takes_the_region_from_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a client session that records instead of connecting
    recorder = Recorder({"openapi": "3.1.0"})
    monkeypatch.setattr(client_module, "new_session", lambda: recording_session(recorder))

    # When the CLI reads the OpenAPI document of a deployed API
    result = run(EXECUTE_API, "openapi", "--output", "json")

    # Then its request was signed
    assert result.exit_code == 0, result.output
    assert "/eu-west-1/execute-api/" in recorder.sent[0].headers["Authorization"]


def test_a_signed_request_refused_with_403_names_the_policy_it_probably_lacks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a deployed API that refuses every signed request (IAM said no)
    recorder = Recorder({"message": "Forbidden"}, status=403, reason="Forbidden")
    monkeypatch.setattr(client_module, "new_session", lambda: recording_session(recorder))

    # When a consumer route and a management-only route are called
    status = run(EXECUTE_API, "status", "evt-1")
    changing = MachineryClient(EXECUTE_API, session=recording_session(recorder))
    with pytest.raises(client_module.ApiError) as refused:
        changing.request("DELETE", "/services/upper")

    # Then both were signed, and each error names the policy that grants its route
    assert all("Authorization" in request.headers for request in recorder.sent)
    assert status.exit_code == 2
    assert "GET /events/{event_id}" in status.output
    assert "probably lacks MachineryConsumerPolicy" in status.output
    [detail] = refused.value.details
    assert "DELETE /services/{name}" in detail["message"]
    assert "probably lacks MachineryManagementPolicy" in detail["message"]


def test_a_403_on_the_callback_route_names_no_policy() -> None:
    # The callback route's token is its credential: no policy grants it
    assert client_module.lacking_policy("POST", "/callbacks/tok") is None
    assert client_module.lacking_policy("GET", "/no/such/route") is None


def test_loopback_requests_are_not_signed_unless_asked(api: FakeApi) -> None:
    # When the local API is used, by default and with --sign
    assert run(api.url, "openapi").exit_code == 0
    assert run(api.url, "--sign", "openapi").exit_code == 0

    # Then only the --sign request carries a signature (region from AWS_DEFAULT_REGION)
    first, second = api.calls("GET")
    assert "Authorization" not in first.headers
    assert "X-Amz-Date" not in first.headers
    assert "/us-east-1/execute-api/" in second.headers["Authorization"]


def test_no_sign_and_missing_credentials_leave_requests_unsigned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given no credentials anywhere
    recorder = Recorder({})
    session = recording_session(recorder)
    monkeypatch.setattr(client_module, "new_session", lambda: session)
    unsigned = MachineryClient(EXECUTE_API, sign=False, session=session)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    # When requests go to a deployed API with --no-sign, and without credentials
    unsigned.openapi()
    MachineryClient(EXECUTE_API, session=session).openapi()

    # Then neither is signed, and --sign without credentials is a usage error (exit 2)
    assert all("Authorization" not in request.headers for request in recorder.sent)
    refused = run(EXECUTE_API, "--sign", "openapi")
    assert refused.exit_code == 2
    assert "no AWS credentials" in refused.stderr
    assert len(recorder.sent) == 2


def test_the_signer_signs_the_query_string_as_sent() -> None:
    # Given a cursor that needs percent-encoding
    recorder = Recorder({"items": [], "next_cursor": None})
    client = MachineryClient(EXECUTE_API, session=recording_session(recorder))

    # When events are listed with it
    client.events("greet", 5, cursor="eyJQSyI6IjEifQ==", status="FAILED")

    # Then the URL carries the RFC 3986 encoding SigV4 canonicalizes (no double encoding)
    assert recorder.sent[0].url == (
        f"{EXECUTE_API}/workflows/greet/events?limit=5&cursor=eyJQSyI6IjEifQ%3D%3D&status=FAILED"
    )
    assert isinstance(client.session.auth, SigV4)


def test_local_without_the_local_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an install without moto (the [local] extra), as a plain `pip install machinery`
    monkeypatch.setitem(sys.modules, "moto", None)
    for name in [name for name in sys.modules if name.startswith("machinery_core.local")]:
        monkeypatch.delitem(sys.modules, name)

    # When the local runtime is asked for
    result = CliRunner().invoke(main, ["local", "--port", "0"])

    # Then it is a usage error naming the extra, and nothing started
    assert result.exit_code == 2
    assert "pip install 'machinery[local]'" in result.stderr
