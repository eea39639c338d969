"""What the `machinery` command prints: rich tables and a live view on a terminal, plain
lines when stdout is not one, and only the API's JSON with `--output json`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from machinery_core.cli.client import ClientError, Unreachable
from machinery_core.contract import ENDED, EventStatus, StepStatus, duration_text

FAILED = frozenset({EventStatus.FAILED, EventStatus.CANCELLED})
STEP_ENDED = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED}
)
STEP_UNDER_WAY = frozenset({StepStatus.RUNNING, StepStatus.RETRYING, StepStatus.WAITING})
STEP_HEADERS = ("#", "service", "status", "attempts", "duration", "error")
EVENT_HEADERS = ("event", "status", "accepted", "updated", "duration")
STATS_STATUSES = ("SUCCEEDED", "FAILED", "CANCELLED", "RUNNING", "WAITING")
STATS_STEP_HEADERS = ("step", "service", "calls", "failed", "retries", "p50", "p95")
STATS_ERROR_HEADERS = ("error", "events", "last event")
STYLES = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "RETRYING": "magenta",
    "WAITING": "blue",
    "PENDING": "dim",
    "SKIPPED": "dim",
    "created": "green",
    "updated": "cyan",
    "unchanged": "dim",
    "skipped": "yellow",
    "failed": "red",
}
# A value on a summary line is cut past this many characters: a large event's outputs
# (megabytes, its linked values fetched) would fill the terminal. --output json prints all.
VALUE_CHARS = 2000
UNREACHABLE_HINT = (
    "Hint: is the API running? Start the local runtime with `machinery local --examples`, "
    "or point --api-url (or MACHINERY_API_URL) at your API."
)


def ended(event: dict[str, Any]) -> bool:
    return event.get("status") in ENDED


def number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (null, a string, a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def moment(value: Any) -> datetime | None:
    """An API timestamp (ISO 8601; UTC when it names no zone); None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def since(start: Any, now: datetime) -> float | None:
    """Milliseconds from the timestamp `start` to `now` (never below 0: clocks differ)."""
    begun = moment(start)
    if begun is None:
        return None
    return max(0.0, (now - begun).total_seconds() * 1000)


def step_duration(step: dict[str, Any], now: datetime | None = None) -> float | None:
    """The step's recorded duration; with `now` (when the event was read), a step under way
    has run for now - started_at."""
    recorded = number(step.get("duration_ms"))
    if recorded is not None or now is None or step.get("status") not in STEP_UNDER_WAY:
        return recorded
    return since(step.get("started_at"), now)


def event_duration(event: dict[str, Any], now: datetime | None = None) -> float | None:
    """The event's duration from the API once it ended; with `now`, before that, the time
    since it was accepted."""
    recorded = number(event.get("duration_ms"))
    if recorded is not None or now is None or ended(event):
        return recorded
    return since(event.get("acknowledged_at"), now)


def listed_duration(item: dict[str, Any]) -> float | None:
    """An event listing's duration: the item's own, or for an ended event the time from its
    acceptance to its last status change (its end), as GET /events/{id} reckons it."""
    recorded = number(item.get("duration_ms"))
    if recorded is not None or not ended(item):
        return recorded
    accepted, changed = moment(item.get("acknowledged_at")), moment(item.get("updated_at"))
    if accepted is None or changed is None or changed < accepted:
        return None
    return round((changed - accepted).total_seconds() * 1000, 3)


def attempts_text(step: dict[str, Any]) -> str:
    """The attempts made; for a step under way, the number of the attempt being made."""
    under_way = step.get("attempt")
    if step.get("status") in STEP_UNDER_WAY and isinstance(under_way, int) and under_way > 0:
        return str(under_way)
    return str(step.get("attempts", 0))


def error_text(error: Any) -> str:
    if not isinstance(error, dict):
        return ""
    text = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    if error.get("status_code") is not None:
        text += f" (HTTP {error['status_code']})"
    return text


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def value_text(value: Any) -> str:
    """A JSON value on one line; past VALUE_CHARS its start, and how large it is whole."""
    text = json.dumps(value, ensure_ascii=False)
    if len(text) <= VALUE_CHARS:
        return text
    whole = size_text(len(text.encode()))
    return f"{text[:VALUE_CHARS]}… ({whole} in all; --output json prints it whole)"


def summary(event: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("event", str(event.get("event_id"))),
        ("workflow", str(event.get("workflow_id"))),
        ("status", str(event.get("status"))),
    ]
    if (event.get("run") or 1) > 1:
        rows.append(("run", str(event["run"])))
    rows.append(("accepted", str(event.get("acknowledged_at"))))
    if event.get("ended_at"):
        rows.append(("ended", str(event["ended_at"])))
        rows.append(("duration", duration_text(event_duration(event))))
    if event.get("error"):
        rows.append(("error", error_text(event["error"])))
    if event.get("outputs") is not None:
        rows.append(("outputs", value_text(event["outputs"])))
    note = event.get("notification")
    if isinstance(note, dict):
        rows.append(("notification", f"{note.get('status')} ({note.get('attempts', 0)} attempts)"))
    return rows


def step_summary(step: dict[str, Any]) -> list[tuple[str, str]]:
    """One step (GET /events/{id}/steps/{step}): where it is, how it ran, its input and output."""
    title = group_title(step)
    service = title if title is not None else str(step.get("service"))
    if step.get("fallback_from"):
        service += f" (fallback for {step['fallback_from']})"
    rows = [("event", str(step.get("event_id"))), ("step", str(step.get("path")))]
    if step.get("id"):
        rows.append(("id", str(step["id"])))
    rows.append(("service" if title is None else "group", service))
    rows.append(("status", str(step.get("status"))))
    if title is None:
        rows.append(("attempts", attempts_text(step)))
    for key, name in (("started_at", "started"), ("ended_at", "ended")):
        if step.get(key):
            rows.append((name, str(step[key])))
    rows.append(("duration", duration_text(step_duration(step))))
    if step.get("error"):
        rows.append(("error", error_text(step["error"])))
    for key in ("input", "output"):
        if step.get(key) is not None:
            rows.append((key, value_text(step[key])))
    return rows


def step_rows(event: dict[str, Any], now: datetime | None = None) -> list[tuple[str, ...]]:
    """A row per step; with `now` (a live view) a step under way shows how long it has run.

    A group's row names what it is; its steps follow, indented under it: each branch's
    (`b1`, `b2`...) or way's, and for a map one row per step of its iterations, counted.
    """
    rows: list[tuple[str, ...]] = []
    for step in event.get("steps") or []:
        rows.append(_step_row(str(step.get("index", len(rows))), step, now))
        rows += _group_rows(step, now, "  ")
    return rows


def group_title(step: dict[str, Any]) -> str | None:
    """What a group's row says it is, or None for a step calling a service."""
    kind = step.get("kind")
    named = f" {step['id']}" if step.get("id") else ""
    if kind == "when":
        decision = step.get("decision")
        took = "" if decision is None else (" · took yes" if decision else " · took no")
        return f"when{named}{took}"
    if kind == "parallel":
        branches = {child.get("branch") for child in step.get("steps") or []}
        return f"parallel{named} · {len(branches)} branches"
    if kind == "map":
        return f"map{named} · {map_progress(step)}"
    return None


def map_progress(step: dict[str, Any]) -> str:
    done, total = step.get("completed") or 0, step.get("total")
    failed = {c.get("iteration") for c in step.get("steps") or [] if c.get("status") == "FAILED"}
    text = f"{done}/{total if total is not None else '?'} iterations"
    return text + (f" · {len(failed)} failed" if failed else "")


def _overall(counts: dict[str, int]) -> str:
    """One status for a map's step over its iterations: running while any runs, then failed
    if any failed, else the most common."""
    if any(name in counts for name in STEP_UNDER_WAY):
        return "RUNNING"
    if "FAILED" in counts:
        return "FAILED"
    return max(counts, key=lambda name: counts[name]) if counts else "PENDING"


def _step_row(number: str, step: dict[str, Any], now: datetime | None) -> tuple[str, ...]:
    title = group_title(step)
    service = title if title is not None else str(step.get("service"))
    if step.get("fallback_from"):
        service += f" (fallback for {step['fallback_from']})"
    return (
        number,
        service,
        str(step.get("status")),
        attempts_text(step) if title is None else "-",
        duration_text(step_duration(step, now)),
        error_text(step.get("error")),
    )


def _group_rows(step: dict[str, Any], now: datetime | None, indent: str) -> list[tuple[str, ...]]:
    children = step.get("steps") or []
    rows: list[tuple[str, ...]] = []
    if step.get("kind") == "map":
        for index in sorted({child.get("index", 0) for child in children}):
            these = [child for child in children if child.get("index", 0) == index]
            counts: dict[str, int] = {}
            for child in these:
                counts[str(child.get("status"))] = counts.get(str(child.get("status")), 0) + 1
            status = _overall(counts)
            tally = ", ".join(f"{n} {name.lower()}" for name, n in sorted(counts.items()))
            name = f"{indent}{these[0].get('service') or these[0].get('kind')} × {len(these)}"
            rows.append((f"{indent}{index}", name, status, tally, "", ""))
        return rows
    for child in children:
        way = child.get("branch")
        label = f"b{way + 1}." if step.get("kind") == "parallel" and way is not None else ""
        if step.get("kind") == "when":
            label = "yes." if way == 0 else "no."
        row = _step_row(f"{indent}{label}{child.get('index', 0)}", child, now)
        rows.append((row[0], indent + row[1], *row[2:]))
        rows += _group_rows(child, now, indent + "  ")
    return rows


def progress(event: dict[str, Any], total: int | None) -> tuple[int, int | None]:
    """(steps ended, steps in all when known)."""
    steps = event.get("steps") or []
    done = sum(1 for step in steps if step.get("status") in STEP_ENDED)
    if total is not None:
        total = max(total, len(steps))
    elif ended(event):
        total = len(steps)
    return done, total


class Output:
    """Where a command's results go. `rich`: stdout is a terminal and no JSON was asked for."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(highlight=False)
        self.rich = not as_json and self.console.is_terminal
        self.live = self.rich and self.console.is_interactive

    def json(self, body: Any) -> None:
        print_json(body)

    def line(self, text: str, style: str = "") -> None:
        if self.rich:
            self.console.print(Text(text, style=style))
        else:
            click.echo(text)

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        status_column: int | None = None,
    ) -> None:
        if self.rich:
            self.console.print(rich_table(headers, rows, status_column))
            return
        click.echo("\t".join(headers))
        for row in rows:
            click.echo("\t".join(row))

    def event(self, event: dict[str, Any]) -> None:
        """An event as `machinery status` shows it (JSON: the API's body)."""
        if self.as_json:
            self.json(event)
        elif self.rich:
            self.console.print(event_view(event, None))
        else:
            for key, value in summary(event):
                click.echo(f"{key}: {value}")
            click.echo("steps:")
            self.table(STEP_HEADERS, step_rows(event))

    def step(self, step: dict[str, Any]) -> None:
        """One step as `machinery status --step` shows it (JSON: the API's body), a group's
        steps in a table under it."""
        if self.as_json:
            self.json(step)
            return
        children = _group_rows(step, None, "")
        if self.rich:
            self.console.print(summary_grid(step_summary(step)))
            if children:
                self.console.print(rich_table(STEP_HEADERS, children, status_column=2))
            return
        for key, value in step_summary(step):
            click.echo(f"{key}: {value}")
        if children:
            click.echo("steps:")
            self.table(STEP_HEADERS, children)

    def stats(self, stats: dict[str, Any]) -> None:
        """A workflow's statistics as `machinery stats` shows them: the counts and durations,
        then a table of its steps and one of its errors."""
        steps, errors = stats_step_rows(stats), stats_error_rows(stats)
        if self.rich:
            self.console.print(summary_grid(stats_summary(stats)))
            self.console.print(rich_table(STATS_STEP_HEADERS, steps))
            if errors:
                self.console.print(rich_table(STATS_ERROR_HEADERS, errors))
            return
        for key, value in stats_summary(stats):
            click.echo(f"{key}: {value}")
        click.echo("steps:")
        self.table(STATS_STEP_HEADERS, steps)
        if errors:
            click.echo("errors:")
            self.table(STATS_ERROR_HEADERS, errors)

    def follow(
        self,
        event: dict[str, Any],
        fetch: Callable[[], dict[str, Any]],
        interval: float,
        total: Callable[[], int | None],
    ) -> tuple[dict[str, Any], bool]:
        """Poll `fetch` every `interval` s until the event ends: (the ended event, whether the
        live view already shows it). On an interactive terminal a live view follows it: each
        step as it appears, a step under way with the time it had run when the event was
        read, and a progress bar with the event's duration so far (then its recorded one);
        otherwise nothing is printed meanwhile.

        The clocks stand still between polls: run on from the last read, they would show a
        step that has since ended as running on (a 20 ms step as 0.5 s, between two polls).
        """
        if not self.live:
            while not ended(event):
                time.sleep(interval)
                event = fetch()
            return event, False
        read_at = datetime.now(UTC)  # `event` was read just before this call
        steps = total()
        with Live(
            event_view(event, steps, read_at), console=self.console, auto_refresh=False
        ) as live:
            while not ended(event):
                time.sleep(interval)
                event = fetch()
                read_at = datetime.now(UTC)
                live.update(event_view(event, steps, read_at), refresh=True)
        return event, True


def rich_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], status_column: int | None = None
) -> Table:
    table = Table(*headers, header_style="bold", show_edge=False)
    for row in rows:
        cells = [Text(cell) for cell in row]
        if status_column is not None:
            cells[status_column].stylize(STYLES.get(row[status_column], ""))
        table.add_row(*cells)
    return table


def event_rows(items: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """A row per event of a listing (EVENT_HEADERS)."""
    return [
        (
            str(item.get("event_id")),
            str(item.get("status")),
            str(item.get("acknowledged_at")),
            str(item.get("updated_at")),
            duration_text(listed_duration(item)),
        )
        for item in items
    ]


def stats_summary(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """`key: value` lines of GET /workflows/{id}/stats: the window, counts and durations."""
    counts = stats.get("events") or {}
    durations = stats.get("duration_ms") or {}
    sample = stats.get("sample") or {}
    read = f"{sample.get('events', 0)} events"
    if sample.get("cut"):
        read += f", the newest {sample.get('limit')}: the window held more"
    return [
        ("workflow", str(stats.get("workflow_id"))),
        ("window", f"{stats.get('window')}, since {stats.get('since')}"),
        ("events", ", ".join(f"{counts.get(status, 0)} {status}" for status in STATS_STATUSES)),
        ("read", read),
        (
            "duration",
            ", ".join(
                f"{name} {duration_text(number(durations.get(name)))}"
                for name in ("p50", "p95", "max")
            ),
        ),
    ]


def stats_step_rows(stats: dict[str, Any]) -> list[tuple[str, ...]]:
    """A row per step of the statistics (STATS_STEP_HEADERS)."""
    return [
        (
            str(step.get("step")),
            str(step.get("service")),
            str(step.get("calls", 0)),
            str(step.get("failed", 0)),
            str(step.get("retries", 0)),
            duration_text(number(step.get("p50_ms"))),
            duration_text(number(step.get("p95_ms"))),
        )
        for step in stats.get("steps") or []
    ]


def stats_error_rows(stats: dict[str, Any]) -> list[tuple[str, ...]]:
    """A row per error type of the statistics (STATS_ERROR_HEADERS)."""
    return [
        (str(error.get("type")), str(error.get("count", 0)), str(error.get("last_event_id")))
        for error in stats.get("errors") or []
    ]


def event_view(
    event: dict[str, Any], total: int | None, now: datetime | None = None
) -> RenderableType:
    """The event as a summary and a table of its steps; with `now` (a live view), a progress
    line with the event's duration so far and each step under way with its own."""
    parts: list[RenderableType] = [summary_grid(summary(event))]
    if now is not None:
        done, steps = progress(event, total)
        status = str(event.get("status"))
        bar = ProgressBar(
            total=steps or None,
            completed=done,
            width=40,
            pulse=steps is None,
            finished_style="red" if status in FAILED else "green",
        )
        line = Table.grid(padding=(0, 1))
        line.add_row(
            bar,
            Text(f"{done}/{steps if steps is not None else '?'} steps"),
            Text(status, style=STYLES.get(status, "")),
            Text(duration_text(event_duration(event, now)), style="dim"),
        )
        parts.append(line)
    parts.append(rich_table(STEP_HEADERS, step_rows(event, now), status_column=2))
    parts += [group_view(step, now) for step in event.get("steps") or [] if group_title(step)]
    return Group(*parts)


def summary_grid(rows: Sequence[tuple[str, str]]) -> Table:
    """`key  value` lines, the status coloured."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for key, value in rows:
        head.add_row(key, Text(value, style=STYLES.get(value, "") if key == "status" else ""))
    return head


def group_view(step: dict[str, Any], now: datetime | None) -> RenderableType:
    """A group under its table: a parallel's branches side by side, a map's progress bar."""
    title = f"step {step.get('index')} · {group_title(step)}"
    if step.get("kind") == "map":
        total = step.get("total")
        bar = ProgressBar(total=total or None, completed=step.get("completed") or 0, width=40)
        line = Table.grid(padding=(0, 1))
        line.add_row(Text(title, style="bold"), bar)
        return line
    branches: dict[int, list[tuple[str, ...]]] = {}
    for child in step.get("steps") or []:
        way = child.get("branch") or 0
        row = _step_row(str(child.get("index", 0)), child, now)
        branches.setdefault(way, []).append(row)
    names = {0: "yes", 1: "no"} if step.get("kind") == "when" else {}
    panels = [
        Panel(
            rich_table(STEP_HEADERS[:4], [row[:4] for row in rows], status_column=2),
            title=names.get(way, f"branch {way + 1}"),
        )
        for way, rows in sorted(branches.items())
    ]
    return Group(Text(title, style="bold"), Columns(panels))


def print_json(body: Any) -> None:
    """`body` on stdout as the API's JSON: indented, non-ASCII kept."""
    click.echo(json.dumps(body, indent=2, ensure_ascii=False))


def report_error(error: ClientError, as_json: bool) -> None:
    """The error on stderr, readably (and as JSON on stdout with --output json)."""
    if as_json:
        print_json(error.to_body())
    click.secho(f"Error: {error.message}", err=True, fg="red")
    for detail in error.details:
        path = detail.get("path") or detail.get("location") or "-"
        click.echo(f"  {path}: {detail.get('message', '')}", err=True)
    if isinstance(error, Unreachable):
        click.echo(UNREACHABLE_HINT, err=True)
