"""Cold init of each Lambda handler, next to a bare handler that only imports boto3.

Each run is a fresh `python -c` process with the environment Lambda gives the function (the
template's variables, the Lambda runtime's own: LAMBDA_TASK_ROOT, AWS_LAMBDA_FUNCTION_NAME,
region, and fake credentials). It does what a cold start does before the first answer:

- a handler: put its CodeUri first on sys.path, import its module as Lambda does (`app`), then
  build the handlers' dependencies as the first invocation does (`dependencies()`: the boto3
  clients, the store, the invoker; creating clients makes no network call);
- the bare handler: `import boto3; boto3.client("dynamodb")`.

It reports its own init wall time (import, then dependencies), its peak RSS (VmHWM of
/proc/self/status: getrusage's ru_maxrss would also count the forking parent's peak, which
exec inherits) and the modules it loaded; the parent times the whole process too
(interpreter start included). Runs are interleaved (bare, api, step, bare, ...) and the
medians reported. The packages are the ones installed in this virtual environment; the
modules a handler loads from outside the layer's dependency set (layers/machinery/
requirements.txt, plus boto3 from the runtime) are listed: moto and the test tools must not
be among them.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LAYER_REQUIREMENTS = ROOT / "layers" / "machinery" / "requirements.txt"
RUNTIME_PROVIDED = ["boto3"]  # the python3.13 Lambda runtime ships boto3 and botocore
REGION = "us-east-1"
INTERNAL = {"cython_runtime"}  # made by Cython-built extensions, not a package

CHILD = r"""
import json, resource, sys, time
started = time.perf_counter()
kind, code_uri = sys.argv[1], sys.argv[2]
if kind == "bare":
    import boto3
    boto3.client("dynamodb")
    imported = time.perf_counter()
    ready = imported
else:
    sys.path.insert(0, code_uri)
    import app  # noqa: F401  (Handler: app.handler)
    imported = time.perf_counter()
    from machinery_core.runtime.dependencies import dependencies
    dependencies()
    ready = time.perf_counter()
try:  # this process's own peak: ru_maxrss also counts the parent's, copied by fork
    with open("/proc/self/status") as status:
        peak_kb = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({
    "import_ms": (imported - started) * 1000,
    "init_ms": (ready - started) * 1000,
    "max_rss_mb": peak_kb / 1024,
    "modules": sorted({name.partition(".")[0] for name in sys.modules}),
}))
"""


def _resolve(value: Any, parameters: dict[str, Any]) -> str:
    """A template value as a string: parameters' defaults, and fake names for resources."""
    if isinstance(value, dict) and "Ref" in value:
        name = value["Ref"]
        if name in parameters:
            return str(parameters[name].get("Default", ""))
        if name == "StateMachine":
            return f"arn:aws:states:{REGION}:123456789012:stateMachine:machinery-bench"
        if name.endswith("Secret"):
            return f"arn:aws:secretsmanager:{REGION}:123456789012:secret:machinery-bench-{name}"
        return f"machinery-bench-{name}"
    if isinstance(value, dict):
        return f"machinery-bench-{'-'.join(str(v) for v in value.values())}"
    return str(value)


def lambda_environment(logical_id: str | None, code_uri: Path, memory_mb: int) -> dict[str, str]:
    from machinery_core.local.template import Template

    template = Template.load(ROOT / "template.yaml")
    parameters = template.document.get("Parameters", {})
    variables: dict[str, Any] = {}
    if logical_id is not None:
        variables = template.functions()[logical_id].environment
    environment = {name: _resolve(value, parameters) for name, value in variables.items()}
    name = f"machinery-bench-{logical_id or 'bare'}"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LAMBDA_TASK_ROOT": str(code_uri),
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "_HANDLER": "app.handler",
        **environment,
    }


def layer_packages() -> set[str]:
    """Top-level module names of the layer's dependency set, transitively."""
    names = [
        line.split("#")[0].strip()
        for line in LAYER_REQUIREMENTS.read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    pending = [Requirement(name) for name in [*names, *RUNTIME_PROVIDED]]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        key = requirement.name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # machinery_core is this checkout itself
        for text in distribution.requires or []:
            child = Requirement(text)
            extras = requirement.extras or {""}
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras):
                pending.append(child)
    modules = {"machinery_core", "app"}
    for module, distributions in importlib.metadata.packages_distributions().items():
        if any(d.lower().replace("_", "-") in seen for d in distributions):
            modules.add(module)
    return modules


def _run(
    kind: str,
    code_uri: Path,
    environment: dict[str, str],
    setup: Callable[[], None] | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(code_uri)],
        env=environment,
        cwd=code_uri,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=setup,  # the child joins its cgroup and CPU before it runs (no threads yet)
    )
    wall = (time.perf_counter() - started) * 1000
    if run.returncode != 0:
        raise RuntimeError(f"cold init of {kind} failed:\n{run.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    result["process_ms"] = wall
    return result


def measure(runs: int) -> dict[str, Any]:
    from machinery_core.local.template import Template

    functions = Template.load(ROOT / "template.yaml").functions()
    targets: dict[str, tuple[str | None, Path, int]] = {"bare boto3": (None, ROOT, 512)}
    for logical_id, spec in functions.items():
        targets[logical_id] = (logical_id, spec.code_uri, spec.memory_mb)
    environments = {
        name: lambda_environment(logical_id, code_uri, memory)
        for name, (logical_id, code_uri, memory) in targets.items()
    }
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    for _ in range(runs):
        for name, (logical_id, code_uri, _) in targets.items():
            kind = "bare" if logical_id is None else "handler"
            samples[name].append(_run(kind, code_uri, environments[name]))
    allowed = layer_packages()
    stdlib = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    results: dict[str, dict[str, Any]] = {}
    for name, runs_of in samples.items():
        modules = set(runs_of[-1]["modules"])
        outside = sorted(m for m in modules - stdlib - allowed - INTERNAL if not m.startswith("_"))
        results[name] = {
            "runs": len(runs_of),
            "init_ms": _median(runs_of, "init_ms"),
            "import_ms": _median(runs_of, "import_ms"),
            "process_ms": _median(runs_of, "process_ms"),
            "max_rss_mb": _median(runs_of, "max_rss_mb"),
            "modules_loaded": len(modules),
            "outside_layer": outside,
            "moto_loaded": "moto" in modules,
            "xray_sdk_loaded": "aws_xray_sdk" in modules,
            "samples_init_ms": [round(r["init_ms"], 1) for r in runs_of],
        }
    bare = results["bare boto3"]
    for result in results.values():
        result["init_ratio"] = round(result["init_ms"] / bare["init_ms"], 2)
        result["rss_ratio"] = round(result["max_rss_mb"] / bare["max_rss_mb"], 2)
    return {
        "python": sys.version.split()[0],
        "note": "the venv's Python and packages (Lambda runs python3.13 from /opt and compiles "
        "the layer's modules on first import, which this machine has cached as .pyc)",
        "handlers": results,
    }


# --- at a Lambda memory size's CPU share ------------------------------------------------------

LAMBDA_VCPU_MB = 1769  # one vCPU at 1,769 MB: scale.LAMBDA_VCPU_MB, with its source
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")  # cgroup v1's cpu controller
CPU_PERIOD_US = 10_000  # short, so that a quota is a share rather than 100 ms stalls


def cpu_quota_available(root: Path = CGROUP_CPU) -> str | None:
    """None if a child cgroup with a CPU quota can be made here, else why not."""
    if not (root / "cpu.cfs_quota_us").exists():
        return f"no cgroup v1 cpu controller at {root}"
    probe = root / f"machinery-bench-probe-{os.getpid()}"
    try:
        probe.mkdir()
        (probe / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
    except OSError as error:
        return f"cannot make a child cgroup under {root}: {error}"
    finally:
        if probe.exists():
            probe.rmdir()
    return None


def _limited(group: Path, cpu: int) -> Callable[[], None]:
    """In the child before exec: join `group` and run on one CPU only."""

    def setup() -> None:
        (group / "cgroup.procs").write_text(str(os.getpid()))
        os.sched_setaffinity(0, {cpu})

    return setup


def measure_at_memory(
    runs: int, memories: tuple[int, ...] = (256, 512, 1024), logical_id: str = "StepFunction"
) -> dict[str, Any]:
    """A handler's cold init on one CPU, at full speed and under a CPU quota of each memory
    size's share of a vCPU (`memory / 1769` of the CPU, cgroup v1 CFS quota over a 10 ms
    period): the nearest this machine comes to Lambda's CPU allocation. Without a writable
    cpu cgroup, only the full-speed run, and why."""
    from machinery_core.local.template import Template

    spec = Template.load(ROOT / "template.yaml").functions()[logical_id]
    environment = lambda_environment(logical_id, spec.code_uri, spec.memory_mb)
    cpu = min(os.sched_getaffinity(0))
    unavailable = cpu_quota_available()
    full: list[float] = []
    under: dict[int, list[float]] = {memory: [] for memory in memories}
    groups: dict[int, Path] = {}
    try:
        if unavailable is None:
            try:
                for memory in memories:
                    group = CGROUP_CPU / f"machinery-bench-{os.getpid()}-{memory}"
                    group.mkdir(exist_ok=True)
                    groups[memory] = group
                    share = min(memory / LAMBDA_VCPU_MB, 1.0)
                    (group / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                    (group / "cpu.cfs_quota_us").write_text(str(int(CPU_PERIOD_US * share)))
            except OSError as error:
                unavailable = f"cannot set a CPU quota: {error}"
        for _ in range(runs):
            pinned = _run("handler", spec.code_uri, environment, _pinned(cpu))
            full.append(pinned["init_ms"])
            for memory, group in groups.items() if unavailable is None else ():
                try:
                    result = _run("handler", spec.code_uri, environment, _limited(group, cpu))
                except subprocess.SubprocessError as error:  # the child could not join it
                    unavailable = f"a child could not run under the CPU quota: {error}"
                    break
                under[memory].append(result["init_ms"])
    finally:
        for group in groups.values():
            if group.exists():
                group.rmdir()
    full_ms = round(float(statistics.median(full)), 1)
    return {
        "handler": logical_id,
        "runs": runs,
        "full_speed_init_ms": full_ms,
        "method": "cgroup v1 cpu.cfs_quota_us = memory / 1769 of a 10 ms period, one CPU"
        if unavailable is None
        else f"not measured under a CPU quota: {unavailable}",
        "memories": {
            str(memory): {
                "cpu_share": round(min(memory / LAMBDA_VCPU_MB, 1.0), 3),
                "modelled_init_ms": round(full_ms * max(1.0, LAMBDA_VCPU_MB / memory), 1),
                "measured_init_ms": round(float(statistics.median(under[memory])), 1)
                if under[memory]
                else None,
            }
            for memory in memories
        },
    }


def _pinned(cpu: int) -> Callable[[], None]:
    def setup() -> None:
        os.sched_setaffinity(0, {cpu})

    return setup


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return round(float(statistics.median(r[key] for r in runs)), 1)


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 3), indent=2))
