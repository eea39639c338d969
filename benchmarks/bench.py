"""The benchmark suite: counts, modelled cost, cold init, latency and throughput, in one run.

    python benchmarks/bench.py [--quick] [--output-dir benchmarks/results]

It writes latest.md (the tables, each figure next to its target and whether it is met) and
latest.json (every number, the machine, the date, the git commit and the configuration).
`make bench` runs it in full (a few minutes); `--quick` is the small configuration the test
suite runs so that the suite never rots.

Sections, in order (each in its own module here):
1. counting.py: AWS requests per event in an in-process local runtime (botocore hooks),
   on a STANDARD state machine, and the callback and 3-step events on an EXPRESS one;
2. costs.py: what 1M events would cost on AWS, from those counts (prices in one place);
3. coldstart.py: cold init of each Lambda handler next to a bare boto3 handler;
4. latency.py: the 3-step example end to end over HTTP, next to direct calls;
5. latency.py: throughput with 1, 8 and 32 concurrent senders, and a burst;
6. scale.py: a capacity model of the 3-step event's counts against the default AWS quotas
   and the template's parameters (one workflow at 3,000 events/s, a deployment at 10,000);
7. scale.py: the cost at a service latency of 0, 100 and 1,000 ms and a step-function memory
   size of 256, 512 and 1,024 MB (coldstart.py measures the step function's cold init under
   a CPU quota of each size's vCPU share, where the machine allows a cpu cgroup).

    --service-latency-ms MS   how long the services answer, for the capacity model (100)
    --deployment-workflows W  how many workflows a deployment's rate spreads over (10)

Benchmarks report; nothing fails on speed. The exit code is 1 only if an event was
refused, lost, wrong or left unended (2 if the local stack did not start).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import coldstart  # noqa: E402
import counting  # noqa: E402
import latency  # noqa: E402
import load  # noqa: E402
import report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

CONFIGS: dict[str, dict[str, Any]] = {
    "full": {
        "count_events_per_workflow": 5,
        "cold_init_runs": 7,
        "latency_events": 200,
        "latency_warmup": 10,
        "throughput_events": 300,
        "throughput_concurrency": [1, 8, 32],
        "burst_events": 2000,
        "burst_concurrency": 32,
        "deadline_seconds": 300.0,
        "cold_init_memory_runs": 3,
    },
    "quick": {
        "count_events_per_workflow": 1,
        "cold_init_runs": 1,
        "latency_events": 5,
        "latency_warmup": 1,
        "throughput_events": 16,
        "throughput_concurrency": [1, 8, 32],
        "burst_events": 40,
        "burst_concurrency": 32,
        "deadline_seconds": 120.0,
        "cold_init_memory_runs": 1,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small configuration (tests)")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=RESULTS,
        help=f"where latest.md and latest.json go ({RESULTS.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--service-latency-ms",
        type=float,
        default=100.0,
        help="how long the services answer, in the capacity model (default 100)",
    )
    parser.add_argument(
        "--deployment-workflows",
        type=int,
        default=10,
        help="how many workflows a deployment's rate spreads over (default 10)",
    )
    return parser.parse_args(argv)


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        run = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return run.stdout.strip() if run.returncode == 0 else ""

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(status)}


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def run(config: dict[str, Any], log: Any = print) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {}
    # Cold init first, while this process is small and nothing else of the suite runs.
    log("cold init of each handler...")
    results["cold_init"] = coldstart.measure(config["cold_init_runs"])
    log("cold init of the step function at each memory size's CPU share...")
    results["cold_init_memory"] = coldstart.measure_at_memory(config["cold_init_memory_runs"])
    log("counting AWS requests per event (in-process local runtime)...")
    results["counts"] = counting.measure(config["count_events_per_workflow"])
    log("starting the local stack (machinery local and the example services)...")
    with load.local_stack() as stack:
        log(f"    latency: {config['latency_events']} events one at a time, and direct calls")
        results["latency"] = latency.local_latency(
            stack.url, config["latency_events"], config["latency_warmup"]
        )
        results["direct"] = latency.direct_calls(
            stack.services, config["latency_events"], config["latency_warmup"]
        )
        results["throughput"] = []
        for concurrency in config["throughput_concurrency"]:
            log(f"    throughput: {config['throughput_events']} events, {concurrency} senders")
            results["throughput"].append(
                latency.throughput(
                    stack.url,
                    config["throughput_events"],
                    concurrency,
                    config["deadline_seconds"],
                )
            )
        log(f"    burst: {config['burst_events']} events, {config['burst_concurrency']} senders")
        results["burst"] = latency.throughput(
            stack.url,
            config["burst_events"],
            config["burst_concurrency"],
            config["deadline_seconds"],
        )
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = "quick" if args.quick else "full"
    config = CONFIGS[name]
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": _git(),
        "machine": _machine(),
        "config": {
            "name": name,
            **config,
            "service_latency_ms": args.service_latency_ms,
            "deployment_workflows": args.deployment_workflows,
        },
    }
    try:
        results = run(config, log=lambda line: print(line, flush=True))
    except load.StartupError as error:
        print(f"bench: the local stack did not start: {error}", file=sys.stderr)
        return 2
    document = report.build(meta, results)
    load.write_atomically(
        args.output_dir / "latest.json", json.dumps(document, indent=2, default=str) + "\n"
    )
    markdown = report.markdown(document)
    load.write_atomically(args.output_dir / "latest.md", markdown)
    print(markdown)
    print(f"written to {args.output_dir / 'latest.md'} and latest.json")
    if document["failures"]:
        print("FAIL: " + "; ".join(document["failures"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
