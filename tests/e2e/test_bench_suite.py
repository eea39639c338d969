"""The benchmark suite (benchmarks/bench.py) in its quick configuration, so it never rots.

It starts its own runtimes and services on free loopback ports, so it runs beside the
session's `local_stack`. Timings are reported, never asserted: only that the report is
complete, its counts are exact, and every event was right.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "bench.py"
STATUSES = {"met", "NOT MET", "not measured", "n/a"}


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    output = tmp_path_factory.mktemp("bench")
    run = subprocess.run(
        [sys.executable, str(SUITE), "--quick", "--output-dir", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return run, output


@pytest.fixture(scope="module")
def report(quick_run: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    run, output = quick_run
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    document: dict[str, Any] = json.loads((output / "latest.json").read_text())
    return document


def test_the_quick_suite_writes_a_complete_report(
    quick_run: tuple[subprocess.CompletedProcess[str], Path], report: dict[str, Any]
) -> None:
    # Given the suite run in its quick configuration
    _, output = quick_run

    # Then both reports exist, the JSON with every section and what produced it
    markdown = (output / "latest.md").read_text()
    assert report["config"]["name"] == "quick"
    assert report["git"]["commit"]
    assert report["machine"]["cpus"] >= 1
    assert report["prices"]["as_of"]
    for section in ("counts", "costs", "cold_init", "latency", "direct", "throughput", "burst"):
        assert report[section], section
    assert report["failures"] == []
    # And every target has a status from the fixed set, with its measured figure
    figures = [t["figure"] for t in report["targets"]]
    assert len(figures) == len(set(figures)) >= 12
    assert {t["status"] for t in report["targets"]} <= STATUSES
    for heading in (
        "## Targets",
        "## 1.",
        "### Large payloads",
        "## 2.",
        "### STANDARD and EXPRESS",
        "## 3.",
        "## 4.",
        "## 5.",
    ):
        assert heading in markdown
    for target in report["targets"]:
        assert target["figure"] in markdown
    # And a quick run's small burst never claims the 2,000-event target
    burst = next(t for t in report["targets"] if t["figure"].startswith("Events left RUNNING"))
    assert burst["status"] == "not measured"


def test_the_counts_per_event_are_exact(report: dict[str, Any]) -> None:
    cases = report["counts"]["cases"]
    assert set(cases) == {
        "sync-1",
        "sync-3",
        "sync-10",
        "callback",
        "parallel-3",
        "map-100",
        "large-payload",
    }
    for key, case in cases.items():
        per_event = case["per_event"]
        # Every event ended right, with the same counts as every other of its workflow
        assert case["right"] == case["events"] >= 1, key
        assert case["consistent"], key
        assert per_event["errors"] == [], key
        # Its executions found and their transitions read from the histories, Run first
        sfn = per_event["stepfunctions"]
        assert sfn["executions"] == sfn["executions_started"] == len(sfn["states_by_execution"]), (
            key
        )
        assert sfn["transitions"] == len(sfn["states"]) > 0, key
        assert sfn["states"][0] == "Run" and sfn["states"][-1] == "Done", key
        # The step function's invocations counted at the runtime match the history's tasks
        assert per_event["lambda"]["by_function"]["StepFunction"] == sfn["history_lambda_tasks"]
        # Every DynamoDB request costs at least its minimum unit
        dynamo = per_event["dynamodb"]
        assert dynamo["writes"] >= 1 and dynamo["reads"] >= 1, key
        assert dynamo["table_write_units"] >= dynamo["writes"], key
        assert dynamo["read_units"] >= dynamo["reads"] / 2, key
        assert per_event["phases"]["intake"]["requests"]["stepfunctions:StartExecution"] == 1

    for key in ("sync-1", "sync-3", "sync-10", "parallel-3", "map-100", "large-payload"):
        # A sync event, groups and large payloads included: one execution, one API
        # invocation (the intake) and one step-function invocation, no timer
        per_event = cases[key]["per_event"]
        assert per_event["stepfunctions"]["executions"] == 1, key
        assert per_event["scheduler"]["requests"] == per_event["scheduler"]["invocations"] == 0
        assert per_event["lambda"]["by_label"] == {
            "ApiFunction POST /e/{workflow_id}": 1,
            "StepFunction advance": 1,
        }, key
        assert per_event["http_api_requests"] == 1
        assert set(per_event["phases"]) == {"intake", "state loop"}
    # Groups cost the transitions of any sync event; a map of 100 writes per batch of 10
    for key in ("parallel-3", "map-100"):
        assert cases[key]["per_event"]["stepfunctions"]["transitions"] == 3, key
    beyond = (
        cases["map-100"]["per_event"]["dynamodb"]["writes"]
        - cases["sync-1"]["per_event"]["dynamodb"]["writes"]
    )
    assert 5 <= beyond <= 12, beyond
    # The callback event, on either type: two segments, the first dispatching the callback
    # and setting its timer, the callback route starting the second and deleting the timer
    express = report["counts"]["express"]["cases"]
    assert set(express) == {"sync-3", "callback"}
    for machine, measured in (("STANDARD", cases), ("EXPRESS", express)):
        callback = measured["callback"]
        assert callback["state_machine_type"] == machine
        assert callback["right"] == callback["events"] >= 1, machine
        assert callback["consistent"], machine
        per_event = callback["per_event"]
        assert per_event["errors"] == [], machine
        assert per_event["lambda"]["by_label"] == {
            "ApiFunction POST /callbacks/{token}": 1,
            "ApiFunction POST /e/{workflow_id}": 1,
            "StepFunction advance": 2,
        }, machine
        assert per_event["http_api_requests"] == 2
        sfn = per_event["stepfunctions"]
        assert sfn["executions"] == sfn["executions_started"] == 2, machine
        assert sfn["states_by_execution"] == [
            ["Run", "Route", "Suspended"],
            ["Run", "Route", "Done"],
        ], machine
        assert per_event["lambda"]["by_function"]["StepFunction"] == sfn["history_lambda_tasks"]
        scheduler = per_event["scheduler"]
        assert scheduler["create_schedule"] >= 1, machine
        assert scheduler["create_schedule"] == scheduler["delete_schedule"], machine
        assert scheduler["invocations"] == 0, machine  # the callback came before its timeout
        phases = per_event["phases"]
        assert phases["state loop"]["requests"]["scheduler:CreateSchedule"] == 1, machine
        assert phases["callback"]["requests"]["stepfunctions:StartExecution"] == 1, machine
        assert phases["callback"]["requests"]["scheduler:DeleteSchedule"] == 1, machine
        assert not any("SendTask" in r for r in per_event["requests"]), machine
    # The 3-step event on EXPRESS: the same requests as on STANDARD, in one execution
    assert express["sync-3"]["per_event"]["requests"] == cases["sync-3"]["per_event"]["requests"]
    assert express["sync-3"]["per_event"]["stepfunctions"]["executions"] == 1
    # Below the threshold, no S3 request at all
    for key in ("sync-1", "sync-3", "sync-10", "callback", "parallel-3", "map-100"):
        assert cases[key]["per_event"]["s3"] == {
            "puts": 0,
            "gets": 0,
            "other": 0,
            "bytes_put": 0,
            "bytes_read": 0,
            "bytes_stored": 0,
        }, key
        assert not any(r.startswith("s3:") for r in cases[key]["per_event"]["requests"]), key
    # The large event stores each of its 21 values past 16 KiB (the data's 100 KB note and
    # the 20 answers of 200 KB, each once however many places hold it), and keeps them
    s3 = cases["large-payload"]["per_event"]["s3"]
    assert s3["puts"] >= 21
    assert s3["bytes_stored"] >= 100_002 + 20 * 200_002
    assert cases["large-payload"]["per_event"]["by_service"]["s3"] == s3["puts"] + s3["gets"]
    # And the capacity units' source is stated, with moto's own answer checked
    method = report["counts"]["method"]
    assert method["moto_capacity_probe"]["computed_units"] == 5
    assert method["hook_errors"] == []


def test_the_cost_model_follows_the_counts(report: dict[str, Any]) -> None:
    for key, modelled in report["costs"].items():
        transitions = report["counts"]["cases"][key]["per_event"]["stepfunctions"]["transitions"]
        assert modelled["STANDARD"]["step_functions"] == pytest.approx(transitions * 25.0)
        assert modelled["STANDARD"]["total"] > modelled["STANDARD"]["step_functions"]
    # The one-state-per-step baseline of 3 steps makes 7 transitions: $175 per million
    assert report["costs"]["sync-3"]["baseline"]["step_functions"] == pytest.approx(175.0)
    assert report["costs"]["sync-3"]["EXPRESS"]["total"] > 0
    # EXPRESS runs the callback workflow, from its own counts: a request per segment, and
    # no Scheduler cost while the callback comes before its timer fires
    callback = report["costs"]["callback"]
    assert callback["express_measured"] and report["costs"]["sync-3"]["express_measured"]
    assert callback["express_usage"]["executions"] == 2
    assert 2.0 < callback["EXPRESS"]["step_functions"] < callback["STANDARD"]["step_functions"]
    assert callback["EXPRESS"]["scheduler"] == callback["STANDARD"]["scheduler"] == 0
    # S3: nothing below the threshold; the large event's requests and storage priced
    assert report["costs"]["sync-3"]["STANDARD"]["s3_puts"] == 0
    assert report["costs"]["sync-3"]["STANDARD"]["s3_storage"] == 0
    s3 = report["counts"]["cases"]["large-payload"]["per_event"]["s3"]
    large = report["costs"]["large-payload"]
    for machine in ("STANDARD", "EXPRESS"):
        assert large[machine]["s3_puts"] == pytest.approx(s3["puts"] * 5.0)
        assert large[machine]["s3_gets"] == pytest.approx(s3["gets"] * 0.4)
        assert large[machine]["s3_storage"] > 0
    assert large["baseline"] is None  # its steps are not the 1-step event's
    target = next(t for t in report["targets"] if t["figure"] == "3-step event makes no S3 request")
    assert target["status"] == "met"


def test_the_capacity_model_and_the_latency_costs_are_reported(
    quick_run: tuple[subprocess.CompletedProcess[str], Path], report: dict[str, Any]
) -> None:
    # Given the quick run's report
    _, output = quick_run
    markdown = (output / "latest.md").read_text()

    # Then the capacity model is built from this run's 3-step counts, on both types, for one
    # workflow and for a deployment, each row with what binds and whether the target is met
    scale = report["scale"]
    assert scale["workflow"] == "sync-3"
    assert scale["service_latency_ms"] == report["config"]["service_latency_ms"] == 100
    counted = report["counts"]["cases"]["sync-3"]["per_event"]["dynamodb"]
    assert scale["profiles"]["STANDARD"]["index_write_units"] == counted["index_write_units"]
    rows = {(row["scope"], row["machine"]): row for row in scale["rows"]}
    assert set(rows) == {
        (scope, machine)
        for scope in ("one workflow", "deployment")
        for machine in ("STANDARD", "EXPRESS")
    }
    for row in rows.values():
        assert row["binding"] in {c["key"] for c in row["usage"]}
        assert row["sustainable"] is None or row["sustainable"] > 0
    assert rows[("one workflow", "EXPRESS")]["target"] == 3000
    assert rows[("deployment", "EXPRESS")]["target"] == 10000
    # its limits at the template's throttling, read from template.yaml
    assert scale["parameters"]["ApiThrottlingRateLimit"]["source"] == "template.yaml"
    # and the EXPRESS targets among the targets
    figures = [t["figure"] for t in report["targets"]]
    assert sum(f.startswith("Sustained events/s") for f in figures) == 2
    # And the cost at 0, 100 and 1,000 ms of service latency and 256, 512 and 1,024 MB
    costs = report["latency_costs"]
    assert costs["memories"] == [256, 512, 1024] and costs["latencies"] == [0, 100, 1000]
    cases = {(row["workflow"], row["machine"]) for row in costs["rows"]}
    assert {("sync-3", "STANDARD"), ("sync-3", "EXPRESS")} <= cases
    for row in costs["rows"]:
        assert int(row["cheapest"]) in costs["memories"]
    # with the step function's cold init at each memory size (measured or modelled)
    memory = report["cold_init_memory"]
    assert memory["full_speed_init_ms"] > 0
    assert set(memory["memories"]) == {"256", "512", "1024"}
    for heading in ("## 6. Capacity at scale", "## 7. Service latency"):
        assert heading in markdown


def test_cold_init_and_the_local_figures_were_measured(report: dict[str, Any]) -> None:
    handlers = report["cold_init"]["handlers"]
    assert set(handlers) == {"bare boto3", "ApiFunction", "StepFunction"}
    for name, handler in handlers.items():
        assert handler["init_ms"] > 0 and handler["max_rss_mb"] > 0, name
        # The handlers load nothing from outside the layer's dependency set (moto least)
        assert handler["outside_layer"] == [] and not handler["moto_loaded"], name
    assert report["latency"]["end_to_end_ms"]["measured"] == report["config"]["latency_events"]
    assert report["direct"]["wrong_count"] == 0
    assert [t["concurrency"] for t in report["throughput"]] == [1, 8, 32]
    for run in [*report["throughput"], report["burst"]]:
        assert run["passed"]
        assert run["counts"]["succeeded"] == run["events"]
