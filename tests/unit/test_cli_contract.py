"""What the `machinery` command shares with the server and the dashboard, and what it must
not take from the server: its start-up stays free of the server's heavy dependencies."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from machinery_core.contract import duration_text

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "machinery_core" / "ui" / "dashboard.html"
# What the server needs and the command must not load to start (about 100 ms with them)
SERVER_ONLY = ("pydantic", "boto3", "botocore", "requests")


def imported_at_start(*args: str) -> set[str]:
    """The top-level packages `python -m machinery_core.cli *args` imports (-X importtime)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "machinery_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    # import time: self [us] | cumulative | imported package
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.MULTILINE)
    assert names, done.stderr[:2000]
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("args", [["--help"], ["send", "--help"]], ids=" ".join)
def test_the_command_starts_without_the_server_dependencies(args: list[str]) -> None:
    imported = imported_at_start(*args)
    assert "click" in imported
    assert "machinery_core" in imported
    assert imported.isdisjoint(SERVER_ONLY), sorted(imported & set(SERVER_ONLY))


def test_the_dashboard_reads_durations_as_the_command_does() -> None:
    # Given the dashboard's own duration() function, run by Node
    node = shutil.which("node")
    if node is None:
        pytest.skip("no `node` on PATH to run the dashboard's script with")
    script = DASHBOARD.read_text(encoding="utf-8")
    functions = [
        re.search(rf"^  function {name}\(.*?^  \}}$", script, re.MULTILINE | re.DOTALL)
        for name in ("duration", "fixed")
    ]
    assert all(functions), "the dashboard's duration() and fixed() functions are not found"
    # values either side of each boundary, exact halves (to even, as Python rounds them),
    # and the millisecond values the API records (3 decimals)
    values = [0, 0.04, 0.05, 0.25, 0.35, 2.25, 2.75, 12.3, 999.94, 999.95, 999.96, 1000]
    values += [1004.9, 1005, 1125, 1234.5, 1375, 59_999.99, 3_600_000]
    values += [round(n * 0.125, 3) for n in range(0, 16_000, 7)]
    values += [round(n * 1.001, 3) for n in range(0, 20_000, 13)]
    program = "\n".join(match.group(0) for match in functions if match) + (
        "\nconst el = (tag, attrs, text) => text;"
        f"\nconsole.log(JSON.stringify({json.dumps(values)}.map(duration)));"
    )

    # When it formats them
    done = subprocess.run(
        [node, "-e", program], capture_output=True, text=True, timeout=60, check=True
    )

    # Then each reads exactly as the command prints it
    shown = json.loads(done.stdout)
    assert [(value, text) for value, text in zip(values, shown, strict=True)] == [
        (value, duration_text(value)) for value in values
    ]
