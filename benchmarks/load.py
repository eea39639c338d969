"""Load benchmark: N events sent concurrently through the local runtime, every one checked.

    python benchmarks/load.py [--events 500] [--concurrency 32] [--deadline 300]

It starts its own stack on loopback: `machinery local` on a free port, and the example
services (examples/services/serve.py: upper, reverse, space-counter) on free ports, with
the example definitions registered (their addresses pointed at those ports) — so it runs
beside `make run` or the test suite, which hold the examples' fixed ports 5001-5004.

Then C concurrent senders (a requests.Session each) POST N events with distinct messages
to /e/process-text, and every acknowledged event is polled until it ends or the deadline
passes. Each must end SUCCEEDED with the outputs of its own message (upper-cased then
reversed; its space count). It prints a table, writes the numbers to --output (default
benchmarks/results/load.json), and exits 1 if any event was refused, lost, wrong or not
ended by the deadline (2 if the stack did not start). It is a benchmark, not a timed
test: nothing fails on speed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import queue
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from machinery_core.local.launch import api_url_in, free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
WORKFLOW = "process-text"
RESULTS = ROOT / "benchmarks" / "results" / "load.json"
HOST = "127.0.0.1"  # everything this benchmark starts and calls is on loopback
STARTUP_SECONDS = 60.0
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


class StartupError(RuntimeError):
    pass


def message_for(index: int) -> str:
    """Distinct texts with different numbers of spaces, mixed case and non-ASCII letters."""
    return f"Load n°{index}" + " word" * (index % 9) + f" end-{index:04d}"


def expected_outputs(message: str) -> dict[str, Any]:
    return {"message": message.upper()[::-1], "space_count": message.count(" ")}


def _wait_listening(port: int, process: subprocess.Popen[Any], deadline: float) -> None:
    while True:
        if process.poll() is not None:
            raise StartupError(f"the example services exited ({process.returncode})")
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise StartupError(f"no example service listens on {HOST}:{port}") from None
            time.sleep(0.05)


def _stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_services(
    names: Iterable[str], deadline: float
) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """The example services `names` (examples/services/serve.py) on free loopback ports,
    each listening by the `deadline` (time.monotonic()): the process and each one's port."""
    ports = {name: free_port() for name in names}
    process = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "services" / "serve.py"),
            *(f"{name}={port}" for name, port in ports.items()),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        for port in ports.values():
            _wait_listening(port, process, deadline)
    except BaseException:
        _stop(process)
        raise
    return process, ports


def _read_lines(stream: Any, lines: queue.Queue[str | None], log: deque[str]) -> None:
    """Forward the stack's output; keep draining it so the pipe never fills."""
    for line in stream:
        lines.put(line)
        log.append(line)
    lines.put(None)


@dataclass
class Stack:
    url: str
    services: dict[str, int]
    log: deque[str]  # the last lines machinery local printed (stdout and stderr)


@contextmanager
def local_stack() -> Iterator[Stack]:
    """`machinery local` and the example services, on free loopback ports, for the run."""
    workflow = json.loads((EXAMPLES / "definitions" / f"workflow-{WORKFLOW}.json").read_text())
    started: list[subprocess.Popen[Any]] = []
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        services, ports = start_services(workflow["spec"]["services"], deadline)
        started.append(services)

        api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "machinery_core.cli",
                "local",
                "--host",
                HOST,
                "--port",
                str(free_port()),
            ],
            cwd=ROOT,
            env={**os.environ, "ALLOWED_SERVICE_HOSTS": "127.0.0.0/8"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(api)
        lines: queue.Queue[str | None] = queue.Queue()
        log: deque[str] = deque(maxlen=50)
        threading.Thread(target=_read_lines, args=(api.stdout, lines, log), daemon=True).start()
        url = None
        while url is None:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise StartupError(f"machinery local did not start in {STARTUP_SECONDS}s") from None
            if line is None:
                output = "".join(log)
                raise StartupError(f"machinery local exited ({api.wait()}):\n{output}")
            url = api_url_in(line)
        _register(url, workflow, ports)
        yield Stack(url, ports, log)
    finally:
        for process in reversed(started):
            _stop(process)


def write_atomically(path: Path, text: str) -> None:
    """`text` to `path` through a .tmp file beside it: a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text)
    partial.replace(path)


def _register(url: str, workflow: dict[str, Any], ports: dict[str, int]) -> None:
    http = requests.Session()
    for name, port in ports.items():
        definition = json.loads((EXAMPLES / "definitions" / f"service-{name}.json").read_text())
        definition["address"] = f"http://{HOST}:{port}/"
        answer = http.post(url + "/services", json=definition, timeout=10)
        if answer.status_code != 201:
            raise StartupError(f"registering {name}: {answer.status_code} {answer.text}")
    answer = http.post(url + "/workflows", json=workflow, timeout=10)
    if answer.status_code != 201:
        raise StartupError(f"registering {WORKFLOW}: {answer.status_code} {answer.text}")


@dataclass
class Sent:
    index: int
    message: str
    event_id: str | None = None
    status_code: int | None = None
    error: str | None = None
    acknowledged_at: datetime | None = None


@dataclass
class Outcome:
    """How the acknowledged events ended (or did not)."""

    ended: dict[str, dict[str, Any]] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)  # acknowledged, then not found


def send_all(url: str, events: int, concurrency: int) -> tuple[list[Sent], float]:
    sessions = threading.local()

    def send(index: int) -> Sent:
        sent = Sent(index, message_for(index))
        if not hasattr(sessions, "http"):
            sessions.http = requests.Session()
        try:
            answer = sessions.http.post(
                f"{url}/e/{WORKFLOW}", json={"data": {"message": sent.message}}, timeout=30
            )
        except requests.RequestException as error:
            sent.error = f"{type(error).__name__}: {error}"
            return sent
        sent.status_code = answer.status_code
        if answer.status_code == 202:
            body = answer.json()
            sent.event_id = body["event_id"]
            sent.acknowledged_at = datetime.fromisoformat(body["acknowledged_at"])
        else:
            sent.error = answer.text[:200]
        return sent

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(send, range(events)))
    return results, time.perf_counter() - started


def poll_all(url: str, event_ids: list[str], deadline_seconds: float) -> Outcome:
    """Read every event until it is terminal, or until the deadline passes."""
    outcome = Outcome()
    pending = list(dict.fromkeys(event_ids))
    http = requests.Session()
    deadline = time.monotonic() + deadline_seconds
    while pending and time.monotonic() < deadline:
        still: list[str] = []
        for event_id in pending:
            answer = http.get(f"{url}/events/{event_id}", timeout=30)
            if answer.status_code == 404:
                outcome.lost.add(event_id)
                continue
            answer.raise_for_status()
            event = answer.json()
            if event["status"] in TERMINAL:
                outcome.ended[event_id] = event
            else:
                still.append(event_id)
        pending = still
        if pending:
            time.sleep(0.2)
    return outcome


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)), 1) - 1]


def evaluate(
    sent: list[Sent], outcome: Outcome, send_seconds: float, args: argparse.Namespace
) -> dict[str, Any]:
    acknowledged = [s for s in sent if s.event_id is not None]
    unique_ids = {s.event_id for s in acknowledged}
    succeeded, wrong, latencies = 0, [], []
    for item in acknowledged:
        assert item.event_id is not None
        event = outcome.ended.get(item.event_id)
        if event is None:
            continue
        right = (
            event["status"] == "SUCCEEDED"
            and event["data"] == {"message": item.message}
            and event["outputs"] == expected_outputs(item.message)
        )
        if right:
            succeeded += 1
        else:
            wrong.append({"event_id": item.event_id, "status": event["status"]})
        if event.get("ended_at"):
            ended_at = datetime.fromisoformat(event["ended_at"])
            acknowledged_at = datetime.fromisoformat(event["acknowledged_at"])
            latencies.append((ended_at - acknowledged_at).total_seconds() * 1000)
    duplicates = len(acknowledged) - len(unique_ids)
    lost = len(outcome.lost) + duplicates
    not_ended = len(unique_ids) - len(outcome.ended) - len(outcome.lost)
    ends = [datetime.fromisoformat(e["ended_at"]) for e in outcome.ended.values() if e["ended_at"]]
    acks = [s.acknowledged_at for s in acknowledged if s.acknowledged_at is not None]
    completion_span = (max(ends) - min(acks)).total_seconds() if ends and acks else None
    p50, p95 = percentile(latencies, 0.50), percentile(latencies, 0.95)
    return {
        "benchmark": "load",
        "workflow": WORKFLOW,
        "config": {
            "events": args.events,
            "concurrency": args.concurrency,
            "deadline_seconds": args.deadline,
            "time_scale": 1.0,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "counts": {
            "sent": len(sent),
            "acknowledged": len(acknowledged),
            "refused": len(sent) - len(acknowledged),
            "succeeded": succeeded,
            "wrong": len(wrong),
            "lost": lost,
            "not_ended": not_ended,
        },
        "throughput": {
            "acceptance_events_per_second": _rate(len(acknowledged), send_seconds),
            "completion_events_per_second": _rate(len(ends), completion_span),
            "send_seconds": round(send_seconds, 3),
            "completion_seconds": round(completion_span, 3) if completion_span else None,
        },
        "latency_ms": {
            "measured": len(latencies),
            "p50": round(p50, 1) if p50 is not None else None,
            "p95": round(p95, 1) if p95 is not None else None,
            "max": round(max(latencies), 1) if latencies else None,
        },
        "failures": {
            "refused": [
                {"index": s.index, "status_code": s.status_code, "error": s.error}
                for s in sent
                if s.event_id is None
            ][:20],
            "wrong": wrong[:20],
            "lost": sorted(outcome.lost)[:20],
        },
    }


def _rate(count: int, seconds: float | None) -> float | None:
    return round(count / seconds, 1) if seconds else None


def passed(report: dict[str, Any]) -> bool:
    counts = report["counts"]
    return bool(
        counts["succeeded"] == counts["sent"]
        and not any(counts[key] for key in ("refused", "wrong", "lost", "not_ended"))
    )


def table(report: dict[str, Any]) -> str:
    counts, rates, latency = report["counts"], report["throughput"], report["latency_ms"]
    rows = [
        ("events sent", counts["sent"]),
        ("acknowledged (202)", counts["acknowledged"]),
        ("refused", counts["refused"]),
        ("succeeded, right outputs", counts["succeeded"]),
        ("wrong", counts["wrong"]),
        ("lost", counts["lost"]),
        ("not ended by the deadline", counts["not_ended"]),
        ("acceptance (events/s)", rates["acceptance_events_per_second"]),
        ("completion (events/s)", rates["completion_events_per_second"]),
        ("latency p50 (ms)", latency["p50"]),
        ("latency p95 (ms)", latency["p95"]),
        ("latency max (ms)", latency["max"]),
    ]
    config = report["config"]
    title = (
        f"load: {config['events']} events to {report['workflow']}, "
        f"{config['concurrency']} concurrent senders, {report['machine']['cpus']} CPUs"
    )
    width = max(len(label) for label, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{label:<{width}}  {'-' if value is None else value:>10}" for label, value in rows]
    lines.append("PASS" if passed(report) else "FAIL")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=_positive, default=500, help="events to send (500)")
    parser.add_argument("--concurrency", type=_positive, default=32, help="concurrent senders (32)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=300.0,
        help="seconds after the last send by which every event must have ended (300)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS,
        help=f"the JSON report ({RESULTS.relative_to(ROOT)})",
    )
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with local_stack() as stack:
            sent, send_seconds = send_all(stack.url, args.events, args.concurrency)
            event_ids = [s.event_id for s in sent if s.event_id is not None]
            outcome = poll_all(stack.url, event_ids, args.deadline)
            log = list(stack.log)
    except StartupError as error:
        print(f"load benchmark: the stack did not start: {error}", file=sys.stderr)
        return 2
    report = evaluate(sent, outcome, send_seconds, args)
    if not passed(report) and log:
        print("the last lines machinery local printed:", *log, sep="\n", file=sys.stderr)
    write_atomically(args.output, json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"written to {args.output}")
    return 0 if passed(report) else 1


if __name__ == "__main__":
    sys.exit(main())
