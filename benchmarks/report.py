"""The suite's report: the modelled costs, every target's status, and the Markdown tables.

A target is `met` only when its figure was measured in this run and satisfies it; a figure
that was not measured (or not at the target's scale, like a quick run's small burst) says
so, and a target defined on another machine shape (2 cores) says `n/a` rather than `met`.
"""

from __future__ import annotations

import math
from typing import Any

import costs
import scale

MET, NOT_MET, NOT_MEASURED, NOT_APPLICABLE = "met", "NOT MET", "not measured", "n/a"
TARGET_CORES = 2
BURST_TARGET = 2000


# --- usage and costs -----------------------------------------------------------------------

# The callback workflow and the 3-step event before segments (issue 15), when a callback
# waited in its execution (`.waitForTaskToken`) and EXPRESS refused the callback workflow:
# benchmarks/results/latest.json of commit 0ae1217 (run 2026-12-04, configuration `full`),
# at the prices of costs.py (unchanged since; no Scheduler then).
# The run before metrics, trace context and correlated logs (issue 13): benchmarks/results/
# latest.json at commit 7ccb704 (2026-12-04, full), the last run without them.
BEFORE_OPERATIONS: dict[str, Any] = {
    "commit": "7ccb704",
    "date": "2026-12-04",
    "cold_init_ms": {"ApiFunction": 704.3, "StepFunction": 620.8},
    # sync-3: DynamoDB requests per event, and the step function's own time per event (its
    # duration less the services' time)
    "dynamodb_requests": {"sync-3": 8, "sync-10": 15, "map-100": 14},
    "step_overhead_ms": {"sync-3": 27.32},
}


BEFORE_SEGMENTS: dict[str, Any] = {
    "source": "benchmarks/results/latest.json at commit 0ae1217 (2026-12-04, full)",
    "cases": {
        "callback": {
            "STANDARD": {
                "executions": 1,
                "transitions": 7,
                "lambda": {"ApiFunction": 2, "StepFunction": 3},
                "scheduler_requests": 0,
                "timers_fired": 0,
                "reads": 7,
                "read_units": 9.0,
                "writes": 7,
                "write_units": 20.0,
                "lambda_cost": 1.7,
                "dynamodb_cost": 13.625,
                "step_functions": 175.0,
                "total": 192.325,
            },
            "EXPRESS": None,  # refused: a Task waited for a task token
        },
        "sync-3": {
            "STANDARD": {
                "executions": 1,
                "transitions": 3,
                "lambda": {"ApiFunction": 1, "StepFunction": 1},
                "scheduler_requests": 0,
                "timers_fired": 0,
                "reads": 3,
                "read_units": 5.0,
                "writes": 5,
                "write_units": 8.0,
                "lambda_cost": 0.7083,
                "dynamodb_cost": 5.625,
                "step_functions": 75.0,
                "total": 82.3333,
            },
            "EXPRESS": {
                "executions": 1,
                "transitions": 3,
                "lambda": {"ApiFunction": 1, "StepFunction": 1},
                "scheduler_requests": 0,
                "timers_fired": 0,
                "reads": 3,
                "read_units": 5.0,
                "writes": 5,
                "write_units": 8.0,
                "lambda_cost": 0.7083,
                "dynamodb_cost": 5.625,
                "step_functions": 1.1042,
                "total": 8.4375,
            },
        },
    },
}


def usage_of(case: dict[str, Any]) -> costs.Usage:
    counts, timings = case["per_event"], case["timings"]
    sfn = counts["stepfunctions"]
    scheduler = counts.get("scheduler") or {}
    return costs.Usage(
        http_requests=counts["http_api_requests"],
        lambda_invocations=counts["lambda"]["invocations"],
        lambda_gb_seconds=timings["lambda_gb_seconds"],
        read_units=counts["dynamodb"]["read_units"],
        write_units=counts["dynamodb"]["write_units"],
        transitions=sfn["transitions"] or 0,
        executions=sfn.get("executions") or sfn["executions_started"],
        execution_ms=timings["execution_ms"] or 0.0,
        secrets_calls=sum(
            n for key, n in counts["requests"].items() if key.startswith("secretsmanager:")
        ),
        s3_puts=counts["s3"]["puts"],
        s3_gets=counts["s3"]["gets"],
        s3_bytes_stored=counts["s3"]["bytes_stored"] or 0,
        execution_ms_each=tuple(timings.get("execution_ms_each") or ()),
        scheduler_invocations=scheduler.get("invocations", 0),
        scheduler_requests=scheduler.get("requests", 0),
    )


def phase_usage(case: dict[str, Any], phase: str) -> costs.Usage:
    part = case["per_event"]["phases"].get(phase)
    if part is None:
        return costs.Usage(0, 0, 0, 0, 0, 0, 0, 0)
    invocations = part["lambda_invocations"]
    return costs.Usage(
        http_requests=invocations if phase in ("intake", "callback", "api") else 0,
        lambda_invocations=invocations,
        lambda_gb_seconds=case["timings"]["lambda_gb_seconds_by_phase"].get(phase, 0.0),
        read_units=part["read_units"],
        write_units=part["write_units"],
        transitions=0,
        executions=0,
        execution_ms=(case["timings"]["execution_ms"] or 0.0) if phase == "state loop" else 0.0,
    )


def model_costs(
    cases: dict[str, dict[str, Any]], express: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Each case's cost per 1M events on STANDARD (its counts), on EXPRESS (its counts on an
    EXPRESS state machine where `express` has them, else its STANDARD counts: the same
    requests, each execution billed by its duration) and the one-state-per-step baseline."""
    modelled: dict[str, dict[str, Any]] = {}
    one_step = cases.get("sync-1")
    express = express or {}
    for key, case in cases.items():
        usage = usage_of(case)
        express_usage = usage_of(express[key]) if key in express else usage
        sync = case["callback_steps"] == 0
        baseline = None
        # The baseline's steps are the 1-step event's: not those of an event whose payloads
        # go to S3 (each of its steps writes and reads more than a small one's).
        small = not _s3_requests(case)
        if sync and small and one_step is not None:
            baseline = costs.one_state_per_step(
                phase_usage(case, "intake"), phase_usage(one_step, "state loop"), case["steps"]
            )
        modelled[key] = {
            "usage": vars(usage),
            "STANDARD": costs.cost_per_million(usage, "STANDARD"),
            # Segments (issue 15): EXPRESS runs every workflow, callbacks included.
            "EXPRESS": costs.cost_per_million(express_usage, "EXPRESS"),
            "express_measured": key in express,
            "express_usage": vars(express_usage),
            "baseline": costs.cost_per_million(baseline, "STANDARD") if baseline else None,
            "baseline_usage": vars(baseline) if baseline else None,
        }
    return modelled


def model_scale(
    counts: dict[str, Any], service_latency_ms: float, deployment_workflows: int
) -> dict[str, Any] | None:
    """The capacity model (scale.py) of the 3-step event's counts in this run, with the
    template's parameters."""
    return scale.model(
        counts["cases"],
        (counts.get("express") or {}).get("cases"),
        scale.template_parameters(),
        service_latency_ms,
        deployment_workflows,
    )


def model_latency_costs(
    counts: dict[str, Any], workflows: tuple[str, ...] = ("sync-3", "callback")
) -> dict[str, Any]:
    """Cost per 1M events at each service latency and step-function memory size, from each
    workflow's counts on each type (EXPRESS: where it ran on EXPRESS)."""
    express = (counts.get("express") or {}).get("cases") or {}
    cases: dict[str, dict[str, Any]] = {}
    usages: dict[str, dict[str, costs.Usage]] = {}
    for key in workflows:
        if key not in counts["cases"]:
            continue
        measured = {"STANDARD": counts["cases"][key], "EXPRESS": express.get(key)}
        cases[key] = {machine: case for machine, case in measured.items() if case is not None}
        usages[key] = {machine: usage_of(case) for machine, case in cases[key].items()}
    return scale.latency_costs(cases, usages, workflows=tuple(cases))


# --- targets -------------------------------------------------------------------------------


def _target(figure: str, target: str, measured: str, status: str, note: str = "") -> dict[str, str]:
    return {
        "figure": figure,
        "target": target,
        "measured": measured,
        "status": status,
        "note": note,
    }


def _status(ok: bool | None) -> str:
    return NOT_MEASURED if ok is None else MET if ok else NOT_MET


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}f}"
    return str(int(value)) if isinstance(value, float) else str(value)


def _s3_requests(case: dict[str, Any]) -> int:
    return sum(n for key, n in case["per_event"]["requests"].items() if key.startswith("s3:"))


def _advances(case: dict[str, Any]) -> int:
    labels = case["per_event"]["lambda"]["by_label"]
    return sum(n for label, n in labels.items() if label.endswith(" advance"))


# A map of 100 elements, 10 at a time: about one checkpoint per batch of ten (issue 12).
MAP_WRITES_BEYOND_ONE_STEP = 12


def _group_targets(
    cases: dict[str, dict[str, Any]], one: dict[str, Any] | None
) -> list[dict[str, str]]:
    """Groups run inside the step function: no state transition of their own, and a map's
    checkpoints by the batch."""
    found = []
    for key in ("parallel-3", "map-100"):
        case = cases.get(key)
        transitions = case["per_event"]["stepfunctions"]["transitions"] if case else None
        found.append(
            _target(
                f"State transitions, {key}",
                "≤ 3 (as the 3-step event)",
                _num(transitions),
                _status(None if transitions is None else transitions <= 3),
            )
        )
    mapped = cases.get("map-100")
    if mapped and one:
        beyond = mapped["per_event"]["dynamodb"]["writes"] - one["per_event"]["dynamodb"]["writes"]
        found.append(
            _target(
                "DynamoDB writes of a 100-element map (10 at a time), beyond the 1-step event's",
                f"≤ {MAP_WRITES_BEYOND_ONE_STEP} (about one per batch)",
                _num(beyond),
                _status(beyond <= MAP_WRITES_BEYOND_ONE_STEP),
            )
        )
    return found


def targets(document: dict[str, Any]) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    cases = document["counts"]["cases"]
    one, three, ten = cases.get("sync-1"), cases.get("sync-3"), cases.get("sync-10")
    if one and three and ten:
        span = ten["steps"] - one["steps"]

        def marginal(kind: str) -> tuple[float, float, bool]:
            first, last = one["per_event"]["dynamodb"][kind], ten["per_event"]["dynamodb"][kind]
            step = (last - first) / span
            fixed = first - step * one["steps"]
            linear = (
                abs(fixed + step * three["steps"] - three["per_event"]["dynamodb"][kind]) < 1e-9
            )
            return step, fixed, linear

        writes, fixed_writes, linear_w = marginal("writes")
        units, _, _ = marginal("write_units")
        found.append(
            _target(
                "DynamoDB writes per sync step, beyond a fixed cost per event",
                "≤ 1",
                f"{_num(writes)} per step + {_num(fixed_writes)} per event "
                f"({_num(units)} WRU per step)",
                _status(writes <= 1),
                "" if linear_w else "not linear in the steps: see the per-event table",
            )
        )
        reads, fixed_reads, linear_r = marginal("reads")
        found.append(
            _target(
                "DynamoDB reads per sync step, beyond a fixed cost per event",
                "0",
                f"{_num(reads)} per step + {_num(fixed_reads)} per event",
                _status(reads == 0),
                "" if linear_r else "not linear in the steps: see the per-event table",
            )
        )
    else:
        found.append(
            _target("DynamoDB writes and reads per sync step", "≤ 1 and 0", "-", NOT_MEASURED)
        )
    runs = [(key, _advances(c), c["sync_runs"]) for key, c in cases.items()]
    found.append(
        _target(
            "Step-function invocations per run of consecutive sync steps",
            "≤ 1",
            ", ".join(f"{key}: {n} for {r} run{'s' * (r != 1)}" for key, n, r in runs),
            _status(all(n <= r for _, n, r in runs) if runs else None),
            "counts the `advance` invocations (one dispatches a callback step itself)",
        )
    )
    found += _group_targets(cases, one)
    transitions = three["per_event"]["stepfunctions"]["transitions"] if three else None
    found.append(
        _target(
            "State transitions, 3-step sync event",
            "≤ 4",
            _num(transitions),
            _status(None if transitions is None else transitions <= 4),
        )
    )
    found.append(
        _target(
            "3-step event makes no S3 request",
            "0 (payloads under 16 KiB stay in the item)",
            "-" if three is None else f"{_s3_requests(three)} S3 requests",
            _status(None if three is None else _s3_requests(three) == 0),
        )
    )
    modelled = document["costs"].get("sync-3")
    for machine, limit in (("EXPRESS", 5.0), ("STANDARD", 80.0)):
        total = modelled[machine]["total"] if modelled and modelled[machine] else None
        found.append(
            _target(
                f"Cost per 1M 3-step events, {machine}",
                f"≤ ${limit:.0f}",
                "-" if total is None else f"${total:.2f}",
                _status(None if total is None else total <= limit),
                _cost_note(modelled, machine, limit, three) if total and total > limit else "",
            )
        )
    for name, handler in document["cold_init"]["handlers"].items():
        if name == "bare boto3":
            continue
        found.append(
            _target(
                f"Cold init, {name}",
                "≤ 1.3 × bare boto3",
                f"{handler['init_ratio']} × ({_num(handler['init_ms'], 1)} ms vs "
                f"{_num(document['cold_init']['handlers']['bare boto3']['init_ms'], 1)} ms)",
                _status(handler["init_ratio"] <= 1.3),
                "" if handler["init_ratio"] <= 1.3 else COLD_INIT_WHY,
            )
        )
    p50 = document["latency"]["end_to_end_ms"]["p50"]
    found.append(
        _target(
            "Local latency p50, 3-step example end to end",
            "≤ 40 ms",
            f"{_num(p50, 1)} ms",
            _status(None if p50 is None else p50 <= 40),
        )
    )
    ratio = document["latency_ratio"]
    found.append(
        _target(
            "Local latency p50 ÷ the direct calls' p50",
            "≤ 7 ×",
            f"{_num(ratio)} ×",
            _status(None if ratio is None else ratio <= 7),
            _latency_note(document) if ratio is not None and ratio > 7 else "",
        )
    )
    rates = [t["throughput"]["completion_events_per_second"] for t in document["throughput"]]
    cores = document["machine"]["usable_cpus"] or document["machine"]["cpus"]
    lowest = min(rates) if rates and None not in rates else None
    status = _status(None if lowest is None else lowest >= 25)
    if cores != TARGET_CORES and status != NOT_MEASURED:
        status = NOT_APPLICABLE
    found.append(
        _target(
            "Local throughput (lowest of 1, 8 and 32 senders)",
            "≥ 25 events/s on 2 cores",
            f"{_num(lowest, 1)} events/s on {cores} cores",
            status,
            "" if cores == TARGET_CORES else f"the target is for {TARGET_CORES} cores",
        )
    )
    found += _scale_targets(document.get("scale"))
    found += _operations_targets(cases, document.get("before_operations") or BEFORE_OPERATIONS)
    burst = document["burst"]
    counts = burst["counts"]
    unended = counts["not_ended"] + counts["lost"]
    status = NOT_MET if unended else (MET if burst["events"] >= BURST_TARGET else NOT_MEASURED)
    found.append(
        _target(
            "Events left RUNNING (or lost) in a burst",
            f"0 of {BURST_TARGET:,}",
            f"{unended} of {burst['events']:,}",
            status,
            "" if burst["events"] >= BURST_TARGET else f"the burst was {burst['events']} events",
        )
    )
    return found


def _scale_targets(modelled: dict[str, Any] | None) -> list[dict[str, str]]:
    """Issue 18's rates (EXPRESS), to reach with the template's defaults or with documented
    increases (soft quotas and template parameters): one row each, saying both."""
    if not modelled:
        return []
    found = []
    for row in modelled["rows"]:
        target = row["target"]
        if target is None:
            continue
        scope = row["scope"]
        if scope == "deployment":
            scope = f"deployment ({row['workflows']} workflows)"
        sustainable = row["sustainable"]
        reached = row["reached"]
        raises = "; ".join(r["raise"] for r in row["raises"])
        found.append(
            _target(
                f"Sustained events/s, {scope}, {row['machine']}",
                f"≥ {target:,.0f} with the defaults or documented increases (modelled)",
                f"{_rate(sustainable)} with the defaults (binds: {row['binding_name']}); "
                f"{target:,.0f} {reached}",
                _status(not reached.startswith("no")),
                f"raise: {raises}" if raises else "",
            )
        )
    return found


def _rate(value: float | None) -> str:
    """A sustained rate, rounded down."""
    return "unbounded" if value is None else f"{math.floor(value):,} events/s"


# Why the handlers' cold init stays above the target (measured while it was brought down):
# the bare handler plus powertools' Logger and Metrics and one pydantic model is already about
# 1.4 x, and the validating resolver about 1.55 x; deferring those into the first request would
# not shorten a real cold start, only move it.
COLD_INIT_WHY = (
    "what is left is pydantic and the validating powertools resolver, which every request "
    "needs (bare + Logger/Metrics + one pydantic model is about 1.4 ×); deferring them would "
    "only move the cost into the first request. The deployed layer is precompiled, which this "
    "venv-based measurement cannot show"
)


def _cost_note(
    modelled: dict[str, Any], machine: str, limit: float, case: dict[str, Any] | None
) -> str:
    """What the modelled cost is made of, and what the target would leave for DynamoDB."""
    parts = modelled[machine]
    dynamodb = parts["dynamodb_writes"] + parts["dynamodb_reads"]
    rest = parts["total"] - dynamodb
    units = case["per_event"]["dynamodb"] if case else {}
    left = max(limit - rest, 0)
    return (
        f"DynamoDB ${dynamodb:.2f} ({_num(units.get('write_units'))} WRU: "
        f"{_num(units.get('table_write_units'))} table + {_num(units.get('index_write_units'))} "
        f"index; {_num(units.get('read_units'))} RRU) + the rest ${rest:.2f} (HTTP API, Lambda, "
        f"Step Functions): the target leaves ${left:.2f} for DynamoDB, about "
        f"{left / costs.PRICES.dynamodb_per_million_write_units:.1f} WRU, while one write unit "
        "per step and per status change in the listing index (created, running, ended) plus "
        "the event and its claim already come to more. The plan is no longer among them (stored "
        "once per workflow version); the index's RUNNING write is kept, or listing the running "
        "events (?status=RUNNING) would miss them, and folding it would save one WRU "
        f"(${costs.PRICES.dynamodb_per_million_write_units:.2f}), not the gap"
    )


def _latency_note(document: dict[str, Any]) -> str:
    direct = document["direct"]["ms"]["p50"]
    end_to_end = document["latency"]["end_to_end_ms"]["p50"]
    return (
        f"the example services answer in {_num(direct / 3)} ms each, so the direct baseline is "
        f"{_num(direct)} ms; the local runtime's own cost ({_num(end_to_end - direct, 1)} ms: "
        "the HTTP hop, the in-process moto DynamoDB calls and Step Functions interpreter) is "
        "fixed, so the ratio is met only against slower services (the prototype's took 5.5 ms)"
    )


def failures(results: dict[str, Any]) -> list[str]:
    """What makes the suite fail: events refused, lost, wrong or unended (never speed)."""
    found = []
    measured = [(key, case) for key, case in results["counts"]["cases"].items()]
    express = (results["counts"].get("express") or {}).get("cases") or {}
    measured += [(f"{key} on EXPRESS", case) for key, case in express.items()]
    for key, case in measured:
        if case["right"] != case["events"]:
            found.append(
                f"counting {key}: {case['events'] - case['right']} events wrong or unended"
            )
    if results["latency"]["wrong_count"]:
        found.append(f"latency: {results['latency']['wrong_count']} events wrong or unended")
    for run in [*results["throughput"], results["burst"]]:
        if not run["passed"]:
            bad = {
                k: v
                for k, v in run["counts"].items()
                if k not in ("sent", "acknowledged", "succeeded") and v
            }
            found.append(f"{run['events']} events from {run['concurrency']} senders: {bad}")
    return found


def build(meta: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    document = {
        "benchmark": "machinery",
        **meta,
        "prices": costs.prices_table(),
        **results,
        "costs": model_costs(
            results["counts"]["cases"],
            (results["counts"].get("express") or {}).get("cases"),
        ),
        "before_segments": BEFORE_SEGMENTS,
        "before_operations": BEFORE_OPERATIONS,
        "latency_ratio": _latency_ratio(results),
    }
    config = meta.get("config") or {}
    document["scale"] = model_scale(
        results["counts"],
        config.get("service_latency_ms", 100.0),
        config.get("deployment_workflows", scale.DEPLOYMENT_WORKFLOWS),
    )
    document["latency_costs"] = model_latency_costs(results["counts"])
    document["targets"] = targets(document)
    document["failures"] = failures(results)
    return document


def _latency_ratio(results: dict[str, Any]) -> float | None:
    local, direct = results["latency"]["end_to_end_ms"]["p50"], results["direct"]["ms"]["p50"]
    return round(local / direct, 2) if local is not None and direct else None


# --- Markdown --------------------------------------------------------------------------------


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.2f}"


def _requests(requests: dict[str, int]) -> str:
    return ", ".join(f"{key.split(':')[1]} {n}" for key, n in requests.items()) or "-"


def markdown(document: dict[str, Any]) -> str:
    config, machine, git = document["config"], document["machine"], document["git"]
    commit = (git["commit"] or "?")[:12] + (" (uncommitted changes)" if git["dirty"] else "")
    lines = [
        "# Machinery benchmarks",
        "",
        f"{document['date']} · commit {commit} · {machine['usable_cpus'] or machine['cpus']} "
        f"CPUs, Python {machine['python']}, {machine['platform']} · configuration "
        f"`{config['name']}` · {document['seconds']} s",
        "",
        "Generated by `make bench` (benchmarks/bench.py); every number is in latest.json.",
        "Benchmarks report: nothing here fails on speed.",
        "",
        "## Targets",
        "",
    ]
    lines += _table(
        ["figure", "target", "measured", "status", "note"],
        [
            [t["figure"], t["target"], t["measured"], f"**{t['status']}**", t["note"]]
            for t in document["targets"]
        ],
    )
    if document["failures"]:
        lines += ["**Failures:** " + "; ".join(document["failures"]), ""]
    lines += _counts_section(document)
    lines += _groups_section(document)
    lines += _payloads_section(document)
    lines += _costs_section(document)
    lines += _types_section(document)
    lines += _cold_section(document)
    lines += _local_section(document)
    lines += _scale_section(document)
    lines += _latency_section(document)
    lines += _operations_section(document)
    return "\n".join(lines)


def _operations_targets(cases: dict[str, Any], before: dict[str, Any]) -> list[dict[str, str]]:
    """Issue 13: metrics, trace context and logs add no DynamoDB request."""
    compared = {
        key: (was, sum(cases[key]["per_event"]["dynamodb"].get(k, 0) for k in KINDS))
        for key, was in before["dynamodb_requests"].items()
        if key in cases
    }
    if not compared:
        return []
    measured = ", ".join(f"{key}: {was} → {now}" for key, (was, now) in compared.items())
    return [
        _target(
            "DynamoDB requests per event with metrics, trace context and logs",
            f"as before them (commit {before['commit']})",
            measured,
            _status(all(now <= was for was, now in compared.values())),
        )
    ]


KINDS = ("reads", "writes", "other")


def _operations_section(document: dict[str, Any]) -> list[str]:
    """What the metrics (one EMF line per moment), the trace context (a header per call) and
    the correlated logs cost: no AWS request, a little time."""
    before = document.get("before_operations") or BEFORE_OPERATIONS
    cases = document["counts"]["cases"]
    cold = document["cold_init"]["handlers"]
    rows = []
    for key, was in before["dynamodb_requests"].items():
        if key not in cases:
            continue
        now = sum(cases[key]["per_event"]["dynamodb"].get(kind, 0) for kind in KINDS)
        rows.append([f"DynamoDB requests per event, {key}", str(was), str(now)])
    for handler, was in before["cold_init_ms"].items():
        if handler in cold:
            rows.append([f"cold init, {handler}, ms", f"{was:g}", f"{cold[handler]['init_ms']:g}"])
    if "sync-3" in cases:
        timings = cases["sync-3"]["timings"]
        own = (
            timings["lambda_duration_ms"]["StepFunction"]
            - timings["lambda_service_ms"]["StepFunction"]
        )
        steps = cases["sync-3"]["steps"]
        was = before["step_overhead_ms"]["sync-3"]
        rows.append(
            [
                "step function's own time per 3-step event (per call), ms",
                f"{was:.2f} ({was / steps:.2f})",
                f"{own:.2f} ({own / steps:.2f})",
            ]
        )
    lines = [
        "## 8. Operating it: what metrics, trace context and logs cost",
        "",
        "Each service call now sends `traceparent` and writes one log line and one or two "
        "metrics records (CloudWatch embedded metric format: lines on standard output, no "
        "AWS request); each event writes its own at intake and at its end. Before: "
        f"benchmarks/results/latest.json at commit {before['commit']} ({before['date']}, "
        "full), the last run without them. Cold init and durations move from run to run on "
        "this machine by more than the difference (section 3's samples); the request "
        "counts do not move.",
        "",
    ]
    lines += _table(["figure", "before", "now"], rows)
    return lines


def _counts_section(document: dict[str, Any]) -> list[str]:
    counts = document["counts"]
    cases = counts["cases"]
    own = ", ".join(key for key, case in cases.items() if case.get("own_data"))
    own = f", except {own}: data of their own" if own else ""
    lines = [
        "## 1. AWS requests per event",
        "",
        "Counted, not estimated: botocore hooks on every client of an in-process local "
        "runtime, one event at a time (the example event, "
        f"{counts['method']['event_data']}{own}); Lambda invocations where the runtime invokes a "
        "handler; state transitions from the execution histories (every execution of the event: "
        "a callback's event runs in two). Capacity units: "
        f"{counts['method']['capacity_units']}.",
        "",
    ]
    rows = []
    for key, case in cases.items():
        per = case["per_event"]
        dynamo, lam, sfn = per["dynamodb"], per["lambda"], per["stepfunctions"]
        steps = case["steps"]
        rows.append(
            [
                f"{key} ({case['workflow']})",
                steps,
                f"{dynamo['reads']} ({_num(dynamo['read_units'])} RRU)",
                f"{dynamo['writes']} ({_num(dynamo['write_units'])} WRU: "
                f"{_num(dynamo['table_write_units'])} table + "
                f"{_num(dynamo['index_write_units'])} index)",
                " + ".join(f"{n} {f}" for f, n in lam["by_function"].items()),
                sfn.get("executions") or sfn["executions_started"],
                sfn["transitions"],
                f"{_num(dynamo['reads'] / steps)} / {_num(dynamo['writes'] / steps)} / "
                f"{_num(lam['invocations'] / steps)} / {_num((sfn['transitions'] or 0) / steps)}",
                "yes" if case["consistent"] else f"**no** ({case['events']} events)",
            ]
        )
    lines += _table(
        [
            "workflow",
            "steps",
            "DynamoDB reads",
            "DynamoDB writes",
            "Lambda invocations",
            "executions",
            "state transitions",
            "per step: reads / writes / invocations / transitions",
            "same for every event",
        ],
        rows,
    )
    rows = []
    for key, case in cases.items():
        for phase, part in case["per_event"]["phases"].items():
            rows.append(
                [
                    key,
                    phase,
                    _requests(part["requests"]),
                    _num(part["read_units"]),
                    _num(part["write_units"]),
                    part["lambda_invocations"],
                ]
            )
    lines += [
        "By phase (intake: the API serving POST /e; state loop: the step function; "
        "callback: the API serving the callback):",
        "",
    ]
    lines += _table(["workflow", "phase", "requests", "RRU", "WRU", "invocations"], rows)
    labels = {key: case["per_event"]["lambda"]["by_label"] for key, case in cases.items()}
    lines += [
        "Lambda invocations by route or action: "
        + "; ".join(
            f"{key}: " + ", ".join(f"{label} × {n}" for label, n in found.items())
            for key, found in labels.items()
        ),
        "",
    ]
    probe = counts["method"]["moto_capacity_probe"]
    lines += [
        f"moto's own ConsumedCapacity for a 5 KB PutItem: {probe['moto_units']} "
        f"(DynamoDB bills {probe['computed_units']}), so the units above are "
        + ("moto's." if probe["size_aware"] else "computed from the items' sizes."),
        "",
    ]
    return lines


def _groups_section(document: dict[str, Any]) -> list[str]:
    """Parallel branches and a map, beside the 3-step event: what each costs and takes."""
    cases = document["counts"]["cases"]
    keys = [key for key in ("sync-3", "parallel-3", "map-100") if key in cases]
    if len(keys) < 2:
        return []
    lines = [
        "### Groups: parallel branches and a map",
        "",
        "The same services, called by a 3-branch parallel group and by a map over 100 words "
        "(10 at a time), beside the 3-step chain: every call of a group is made inside the "
        "step function's invocation, so the state transitions stay those of any sync event, "
        "and a map writes a checkpoint per batch of ended calls. Local latency: the "
        "execution's duration on this machine (median).",
        "",
    ]
    rows = []
    for key in keys:
        case, modelled = cases[key], document["costs"][key]
        per = case["per_event"]
        dynamo = per["dynamodb"]
        rows.append(
            [
                f"{key} ({case['workflow']})",
                case["steps"],
                sum(per["requests"].values()),
                f"{dynamo['writes']} ({_num(dynamo['write_units'])} WRU)",
                per["stepfunctions"]["transitions"],
                _money(modelled["STANDARD"]["total"]),
                _money(modelled["EXPRESS"]["total"]) if modelled["EXPRESS"] else "-",
                f"{_num(case['timings']['execution_ms'], 0)} ms",
            ]
        )
    lines += _table(
        [
            "workflow",
            "service calls",
            "AWS requests",
            "DynamoDB writes",
            "state transitions",
            "per 1M, STANDARD",
            "per 1M, EXPRESS",
            "local latency",
        ],
        rows,
    )
    return [*lines, ""]


def _bytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f} MB ({value:,} bytes)" if value else "0"


def _payloads_section(document: dict[str, Any]) -> list[str]:
    """The event whose payloads go to S3, beside the 3-step event whose payloads do not."""
    cases = document["counts"]["cases"]
    large = [key for key, case in cases.items() if _s3_requests(case)]
    if "large-payload" in cases and "large-payload" not in large:
        large.append("large-payload")
    if not large:
        return []
    retention = document["prices"].get("s3_retention_days", costs.RETENTION_DAYS)
    lines = [
        "### Large payloads: values past 16 KiB in S3",
        "",
        "A payload (the event's data, its context, a step's input or output, its outputs) "
        "whose JSON is over 16 KiB is stored in the payload bucket, content-addressed under "
        "its event, the event's item keeping references; below that nothing changes."
        + "".join(f" {key}: {cases[key]['note']}." for key in large if cases[key].get("note"))
        + f" Bytes stored: the event's objects, kept {retention} days (EventRetentionDays) "
        "and modelled as GB-months; S3 is priced apart in the last column.",
        "",
    ]
    rows = []
    for key in [k for k in ("sync-3",) if k in cases] + large:
        case, modelled = cases[key], document["costs"][key]
        per = case["per_event"]
        dynamo, s3 = per["dynamodb"], per["s3"]
        standard, express = modelled["STANDARD"], modelled["EXPRESS"]
        rows.append(
            [
                f"{key} ({case['workflow']})",
                case["steps"],
                ", ".join(f"{service} {n}" for service, n in per["by_service"].items()),
                f"{dynamo['writes']} ({_num(dynamo['write_units'])} WRU)",
                f"{s3['puts']} / {s3['gets']}",
                _bytes(s3["bytes_stored"]),
                _money(standard["total"]),
                _money(express["total"]) if express else "-",
                f"{_money(standard['s3_puts'])} PUT + {_money(standard['s3_gets'])} GET + "
                f"{_money(standard['s3_storage'])} storage",
                f"{_num(case['timings']['execution_ms'], 0)} ms",
            ]
        )
    lines += _table(
        [
            "workflow",
            "service calls",
            "AWS requests by service",
            "DynamoDB writes",
            "S3 PUT / GET",
            "stored in S3",
            "per 1M, STANDARD",
            "per 1M, EXPRESS",
            "of which S3, per 1M",
            "local latency",
        ],
        rows,
    )
    lines += [
        "S3 requests per event: "
        + ", ".join(f"{key} {_s3_requests(case)}" for key, case in cases.items())
        + " (the 3-step event's is a target: “3-step event makes no S3 request”).",
        "",
    ]
    return lines


def _costs_section(document: dict[str, Any]) -> list[str]:
    prices = document["prices"]
    lines = [
        "## 2. Modelled cost per 1 million events",
        "",
        f"From the counts above at us-east-1 on-demand prices as of {prices['as_of']} "
        "(benchmarks/costs.py), with the Lambda durations measured here (the handlers in "
        "process, on this machine, at the template's memory size). The baseline is the same "
        "state loop handing back to the state machine after every step on STANDARD: one "
        "step-function invocation per step (each as the 1-step event's) and 2N + 1 "
        "transitions. EXPRESS: measured on an EXPRESS state machine where so marked, else "
        "the STANDARD counts (the same requests) with each execution billed by its duration.",
        "",
    ]
    rows = []
    for key, modelled in document["costs"].items():
        express = "EXPRESS" + (" (measured)" if modelled.get("express_measured") else "")
        for design, label in (
            ("STANDARD", "STANDARD"),
            ("EXPRESS", express),
            ("baseline", "one state per step, STANDARD"),
        ):
            cost = modelled[design]
            if cost is None:
                reason = "-"
                if design == "baseline" and _s3_requests(document["counts"]["cases"][key]):
                    reason = "its steps are not the 1-step event's (payloads in S3)"
                rows.append([key, label, "-", "-", "-", "-", "-", "-", "-", reason])
                continue
            rows.append(
                [
                    key,
                    label,
                    _money(cost["http_api"]),
                    _money(cost["lambda_requests"] + cost["lambda_duration"]),
                    _money(cost["dynamodb_writes"] + cost["dynamodb_reads"]),
                    _money(cost["step_functions"]),
                    _money(cost.get("scheduler", 0.0)),
                    _money(cost["secrets_manager"]),
                    _money(cost["s3_puts"] + cost["s3_gets"] + cost["s3_storage"]),
                    f"**{_money(cost['total'])}**",
                ]
            )
    lines += _table(
        [
            "workflow",
            "design",
            "HTTP API",
            "Lambda",
            "DynamoDB",
            "Step Functions",
            "Scheduler",
            "Secrets",
            "S3",
            "total",
        ],
        rows,
    )
    lines += [
        f"Prices: HTTP API ${prices['http_api_per_million_requests']}/M requests; Lambda "
        f"${prices['lambda_per_million_requests']}/M requests + ${prices['lambda_per_gb_second']}"
        f"/GB-s; DynamoDB ${prices['dynamodb_per_million_write_units']}/M write units, "
        f"${prices['dynamodb_per_million_read_units']}/M read units; Step Functions STANDARD "
        f"${prices['sfn_standard_per_thousand_transitions']}/1,000 transitions, EXPRESS "
        f"${prices['sfn_express_per_million_requests']}/M requests + "
        f"${prices['sfn_express_per_gb_second']}/GB-s (64 MB, 100 ms steps); S3 Standard "
        f"${prices['s3_per_thousand_puts']}/1,000 PUT, ${prices['s3_per_thousand_gets']}/1,000 "
        f"GET, ${prices['s3_per_gb_month']}/GB-month (an event's payloads kept "
        f"{prices['s3_retention_days']} days); EventBridge Scheduler "
        f"${prices.get('scheduler_per_million_invocations', 1.0)}/M scheduled invocations "
        "(timers fired; creating and deleting schedules is not billed). Not modelled: "
        "CloudWatch Logs, X-Ray, DynamoDB storage, backups, data transfer, free tiers.",
        "",
    ]
    return lines


def _now(document: dict[str, Any], key: str, machine: str) -> dict[str, Any] | None:
    """`key`'s figures per event on `machine` in this run, as BEFORE_SEGMENTS has them:
    measured on that type (STANDARD: the counts; EXPRESS: the EXPRESS runtime's, when it
    ran the case), with the modelled cost."""
    counts = document["counts"]
    if machine == "STANDARD":
        case = counts["cases"].get(key)
    else:
        case = ((counts.get("express") or {}).get("cases") or {}).get(key)
    cost = (document["costs"].get(key) or {}).get(machine)
    if case is None or cost is None:
        return None
    per = case["per_event"]
    sfn, dynamo = per["stepfunctions"], per["dynamodb"]
    scheduler = per.get("scheduler") or {}
    return {
        "executions": sfn.get("executions") or sfn["executions_started"],
        "transitions": sfn["transitions"],
        "lambda": per["lambda"]["by_function"],
        "scheduler_requests": scheduler.get("requests", 0),
        "create_schedule": scheduler.get("create_schedule", 0),
        "delete_schedule": scheduler.get("delete_schedule", 0),
        "timers_fired": scheduler.get("invocations", 0),
        "reads": dynamo["reads"],
        "read_units": dynamo["read_units"],
        "writes": dynamo["writes"],
        "write_units": dynamo["write_units"],
        "lambda_cost": cost["lambda_requests"] + cost["lambda_duration"],
        "dynamodb_cost": cost["dynamodb_writes"] + cost["dynamodb_reads"],
        "step_functions": cost["step_functions"],
        "scheduler": cost.get("scheduler", 0.0),
        "total": cost["total"],
    }


def _lambdas(by_function: dict[str, int]) -> str:
    total = sum(by_function.values())
    return f"{total} (" + " + ".join(f"{n} {f}" for f, n in by_function.items()) + ")"


def _types_section(document: dict[str, Any]) -> list[str]:
    """The callback workflow and the 3-step event on either state machine type, measured,
    beside the figures before segments."""
    before = document.get("before_segments") or BEFORE_SEGMENTS
    keys = [key for key in ("callback", "sync-3") if key in document["counts"]["cases"]]
    if not keys:
        return []
    lines = [
        "### STANDARD and EXPRESS: an event's segments",
        "",
        "An event's run is a sequence of executions: one ends (Suspended) while the event "
        "waits for a callback, and the callback route starts the next; the callback's "
        "timeout is an EventBridge Scheduler timer (CreateSchedule), deleted when the "
        "callback comes (DeleteSchedule), fired (a scheduled invocation, which starts an "
        "execution) only if it does not. Both types are measured here, each on its own "
        "local runtime, every request counted as above; state transitions are billed on "
        "STANDARD only. Before segments: "
        f"{before['source']}, when a callback waited in its execution "
        "(`.waitForTaskToken`) and EXPRESS refused the callback workflow. The Lambda and "
        "EXPRESS durations are measured on this machine: from run to run they move a cost "
        "by cents, the counts not at all.",
        "",
    ]
    rows = []
    changes = []
    for key in keys:
        workflow = document["counts"]["cases"][key]["workflow"]
        for machine in ("STANDARD", "EXPRESS"):
            now = _now(document, key, machine)
            then = before["cases"].get(key, {}).get(machine)
            for run, figures in (("now", now), ("before segments", then)):
                if figures is None:
                    reason = (
                        "refused (a Task waited for a task token)"
                        if run == "before segments"
                        else "not measured"
                    )
                    rows.append([f"{key} ({workflow})", machine, run, reason, *["-"] * 9])
                    continue
                transitions = _num(figures["transitions"])
                if machine == "EXPRESS":
                    transitions += " (not billed)"
                scheduler = _num(figures["scheduler_requests"])
                if figures.get("create_schedule") or figures.get("delete_schedule"):
                    scheduler += (
                        f" ({figures['create_schedule']} Create + "
                        f"{figures['delete_schedule']} Delete)"
                    )
                rows.append(
                    [
                        f"{key} ({workflow})",
                        machine,
                        run,
                        figures["executions"],
                        transitions,
                        _lambdas(figures["lambda"]),
                        scheduler,
                        figures["timers_fired"],
                        f"{figures['reads']} ({_num(figures['read_units'])} RRU)",
                        f"{figures['writes']} ({_num(figures['write_units'])} WRU)",
                        _money(figures["step_functions"]),
                        _money(figures.get("scheduler", 0.0)),
                        f"**{_money(figures['total'])}**",
                    ]
                )
            changes.append(_change(key, machine, now, then))
    lines += _table(
        [
            "workflow",
            "state machine",
            "run",
            "executions per event",
            "state transitions",
            "Lambda invocations",
            "Scheduler requests",
            "timers fired",
            "DynamoDB reads",
            "DynamoDB writes",
            "Step Functions per 1M",
            "Scheduler per 1M",
            "per 1M events",
        ],
        rows,
    )
    lines += ["What changed with segments:", ""]
    lines += [f"- {change}" for change in changes if change]
    return [*lines, ""]


def _change(key: str, machine: str, now: dict[str, Any] | None, then: dict[str, Any] | None) -> str:
    """One line: `key` on `machine`, before segments and now."""
    if now is None:
        return ""
    if then is None:
        return (
            f"{key} on {machine}: refused before; now {now['executions']} executions per "
            f"event, {_money(now['total'])} per 1M events"
        )
    parts = []
    for label, field in (
        ("executions", "executions"),
        ("state transitions", "transitions"),
        ("Scheduler requests", "scheduler_requests"),
        ("timers fired", "timers_fired"),
        ("DynamoDB reads", "reads"),
        ("RRU", "read_units"),
        ("DynamoDB writes", "writes"),
        ("WRU", "write_units"),
    ):
        if now[field] != then[field]:
            parts.append(f"{label} {_num(then[field])} → {_num(now[field])}")
    invocations = sum(now["lambda"].values()), sum(then["lambda"].values())
    if invocations[0] != invocations[1]:
        parts.append(f"Lambda invocations {invocations[1]} → {invocations[0]}")
    if not parts:
        parts.append("the same counts")
    moved = [
        f"{label} {_money(then.get(field, 0.0))} → {_money(now.get(field, 0.0))}"
        for label, field in (
            ("Step Functions", "step_functions"),
            ("Scheduler", "scheduler"),
            ("Lambda", "lambda_cost"),
            ("DynamoDB", "dynamodb_cost"),
        )
        if _money(then.get(field, 0.0)) != _money(now.get(field, 0.0))
    ]
    total = f"{_money(then['total'])} → {_money(now['total'])} per 1M events"
    return (
        f"{key} on {machine}: "
        + ", ".join(parts)
        + f"; {total}"
        + (f" ({', '.join(moved)})" if moved else "")
    )


def _cold_section(document: dict[str, Any]) -> list[str]:
    cold = document["cold_init"]
    handlers = cold["handlers"]
    runs = next(iter(handlers.values()))["runs"]
    lines = [
        "## 3. Cold init",
        "",
        f"A fresh `python -c` process per run (median of {runs}), with the function's Lambda "
        "environment: import the handler module from its CodeUri, then build its dependencies "
        "as the first invocation does; the bare handler imports boto3 and creates one client. "
        f"Python {cold['python']}: {cold['note']}.",
        "",
    ]
    rows = [
        [
            name,
            _num(h["init_ms"], 1),
            _num(h["import_ms"], 1),
            _num(h["process_ms"], 1),
            _num(h["max_rss_mb"], 1),
            f"{h['init_ratio']} ×",
            f"{h['rss_ratio']} ×",
            ", ".join(h["outside_layer"]) or "none",
        ]
        for name, h in handlers.items()
    ]
    lines += _table(
        [
            "handler",
            "init ms",
            "of which import ms",
            "whole process ms",
            "peak RSS MB",
            "init ÷ bare",
            "RSS ÷ bare",
            "modules from outside the layer",
        ],
        rows,
    )
    return lines


def _local_section(document: dict[str, Any]) -> list[str]:
    lat, direct = document["latency"], document["direct"]
    e2e, ack, post, calls = (
        lat["end_to_end_ms"],
        lat["acknowledged_to_ended_ms"],
        lat["post_answer_ms"],
        direct["ms"],
    )
    lines = [
        "## 4. Local latency",
        "",
        f"The 3-step example (process-text, trivial services) through `machinery local` over "
        f"HTTP, {lat['events']} events one at a time after {lat['warmup']} to warm up: from "
        "before the POST to the event's `ended_at`. The direct baseline calls the same three "
        "services in sequence with one keep-alive session.",
        "",
    ]
    rows = [
        ["local runtime, send → ended", e2e["measured"], e2e["p50"], e2e["p95"], e2e["max"]],
        ["  of which POST → 202", post["measured"], post["p50"], post["p95"], post["max"]],
        [
            "  acknowledged → ended (server clock)",
            ack["measured"],
            ack["p50"],
            ack["p95"],
            ack["max"],
        ],
        [
            "direct calls, the three services",
            calls["measured"],
            calls["p50"],
            calls["p95"],
            calls["max"],
        ],
    ]
    lines += _table(["path", "events", "p50 ms", "p95 ms", "max ms"], rows)
    lines += [f"Ratio of the p50s: {_num(document['latency_ratio'])} ×.", ""]
    lines += [
        "## 5. Local throughput",
        "",
        "Events sent by C concurrent senders to one `machinery local` process, every one "
        "polled until it ended and checked against its own expected outputs; completed per "
        "second from the first acknowledgement to the last end.",
        "",
    ]
    rows = []
    for run in [*document["throughput"], document["burst"]]:
        counts, rates, latency = run["counts"], run["throughput"], run["latency_ms"]
        name = "burst" if run is document["burst"] else "throughput"
        rows.append(
            [
                name,
                run["concurrency"],
                run["events"],
                _num(rates["completion_events_per_second"], 1),
                _num(rates["acceptance_events_per_second"], 1),
                latency["p50"],
                latency["p95"],
                f"{counts['succeeded']}/{counts['sent']}",
                counts["not_ended"] + counts["lost"],
            ]
        )
    lines += _table(
        [
            "run",
            "senders",
            "events",
            "completed/s",
            "accepted/s",
            "p50 ms (ack → end)",
            "p95 ms",
            "right",
            "left unended or lost",
        ],
        rows,
    )
    return lines


# --- scale (issue 18) ------------------------------------------------------------------------


def _units(value: float, unit: str) -> str:
    return f"{_grouped(value)} {unit}"


def _grouped(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"


def _scope(row: dict[str, Any], workflow: str) -> str:
    if row["scope"] == "deployment":
        return f"deployment ({row['workflows']} workflows of {workflow}'s counts)"
    return f"one workflow ({workflow})"


def _scale_section(document: dict[str, Any]) -> list[str]:
    modelled = document.get("scale")
    if not modelled:
        return []
    workflow = modelled["workflow_name"]
    parameters = modelled["parameters"]
    shown = ", ".join(
        f"{name} {_grouped(p['value'])}"
        + ("" if p["source"] == "template.yaml" else f" ({p['source']})")
        for name, p in parameters.items()
        if name != "StepFunctionMemorySize"
    )
    profile = modelled["profiles"]["EXPRESS"]
    lines = [
        "## 6. Capacity at scale",
        "",
        f"A model (benchmarks/scale.py), not a load test: the counts per event of "
        f"{modelled['workflow']} ({workflow}) measured above on each state machine type, "
        f"against the default quotas of {modelled['region']} (as of "
        f"{modelled['quotas_as_of']}; some Step Functions quotas differ by region) and the "
        f"template's parameters ({shown}). Services answer in "
        f"{_grouped(modelled['service_latency_ms'])} ms (--service-latency-ms); a deployment "
        f"spreads its rate evenly over {modelled['deployment_workflows']} workflows, a "
        "service being called by all of them (the worst case for its item). Every limit is "
        "linear in the rate: the lowest `limit ÷ usage per event` binds. Per event "
        f"(EXPRESS): {_grouped(profile['table_write_units'])} table WRU + "
        f"{_grouped(profile['index_write_units'])} index WRU, "
        f"{_grouped(profile['read_units'])} RRU, {_grouped(profile['executions_started'])} "
        f"StartExecution, {_grouped(profile['transitions'])} transitions, "
        f"{_grouped(profile['http_requests'])} HTTP request, ApiFunction "
        f"{_grouped(profile['api_ms'])} ms, StepFunction {_grouped(profile['step_ms'])} ms "
        f"of which {_grouped(profile['step_service_ms'])} ms waiting on the local services.",
        "",
    ]
    rows = []
    for row in modelled["rows"]:
        target = row["target"]
        further = row["raise_first"]
        if row["next"] is not None:
            further += f" (then {row['next']['name']} binds, at {_rate(row['next_rate'])})"
        rows.append(
            [
                _scope(row, workflow),
                row["machine"],
                "-" if target is None else f"{target:,.0f} events/s",
                f"**{_rate(row['sustainable'])}**",
                row["binding_name"],
                further,
                "; ".join(r["raise"] for r in row["raises"]) if target is not None else "-",
                row["reached"],
            ]
        )
    lines += _table(
        [
            "scope",
            "state machine",
            "target",
            "sustained with the defaults",
            "binds first",
            "to go further, raise",
            "to reach the target, raise",
            "target reached",
        ],
        rows,
    )
    lines += _usage_table(modelled)
    lines += _scale_notes(modelled)
    lines += _quota_table(modelled)
    return lines


def _usage_table(modelled: dict[str, Any]) -> list[str]:
    """Each limit's usage at the target (STANDARD: at the EXPRESS target's rate)."""
    rows_by_key: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    heads = []
    for index, row in enumerate(modelled["rows"]):
        scope = "one workflow" if row["scope"] == "one workflow" else "deployment"
        heads.append(f"{scope}, {row['machine']}, at {row['usage_rate']:,.0f} events/s")
        for used in row["usage"]:
            names[used["key"]] = used["name"]
            cells = rows_by_key.setdefault(used["key"], ["-"] * len(modelled["rows"]))
            percent = used["percent"]
            over = percent is not None and percent > 100
            text = (
                f"{_grouped(used['usage'])} / {_units(used['limit'], used['unit'])} "
                f"({_grouped(percent)} %)"
            )
            cells[index] = f"**{text}**" if over else text
    lines = [
        "Each limit's use at the target rate (STANDARD, which has no target: at the same "
        "rate), bold past 100 %:",
        "",
    ]
    lines += _table(
        ["limit", *heads],
        [[names[key], *cells] for key, cells in rows_by_key.items()],
    )
    return lines


def _scale_notes(modelled: dict[str, Any]) -> list[str]:
    notes = []
    for row in modelled["rows"]:
        uncached = row["without_cache"]
        hot = "; ".join(
            f"{c['name'].split(': ')[1]} {_grouped(c['usage'])} RCU/s "
            f"({_grouped(c['percent'])} % of a partition's {c['limit']:,.0f})"
            for c in uncached["hot_reads"]
        )
        scope = "one workflow" if row["scope"] == "one workflow" else "deployment"
        reached = "" if row["target"] is None else f"; target: {uncached['reached']}"
        notes.append(
            f"- {scope}, {row['machine']}, without the definition cache "
            f"(DefinitionCacheSeconds 0: every event reads its definitions), at "
            f"{row['usage_rate']:,.0f} events/s: {hot}{reached}."
        )
    express = [r for r in modelled["rows"] if r["machine"] == "EXPRESS"]
    for row in express:
        concurrency = row["concurrency_at_usage_rate"]
        ramp = row["ramp_seconds_at_usage_rate"]
        scope = "one workflow" if row["scope"] == "one workflow" else "deployment"
        notes.append(
            f"- Lambda at {row['usage_rate']:,.0f} events/s ({scope}, EXPRESS): ApiFunction "
            f"{_grouped(concurrency['ApiFunction'])} + StepFunction "
            f"{_grouped(concurrency['StepFunction'])} concurrent executions; from none, the "
            f"scaling rate (1,000 per function every 10 s) takes "
            f"{_grouped(ramp['StepFunction'])} s to reach the step function's."
        )
    return [
        "Notes:",
        "",
        *notes,
        "- Not modelled: bursts (the API's ApiThrottlingBurstLimit and the account's "
        "5,000; Step Functions' buckets), DynamoDB on-demand's own warm-up (a new table "
        "serves up to 4,000 WRU or 12,000 RRU at once; past twice its previous peak within "
        "30 minutes it may throttle), "
        "the plan item (read once per step-function container, then kept), cold starts, and "
        "real durations: the Lambda durations are this machine's, moto serving the AWS "
        "requests in process, where Lambda would wait on the network and run its CPU share.",
        "",
    ]


def _quota_table(modelled: dict[str, Any]) -> list[str]:
    rows = [
        [
            q["name"],
            _units(q["value"], q["unit"]),
            "-" if q["burst"] is None else _grouped(q["burst"]),
            q["scope"],
            "yes" if q["adjustable"] else "no",
            q["source"] + (f" ({q['note']})" if q["note"] else ""),
        ]
        for q in modelled["quotas"].values()
    ]
    lines = ["Default quotas (us-east-1):", ""]
    lines += _table(["quota", "default", "bucket", "scope", "adjustable", "source"], rows)
    sources = modelled["sources"]
    lines += [
        "The Step Functions throttling figures are those of the service quotas page's "
        f"tables as kept in the guide's source ({sources['step_functions_tables_read_from']}"
        "): check the live page before a request for an increase.",
        "",
    ]
    return lines


def _at(by_memory: dict[Any, float], memory: int) -> float:
    """A figure by memory size, whether the keys are numbers or (from JSON) strings."""
    return by_memory[memory] if memory in by_memory else by_memory[str(memory)]


def _cheapest(totals: dict[Any, float]) -> str:
    """The cheapest memory size, and those that cost as little to the cent."""
    tied = scale.tied_with_cheapest({int(m): total for m, total in totals.items()})
    return " = ".join(f"{m:,} MB" for m in tied) + (" (a tie to the cent)" if len(tied) > 1 else "")


def _latency_section(document: dict[str, Any]) -> list[str]:
    modelled = document.get("latency_costs")
    if not modelled or not modelled["rows"]:
        return []
    memories = modelled["memories"]
    scaled = document.get("scale") or {}
    profile = (scaled.get("profiles") or {}).get("STANDARD")
    memory_param = ((scaled.get("parameters") or {}).get("StepFunctionMemorySize")) or {}
    cold = document.get("cold_init_memory") or {}
    lines = [
        "## 7. Service latency and the step function's memory size",
        "",
        "The step function is billed while it waits on the services. Modelled from the counts "
        "and the step function's duration measured above: its overhead per event (the "
        "measured duration less the time it waited on the local services) is assumed "
        "CPU-bound and scaled by max(1, 1769 / memory) (Lambda allocates CPU in proportion "
        f"to memory, one vCPU at {modelled['vcpu_mb']:,} MB: {modelled['source']}; this "
        "machine's core stands for one vCPU); the waiting (steps × latency) is not. EXPRESS "
        "executions are longer by the same waiting and slower overhead. So at 512 MB and "
        "0 ms the model costs more than section 2, which bills the full-speed duration "
        "measured here. The template's "
        f"StepFunction memory: {_grouped(memory_param.get('value'))} MB "
        f"({memory_param.get('source', '-')}).",
        "",
    ]
    if profile:
        own = max(profile["step_ms"] - profile["step_service_ms"], 0.0)
        rows = []
        for memory in memories:
            factor = scale.cpu_factor(memory)
            at = (cold.get("memories") or {}).get(str(memory)) or {}
            rows.append(
                [
                    f"{memory:,} MB",
                    f"{min(memory / scale.LAMBDA_VCPU_MB, 1):.2f}",
                    f"{factor:.2f} ×",
                    _grouped(own * factor),
                    _grouped(at.get("modelled_init_ms")),
                    _grouped(at.get("measured_init_ms")),
                ]
            )
        lines += [
            f"Per 3-step event, the step function's overhead at full speed here: "
            f"{_grouped(own)} ms ({_grouped(profile['step_ms'])} ms less "
            f"{_grouped(profile['step_service_ms'])} ms on the services), of which "
            f"{_grouped(profile['step_aws_ms'])} ms in AWS requests (moto, in process). Its "
            f"cold init: {_grouped(cold.get('full_speed_init_ms'))} ms on one CPU; measured "
            f"under a CPU quota: {cold.get('method', 'not measured')}.",
            "",
        ]
        lines += _table(
            [
                "memory",
                "vCPU share",
                "CPU-bound work slower by",
                "overhead per event, ms (model)",
                "cold init, ms (model)",
                "cold init, ms (under the CPU quota)",
            ],
            rows,
        )
    rows = []
    for row in modelled["rows"]:
        tied = scale.tied_with_cheapest({int(m): t for m, t in row["totals"].items()})
        cells = []
        for memory in memories:
            total = _money(_at(row["totals"], memory))
            ms = _grouped(_at(row["step_function_ms"], memory))
            text = f"{total} ({ms} ms)"
            cells.append(f"**{text}**" if memory in tied else text)
        rows.append(
            [
                f"{row['workflow']} ({row['workflow_name']})",
                row["machine"],
                f"{row['service_latency_ms']:,.0f} ms",
                *cells,
                _cheapest(row["totals"]),
                _cheapest(row["totals_aws_as_waiting"]),
            ]
        )
    lines += [
        "Cost per 1M events (the step function's billed time per event in brackets), the "
        "cheapest in bold:",
        "",
    ]
    lines += _table(
        [
            "workflow",
            "state machine",
            "service latency",
            *[f"{memory:,} MB" for memory in memories],
            "cheapest",
            "cheapest, AWS requests' time as waiting",
        ],
        rows,
    )
    lines += [
        "Not measured here: Firecracker's own init and Lambda's real CPU share (the CPU quota "
        "above is a cgroup's, on this machine's core), the network latency to DynamoDB and "
        "Step Functions (moto answers in process, on the CPU this model scales), and the "
        "layer's import from /opt (python3.13, compiled on first import; this venv's .pyc "
        "are cached). The overhead scaled as CPU-bound includes moto's time serving the AWS "
        "requests, which on Lambda is mostly a network round trip: the last column takes that "
        "time as waiting (not scaled) instead, the rest of the overhead as CPU.",
        "",
    ]
    return lines
