"""AWS requests per event, counted in the local runtime by botocore's own events.

The runtime runs in this process (machinery_core.local.runtime.LocalRuntime, not the
`machinery local` subprocess), so one set of botocore hooks sees every AWS request the API
and step handlers make:

- `before-parameter-build` and `after-call` handlers are appended to botocore's
  BUILTIN_HANDLERS before the runtime starts (moto does the same with its stubber): every
  botocore session created afterwards, and so every client of the runtime and the handlers,
  carries them. A request is counted by service and operation when its answer arrives
  (errors included), in the phase of the Lambda invocation whose thread made it: `intake`
  (the API function serving POST /e/...), `callback` (the API function serving POST
  /callbacks/...), `state loop` (the step function) or `outside` (no invocation).
- S3 (the payload bucket): PutObject and GetObject counted like any request, with the bytes
  each wrote or read; the bytes an event keeps stored are read from the bucket (its objects
  under events/{event id}/) after the event, outside the counting.
- DynamoDB capacity units: see capacity.py (computed from the items before and after
  each request; moto's ConsumedCapacity is checked and reported, not used, while it is a
  constant).
- Lambda invocations: counted where the runtime invokes a handler (API Gateway -> the API
  function; the state machine's Task -> the step function), with each one's wall time; the
  step function's are cross-checked against the execution history's TaskScheduled events.
- Step Functions: an event's run is a sequence of executions (segments: docs/architecture.md,
  "The state machine"), found after the event by listing the state machine's executions and
  matching their input's event_id; its state transitions are the `...StateEntered` events
  of every one's history (GetExecutionHistory), which moto's interpreter records as it
  runs (on EXPRESS too, whose history AWS keeps only in its logs).
- EventBridge Scheduler: the functions' CreateSchedule and DeleteSchedule are counted like
  any request. The local runtime stands in for the Scheduler service itself
  (`LocalRuntime.fire_due_timers`: ListSchedules, GetSchedule, the DeleteSchedule of
  ActionAfterCompletion); what it does there is the service's own work, not a request the
  event makes, and is not counted, except the StartExecution a timer makes as the
  scheduler's role: a scheduled invocation (billed), and one more execution.

Every case runs on a STANDARD state machine, and EXPRESS_CASES again on an EXPRESS one (a
second runtime, in the same process). One event runs at a time on a quiet runtime: every
request between the send and the end of the event (the event ended, each of its executions
ended and no invocation still running) is the event's.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import capacity
import load

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HOST = load.HOST
READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
EVENT_SECONDS = 60.0
SETTLE_SECONDS = 0.05
PHASES = ("intake", "state loop", "callback", "api", "outside")
SCHEDULER = "scheduler"  # the local runtime firing timers, as EventBridge Scheduler would
# The cases run on EXPRESS too: the callback workflow (two segments, a timer) and the 3-step
# sync event. Every other case's EXPRESS cost is modelled from its STANDARD counts.
EXPRESS_CASES = ("sync-3", "callback")
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}

_local = threading.local()


# --- the workflows measured ----------------------------------------------------------------


def _transform(service: str, context: dict[str, Any]) -> dict[str, Any]:
    message = context["message"]
    if service == "upper":
        return {"message": message.upper()}
    if service in ("reverse", "reverse-later"):
        return {"message": message[::-1]}
    if service == "space-counter":
        return {"space_count": message.count(" ")}
    raise ValueError(service)


@dataclass(frozen=True)
class Case:
    key: str  # how the report names it
    workflow: dict[str, Any]
    callback_steps: int = 0
    data: dict[str, Any] | None = None  # the event's data; the example event's by default
    # what the outputs must be, from the data; by default the chain of `_transform`s
    outputs: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    calls: int | None = None  # the service calls an event makes, when not one per service
    note: str | None = None  # what the report says of it

    @property
    def name(self) -> str:
        return str(self.workflow["name"])

    @property
    def entries(self) -> list[Any]:
        return list(self.workflow["spec"]["services"])

    @property
    def services(self) -> list[str]:
        """Every service a step of the workflow calls, groups included."""
        return _leaves(self.entries)

    @property
    def steps(self) -> int:
        """The service calls one event makes (a map's, once per element)."""
        return self.calls or len(self.services)

    @property
    def event_data(self) -> dict[str, Any]:
        return self.data if self.data is not None else EVENT_DATA

    @property
    def sync_runs(self) -> int:
        """Runs of consecutive sync steps: what one step-function invocation may cover."""
        runs, in_run = 0, False
        for entry in self.entries:
            sync = entry != "reverse-later"
            runs += sync and not in_run
            in_run = sync
        return runs

    def expected(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.outputs is not None:
            return self.outputs(data)
        context = dict(data)
        for service in self.services:
            context.update(_transform(service, context))
        return {name: context[name] for name in self.workflow["spec"]["outputs"]}


def _leaves(entries: list[Any]) -> list[str]:
    names: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            names.append(entry)
        elif "service" in entry:
            names.append(entry["service"])
        else:
            for key in ("steps", "otherwise"):
                names += _leaves(entry.get(key, []))
            for branch in entry.get("parallel", []):
                names += _leaves(branch)
    return names


def _example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / "definitions" / name).read_text())
    return document


def _chain(name: str, services: list[str]) -> dict[str, Any]:
    base = _example("workflow-process-text.json")
    outputs = dict(base["spec"]["outputs"])
    if "space-counter" not in services:
        outputs.pop("space_count")
    return {
        "name": name,
        "spec": {**base["spec"], "services": services, "outputs": outputs},
    }


STRING = {"type": "string"}
# Three branches at once: each service's answer renamed, so that the branches' fields differ.
PARALLEL_3 = {
    "name": "bench-parallel-3",
    "spec": {
        "inputs": {"message": STRING},
        "services": [
            {
                "parallel": [
                    [{"service": "upper", "id": "shout"}],
                    [{"service": "reverse", "id": "mirror"}],
                    ["space-counter"],
                ]
            }
        ],
        "operations": {
            "shout": {"outputs": {"shouted": "message"}},
            "mirror": {"outputs": {"mirrored": "message"}},
        },
        "outputs": {"shouted": STRING, "mirrored": STRING, "space_count": {"type": "integer"}},
    },
}
MAP_ELEMENTS = 100
# `upper` once per word, ten at a time.
MAP_100 = {
    "name": "bench-map-100",
    "spec": {
        "inputs": {"message": STRING, "words": {"type": "array"}},
        "services": [
            {
                "map": "words",
                "as": "word",
                "steps": [{"service": "upper", "id": "shout-word"}],
                "collect": "shouted",
                "max_concurrency": 10,
            }
        ],
        "operations": {"shout-word": {"inputs": {"message": "word"}}},
        "outputs": {"shouted": {"type": "array"}},
    },
}


# Payloads past the item limit (issue 14): 20 steps of a service that answers 200 KB, each
# step's answer its own and kept in a context field of its own (as
# tests/e2e/test_large_payloads.py), on an event whose data is 100 KB.
LARGE_STEPS = 20
LARGE_ANSWER_BYTES = 200_000
LARGE_NOTE_BYTES = 100_000
GROW = "bench-grow"  # served by this process (BENCH_SERVICES), not an example service


def _blob(step: int) -> str:
    """What step `step` answers: 200 KB, each step's its own (no two stored as one)."""
    return chr(ord("A") + step) * LARGE_ANSWER_BYTES


def _grow(inputs: dict[str, Any]) -> dict[str, Any]:
    n = inputs["n"]
    return {"n": n + 1, "blob": _blob(n)}


LARGE_PAYLOAD = {
    "name": "bench-large-payload",
    "spec": {
        "inputs": {"n": {"type": "integer"}, "note": STRING},
        "services": [{"service": GROW, "id": f"s{i}"} for i in range(LARGE_STEPS)],
        "operations": {
            f"s{i}": {"outputs": {"n": "n", f"blob{i}": "blob"}} for i in range(LARGE_STEPS)
        },
        "outputs": {"n": {"type": "integer"}, "blob0": STRING, f"blob{LARGE_STEPS - 1}": STRING},
    },
}
# The bench's own services: each one's definition (without its address) and its answer.
BENCH_SERVICES: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    GROW: (
        {
            "name": GROW,
            "spec": {
                "inputs": {"n": {"type": "integer"}},
                "outputs": {"n": {"type": "integer"}, "blob": STRING},
            },
        },
        _grow,
    ),
}


def cases() -> list[Case]:
    words = {"message": "-", "words": [f"word {n}" for n in range(MAP_ELEMENTS)]}
    return [
        Case("sync-1", _chain("bench-sync-1", ["upper"])),
        Case("sync-3", _example("workflow-process-text.json")),
        Case(
            "sync-10",
            _chain("bench-sync-10", ["upper", "reverse"] * 4 + ["upper", "space-counter"]),
        ),
        Case("callback", _example("workflow-process-text-async.json"), callback_steps=1),
        Case(
            "parallel-3",
            PARALLEL_3,
            outputs=lambda data: {
                "shouted": data["message"].upper(),
                "mirrored": data["message"][::-1],
                "space_count": data["message"].count(" "),
            },
        ),
        Case(
            "map-100",
            MAP_100,
            data=words,
            calls=MAP_ELEMENTS,
            outputs=lambda data: {"shouted": [{"message": w.upper()} for w in data["words"]]},
        ),
        Case(
            "large-payload",
            LARGE_PAYLOAD,
            data={"n": 0, "note": "n" * LARGE_NOTE_BYTES},
            note=f"{LARGE_STEPS} steps, each answering {LARGE_ANSWER_BYTES // 1000} KB of its "
            f"own into a context field of its own, on {LARGE_NOTE_BYTES // 1000} KB of data",
            outputs=lambda data: {
                "n": data["n"] + LARGE_STEPS,
                "blob0": _blob(0),
                f"blob{LARGE_STEPS - 1}": _blob(LARGE_STEPS - 1),
            },
        ),
    ]


EVENT_DATA: dict[str, Any] = _example("event-text.json")["data"]


# --- what is recorded ----------------------------------------------------------------------


@dataclass
class Call:
    service: str
    operation: str
    phase: str
    status: int | None
    error: str | None
    units: capacity.Units
    moto_units: float | None
    answer: dict[str, Any] = field(default_factory=dict)  # what the report needs of it


@dataclass
class Invocation:
    function: str
    phase: str
    label: str  # the route, or the step function's action
    duration_ms: float
    memory_mb: int
    # of which: waiting on the services (requests' Session.send in the invocation's thread)
    service_ms: float = 0.0
    # and in AWS requests (botocore, from parameter build to parsed answer: here, moto
    # serving them in process; on Lambda, mostly the network round trip)
    aws_ms: float = 0.0


class Recorder:
    """botocore hooks, and the calls and invocations of the window that is open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] | None = None
        self._invocations: list[Invocation] | None = None
        self.tables: dict[str, capacity.Table] = {}
        self.snapshot: capacity.Snapshot = lambda table, key: None
        self.seen = 0  # every request answered, in a window or not
        self.hook_errors: list[str] = []

    def install(self) -> None:
        """Before the runtime starts: every botocore session made afterwards has the hooks,
        and requests' Session.send is timed (what an invocation waits on its services)."""
        from botocore import handlers

        handlers.BUILTIN_HANDLERS.extend(
            [
                ("provide-client-params.dynamodb", self._ask_capacity),
                ("before-parameter-build", self._before),
                ("after-call", self._after),
                ("after-call-error", self._after_error),
            ]
        )
        _time_service_calls()

    @contextmanager
    def window(self) -> Iterator[tuple[list[Call], list[Invocation]]]:
        calls: list[Call] = []
        invocations: list[Invocation] = []
        with self._lock:
            self._calls, self._invocations = calls, invocations
        try:
            yield calls, invocations
        finally:
            with self._lock:
                self._calls = self._invocations = None

    def invocation(self, invocation: Invocation) -> None:
        with self._lock:
            if self._invocations is not None:
                self._invocations.append(invocation)

    # botocore handlers: they never raise into the client

    def _ask_capacity(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")

    def _before(
        self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        if getattr(_local, "aws_ms", None) is not None:
            context["bench_started"] = time.perf_counter()
        with self._lock:
            if self._calls is None:
                return
        phase = getattr(_local, "phase", "outside")
        if phase == SCHEDULER and model.name != "StartExecution":
            return  # the Scheduler service's own work (listing, reading, deleting a fired one)
        pending, sent = None, None
        try:
            service = model.service_model.service_name
            if service == "dynamodb":
                pending = capacity.before_request(model.name, params, self.tables, self.snapshot)
            elif service == "s3" and model.name == "PutObject":
                sent = _body_size(params.get("Body"))
        except Exception as error:  # a rule this module lacks: say so, count the call anyway
            self.hook_errors.append(f"{model.name}: {error!r}")
        context["bench"] = (params, pending, phase, sent)

    def _after(
        self,
        http_response: Any,
        parsed: dict[str, Any],
        model: Any,
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        self.seen += 1
        _add_aws_time(context)
        if "bench" not in context:
            return
        params, pending, phase, sent = context.pop("bench")
        service = model.service_model.service_name
        units, moto = capacity.Units(), None
        if service == "dynamodb":
            moto = capacity.moto_units(parsed)
            try:
                if pending is not None:
                    units = capacity.after_request(
                        pending, params, parsed, self.tables, self.snapshot
                    )
            except Exception as problem:
                self.hook_errors.append(f"{model.name}: {problem!r}")
        answer = {}
        if model.name == "StartExecution":
            answer["executionArn"] = parsed.get("executionArn")
        if service == "s3" and model.name == "PutObject":
            answer["bytes"] = sent or 0
        if service == "s3" and model.name == "GetObject":
            answer["bytes"] = int(parsed.get("ContentLength") or 0)
        status = getattr(http_response, "status_code", None)
        error = (parsed.get("Error") or {}).get("Code") if status and status >= 300 else None
        self._add(Call(service, model.name, phase, status, error, units, moto, answer))

    def _after_error(self, model: Any, context: dict[str, Any], exception: Any, **_: Any) -> None:
        self.seen += 1
        _add_aws_time(context)
        if "bench" not in context:
            return
        _, _, phase, _ = context.pop("bench")
        service = model.service_model.service_name
        error = type(exception).__name__
        self._add(Call(service, model.name, phase, None, error, capacity.Units(), None))

    def _add(self, call: Call) -> None:
        with self._lock:
            if self._calls is not None:
                self._calls.append(call)


def _add_aws_time(context: dict[str, Any]) -> None:
    """An AWS request made inside an invocation: its time, added to the invocation's."""
    started = context.pop("bench_started", None)
    if started is not None and getattr(_local, "aws_ms", None) is not None:
        _local.aws_ms += (time.perf_counter() - started) * 1000


_service_calls_timed = False


def _time_service_calls() -> None:
    """Time every requests Session.send made inside an invocation (the services' calls: the
    handlers' AWS requests go through botocore, not requests), into the invocation's
    `service_ms`. Installed once per process."""
    global _service_calls_timed
    if _service_calls_timed:
        return
    _service_calls_timed = True
    import requests

    send = requests.Session.send

    def timed_send(self: Any, request: Any, **kwargs: Any) -> Any:
        if getattr(_local, "service_ms", None) is None:
            return send(self, request, **kwargs)
        started = time.perf_counter()
        try:
            return send(self, request, **kwargs)
        finally:
            _local.service_ms += (time.perf_counter() - started) * 1000

    requests.Session.send = timed_send  # type: ignore[method-assign]


def _body_size(body: Any) -> int:
    """The bytes of a PutObject's Body: bytes or text, or the file-like object botocore has
    made of them by the time the hook sees it."""
    if body is None:
        return 0
    if isinstance(body, str):
        return len(body.encode())
    if isinstance(body, bytes | bytearray):
        return len(body)
    at = body.tell()
    size = body.seek(0, 2)
    body.seek(at)
    return int(size)


# --- the runtime -----------------------------------------------------------------------------


def _counting_runtime_class() -> type[Any]:
    """LocalRuntime with its invocations, timers and execution ends reported (imported late:
    moto)."""
    from machinery_core.local.runtime import LocalRuntime

    class CountingRuntime(LocalRuntime):  # type: ignore[misc]
        def __init__(self, template: Path, recorder: Recorder, **options: Any) -> None:
            super().__init__(template, **options)
            self.recorder = recorder
            self.ended: dict[str, set[str]] = {}  # each event's executions heard ending
            self._active = 0
            self._changed = threading.Condition()

        def invoke(self, function: str, payload: dict[str, Any]) -> tuple[Any, str | None]:
            deployed = self.function(function)
            name = deployed.spec.logical_id if deployed else function
            if deployed is not None and deployed.spec.routes:
                label = str(payload.get("routeKey", "?"))
                phase = {"POST /e/{workflow_id}": "intake"}.get(label, "api")
                phase = "callback" if label.startswith("POST /callbacks/") else phase
            else:
                label, phase = str(payload.get("action", "advance")), "state loop"
            outer = getattr(_local, "phase", None)
            outer_times = getattr(_local, "service_ms", None), getattr(_local, "aws_ms", None)
            _local.phase = phase
            _local.service_ms, _local.aws_ms = 0.0, 0.0
            with self._changed:
                self._active += 1
            started = time.perf_counter()
            try:
                return super().invoke(function, payload)  # type: ignore[no-any-return]
            finally:
                elapsed = (time.perf_counter() - started) * 1000
                waited, in_aws = _local.service_ms, _local.aws_ms
                _local.phase = outer
                _local.service_ms, _local.aws_ms = outer_times
                memory = deployed.spec.memory_mb if deployed else 0
                self.recorder.invocation(
                    Invocation(name, phase, label, elapsed, memory, waited, in_aws)
                )
                with self._changed:
                    self._active -= 1
                    self._changed.notify_all()

        def fire_due_timers(self) -> list[str]:
            """As EventBridge Scheduler: its own requests are not counted, its StartExecution
            is (a scheduled invocation)."""
            outer = getattr(_local, "phase", None)
            _local.phase = SCHEDULER
            try:
                return super().fire_due_timers()
            finally:
                _local.phase = outer

        def execution_ended(
            self, execution_input: dict[str, Any], status: str, execution: str | None = None
        ) -> None:
            try:
                super().execution_ended(execution_input, status, execution)
            finally:
                with self._changed:
                    event = str(execution_input.get("event_id"))
                    self.ended.setdefault(event, set()).add(str(execution))
                    self._changed.notify_all()

        def prune_executions(self) -> None:
            """Kept: every execution's history is read after its event (a few hundred)."""

        def wait_quiet(self, event_id: str, timeout: float) -> bool:
            """Until the event has ended, each of its executions has ended (and been heard
            ending) and no invocation is running: read from moto's backends, no request."""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with self._changed:
                    active, heard = self._active, set(self.ended.get(event_id, ()))
                if active == 0 and heard and self._settled(event_id, heard):
                    with self._changed:
                        if self._active == 0:
                            return True
                with self._changed:
                    self._changed.wait(0.01)
            return False

        def _settled(self, event_id: str, heard: set[str]) -> bool:
            from moto.stepfunctions.parser.models import stepfunctions_parser_backends

            from machinery_core.local.runtime import ACCOUNT, REGION

            item = _moto_snapshot(
                self.table_name, {"PK": {"S": f"EVENT#{event_id}"}, "SK": {"S": "EVENT"}}
            )
            if item is None or item.get("status", {}).get("S") not in TERMINAL:
                return False
            backend = stepfunctions_parser_backends[ACCOUNT][REGION]
            for machine in list(backend.state_machines):
                for execution in list(machine.executions):
                    # moto's parser executions: input_data (parsed), exec_status, execution_arn
                    if (getattr(execution, "input_data", None) or {}).get("event_id") != event_id:
                        continue
                    status = getattr(execution, "exec_status", None)
                    if str(getattr(status, "value", status)) == "RUNNING":
                        return False
                    if execution.execution_arn not in heard:
                        return False
            return True

    return CountingRuntime


def _moto_tables() -> dict[str, capacity.Table]:
    from moto.dynamodb.models import dynamodb_backends

    from machinery_core.local.runtime import ACCOUNT, REGION

    tables = {}
    for name, table in dynamodb_backends[ACCOUNT][REGION].tables.items():
        indexes = tuple(
            capacity.Index(
                index.name,
                tuple(index.schema_key_attrs),
                (index.projection or {}).get("ProjectionType", "ALL"),
                tuple((index.projection or {}).get("NonKeyAttributes", [])),
            )
            for index in table.global_indexes
        )
        keys = tuple(key for key in (table.hash_key_attr, table.range_key_attr) if key)
        tables[name] = capacity.Table(name, keys, indexes)
    return tables


def _moto_snapshot(table: str, key: capacity.Attributes) -> capacity.Attributes | None:
    """The stored item, read from moto's backend directly (no request, nothing counted)."""
    from moto.dynamodb.models import dynamodb_backends

    from machinery_core.local.runtime import ACCOUNT, REGION

    try:
        item = dynamodb_backends[ACCOUNT][REGION].get_item(table, key)
    except Exception:
        return None
    if item is None:
        return None
    attributes: capacity.Attributes = item.to_json()["Attributes"]
    return attributes


def definition_items(table: str, case: Case) -> dict[str, Any]:
    """The items an intake reads (the workflow's definition and each of its services'), as
    stored: their sizes and what a strongly consistent read of each costs. Read from moto's
    backend after the case (no request, nothing counted): the capacity model's hot keys."""
    from machinery_core.adapters.store import keys

    def item(key: capacity.Attributes) -> dict[str, Any]:
        size = capacity.item_size(_moto_snapshot(table, key))
        return {"bytes": size, "read_units": capacity.read_units(size, consistent=True)}

    return {
        "workflow": item(keys.workflow_key(case.name)),
        "services": {name: item(keys.service_key(name)) for name in sorted(set(case.services))},
    }


def probe_moto_capacity(client: Any, table: str) -> dict[str, Any]:
    """Does moto's ConsumedCapacity follow the item size? A 5 KB item costs 5 write units."""
    item = {"PK": {"S": "BENCH#probe"}, "SK": {"S": "PROBE"}, "blob": {"S": "x" * 5000}}
    answer = client.put_item(TableName=table, Item=item, ReturnConsumedCapacity="TOTAL")
    client.delete_item(TableName=table, Key={"PK": item["PK"], "SK": item["SK"]})
    said = capacity.moto_units(answer)
    computed = capacity.write_units(capacity.item_size(item))
    return {"moto_units": said, "computed_units": computed, "size_aware": said == computed}


def _bench_service_handler(
    answer: Callable[[dict[str, Any]], dict[str, Any]],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the example services

        def do_POST(self) -> None:
            try:
                inputs = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                status, body = 200, json.dumps(answer(inputs)).encode()
            except Exception as error:  # the event then fails, and the bench says so
                status, body = 500, json.dumps({"error": repr(error)}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


def start_bench_services(
    names: list[str],
) -> tuple[list[ThreadingHTTPServer], dict[str, dict[str, Any]]]:
    """The bench's own services `names` (BENCH_SERVICES), each served by a thread of this
    process on a free loopback port: the servers, and each one's definition with its
    address."""
    servers: list[ThreadingHTTPServer] = []
    definitions = {}
    for name in names:
        definition, answer = BENCH_SERVICES[name]
        server = ThreadingHTTPServer((HOST, 0), _bench_service_handler(answer))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
        servers.append(server)
        definitions[name] = {**definition, "address": f"http://{HOST}:{server.server_address[1]}/"}
    return servers, definitions


def stop_bench_services(servers: list[ThreadingHTTPServer]) -> None:
    for server in servers:
        server.shutdown()
        server.server_close()


# --- running the events ------------------------------------------------------------------------


def _post(runtime: Any, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    answer = runtime.handle_http(
        "POST", path, {"content-type": "application/json"}, json.dumps(body).encode()
    )
    return answer.status, json.loads(answer.body or b"{}")


def _followed(runtime: Any, event: dict[str, Any]) -> dict[str, Any]:
    """The event as GET /events/{id} answers it, each value it links (a large event's
    payloads past the answer's budget) put in its place: what its `href` answers."""
    for link in event.get("linked_payloads") or []:
        answer = runtime.handle_http("GET", link["href"], {}, b"")
        if answer.status != 200:
            raise RuntimeError(f"GET {link['href']}: {answer.status} {answer.body!r:.200}")
        *parents, last = [
            token.replace("~1", "/").replace("~0", "~") for token in link["path"].split("/")[1:]
        ]
        container: Any = event
        for token in parents:
            container = container[int(token) if isinstance(container, list) else token]
        container[int(last) if isinstance(container, list) else last] = json.loads(answer.body)
    return event


def _executions_of(
    stepfunctions: Any, machine_arn: str, event_id: str | None, inputs: dict[str, Any]
) -> list[str]:
    """The ARNs of the event's executions, first started first: the state machine's
    executions whose input names the event (`inputs` caches each one's event_id)."""
    if not event_id:
        return []
    found = []
    for page in stepfunctions.get_paginator("list_executions").paginate(
        stateMachineArn=machine_arn
    ):
        for execution in page["executions"]:
            arn = execution["executionArn"]
            if arn not in inputs:
                described = stepfunctions.describe_execution(executionArn=arn)
                inputs[arn] = json.loads(described.get("input") or "{}").get("event_id")
            if inputs[arn] == event_id:
                found.append((execution["startDate"], arn))
    return [arn for _, arn in sorted(found)]


def _history(stepfunctions: Any, execution_arns: list[str]) -> dict[str, Any]:
    """The event's executions, from their histories: how many, their state transitions and
    Lambda tasks (summed), each one's duration and states."""
    if not execution_arns:
        return {
            "executions": None,
            "transitions": None,
            "lambda_tasks": None,
            "execution_ms": None,
            "execution_ms_each": [],
            "states": [],
            "states_each": [],
        }
    each = []
    for arn in execution_arns:
        events = stepfunctions.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        entered = [e for e in events if e["type"].endswith("StateEntered")]
        times = [e["timestamp"] for e in events if e["type"].startswith("Execution")]
        each.append(
            {
                "transitions": len(entered),
                "lambda_tasks": sum(e["type"] == "TaskScheduled" for e in events),
                "ms": (max(times) - min(times)).total_seconds() * 1000 if times else 0.0,
                "states": [e["stateEnteredEventDetails"]["name"] for e in entered],
            }
        )
    return {
        "executions": len(each),
        "transitions": sum(e["transitions"] for e in each),
        "lambda_tasks": sum(e["lambda_tasks"] for e in each),
        "execution_ms": sum(e["ms"] for e in each),
        "execution_ms_each": [e["ms"] for e in each],
        "states": [state for e in each for state in e["states"]],
        "states_each": [e["states"] for e in each],
    }


def summarize(
    calls: list[Call],
    invocations: list[Invocation],
    history: dict[str, Any],
    stored_bytes: int | None = 0,
) -> dict[str, Any]:
    """One event's counts (exact) and timings (measured), split by phase; `stored_bytes`,
    what the event keeps in the payload bucket. The executions a timer started (the
    Scheduler's StartExecution) are scheduled invocations, not the functions' requests."""
    fired = [c for c in calls if c.phase == SCHEDULER]
    calls = [c for c in calls if c.phase != SCHEDULER]
    requests = Counter(f"{c.service}:{c.operation}" for c in calls)
    phases: dict[str, Any] = {}
    for phase in PHASES:
        mine = [c for c in calls if c.phase == phase]
        if not mine and phase not in ("intake", "state loop"):
            continue
        phases[phase] = _dynamodb(mine) | {
            "requests": dict(sorted(Counter(f"{c.service}:{c.operation}" for c in mine).items())),
            "lambda_invocations": sum(i.phase == phase for i in invocations),
        }
    by_function = Counter(i.function for i in invocations)
    by_label = Counter(f"{i.function} {i.label}" for i in invocations)
    api = [i for i in invocations if i.phase in ("intake", "callback", "api")]
    counts = {
        "requests": dict(sorted(requests.items())),
        "errors": sorted(f"{c.operation}: {c.error}" for c in calls if c.error),
        "by_service": dict(sorted(Counter(c.service for c in calls).items())),
        "dynamodb": _dynamodb(calls),
        "s3": _s3(calls, stored_bytes),
        "lambda": {
            "invocations": len(invocations),
            "by_function": dict(sorted(by_function.items())),
            "by_label": dict(sorted(by_label.items())),
        },
        "stepfunctions": {
            "executions": history["executions"],
            # by the functions (the intake, the callback route, a run going on) and by timers
            "executions_started": requests["stepfunctions:StartExecution"] + len(fired),
            "transitions": history["transitions"],
            "history_lambda_tasks": history["lambda_tasks"],
            "states": history["states"],
            "states_by_execution": history["states_each"],
        },
        "scheduler": {
            "create_schedule": requests["scheduler:CreateSchedule"],
            "delete_schedule": requests["scheduler:DeleteSchedule"],
            "requests": sum(n for key, n in requests.items() if key.startswith("scheduler:")),
            "invocations": len(fired),  # timers fired: each started an execution
        },
        "http_api_requests": len(api),
        "phases": phases,
    }
    durations: dict[str, float] = {}
    waited: dict[str, float] = {}
    in_aws: dict[str, float] = {}
    for invocation in invocations:
        name = invocation.function
        durations[name] = durations.get(name, 0.0) + invocation.duration_ms
        waited[name] = waited.get(name, 0.0) + invocation.service_ms
        in_aws[name] = in_aws.get(name, 0.0) + invocation.aws_ms
    gb_seconds = {
        phase: sum(_billed_gb_seconds(i) for i in invocations if i.phase == phase)
        for phase in phases
    }
    timings = {
        "lambda_duration_ms": {k: round(v, 2) for k, v in sorted(durations.items())},
        # of which waiting on the services, and in AWS requests (moto, in process)
        "lambda_service_ms": {k: round(v, 2) for k, v in sorted(waited.items())},
        "lambda_aws_ms": {k: round(v, 2) for k, v in sorted(in_aws.items())},
        "lambda_gb_seconds": sum(_billed_gb_seconds(i) for i in invocations),
        "lambda_gb_seconds_by_phase": gb_seconds,
        "execution_ms": history["execution_ms"],  # the event's executions together
        "execution_ms_each": history["execution_ms_each"],
    }
    return {"counts": counts, "timings": timings}


def _billed_gb_seconds(invocation: Invocation) -> float:
    """Lambda bills each invocation's duration rounded up to the millisecond."""
    return math.ceil(invocation.duration_ms) / 1000 * invocation.memory_mb / 1024


def _dynamodb(calls: list[Call]) -> dict[str, Any]:
    mine = [c for c in calls if c.service == "dynamodb"]
    total = capacity.Units()
    for call in mine:
        total.add(call.units)
    moto = [c.moto_units for c in mine if c.moto_units is not None]
    by_request: dict[str, float] = {}
    for call in mine:
        if call.operation in READS:
            name = f"dynamodb:{call.operation}"
            by_request[name] = by_request.get(name, 0.0) + call.units.read
    return {
        "reads": sum(c.operation in READS for c in mine),
        "writes": sum(c.operation in WRITES for c in mine),
        "other": sum(c.operation not in READS | WRITES for c in mine),
        "read_units": total.read,
        "read_units_by_request": dict(sorted(by_request.items())),
        "write_units": total.write + total.index_write,
        "table_write_units": total.write,
        "index_write_units": total.index_write,
        "moto_reported_units": sum(moto) if moto else None,
    }


def _s3(calls: list[Call], stored_bytes: int | None) -> dict[str, Any]:
    """The payload bucket's requests: PutObject and GetObject (the only ones priced apart)."""
    mine = [c for c in calls if c.service == "s3"]
    puts = [c for c in mine if c.operation == "PutObject"]
    gets = [c for c in mine if c.operation == "GetObject"]
    return {
        "puts": len(puts),
        "gets": len(gets),
        "other": len(mine) - len(puts) - len(gets),
        "bytes_put": sum(c.answer.get("bytes", 0) for c in puts),
        "bytes_read": sum(c.answer.get("bytes", 0) for c in gets),
        "bytes_stored": stored_bytes,
    }


def _stored_bytes(s3: Any, bucket: str, event_id: str | None) -> int | None:
    """What the event keeps in the payload bucket: its objects' sizes (read after the event,
    outside the counting window)."""
    if not event_id:
        return None
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"events/{event_id}/"
    ):
        total += sum(int(item["Size"]) for item in page.get("Contents", []))
    return total


def _median_timings(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    timings = [s["timings"] for s in summaries]
    functions = sorted({name for t in timings for name in t["lambda_duration_ms"]})
    executions = [t["execution_ms"] for t in timings if t["execution_ms"] is not None]
    return {
        **{
            key: {
                name: round(statistics.median(t[key].get(name, 0.0) for t in timings), 2)
                for name in functions
            }
            for key in ("lambda_duration_ms", "lambda_service_ms", "lambda_aws_ms")
        },
        "lambda_gb_seconds": statistics.median(t["lambda_gb_seconds"] for t in timings),
        "lambda_gb_seconds_by_phase": {
            phase: statistics.median(
                t["lambda_gb_seconds_by_phase"].get(phase, 0.0) for t in timings
            )
            for phase in timings[0]["lambda_gb_seconds_by_phase"]
        },
        "execution_ms": statistics.median(executions) if executions else None,
        "execution_ms_each": _median_each([t.get("execution_ms_each") or [] for t in timings]),
    }


def _median_each(runs: list[list[float]]) -> list[float]:
    """Each execution's median duration, the first's over every event, and so on (events
    with as many executions: the counts say whether they all had)."""
    most = max((len(run) for run in runs), default=0)
    return [statistics.median(run[i] for run in runs if len(run) > i) for i in range(most)]


_measured = False


def measure(
    events_per_case: int,
    template: Path = ROOT / "template.yaml",
    express_cases: tuple[str, ...] = EXPRESS_CASES,
) -> dict[str, Any]:
    """Run every case's events one at a time on a STANDARD state machine, then
    `express_cases`' on an EXPRESS one; their counts, timings and outcomes.

    Once per process: the hooks and moto's seams are installed for good (the seams follow
    the runtime started last: the two run one after the other).
    """
    global _measured
    if _measured:
        raise RuntimeError("counting.measure runs once per process")
    _measured = True
    recorder = Recorder()
    recorder.install()
    all_cases = cases()
    needed = {s for case in all_cases for s in case.services}
    own, own_definitions = start_bench_services(sorted(needed & set(BENCH_SERVICES)))
    names = sorted(needed - set(BENCH_SERVICES))
    services, ports = load.start_services(names, time.monotonic() + load.STARTUP_SECONDS)
    definitions = list(own_definitions.values())
    for name, port in ports.items():
        definition = _example(f"service-{name}.json")
        definition["address"] = f"http://{HOST}:{port}/"
        definitions.append(definition)
    try:
        standard = _measure_on(
            "STANDARD", template, recorder, definitions, all_cases, events_per_case
        )
        express = _measure_on(
            "EXPRESS",
            template,
            recorder,
            definitions,
            [case for case in all_cases if case.key in express_cases],
            events_per_case,
        )
    finally:
        stop_bench_services(own)
        services.terminate()
        services.wait(timeout=10)
    return {
        "method": {
            "requests": "botocore before-parameter-build/after-call hooks on every session "
            "(BUILTIN_HANDLERS), in-process local runtime, one event at a time",
            "lambda_invocations": "counted where the local runtime invokes a handler",
            "transitions": "moto's execution histories of every execution of the event (listed, "
            "matched by their input's event_id): events whose type ends in StateEntered",
            "scheduler": "the functions' CreateSchedule and DeleteSchedule; timers fired: the "
            "StartExecution the local runtime makes as the scheduler's role (its other "
            "requests, standing in for the Scheduler service, are not counted)",
            "capacity_units": capacity.SOURCE_MOTO
            if standard["probe"]["size_aware"]
            else capacity.SOURCE_COMPUTED,
            "moto_capacity_probe": standard["probe"],
            "hook_errors": recorder.hook_errors[:20],
            "event_data": EVENT_DATA,
            "s3_bytes_stored": "the sizes of the event's objects in the payload bucket "
            "(events/{event id}/), listed after the event",
            "express_cases": list(express["cases"]),
        },
        "cases": standard["cases"],  # STANDARD
        "express": {"state_machine_type": "EXPRESS", "cases": express["cases"]},
    }


def _measure_on(
    state_machine_type: str,
    template: Path,
    recorder: Recorder,
    definitions: list[dict[str, Any]],
    measured: list[Case],
    events_per_case: int,
) -> dict[str, Any]:
    """`measured` cases' events on a fresh runtime of that state machine type: the cases'
    results, and what moto's ConsumedCapacity says of a 5 KB item there."""
    import boto3

    from machinery_core.local.runtime import REGION
    from machinery_core.local.server import serve

    runtime = _counting_runtime_class()(
        template,
        recorder,
        allowed_service_hosts="127.0.0.0/8",
        state_machine_type=state_machine_type,
    ).start()
    server = serve(runtime, HOST, 0)
    runtime.serve_at(f"http://{HOST}:{server.server_address[1]}")  # callbacks come back here
    try:
        recorder.tables = _moto_tables()
        recorder.snapshot = _moto_snapshot
        probe = probe_moto_capacity(
            boto3.client("dynamodb", region_name=REGION), runtime.table_name
        )
        stepfunctions = boto3.client("stepfunctions", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        seen_before = recorder.seen
        for definition in definitions:
            status, body = _post(runtime, "/services", definition)
            if status != 201:
                raise RuntimeError(f"registering {definition['name']}: {status} {body}")
        for case in measured:
            status, body = _post(runtime, "/workflows", case.workflow)
            if status != 201:
                raise RuntimeError(f"registering {case.name}: {status} {body}")
        if recorder.seen == seen_before:
            raise RuntimeError("the botocore hooks saw none of the registrations' requests")
        inputs: dict[str, Any] = {}  # each execution's event_id, by its ARN
        results = {
            case.key: _measure_case(
                runtime, recorder, stepfunctions, s3, inputs, case, events_per_case
            )
            | {"state_machine_type": state_machine_type}
            for case in measured
        }
    finally:
        server.shutdown()
        server.server_close()
        runtime.stop()
    return {"cases": results, "probe": probe}


def _measure_case(
    runtime: Any,
    recorder: Recorder,
    stepfunctions: Any,
    s3: Any,
    inputs: dict[str, Any],
    case: Case,
    events: int,
) -> dict[str, Any]:
    summaries, outcomes = [], []
    # One event first, not counted: the steady state is measured, in which the API's
    # container already knows the plan (one per workflow version; issue 14).
    status, body = _post(runtime, f"/e/{case.name}", {"data": case.event_data})
    if status != 202 or not runtime.wait_quiet(body.get("event_id"), EVENT_SECONDS):
        raise RuntimeError(f"the warm-up event of {case.key} did not end: {status} {body}")
    for _ in range(events):
        with recorder.window() as (calls, invocations):
            status, body = _post(runtime, f"/e/{case.name}", {"data": case.event_data})
            event_id = body.get("event_id")
            quiet = status == 202 and runtime.wait_quiet(event_id, EVENT_SECONDS)
            time.sleep(SETTLE_SECONDS)  # anything still on its way is the event's too
        arns = _executions_of(stepfunctions, runtime.state_machine_arn, event_id, inputs)
        history = _history(stepfunctions, arns if quiet else [])
        stored = _stored_bytes(s3, runtime.payload_bucket, event_id)
        summaries.append(summarize(list(calls), list(invocations), history, stored))
        outcomes.append(_outcome(runtime, case, status, event_id, quiet))
    counts = [s["counts"] for s in summaries]
    per_event = counts[0]
    return {
        "workflow": case.name,
        "services": case.services,
        "steps": case.steps,
        "sync_runs": case.sync_runs,
        "callback_steps": case.callback_steps,
        "note": case.note,
        "own_data": case.data is not None,  # not the example event's
        "events": events,
        "consistent": all(c == per_event for c in counts),
        "per_event": per_event,
        "per_event_all": counts if any(c != per_event for c in counts) else None,
        "timings": _median_timings(summaries),
        "definition_items": definition_items(runtime.table_name, case),
        "outcomes": outcomes,
        "right": sum(o["right"] for o in outcomes),
    }


def _outcome(
    runtime: Any, case: Case, status: int, event_id: str | None, quiet: bool
) -> dict[str, Any]:
    if status != 202 or not event_id:
        return {"event_id": None, "status": f"refused {status}", "right": False}
    answer = runtime.handle_http("GET", f"/events/{event_id}", {}, b"")
    event = _followed(runtime, json.loads(answer.body or b"{}"))
    right = (
        quiet
        and event.get("status") == "SUCCEEDED"
        and event.get("outputs") == case.expected(case.event_data)
    )
    return {"event_id": event_id, "status": event.get("status"), "ended": quiet, "right": right}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1), indent=2, default=str))
