"""What a handler's cold start loads and builds (structure, not timings: benchmarks/ times it).

Each case is a fresh interpreter with the environment Lambda gives the function (the
template's variables, fake names for its resources, the runtime's own variables), which
imports the handler module as Lambda does and builds its dependencies as the first
invocation does, then reports the modules loaded and the boto3 clients created.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from machinery_core.local.template import Template

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
HANDLERS = {"api": "ApiFunction", "step": "StepFunction"}

# Never in a handler's cold start: the test and local-runtime tools (not in the layer), the
# X-Ray SDK (not in the layer; see layers/machinery/requirements.txt), and what only some
# invocations use - requests (service calls and notifications).
NEVER = ("moto", "machinery_core.local", "yaml", "pytest", "click", "rich", "aws_xray_sdk")
ON_FIRST_USE = ("requests",)

CHILD = r"""
import json, sys
import boto3

clients = []
boto3.setup_default_session()
boto3.DEFAULT_SESSION.events.register(
    "creating-client-class", lambda event_name, **_: clients.append(event_name.split(".")[-1])
)
sys.path.insert(0, sys.argv[1])
import app  # noqa: F401  (Handler: app.handler)
from machinery_core.runtime.dependencies import dependencies
from machinery_core.runtime.observability import tracer

deps = dependencies()
report = {"modules": sorted(sys.modules), "clients": list(clients),
          "provider": type(tracer.provider).__module__}
if "--use" in sys.argv:
    deps.executions.client.meta  # the first Step Functions call, the first service call
    deps.invoker.call
    report["used_modules"] = sorted(sys.modules)
    report["used_clients"] = list(clients)
    if "aws_xray_sdk.core" in sys.modules:
        from aws_xray_sdk.core import patcher
        report["patched"] = sorted(patcher._PATCHED_MODULES)
print(json.dumps(report))
"""


def _resolve(value: Any, parameters: dict[str, Any]) -> str:
    """A template value: a parameter's default, or any name for a resource."""
    if isinstance(value, dict) and "Ref" in value:
        name = value["Ref"]
        if name in parameters:
            return str(parameters[name].get("Default", ""))
        return f"machinery-test-{name}"
    return str(value)


def cold_start(handler: str, use: bool = False, **overrides: str) -> dict[str, Any]:
    template = Template.load(ROOT / "template.yaml")
    spec = template.functions()[HANDLERS[handler]]
    parameters = template.document.get("Parameters", {})
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LAMBDA_TASK_ROOT": str(spec.code_uri),
        "AWS_LAMBDA_FUNCTION_NAME": f"machinery-{handler}",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        **{name: _resolve(value, parameters) for name, value in spec.environment.items()},
        **overrides,
    }
    environment = {name: value for name, value in environment.items() if value != "<unset>"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(spec.code_uri), *(["--use"] if use else [])],
        cwd=spec.code_uri,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return report


def loaded(modules: list[str], name: str) -> bool:
    return any(module == name or module.startswith(name + ".") for module in modules)


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_cold_start_loads_no_test_tool_no_xray_sdk_and_nothing_only_some_calls_use(
    handler: str,
) -> None:
    # When Lambda starts the handler with the template's environment
    report = cold_start(handler)

    # Then it loaded none of these
    for name in (*NEVER, *ON_FIRST_USE):
        assert not loaded(report["modules"], name), f"the {handler} cold start loaded {name}"
    # and created only the DynamoDB client: Step Functions waits for its first call
    assert report["clients"] == ["dynamodb"]
    # and a tracer that records nothing
    assert report["provider"] == "machinery_core.runtime.observability"


@pytest.mark.parametrize("handler", HANDLERS)
def test_what_a_cold_start_leaves_out_is_built_on_first_use(handler: str) -> None:
    report = cold_start(handler, use=True)

    assert report["used_clients"] == ["dynamodb", "sfn"]
    assert loaded(report["used_modules"], "requests")
    assert not loaded(report["used_modules"], "aws_xray_sdk")


@pytest.mark.parametrize("handler", HANDLERS)
def test_outside_lambda_the_tracer_loads_no_xray_sdk(handler: str) -> None:
    # Tracing not disabled, but no Lambda (a test, a script): powertools would import the SDK
    report = cold_start(handler, LAMBDA_TASK_ROOT="<unset>", POWERTOOLS_TRACE_DISABLED="<unset>")

    assert not loaded(report["modules"], "aws_xray_sdk")


@pytest.mark.parametrize("handler", HANDLERS)
def test_with_the_xray_sdk_enabled_it_traces_aws_calls_then_service_calls(handler: str) -> None:
    pytest.importorskip("aws_xray_sdk", reason="the X-Ray SDK is not installed here")

    # Given tracing switched on, as layers/machinery/requirements.txt describes
    report = cold_start(handler, use=True, POWERTOOLS_TRACE_DISABLED="false")

    # Then the tracer is the SDK's, and it patched botocore at init and nothing else
    assert report["provider"].startswith("aws_xray_sdk")
    assert loaded(report["modules"], "aws_xray_sdk.ext.botocore")
    for name in ("requests", "sqlite3"):
        assert not loaded(report["modules"], name), f"the cold start loaded {name}"
    # and requests once the invoker was built
    assert report["patched"] == ["botocore", "requests"]
