"""The layer ships what Lambda imports, and what it ships imports with only what ships.

The layer is built by its own Makefile target, as `sam build` runs it, but for this host's
Python (so its wheels import here); it is then imported in an interpreter that sees only the
standard library, the layer, and what the Lambda runtime itself provides (boto3 and its
dependencies).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import botocore
import dateutil
import jmespath
import pytest
import s3transfer
import six
import urllib3

ROOT = Path(__file__).resolve().parents[2]
# What Lambda's Python runtime has besides the standard library: boto3 and what it needs.
RUNTIME_PROVIDED = (boto3, botocore, s3transfer, jmespath, dateutil, urllib3, six)
NOT_SHIPPED = ("cli", "local")

IMPORT_ALL = r"""
import importlib, json, sys
failed = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception as error:  # report every module, not only the first
        failed[name] = f"{type(error).__name__}: {error}"
print(json.dumps({"failed": failed, "modules": sorted(sys.modules)}))
"""


def _build_layer(artifacts: Path) -> Path:
    source = artifacts.parent / "layer-source"
    # as sam build copies it: the machinery_core link followed
    shutil.copytree(
        ROOT / "layers" / "machinery", source, ignore=shutil.ignore_patterns("__pycache__")
    )
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "build-MachineryLayer",
            f"ARTIFACTS_DIR={artifacts}",
            f"PYTHON={sys.executable}",
            "TARGET_FLAGS=",
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return artifacts / "python"


def _runtime_site(folder: Path) -> Path:
    """A folder holding only what the Lambda runtime provides, linked from this venv."""
    folder.mkdir()
    for module in RUNTIME_PROVIDED:
        origin = Path(module.__file__ or "")
        package = origin.parent if origin.name == "__init__.py" else origin
        (folder / package.name).symlink_to(package)
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The layer's python/ folder, built for this host, and the runtime's packages."""
    folder = tmp_path_factory.mktemp("layer")
    return _build_layer(folder / "artifacts"), _runtime_site(folder / "runtime")


def _import_in_bare_python(path: list[str], modules: list[str]) -> dict[str, Any]:
    """Import `modules` in an interpreter with no site-packages, `path` first on sys.path."""
    probe = f"import sys; sys.path[:0] = {path!r}\n" + IMPORT_ALL
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, json.dumps(modules)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_every_shipped_module_imports_with_only_the_layer_and_the_runtime(
    built: tuple[Path, Path],
) -> None:
    # Given the layer built for this host, and the runtime's own packages beside it
    site, runtime = built
    shipped = sorted(
        ".".join(path.relative_to(site).with_suffix("").parts).removesuffix(".__init__")
        for path in (site / "machinery_core").rglob("*.py")
    )

    # When a bare interpreter (no site-packages, no user site) imports each of them
    report = _import_in_bare_python([str(site), str(runtime)], shipped)

    # Then everything imports
    assert report["failed"] == {}
    assert "machinery_core.service.worker" in shipped
    assert "machinery_core.adapters.store.events" in shipped
    # and the command line and the local runtime do not ship, nor what only they need
    for left_out in NOT_SHIPPED:
        assert not (site / "machinery_core" / left_out).exists(), f"the layer ships {left_out}"
    for package in ("click", "rich", "moto", "yaml"):
        assert not (site / package).exists(), f"the layer carries {package}"
        assert package not in report["modules"]


@pytest.mark.parametrize("handler", ["api", "step"])
def test_each_handler_imports_with_only_the_layer_and_the_runtime(
    built: tuple[Path, Path], handler: str
) -> None:
    site, runtime = built
    code = str(ROOT / "functions" / handler)
    report = _import_in_bare_python([code, str(site), str(runtime)], ["app"])
    assert report["failed"] == {}
