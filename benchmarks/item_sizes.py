"""DynamoDB item sizes and capacity units of one event, measured on the local runtime.

    python benchmarks/item_sizes.py [--workflow process-text] [--json]

It deploys template.yaml in-process (machinery_core.local), serves the example services
(upper, reverse, space-counter, reverse-later) from this process on a free loopback port,
registers the example definitions, sends examples/definitions/event-text.json, and
records every DynamoDB call of the event: its item sizes by DynamoDB's rules (attribute
name lengths plus value lengths) and what DynamoDB would bill for it:

- PutItem: 1 WCU per KB of the item; UpdateItem: per KB of the larger of the item before
  and after; a transaction twice that; a GSI write (1 WCU per KB of the projected item)
  when the write creates, deletes or changes an attribute the index projects.
- GetItem (strongly consistent): 1 RCU per 4 KB of the whole item, whatever the
  projection; Query: per 4 KB of the items read, halved (eventually consistent);
  BatchGetItem: each item rounded up to 4 KB.

Nothing here fails on size: it prints a table (or --json) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT))

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}
READS = {"GetItem", "Query", "BatchGetItem"}


# --- DynamoDB item size ------------------------------------------------------------------


def number_size(text: str) -> int:
    digits = Decimal(text).normalize().as_tuple().digits
    return math.ceil(len(digits) / 2) + 1


def value_size(value: dict[str, Any]) -> int:
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return len(inner if isinstance(inner, bytes) else base64.b64decode(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(number_size(n) for n in inner)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in inner.items())
    raise ValueError(kind)


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def json_of(value: dict[str, Any] | None) -> bytes:
    """A stored state or plan attribute's JSON: compressed binary, or text."""
    if not value:
        return b""
    if "B" in value:
        return zlib.decompress(value["B"])
    return str(value["S"]).encode()


def kb(size: int) -> int:
    return max(1, math.ceil(size / 1024))


# --- recording ---------------------------------------------------------------------------


@dataclass
class Call:
    operation: str
    key: str
    before: int = 0
    after: int = 0
    wcu: int = 0
    gsi_wcu: int = 0
    rcu: float = 0.0
    state: int = 0  # bytes of the item's `state` attribute after the write
    state_json: int = 0  # and of the JSON it holds


def _label(key: dict[str, Any]) -> str:
    return f"{key['PK']['S'].split('#')[0]}#…/{key['SK']['S']}"


class Recorder:
    """Hooks on the store's DynamoDB client: each call's items, sized before and after.

    Its own reads (the items around a write, the whole item of a projected read) are
    made with the hooks muted and are not counted.
    """

    def __init__(self, client: Any, table: str, projection: set[str]) -> None:
        self.client = client
        self.table = table
        self.projection = projection | {"PK", "SK", "GSI1PK", "GSI1SK"}
        self.calls: list[Call] = []
        self._local = threading.local()
        client.meta.events.register("before-parameter-build.dynamodb", self._on_before)
        client.meta.events.register("after-call.dynamodb", self._on_after)

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """An item, read without being counted."""
        self._local.muted = True
        try:
            item: dict[str, Any] | None = self.client.get_item(
                TableName=self.table, Key=key, ConsistentRead=True
            ).get("Item")
            return item
        finally:
            self._local.muted = False

    @staticmethod
    def _keys(operation: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        if operation == "TransactWriteItems":
            bodies = [next(iter(action.values())) for action in params["TransactItems"]]
        else:
            bodies = [params]
        keys = []
        for body in bodies:
            item = body.get("Item") or body["Key"]
            keys.append({"PK": item["PK"], "SK": item["SK"]})
        return keys

    def _on_before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if getattr(self._local, "muted", False):
            return
        self._local.params = params
        if model.name in WRITES:
            keys = self._keys(model.name, params)
            self._local.before = [(key, self.get(key)) for key in keys]

    def _on_after(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if getattr(self._local, "muted", False) or "Error" in parsed:
            return  # a refused write is billed too, but none happens in this run
        operation, params = model.name, self._local.params
        if operation in WRITES:
            factor = 2 if operation == "TransactWriteItems" else 1
            for key, before in self._local.before:
                after = self.get(key)
                stored = (after or {}).get("state")
                is_event = stored is not None and "GSI1PK" in (after or {})
                call = Call(
                    operation=operation,
                    key=_label(key),
                    before=item_size(before),
                    after=item_size(after),
                    state=value_size(stored) if is_event and stored else 0,
                    state_json=len(json_of(stored)) if is_event else 0,
                )
                call.wcu = factor * kb(max(call.before, call.after))
                call.gsi_wcu = factor * self._gsi_cost(before, after)
                self.calls.append(call)
        elif operation == "GetItem":
            # a projection lowers no bill: the whole item is read
            size = item_size(self.get(params["Key"])) if parsed.get("Item") else 0
            self.calls.append(
                Call(
                    "GetItem", _label(params["Key"]), after=size, rcu=max(1, math.ceil(size / 4096))
                )
            )
        elif operation == "Query":
            size = sum(item_size(i) for i in parsed.get("Items", []))
            units = max(1, math.ceil(size / 4096)) / (1 if params.get("ConsistentRead") else 2)
            where = params.get("IndexName", "table")
            self.calls.append(
                Call(
                    "Query", f"{where}: {len(parsed.get('Items', []))} items", after=size, rcu=units
                )
            )
        elif operation == "BatchGetItem":
            items = [i for found in parsed.get("Responses", {}).values() for i in found]
            self.calls.append(
                Call(
                    "BatchGetItem",
                    f"{len(items)} items",
                    after=sum(item_size(i) for i in items),
                    rcu=sum(max(1, math.ceil(item_size(i) / 4096)) for i in items),
                )
            )

    def _projected(self, item: dict[str, Any] | None) -> dict[str, Any] | None:
        if not item or "GSI1PK" not in item:
            return None
        return {k: v for k, v in item.items() if k in self.projection}

    def _gsi_cost(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
        old, new = self._projected(before), self._projected(after)
        if old == new:
            return 0
        if old is None or new is None:
            return kb(item_size(old or new))
        if (old["GSI1PK"], old["GSI1SK"]) != (new["GSI1PK"], new["GSI1SK"]):
            return kb(item_size(old)) + kb(item_size(new))
        return kb(item_size(new))


# --- the example services, in this process -------------------------------------------------

TRANSFORMS = {
    "upper": lambda data: {"message": data["message"].upper()},
    "reverse": lambda data: {"message": data["message"][::-1]},
    "space-counter": lambda data: {"space_count": data["message"].count(" ")},
    "reverse-later": lambda data: {"message": data["message"][::-1]},
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        name = self.path.strip("/")
        data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        outputs = TRANSFORMS[name](data)
        if name == "reverse-later":
            url = self.headers["X-Machinery-Callback-Url"]
            threading.Thread(target=_call_back, args=(url, outputs), daemon=True).start()
            self._reply(202, b"")
            return
        self._reply(200, json.dumps(outputs).encode())

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


RUNTIME: Any = None


def _call_back(url: str, outputs: dict[str, Any]) -> None:
    time.sleep(0.05)
    path = "/" + url.split("/", 3)[3]
    RUNTIME.handle_http("POST", path, {}, json.dumps(outputs).encode())


# --- the measurement -------------------------------------------------------------------------


def measure(workflow: str) -> dict[str, Any]:
    global RUNTIME
    from machinery_core.local.runtime import LocalRuntime
    from machinery_core.models import Event

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    runtime = LocalRuntime(ROOT / "template.yaml").start()
    RUNTIME = runtime
    runtime.serve_at("http://127.0.0.1:1")
    try:
        for pattern, route in (("service-*.json", "/services"), ("workflow-*.json", "/workflows")):
            for path in sorted((EXAMPLES / "definitions").glob(pattern)):
                body = json.loads(path.read_text())
                if "address" in body:
                    body["address"] = f"{base}/{body['name']}"
                answer = runtime.handle_http("POST", route, {}, json.dumps(body).encode())
                assert answer.status == 201, answer.body
        store = runtime.dependencies.store
        client = store._db
        resources = runtime.template.document["Resources"]
        table = next(r for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table")
        projection = set(
            table["Properties"]["GlobalSecondaryIndexes"][0]["Projection"]["NonKeyAttributes"]
        )
        recorder = Recorder(client, runtime.table_name, projection)
        data = json.loads((EXAMPLES / "definitions" / "event-text.json").read_text())
        answer = runtime.handle_http("POST", f"/e/{workflow}", {}, json.dumps(data).encode())
        assert answer.status == 202, answer.body
        event_id = json.loads(answer.body)["event_id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # the recorder's own read: not counted
            item = recorder.get({"PK": {"S": f"EVENT#{event_id}"}, "SK": {"S": "EVENT"}}) or {}
            if item["status"]["S"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                break
            time.sleep(0.02)
        time.sleep(0.2)  # the execution's last state
        calls = list(recorder.calls)
        plan_item = recorder.get({"PK": {"S": f"EVENT#{event_id}"}, "SK": {"S": "PLAN"}})
        plan_attribute = (plan_item or item).get("plan")
        state = Event.model_validate_json(json_of(item["state"]))
        return {
            "workflow": workflow,
            "status": item["status"]["S"],
            "plan_json_bytes": len(json_of(plan_attribute)),
            "plan_attribute_bytes": value_size(plan_attribute) if plan_attribute else 0,
            "state_json_bytes": len(json_of(item["state"])),
            "state_attribute_bytes": value_size(item["state"]),
            "state_json_full_bytes": len(state.model_dump_json().encode()),
            "event_item_bytes": item_size(item),
            "plan_item_bytes": item_size(plan_item) if plan_item else None,
            "calls": [c.__dict__ for c in calls],
            "wcu": sum(c.wcu for c in calls),
            "gsi_wcu": sum(c.gsi_wcu for c in calls),
            "writes": sum(1 for c in calls if c.operation in WRITES),
            "rcu": sum(c.rcu for c in calls),
            "reads": sum(1 for c in calls if c.operation in READS),
        }
    finally:
        runtime.stop()
        server.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflow", default="process-text")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.workflow)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"workflow {result['workflow']}: ended {result['status']}")
    print(
        f"plan JSON {result['plan_json_bytes']} B (stored {result['plan_attribute_bytes']} B); "
        f"final state JSON {result['state_json_bytes']} B "
        f"(stored {result['state_attribute_bytes']} B; "
        f"with every field {result['state_json_full_bytes']} B)"
    )
    print(f"final EVENT item {result['event_item_bytes']} B; PLAN item {result['plan_item_bytes']}")
    print(
        f"{'call':<20}{'item':<24}{'before':>8}{'after':>8}{'WCU':>5}{'GSI':>5}{'RCU':>6}{'state':>7}{'JSON':>6}"
    )
    for c in result["calls"]:
        print(
            f"{c['operation']:<20}{c['key']:<24}{c['before']:>8}{c['after']:>8}"
            f"{c['wcu']:>5}{c['gsi_wcu']:>5}{c['rcu']:>6}"
            f"{c['state'] or '':>7}{c['state_json'] or '':>6}"
        )
    print(
        f"writes {result['writes']}: {result['wcu']} WCU + {result['gsi_wcu']} GSI WCU; "
        f"reads {result['reads']}: {result['rcu']} RCU"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
