"""template.yaml is the one source of truth: its ASL passes statelint, SAM accepts and builds it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from integration_kit import ROOT, TEMPLATE
from sam_kit import deployed, sam, sam_env

from machinery_core.local.template import Template

VENV_BIN = Path(sys.executable).parent


def test_the_state_machine_definition_passes_statelint(tmp_path: Path) -> None:
    # Given the ASL exactly as the template deploys it
    definition = tmp_path / "asl.json"
    definition.write_text(Template.load(TEMPLATE).asl())

    # When statelint checks it (URI substitutions like ${StepFunctionArn} let through)
    result = subprocess.run(
        [str(VENV_BIN / "statelint"), "--ignore", "URI", str(definition)],
        capture_output=True,
        text=True,
        check=False,
    )

    # Then it finds nothing
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_state_machine_loops_run_route_waits_for_backoffs_and_ends_to_wait() -> None:
    # Given the deployed ASL
    states = json.loads(Template.load(TEMPLATE).asl())["States"]

    # Then Run hands its answer to Route, which loops, waits or ends
    assert states["Run"]["Next"] == "Route"
    targets = {
        choice.get("StringEquals", "notify"): choice["Next"]
        for choice in states["Route"]["Choices"]
    }
    assert targets == {
        "CONTINUE": "Run",
        "BACKOFF": "Backoff",
        "SUSPEND": "Suspended",
        "notify": "Notify",
        "SUCCEEDED": "Done",
        "CANCELLED": "Done",
    }
    assert states["Route"]["Default"] == "Failed"
    # an execution that ends to wait (a segment) ends succeeded; nothing waits on a task token
    assert states["Suspended"]["Type"] == "Succeed"
    assert not any(
        str(state.get("Resource", "")).endswith(".waitForTaskToken") for state in states.values()
    )
    # Run knows what started its execution and when, and whether it follows a Wait
    payload = states["Run"]["Parameters"]["Payload"]
    assert payload["wake.$"] == "$.wake"
    assert payload["route.$"] == "$.route"
    assert payload["started_at.$"] == "$$.Execution.StartTime"
    assert payload["execution.$"] == "$$.Execution.Id"
    # a duplicate invocation that found the event claimed by another is retried
    retried = [name for retrier in states["Run"]["Retry"][:-1] for name in retrier["ErrorEquals"]]
    assert "ClaimHeld" in retried
    # and the notification is retried on NotificationFailed, then the event ends either way
    assert ["NotificationFailed"] in [r["ErrorEquals"] for r in states["Notify"]["Retry"]]
    assert states["Notify"]["Next"] == states["Notify"]["Catch"][0]["Next"] == "Finish"
    assert states["Backoff"] == {
        "Type": "Wait",
        "SecondsPath": "$.route.wait_seconds",
        "Next": "Run",
    }
    # and whatever Run cannot recover from goes through Abort, which marks the event FAILED
    assert states["Run"]["Catch"][0]["Next"] == "Abort"
    assert states["Abort"]["Next"] == "Route"  # which notifies, if asked, then fails


def test_the_tasks_that_run_steps_pass_the_execution_plan_on() -> None:
    # Given the deployed ASL, whose input is {"event_id", "plan", "wake", "route"}
    states = json.loads(Template.load(TEMPLATE).asl())["States"]

    # Then every Task whose action needs the plan passes it on, so it is not read back
    payloads = {
        name: state["Parameters"]["Payload"]
        for name, state in states.items()
        if state["Type"] == "Task"
    }
    carrying = {name for name, payload in payloads.items() if "plan.$" in payload}
    assert carrying == {"Run"}
    assert all(payloads[name]["plan.$"] == "$.plan" for name in carrying)
    # and no state drops it from the data the next one sees
    assert all(
        state.get("ResultPath", "$") not in ("$", "$.plan") and "OutputPath" not in state
        for state in states.values()
        if state["Type"] in ("Task", "Pass")
    )


@pytest.mark.sam
@pytest.mark.parametrize("extra", [["--lint"], []], ids=["cfn-lint", "sam-transform"])
def test_sam_validates_the_template(extra: list[str]) -> None:
    # --lint runs cfn-lint only; the plain run applies the SAM transform as a deploy would
    result = subprocess.run(
        [str(sam()), "validate", *extra, "--template-file", str(TEMPLATE)],
        cwd=ROOT,
        env=sam_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.sam
def test_sam_builds_the_functions_and_a_layer_with_machinery_core(tmp_path: Path) -> None:
    # Given a copy of the deployable sources (so the build never touches the checkout)
    source = tmp_path / "src"
    source.mkdir()
    for name in ("template.yaml", "functions", "layers", "machinery_core"):
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / name)

    # When sam builds it
    result = subprocess.run(
        [str(sam()), "build", "--build-dir", str(tmp_path / "build")],
        cwd=source,
        env=sam_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )

    # Then both functions and the layer are built, the layer carrying machinery_core
    assert result.returncode == 0, result.stdout + result.stderr
    build = tmp_path / "build"
    assert (build / "ApiFunction" / "app.py").exists()
    assert (build / "StepFunction" / "app.py").exists()
    layer = build / "MachineryLayer" / "python"
    assert (layer / "machinery_core" / "service" / "worker.py").exists()
    assert (layer / "machinery_core" / "ui" / "dashboard.html").exists()  # data files too
    assert (layer / "aws_lambda_powertools").is_dir()
    assert (layer / "pydantic").is_dir()
    # and not the runtime's boto3 and botocore: a layer's copy would shadow them (the X-Ray
    # SDK brings botocore; it is left out, see layers/machinery/requirements.txt)
    for shadowing in ("boto3", "botocore", "s3transfer", "aws_xray_sdk"):
        assert not (layer / shadowing).exists(), f"the layer carries {shadowing}"
    # and every module's bytecode for the runtime's Python, since Lambda cannot write it to a
    # read-only layer (it would compile them again at every cold start), used only if it
    # matches its source (checked-hash: PEP 552 flags 0b11)
    uncompiled = [
        source.relative_to(layer)
        for source in layer.rglob("*.py")
        if not (source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc").exists()
    ]
    assert uncompiled == []
    models = layer / "machinery_core" / "domain" / "__pycache__" / "models.cpython-313.pyc"
    assert int.from_bytes(models.read_bytes()[4:8], "little") == 0b11
    assert list(layer.glob("pydantic_core/_pydantic_core.*-aarch64-linux-gnu.so"))  # arm64


@pytest.mark.sam
def test_the_api_authorization_parameter_switches_iam_on_every_route() -> None:
    # Given the template transformed as CloudFormation would, once per ApiAuthorization value
    stacks = deployed({value: {"ApiAuthorization": value} for value in ("AWS_IAM", "NONE")})
    security = {value: _route_security(resources) for value, resources in stacks.items()}
    routes = {
        route.route_key for route in Template.load(TEMPLATE).functions()["ApiFunction"].routes
    }

    # Then by default every route but the callback one requires SigV4 (the callback's
    # token is its credential), and with NONE no route does
    callback = "POST /callbacks/{token}"
    assert set(security["AWS_IAM"]) == routes
    assert security["AWS_IAM"].pop(callback) == [{"NONE": []}]
    assert all(value == [{"AWS_IAM": []}] for value in security["AWS_IAM"].values())
    assert set(security["NONE"]) == routes
    assert all(not value for value in security["NONE"].values())


def _route_security(resources: dict[str, Any]) -> dict[str, Any]:
    """Each route's `security`, as the HTTP API's generated OpenAPI body declares it."""
    [api] = [r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    return {
        f"{method.upper()} {path}": operation.get("security")
        for path, methods in api["Properties"]["Body"]["paths"].items()
        for method, operation in methods.items()
    }
