"""The load benchmark (benchmarks/load.py) in a tiny configuration, so it never rots.

It starts its own stack on free loopback ports, so it runs beside the session's
`local_stack`. No timing is asserted: only that every event was checked and right.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = ROOT / "benchmarks" / "load.py"


def test_the_load_benchmark_runs_every_event_to_its_own_outputs(tmp_path: Path) -> None:
    # Given the benchmark in a tiny configuration, writing its report to a scratch file
    report_path = tmp_path / "load.json"

    # When it runs
    run = subprocess.run(
        [
            sys.executable,
            str(BENCHMARK),
            "--events",
            "20",
            "--concurrency",
            "4",
            "--deadline",
            "120",
            "--output",
            str(report_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    # Then it passes, and says so in its table
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS" in run.stdout.splitlines()
    # And its report counts every event sent, acknowledged and right, none lost
    report = json.loads(report_path.read_text())
    assert report["config"]["events"] == 20
    assert report["config"]["concurrency"] == 4
    assert report["counts"] == {
        "sent": 20,
        "acknowledged": 20,
        "refused": 0,
        "succeeded": 20,
        "wrong": 0,
        "lost": 0,
        "not_ended": 0,
    }
    # And it measured what it reports (values, not speeds)
    assert report["latency_ms"]["measured"] == 20
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p95"]
    assert report["throughput"]["acceptance_events_per_second"] > 0
    assert report["throughput"]["completion_events_per_second"] > 0


def _load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_load_benchmark_counts_refused_wrong_lost_and_unended_events_as_failures() -> None:
    # Given six events sent: one refused, and five acknowledged that end in different ways
    load = _load_benchmark()
    args = load.parse_args(["--events", "6", "--concurrency", "2"])
    acknowledged_at = datetime(2026, 1, 1, tzinfo=UTC)
    sent = [load.Sent(index, load.message_for(index)) for index in range(6)]
    for item in sent[1:]:
        item.event_id = f"e{item.index}"
        item.status_code = 202
        item.acknowledged_at = acknowledged_at
    sent[0].status_code = 503
    sent[0].error = "dispatch failed"

    def ended(item: Any, status: str, outputs: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "status": status,
            "data": {"message": item.message},
            "outputs": outputs,
            "acknowledged_at": acknowledged_at.isoformat(),
            "ended_at": (acknowledged_at + timedelta(milliseconds=100)).isoformat(),
        }

    right = ended(sent[1], "SUCCEEDED", load.expected_outputs(sent[1].message))
    outcome = load.Outcome(
        ended={
            "e1": right,
            "e2": ended(sent[2], "FAILED", None),
            "e3": ended(sent[3], "SUCCEEDED", {"message": "?", "space_count": 0}),
        },
        lost={"e4"},
    )  # and e5 never ended

    # When they are evaluated
    report = load.evaluate(sent, outcome, 1.0, args)

    # Then each failure is counted as what it is, and the run does not pass
    assert report["counts"] == {
        "sent": 6,
        "acknowledged": 5,
        "refused": 1,
        "succeeded": 1,
        "wrong": 2,
        "lost": 1,
        "not_ended": 1,
    }
    assert not load.passed(report)
    assert "FAIL" in load.table(report).splitlines()
    # And the expected outputs are the example workflow's: upper-cased, reversed, spaces
    assert load.expected_outputs("ab c") == {"message": "C BA", "space_count": 1}
