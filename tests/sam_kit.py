"""The SAM CLI from its own virtual environment, and template.yaml as a deploy makes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"


def sam() -> Path:
    """The SAM CLI of .sam-venv (or $MACHINERY_SAM): `make test` installs it."""
    found = Path(os.environ.get("MACHINERY_SAM") or ROOT / ".sam-venv" / "bin" / "sam")
    if not found.exists():
        pytest.fail(f"the SAM CLI is missing at {found}: run `make sam-install` (make test does)")
    return found


def sam_env() -> dict[str, str]:
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    return {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        # expand AWS::LanguageExtensions (the ApiAuthorization switch) as CloudFormation does
        "SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        # sam build needs python3.13 on PATH; pyenv offers it beside the default interpreter.
        "PYENV_VERSION": f"{version}:3.13.0",
    }


def deployed(
    parameter_sets: dict[str, dict[str, str]], templates: dict[str, Path] | None = None
) -> dict[str, dict[str, Any]]:
    """Resources as a deploy makes them (language extensions expanded, the SAM transform
    applied, by the SAM CLI's own code), for each named set of parameters: of template.yaml,
    or of `templates[name]` where given (one SAM process for all of them)."""
    jobs = {
        name: {"template": str((templates or {}).get(name, TEMPLATE)), "parameters": parameters}
        for name, parameters in parameter_sets.items()
    }
    result = subprocess.run(
        [str(sam().parent / "python"), str(Path(__file__).parent / "sam_transform.py")],
        input=json.dumps(jobs),
        env=sam_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    resources: dict[str, dict[str, Any]] = json.loads(result.stdout)
    return resources
