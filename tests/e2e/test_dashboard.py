"""The web dashboard (`GET /ui`) in a real headless Chromium, against the local runtime.

Chromium is Debian's package (`make browser` installs it; `make test` depends on it), driven
by Playwright's Python client: its wheel carries the driver, and no browser is downloaded.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from e2e_kit import Inbox, Registry, StartStub, service_definition, unique, workflow_definition
from loopback import Call, Reply, json_reply

pytestmark = pytest.mark.e2e

EVENT_FILE = Path(__file__).resolve().parents[2] / "examples" / "definitions" / "event-text.json"
EXPECTED_OUTPUTS = {"message": "! GNINROM EHT NI ESIR LLIW NUS EHT", "space_count": 7}
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
TIMEOUT_MS = 20_000


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "no `chromium` on PATH: the dashboard test needs Debian's chromium package; "
            "run `make browser` (make test does it)"
        )
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - a missing dev dependency
        pytest.fail("the playwright package is missing: run `make install` (its dev extras)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Recorded:
    """A page and what it did: console errors, uncaught exceptions, every request's URL."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on(
            "console", lambda message: message.type == "error" and self.errors.append(message.text)
        )
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("request", lambda request: self.requests.append(request.url))

    def foreign_requests(self, origin: str) -> list[str]:
        """Requests that left the API's origin (blob: and data: URLs are no network)."""
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("blob", "data")
            and f"{urlsplit(url).scheme}://{urlsplit(url).netloc}" != origin
        ]


@pytest.fixture
def recorded(browser: Any) -> Iterator[Recorded]:
    page = Recorded(browser)
    yield page
    page.context.close()


def test_the_page_is_html_with_a_strict_content_security_policy(local_stack: Any) -> None:
    # Given the running stack
    # When the dashboard is fetched
    answer = local_stack.get("/ui")

    # Then it is an HTML page
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.text.lstrip().lower().startswith("<!doctype html>")
    # And its policy admits its own inline script and style by digest, nothing else inline
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "script-src 'sha256-" in policy and "style-src 'sha256-" in policy
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    # And it loads nothing from anywhere else
    assert "http://" not in answer.text and "https://" not in answer.text


def test_a_user_sends_the_example_event_and_watches_it_run_to_its_end(
    local_stack: Any, recorded: Recorded, tmp_path: Path
) -> None:
    page = recorded.page
    origin = local_stack.url

    # Given the dashboard of the example stack
    page.goto(origin + "/ui")

    # When the example workflow is picked from the registered ones
    row = page.locator('[data-testid=workflow-row][data-id="process-text"]')
    row.wait_for()
    # the two listings load separately: wait for the services' one too
    services = page.locator('[data-testid=service-row][data-id="upper"]')
    services.wait_for()
    assert services.count() == 1
    row.get_by_test_id("workflow-link").click()

    # Then its page shows its diagram, its spec and its recent events
    page.get_by_test_id("workflow-name").wait_for()
    assert page.get_by_test_id("workflow-name").text_content() == "process-text"
    _wait_for_diagram(page)
    assert "message" in (page.get_by_test_id("inputs").text_content() or "")
    assert "space_count" in (page.get_by_test_id("outputs").text_content() or "")

    # When the example event is sent through its form
    page.get_by_test_id("send-body").fill(EVENT_FILE.read_text())
    page.get_by_test_id("send-button").click()

    # Then the event's page opens and follows it until it ends SUCCEEDED
    page.wait_for_url("**/ui#/events/*")
    event_id = page.get_by_test_id("event-id").text_content()
    assert event_id
    page.locator("[data-testid=event-status]", has_text="SUCCEEDED").wait_for()
    assert page.get_by_test_id("live").count() == 0  # it stopped refreshing
    event = local_stack.get(f"/events/{event_id}").json()
    assert event["status"] == "SUCCEEDED" and event["outputs"] == EXPECTED_OUTPUTS

    # And it shows the three steps in order, each SUCCEEDED, with their inputs and outputs
    rows = page.get_by_test_id("step-row")
    assert rows.count() == 3
    services = [rows.nth(i).get_by_test_id("step-service").text_content() for i in range(3)]
    assert services == ["upper", "reverse", "space-counter"]
    statuses = [rows.nth(i).get_by_test_id("step-status").text_content() for i in range(3)]
    assert statuses == ["SUCCEEDED"] * 3
    assert "THE SUN WILL RISE" in (rows.nth(0).text_content() or "")
    # And the event's data and outputs, as JSON
    assert json.loads(page.get_by_test_id("event-outputs").text_content() or "") == (
        EXPECTED_OUTPUTS
    )
    assert (
        json.loads(page.get_by_test_id("event-data").text_content() or "")
        == json.loads(EVENT_FILE.read_text())["data"]
    )
    # And the event's own diagram, drawn
    _wait_for_diagram(page)
    page.screenshot(path=str(tmp_path / "event.png"), full_page=True)

    # And the workflow's page lists the event
    page.goto(f"{origin}/ui#/workflows/process-text")
    page.locator(f'[data-testid=event-row][data-id="{event_id}"]').wait_for()

    # And in a narrow window nothing spills sideways out of the page
    page.set_viewport_size({"width": 380, "height": 800})
    page.goto(f"{origin}/ui#/events/{event_id}")
    page.get_by_test_id("step-row").first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

    # And the page logged no error and talked to no one but the API that served it
    assert recorded.errors == []
    assert recorded.foreign_requests(origin) == []
    assert any(url.startswith(origin + "/events/") for url in recorded.requests)


def test_the_event_page_follows_a_waiting_event_until_it_ends(
    local_stack: Any, recorded: Recorded, registry: Registry, stub_service: Any
) -> None:
    page = recorded.page

    # Given a workflow over a callback service, and an event of it WAITING for the callback
    inbox = Inbox()
    service = unique("ui-later")
    registry.service(
        service_definition(
            service,
            stub_service(inbox).address,
            {"message": "string"},
            {"message": "string"},
            mode="callback",
            timeout_seconds=900,  # 9 s at the stack's time scale: far beyond this test
        )
    )
    workflow = unique("ui-waits")
    registry.workflow(
        workflow_definition(workflow, [service], {"message": "string"}, {"message": "string"})
    )
    answer = local_stack.post(f"/e/{workflow}", json={"data": {"message": "later"}})
    assert answer.status_code == 202, answer.text
    event_id = answer.json()["event_id"]
    callback_url = inbox.next().headers["x-machinery-callback-url"]

    # When its page is open
    page.goto(f"{local_stack.url}/ui#/events/{event_id}")

    # Then it shows the event waiting, and says it is following it
    page.locator("[data-testid=event-status]", has_text="WAITING").wait_for()
    page.get_by_test_id("live").wait_for()
    assert page.get_by_test_id("step-status").text_content() == "WAITING"

    # When the service calls back
    assert requests.post(callback_url, json={"message": "retal"}, timeout=10).status_code == 200

    # Then the same page, not reloaded, shows the event SUCCEEDED and stops following it
    page.locator("[data-testid=event-status]", has_text="SUCCEEDED").wait_for()
    assert page.get_by_test_id("step-status").text_content() == "SUCCEEDED"
    assert json.loads(page.get_by_test_id("event-outputs").text_content() or "") == {
        "message": "retal"
    }
    assert page.get_by_test_id("live").count() == 0
    _wait_for_diagram(page)
    assert recorded.errors == []
    assert recorded.foreign_requests(local_stack.url) == []


def test_an_api_error_is_shown_with_its_message(local_stack: Any, recorded: Recorded) -> None:
    page = recorded.page

    # Given the dashboard
    # When it is asked for an event that does not exist
    page.goto(local_stack.url + "/ui#/events/no-such-event")

    # Then the API's answer is shown, readably
    message = page.get_by_test_id("error-message")
    message.wait_for()
    assert "HTTP 404" in (message.text_content() or "")
    assert "no-such-event" in (message.text_content() or "")
    # And the only console error is the browser's note of that 404
    assert all("404" in error for error in recorded.errors), recorded.errors


def _wait_for_diagram(page: Any) -> None:
    """The diagram <img> is there, decoded, and has a size."""
    image = page.get_by_test_id("diagram")
    image.wait_for()
    size = image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
    assert size[0] and size[1] > 0 and size[2] > 0, size


def test_an_order_shows_its_branches_side_by_side_and_its_map_progress(
    local_stack: Any, recorded: Recorded, tmp_path: Path
) -> None:
    page = recorded.page
    origin = local_stack.url
    # Given an example order that ran to its end
    order = Path(EVENT_FILE).with_name("event-order.json").read_text()
    accepted = local_stack.post("/e/order", json=json.loads(order)).json()
    assert local_stack.wait_for_end(accepted["event_id"])["status"] == "SUCCEEDED"

    # When its page is opened
    page.goto(f"{origin}/ui#/events/{accepted['event_id']}")
    page.locator("[data-testid=event-status]", has_text="SUCCEEDED").wait_for()

    # Then each group has its row and, under it, the parallel's two branches side by side
    services = page.get_by_test_id("step-service").all_text_contents()
    assert services[3:5] == ["parallel · 2 branches", "map price-lines"]
    fork = page.get_by_test_id("group-row").nth(1)
    branches = fork.get_by_test_id("branch")
    assert branches.count() == 2
    first, second = branches.nth(0).bounding_box(), branches.nth(1).bounding_box()
    assert first is not None and second is not None
    assert first["y"] == second["y"] and first["x"] + first["width"] <= second["x"]
    assert "charge-card" in (branches.nth(1).text_content() or "")
    # And the map's progress: every line priced
    assert page.get_by_test_id("map-count").text_content() == "3/3 iterations"
    assert page.locator("[data-testid=map-progress] progress").get_attribute("value") == "3"
    page.screenshot(path=str(tmp_path / "order.png"), full_page=True)
    assert recorded.errors == []


def test_a_workflow_page_lists_its_versions_and_an_event_shows_its_own(
    local_stack: Any, recorded: Recorded, registry: Registry
) -> None:
    page = recorded.page
    origin = local_stack.url
    # Given a workflow of the example services with two versions, the first one live, and
    # an event that ran the second
    name = unique("dash-versions")
    definition = workflow_definition(name, ["upper"], {"message": "string"}, {"message": "string"})
    registry.workflow(definition)
    changed = {**definition, "description": "second"}
    assert local_stack.put(f"/workflows/{name}", json=changed).status_code == 200
    assert local_stack.put(f"/workflows/{name}/live", json={"version": 1}).status_code == 200
    sent = local_stack.post(f"/e/{name}?version=2", json={"data": {"message": "hi"}}).json()
    local_stack.wait_for_end(sent["event_id"])

    # When the workflow's page is opened
    page.goto(f"{origin}/ui#/workflows/{name}")
    rows = page.get_by_test_id("version-row")
    rows.first.wait_for()

    # Then its versions are listed, newest first, the live one marked
    assert [rows.nth(i).get_attribute("data-version") for i in range(rows.count())] == ["2", "1"]
    assert "live" in (rows.nth(1).text_content() or "")
    assert page.get_by_test_id("live-version").text_content() == "version 1"
    # And the event's page says which version it ran
    page.goto(f"{origin}/ui#/events/{sent['event_id']}")
    page.get_by_test_id("event-version").wait_for()
    assert page.get_by_test_id("event-version").text_content() == "version 2"
    # And the order workflow's steps are named, groups included
    page.goto(f"{origin}/ui#/workflows/order")
    page.get_by_test_id("version-row").first.wait_for()
    steps = page.get_by_test_id("workflow-summary").text_content() or ""
    assert "parallel · 2 branches" in steps and "map line in lines" in steps
    assert "[object Object]" not in steps
    assert recorded.errors == []


LARGE_STEPS = 7
ANSWER_BYTES = 200_000  # 7 steps of 200 KB: 1.4 MB, past the 1 MiB an event's answer holds


def _blob(step: int) -> str:
    """What step `step` answers: 200 KB of its own letter."""
    return chr(ord("A") + step) * ANSWER_BYTES


def _grow(call: Call, _: int) -> Reply:
    n = call.json()["n"]
    return json_reply(200, {"n": n + 1, "blob": _blob(n)})


def test_a_large_event_shows_every_step_output_whole_its_links_followed(
    local_stack: Any, recorded: Recorded, registry: Registry, stub_service: StartStub
) -> None:
    page = recorded.page
    origin = local_stack.url
    # Given an ended event of seven steps each answering 200 KB, whose answer links the
    # outputs past its first 1 MiB
    service = unique("ui-grow")
    registry.service(
        service_definition(
            service,
            stub_service(_grow).address,
            {"n": "integer"},
            {"n": "integer", "blob": "string"},
        )
    )
    workflow = unique("ui-large")
    registry.workflow(
        {
            "name": workflow,
            "spec": {
                "services": [{"service": service, "id": f"s{i}"} for i in range(LARGE_STEPS)],
                "inputs": {"n": {"type": "integer"}},
                "outputs": {"n": {"type": "integer"}},
            },
        }
    )
    event_id = local_stack.send(workflow, {"n": 0})
    assert local_stack.wait_for_end(event_id, timeout=120)["status"] == "SUCCEEDED"
    linked = local_stack.get(f"/events/{event_id}").json()["linked_payloads"]
    assert {link["path"] for link in linked} >= {f"/steps/{LARGE_STEPS - 1}/output/blob"}

    # When its page is opened
    page.goto(f"{origin}/ui#/events/{event_id}")
    page.locator("[data-testid=event-status]", has_text="SUCCEEDED").wait_for()

    # Then every step's output is shown whole, the linked ones too, and no link is left
    rows = page.get_by_test_id("step-row")
    assert rows.count() == LARGE_STEPS
    for i in range(LARGE_STEPS):
        shown = json.loads(rows.nth(i).locator("td").nth(6).text_content() or "")
        assert shown == {"n": i + 1, "blob": _blob(i)}, f"step {i}"
    assert page.get_by_test_id("load-payload").count() == 0
    assert "$ref" not in (page.get_by_test_id("steps").text_content() or "")
    assert json.loads(page.get_by_test_id("event-outputs").text_content() or "") == {
        "n": LARGE_STEPS
    }
    # And each linked value was read once, from the API that served the page
    read = [url for url in recorded.requests if "/payloads/" in url]
    assert sorted(read) == sorted({origin + link["href"] for link in linked})
    assert recorded.errors == []
    assert recorded.foreign_requests(origin) == []


def _flaky(call: Call, _: int) -> Reply:
    """A service that refuses (400, not retried) the message "fail" and echoes any other."""
    message = call.json()["message"]
    if message.lower() == "fail":
        return json_reply(400, {"error": "refused"})
    return json_reply(200, {"message": message})


def _slow(call: Call, _: int) -> Reply:
    """A service that takes 80 ms to echo its message."""
    time.sleep(0.08)
    return json_reply(200, {"message": call.json()["message"]})


def _ended(local_stack: Any, workflow: str, message: str) -> str:
    event_id: str = local_stack.send(workflow, {"message": message})
    local_stack.wait_for_end(event_id)
    return event_id


def test_the_home_page_merges_the_newest_events_and_shows_each_workflow_success_rate(
    local_stack: Any, recorded: Recorded, registry: Registry, stub_service: StartStub
) -> None:
    page = recorded.page
    origin = local_stack.url
    # Given 21 workflows whose names sort before any other ("0…"): the first two over a
    # service that refuses "fail", the others over `upper`
    flaky = unique("ui-flaky")
    text = {"message": "string"}
    registry.service(service_definition(flaky, stub_service(_flaky).address, text, text))
    names = [unique(f"0dash-{i:02d}") for i in range(21)]
    for i, name in enumerate(names):
        registry.workflow(workflow_definition(name, [flaky if i < 2 else "upper"], text, text))
    # And events: the 21st workflow's first, then the second's (FAILED), then the first's
    # (SUCCEEDED, FAILED, SUCCEEDED)
    _ended(local_stack, names[20], "hi")
    failed = _ended(local_stack, names[1], "fail")
    first = [_ended(local_stack, names[0], message) for message in ("one", "fail", "three")]

    # When the dashboard's home page is opened
    page.goto(origin + "/ui")

    # Then the newest events of the first 20 workflows are merged, newest first: the first
    # workflow's three, then the second's; the 21st workflow's is not read, and it says so
    rows = page.get_by_test_id("newest-event-row")
    rows.first.wait_for()
    assert [rows.nth(i).get_attribute("data-id") for i in range(rows.count())] == [
        *reversed(first),
        failed,
    ]
    assert rows.nth(0).locator(".badge").text_content() == "SUCCEEDED"
    assert rows.nth(1).locator(".badge").text_content() == "FAILED"
    assert names[0] in (rows.nth(0).text_content() or "")
    note = page.get_by_test_id("newest-events-note")
    assert note.is_visible()
    assert "first 20 workflows" in (note.text_content() or "")

    # And each workflow's success over 24 hours: 2 of 3, none of 1, "-" without an ended event
    def success(name: str, shown: str) -> None:
        row = page.locator(f'[data-testid=workflow-row][data-id="{name}"]')
        exactly = re.compile(f"^{re.escape(shown)}$")
        row.get_by_test_id("workflow-success").filter(has_text=exactly).wait_for()

    success(names[0], "66.7%")
    success(names[1], "0%")
    success(names[2], "-")
    success(names[20], "100%")
    assert any("/stats?window=24h" in url for url in recorded.requests)
    assert recorded.errors == []
    assert recorded.foreign_requests(origin) == []


def test_a_workflow_page_shows_its_statistics_above_its_events(
    local_stack: Any, recorded: Recorded, registry: Registry, stub_service: StartStub
) -> None:
    page = recorded.page
    origin = local_stack.url
    # Given a workflow of three steps (upper, a service taking 80 ms, one refusing "FAIL")
    text = {"message": "string"}
    slow, flaky = unique("ui-slow"), unique("ui-flaky")
    registry.service(service_definition(slow, stub_service(_slow).address, text, text))
    registry.service(service_definition(flaky, stub_service(_flaky).address, text, text))
    name = unique("ui-stats")
    registry.workflow(workflow_definition(name, ["upper", slow, flaky], text, text))
    # And three events of it: two SUCCEEDED, one FAILED at its last step
    for message in ("a b", "fail", "c d"):
        _ended(local_stack, name, message)

    # When its page is opened
    page.goto(f"{origin}/ui#/workflows/{name}")
    page.get_by_test_id("stats-counts").wait_for()

    # Then its statistics are shown above its events
    stats_box = page.get_by_test_id("workflow-stats").bounding_box()
    events_box = page.get_by_test_id("events").bounding_box()
    assert stats_box is not None and events_box is not None
    assert stats_box["y"] + stats_box["height"] <= events_box["y"]
    # And the counts by status
    counts = page.get_by_test_id("stats-count").all_text_contents()
    assert counts == ["2 SUCCEEDED", "1 FAILED", "0 CANCELLED", "0 RUNNING", "0 WAITING"]
    assert page.get_by_test_id("stats-success").text_content() == "66.7%"
    # And the p50 and p95 of the events' durations, as every view reads a duration
    shown = page.get_by_test_id("stats-duration").text_content() or ""
    assert re.fullmatch(r"p50 \d+\.\d+ m?s · p95 \d+\.\d+ m?s", shown), shown
    # And the slowest step (by p95) and the most failing one
    slowest = page.get_by_test_id("stats-slowest").text_content() or ""
    assert slowest.startswith(f"{slow} (step 1) · p95 "), slowest
    assert page.get_by_test_id("stats-failing").text_content() == (
        f"{flaky} (step 2) · 1 of 3 calls failed"
    )

    # When the last hour is chosen instead of the day
    page.get_by_test_id("stats-window").select_option("1h")

    # Then the statistics are read again for that window (the same three events)
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(e => e.name.includes('window=1h'))"
    )
    page.get_by_test_id("stats-count").first.filter(has_text="2 SUCCEEDED").wait_for()
    assert any("/stats?window=1h" in url for url in recorded.requests)
    # And the events are listed below, as before
    assert page.get_by_test_id("event-row").count() == 3
    assert recorded.errors == []
    assert recorded.foreign_requests(origin) == []
