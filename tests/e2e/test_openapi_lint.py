"""The document GET /openapi.json serves passes Redocly's recommended rules and Spectral's
spectral:oas with no error and no warning (`make openapi-lint` runs the same linters on the
same document, built in-process).

The linters come from the npm registry through package.json and package-lock.json, which
`make test` installs into node_modules/ (`make node-install` alone).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "node_modules" / ".bin"


def _linter(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(
            f"{path.relative_to(ROOT)} is missing: `make test` installs the OpenAPI linters "
            "(npm ci, from package.json and package-lock.json); `make node-install` installs "
            "only them"
        )
    return path


@pytest.fixture(scope="module")
def served(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    answer = local_stack.get("/openapi.json")
    assert answer.status_code == 200
    document = tmp_path_factory.mktemp("openapi") / "openapi.json"
    document.write_text(json.dumps(answer.json(), indent=2))
    return document


def test_redocly_recommended_finds_nothing(served: Path) -> None:
    # When Redocly's recommended ruleset lints the served document
    redocly = _linter("redocly")
    linted = subprocess.run(
        [
            str(redocly),
            "lint",
            str(served),
            "--config",
            str(ROOT / "redocly.yaml"),
            "--format",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
    )

    # Then it finds no error and no warning
    report = json.loads(linted.stdout)
    problems = [
        (problem["severity"], problem["ruleId"], problem["message"])
        for problem in report["problems"]
    ]
    assert problems == [], problems
    assert report["totals"]["errors"] == report["totals"]["warnings"] == 0
    assert linted.returncode == 0, linted.stderr


def test_spectral_oas_finds_nothing(served: Path) -> None:
    # When Spectral's spectral:oas ruleset lints the served document
    spectral = _linter("spectral")
    linted = subprocess.run(
        [
            str(spectral),
            "lint",
            str(served),
            "--ruleset",
            str(ROOT / ".spectral.yaml"),
            "--format",
            "json",
            "--fail-severity",
            "hint",
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then it finds nothing at all (not even a hint)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    results = json.loads(linted.stdout or "[]")
    assert results == [], [(r["code"], r["message"], r["path"]) for r in results]
