"""Regenerate docs/dashboard.png: the dashboard's page of the example event (`make screenshot`).

It starts `machinery local --examples` on a free loopback port (waiting, like the tests, for
the example services' fixed ports to be free), sends the example event, opens its page in
Debian's headless chromium (`make browser`) at 1280x800 and saves what it shows.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

from machinery_core.local.launch import api_url_in, example_ports_held, free_port

ROOT = Path(__file__).resolve().parents[1]
EVENT_FILE = ROOT / "examples" / "definitions" / "event-text.json"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def start_local() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "machinery_core.cli", "local", "--examples"]
        + ["--host", "127.0.0.1", "--port", str(free_port())],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        url = api_url_in(line)
        if url is not None:
            return process, url
    process.kill()
    sys.exit("machinery local did not start")


def capture(url: str, output: Path) -> None:
    answer = requests.post(
        f"{url}/e/process-text", params={"wait": 10}, data=EVENT_FILE.read_bytes(), timeout=30
    )
    answer.raise_for_status()
    event_id = answer.json()["event_id"]
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("no `chromium` on PATH: run `make browser`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(20_000)
        page.goto(f"{url}/ui#/events/{event_id}")
        page.locator("[data-testid=event-status]", has_text="SUCCEEDED").wait_for()
        page.get_by_test_id("diagram").wait_for()
        page.screenshot(path=str(output))
        browser.close()
    print(f"wrote {output} (event {event_id})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    with example_ports_held():  # the example services' ports, shared with the tests
        process, url = start_local()
        try:
            capture(url, args.output)
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
