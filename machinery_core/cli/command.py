"""The `machinery` command: the local runtime, and a client of the Machinery API.

Exit codes of the API commands: 0 success; 1 the event ended FAILED or CANCELLED (`send
--wait`, `status`); 2 a usage error, a file that cannot be used or a 4xx answer; 3 the API
cannot be reached (connection refused, timeout) or answered 5xx.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ParamSpec

import click

from machinery_core.contract import MAX_WAIT_SECONDS, SEND_RETRIES, EventStatus, StatsWindow

if TYPE_CHECKING:
    from machinery_core.cli.apply import Outcome
    from machinery_core.cli.client import ApiError, MachineryClient
    from machinery_core.cli.terminal import Output

DEFAULT_API_URL = "http://127.0.0.1:3000"  # the local runtime's default address
P = ParamSpec("P")


@dataclass
class Settings:
    """The options every API command takes, set on `machinery` or on the command itself."""

    api_url: str = DEFAULT_API_URL
    output: str = "text"
    sign: bool | None = None  # None: sign when the API is not on loopback and credentials exist


@click.group()
@click.version_option(package_name="machinery")
@click.option(
    "--api-url",
    envvar="MACHINERY_API_URL",
    default=DEFAULT_API_URL,
    show_default=True,
    show_envvar=True,
    help="The Machinery API to talk to.",
)
@click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: print only the API's JSON answers on stdout, for scripts.",
)
@click.option(
    "--sign/--no-sign",
    default=None,
    help="Sign requests with SigV4 (execute-api) [default: for a non-loopback API, when AWS "
    "credentials are found].",
)
@click.pass_context
def main(ctx: click.Context, api_url: str, output: str, sign: bool | None) -> None:
    """Machinery: a workflow orchestrator for HTTP microservices."""
    ctx.obj = Settings(api_url=api_url, output=output, sign=sign)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=3000,
    show_default=True,
    type=int,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--examples",
    is_flag=True,
    help="Start the example services and register the example definitions.",
)
@click.option(
    "--template",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The SAM template to deploy (default: template.yaml of this checkout).",
)
@click.option(
    "--time-scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Multiplies every Wait and Retry interval of the state machine (0.01 for fast tests).",
)
@click.option(
    "--state-machine-type",
    type=click.Choice(["STANDARD", "EXPRESS"], case_sensitive=False),
    default="STANDARD",
    show_default=True,
    help="The state machine's type, as the template's StateMachineType parameter chooses it.",
)
@click.option(
    "--metrics",
    is_flag=True,
    help="Print each metrics record (CloudWatch embedded metric format, as production "
    "records it) as one readable line.",
)
def local(
    host: str,
    port: int,
    examples: bool,
    template: Path | None,
    time_scale: float,
    state_machine_type: str,
    metrics: bool,
) -> None:
    """Run the stack locally: template.yaml deployed into an in-process moto."""
    try:
        from machinery_core.local.command import run
    except ModuleNotFoundError as missing:  # moto and pyyaml come with the [local] extra
        raise click.UsageError(
            f"the local runtime needs {missing.name}: pip install 'machinery[local]'"
        ) from missing
    run(host, port, examples, template, time_scale, state_machine_type.upper(), metrics)


# --- the API commands -----------------------------------------------------------------------


def _setting(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def store(ctx: click.Context, _: click.Parameter, value: Any) -> None:
        if value is not None:
            setattr(ctx.ensure_object(Settings), name, value)

    return store


_API_OPTIONS = (
    click.option(
        "--api-url",
        default=None,
        expose_value=False,
        callback=_setting("api_url"),
        help=f"The Machinery API (default: $MACHINERY_API_URL, else {DEFAULT_API_URL}).",
    ),
    click.option(
        "--output",
        type=click.Choice(["text", "json"]),
        default=None,
        expose_value=False,
        callback=_setting("output"),
        help="json: print only the API's JSON answers on stdout.",
    ),
    click.option(
        "--sign/--no-sign",
        default=None,
        expose_value=False,
        callback=_setting("sign"),
        help="Sign requests with SigV4 (default: a non-loopback API, when credentials exist).",
    ),
)


def _api_command(command: Callable[P, int]) -> Callable[P, None]:
    """The shared options, and the exit code: the command's, or the error's (on stderr)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        from machinery_core.cli.client import ClientError
        from machinery_core.cli.terminal import report_error

        ctx = click.get_current_context()
        try:
            code = command(*args, **kwargs)
        except ClientError as error:
            report_error(error, _settings().output == "json")
            ctx.exit(error.exit_code)
        ctx.exit(code)

    for option in reversed(_API_OPTIONS):
        run = option(run)
    return run


def _settings() -> Settings:
    return click.get_current_context().ensure_object(Settings)


def _client() -> MachineryClient:
    from machinery_core.cli.client import MachineryClient

    settings = _settings()
    return MachineryClient(settings.api_url, sign=settings.sign)


def _output() -> Output:
    from machinery_core.cli.terminal import Output

    return Output(as_json=_settings().output == "json")


def _exit_for(event: dict[str, Any]) -> int:
    return 1 if event.get("status") in (EventStatus.FAILED, EventStatus.CANCELLED) else 0


@main.command()
@click.argument(
    "paths",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    metavar="PATH...",
)
@_api_command
def apply(paths: tuple[Path, ...]) -> int:
    """Register the service and workflow definitions in PATH (JSON files, or folders searched
    for *.json): every service first, then every workflow.

    Each definition is created, updated, or left unchanged when the API already holds it as
    written, so applying the same files again changes nothing. A JSON file that is neither a
    service (it has "address") nor a workflow (it has "spec.services"), such as an event, is
    skipped. Two files that define the same service or workflow are refused before anything
    is written. Exits 2 if a definition was refused (or a file is not JSON, or a name is
    defined twice), 3 if the API cannot be reached.
    """
    from machinery_core.cli.apply import (
        RESULTS,
        apply_one,
        collect,
        ordered,
        read,
        refuse_duplicates,
    )
    from machinery_core.cli.terminal import report_error

    definitions = [read(path) for path in collect(paths)]
    refuse_duplicates(definitions)
    client = _client()
    out = _output()
    outcomes = [apply_one(client, definition) for definition in ordered(definitions)]
    counts = {result: sum(1 for o in outcomes if o.result == result) for result in RESULTS}
    if out.as_json:
        out.json({"results": [outcome.to_json() for outcome in outcomes], "counts": counts})
    else:
        rows = [
            (
                outcome.result,
                outcome.kind or "-",
                outcome.name or "-",
                "" if outcome.version is None else str(outcome.version),
                str(outcome.path),
                outcome.note or (outcome.error.message if outcome.error else ""),
            )
            for outcome in outcomes
        ]
        out.table(("result", "kind", "name", "version", "file", "note"), rows, status_column=0)
        out.line(", ".join(f"{count} {result}" for result, count in counts.items() if count))
    for outcome in outcomes:
        if outcome.error is not None:
            click.echo(f"{outcome.path} ({outcome.kind} {outcome.name}):", err=True)
            report_error(outcome.error, as_json=False)
        elif outcome.result == "failed":
            click.secho(f"Error: {outcome.path}: {outcome.note}", err=True, fg="red")
    return max((_apply_exit(outcome) for outcome in outcomes), default=0)


def _apply_exit(outcome: Outcome) -> int:
    if outcome.result != "failed":
        return 0
    return outcome.error.exit_code if outcome.error is not None else 2  # 2: not JSON


@main.command()
@click.argument("workflow")
@click.argument("file", type=click.File("r", encoding="utf-8"), metavar="FILE|-")
@click.option(
    "--wait",
    is_flag=True,
    help="Follow the event until it ends (its steps live on a terminal); exit 1 if it ended "
    "FAILED or CANCELLED.",
)
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Sent as Idempotency-Key: resending with the same key answers the same event (a "
    "replay, which the command says).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="Seconds between polls while following the event.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=SEND_RETRIES,
    show_default=True,
    help="Times to send again when the API is throttled or busy (429, 503), waiting what its "
    "Retry-After says (else 1, 2, 4... s, at most 60).",
)
@_api_command
def send(
    workflow: str,
    file: IO[str],
    wait: bool,
    idempotency_key: str | None,
    interval: float,
    retries: int,
) -> int:
    """Send the event in FILE (JSON; - reads stdin) to WORKFLOW.

    FILE holds either the request, {"data": {...}, "notify": {...}} (only those keys, "data"
    an object), or the data object itself. With --wait on a terminal the event's steps are
    shown live as they run; otherwise (a pipe, --output json) the API's sync wait (25 s) is
    used, then the event is polled until it ends, and printed. A request whose
    --idempotency-key an earlier one used is a replay: it answers the event that request
    created, and says so ("replayed": true in JSON).
    """
    request = _event_request(file)
    client = _client()
    client.send_attempts = retries + 1

    def say_retry(error: ApiError, delay: float, attempt: int) -> None:
        click.secho(
            f"{error.status_code}: {error.message}; sending again in {delay:g} s "
            f"(retry {attempt} of {retries})",
            err=True,
            fg="yellow",
        )

    client.on_retry = say_retry
    out = _output()
    if not wait:
        accepted, replayed = client.send(workflow, request, idempotency_key=idempotency_key)
        if out.as_json:
            out.json({**accepted, "replayed": True} if replayed else accepted)
            return 0
        out.line(f"{accepted['event_id']} {accepted['status']}")
        if replayed:
            _say_replayed(out, accepted)
        if out.rich:
            out.line(f"Follow it with: machinery status {accepted['event_id']} --watch", "dim")
        return 0
    # A live view asks for no sync wait (202 at once) so as to show each step as it runs.
    answer, replayed = client.send(
        workflow,
        request,
        wait=0 if out.live else MAX_WAIT_SECONDS,
        idempotency_key=idempotency_key,
    )
    if replayed and not out.as_json:
        _say_replayed(out, answer)
    # 200 with the ended event; 202 (or an older API's replayed 200) with the acknowledgement
    if "steps" in answer:
        event = client.whole(answer)
    else:
        event = client.event(str(answer["event_id"]))
    return _follow_and_show(client, out, event, interval, replayed)


def _say_replayed(out: Output, answer: dict[str, Any]) -> None:
    out.line(f"replayed: this Idempotency-Key already created event {answer['event_id']}", "yellow")


def _event_request(file: IO[str]) -> dict[str, Any]:
    name = getattr(file, "name", "FILE")
    try:
        document = json.load(file)
    except ValueError as error:
        raise click.BadParameter(f"{name} is not JSON: {error}", param_hint="FILE") from error
    if not isinstance(document, dict):
        raise click.BadParameter(f"{name} must hold a JSON object", param_hint="FILE")
    if "data" in document and set(document) <= {"data", "notify"}:
        if not isinstance(document["data"], dict):
            raise click.BadParameter(f'{name}: "data" must be a JSON object', param_hint="FILE")
        return document
    return {"data": document}


def _follow_and_show(
    client: MachineryClient,
    out: Output,
    event: dict[str, Any],
    interval: float,
    replayed: bool = False,
) -> int:
    event_id = str(event["event_id"])

    def steps_in_workflow() -> int | None:
        from machinery_core.cli.client import ClientError

        try:
            services = client.workflow(str(event["workflow_id"]))["definition"]["spec"]["services"]
        except (ClientError, KeyError, TypeError):
            return None
        return len(services)

    event, shown = out.follow(event, lambda: client.event(event_id), interval, steps_in_workflow)
    if not shown:
        out.event({**event, "replayed": True} if replayed and out.as_json else event)
    return _exit_for(event)


@main.command()
@click.argument("event_id")
@click.option(
    "--watch",
    is_flag=True,
    help="Follow the event until it ends (a live view of its steps on a terminal).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="Seconds between polls with --watch.",
)
@click.option(
    "--step",
    metavar="STEP",
    help="Show this step only, its input and output whole: its path (3, 3.1.0 in a group, "
    "4.0:7 for iteration 7 of a map), its id, or a top-level step's service.",
)
@_api_command
def status(event_id: str, watch: bool, interval: float, step: str | None) -> int:
    """Show an event: its status and each step's status, attempts, duration and error.

    Values the API links rather than holds inline (a large event's payloads) are fetched:
    --output json prints the event whole. Exits 1 if the event ended FAILED or CANCELLED, 0
    otherwise (with --watch, once it ended); with --step, 1 if the step did.
    """
    client = _client()
    out = _output()
    if step is not None:
        if watch:
            raise click.UsageError("--step shows a step as it is now: it takes no --watch")
        record = client.step(event_id, step)
        out.step(record)
        return _exit_for(record)
    event = client.event(event_id)
    if watch:
        return _follow_and_show(client, out, event, interval)
    out.event(event)
    return _exit_for(event)


@main.command()
@click.argument("workflow")
@click.option(
    "--status",
    "status_filter",
    type=click.Choice([status.value for status in EventStatus], case_sensitive=False),
    help="Only the events with this status.",
)
@click.option(
    "--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="How many."
)
@click.option("--cursor", help="Continue from where an earlier listing stopped (its next_cursor).")
@_api_command
def events(workflow: str, status_filter: str | None, limit: int, cursor: str | None) -> int:
    """List WORKFLOW's recent events, newest first, with the duration of each that ended."""
    client = _client()
    out = _output()
    items: list[dict[str, Any]] = []
    status_value = status_filter.upper() if status_filter else None
    while True:  # a filtered page can be short or empty: page on while there is more
        page = client.events(workflow, limit - len(items), cursor, status_value)
        items += page.get("items") or []
        cursor = page.get("next_cursor")
        if not cursor or len(items) >= limit:
            break
    if out.as_json:
        out.json({"items": items, "next_cursor": cursor})
        return 0
    from machinery_core.cli.terminal import EVENT_HEADERS, event_rows

    out.table(EVENT_HEADERS, event_rows(items), status_column=1)
    if cursor:
        click.echo(f"More: machinery events {workflow} --cursor {cursor}", err=True)
    return 0


def is_event_id(target: str) -> bool:
    """Event ids are UUIDs (8-4-4-4-12 hexadecimal digits); workflow ids are slugs."""
    try:
        return str(uuid.UUID(target)) == target.lower()
    except ValueError:
        return False


@main.command()
@click.argument("target", metavar="WORKFLOW|EVENT_ID")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "svg"]),
    default="mermaid",
    show_default=True,
    help="Mermaid flowchart text, or an SVG image.",
)
@click.option(
    "-o",
    "--out-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the diagram to this file instead of stdout.",
)
@_api_command
def diagram(target: str, fmt: str, out_file: Path | None) -> int:
    """Draw a workflow, or an event with the status of each step.

    TARGET is an event when it is an event id (a UUID, as in 6f1c2d3e-...), else a workflow;
    a UUID that names no event is tried as a workflow.
    """
    from machinery_core.cli.client import ApiError

    client = _client()
    out = _output()
    kind = "workflow"
    if is_event_id(target):
        try:
            text = client.diagram("event", target, fmt)
            kind = "event"
        except ApiError as error:
            if error.status_code != 404:
                raise
            text = client.diagram("workflow", target, fmt)
    else:
        text = client.diagram("workflow", target, fmt)
    body: dict[str, Any] = {"kind": kind, "id": target, "format": fmt}
    if out_file is not None:
        out_file.write_text(text, encoding="utf-8")
        body["file"] = str(out_file)
        if out.as_json:
            out.json(body)
        else:
            click.echo(f"Wrote the {kind} diagram of {target} to {out_file}", err=True)
        return 0
    if out.as_json:
        out.json({**body, "diagram": text})
    else:
        click.echo(text, nl=not text.endswith("\n"))
    return 0


@main.command()
@click.argument("workflow")
@click.option(
    "--window",
    type=click.Choice([window.value for window in StatsWindow]),
    default=StatsWindow.DAY.value,
    show_default=True,
    help="The last hour, day or week.",
)
@_api_command
def stats(workflow: str, window: str) -> int:
    """Show WORKFLOW's statistics over the window: its events by status, their durations
    (p50, p95, max), each step's calls, failures, retries and durations, and the errors.

    At most the newest 1,000 events of the window are read; the output says when the
    window held more.
    """
    answer = _client().stats(workflow, window)
    out = _output()
    if out.as_json:
        out.json(answer)
    else:
        out.stats(answer)
    return 0


@main.command()
@click.argument("name", metavar="WORKFLOW|SERVICE")
@click.option(
    "--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="How many."
)
@click.option("--cursor", help="Continue from where an earlier listing stopped (its next_cursor).")
@_api_command
def versions(name: str, limit: int, cursor: str | None) -> int:
    """List the versions of a workflow (or, if there is none of that name, a service), the
    newest first; a workflow's live version and canary are marked."""
    from machinery_core.cli.client import ApiError

    client = _client()
    out = _output()
    kind, marks = "workflow", {}
    try:
        record = client.workflow(name)
    except ApiError as error:
        if error.status_code != 404:
            raise
        kind = "service"
    else:
        marks[record.get("live_version") or record["version"]] = "live"
        canary = record.get("canary")
        if canary:
            marks[canary["version"]] = f"canary {canary['percent']:g}%"
    page = client.versions(kind, name, limit, cursor)
    if out.as_json:
        out.json({"kind": kind, **page})
        return 0
    rows = [
        (
            str(item["version"]),
            str(item["created_at"]),
            str(item["hash"])[:12],
            marks.get(item["version"], ""),
        )
        for item in page.get("items") or []
    ]
    out.table(("version", "created", "hash", kind if kind == "service" else "serves"), rows)
    if page.get("next_cursor"):
        click.echo(f"More: machinery versions {name} --cursor {page['next_cursor']}", err=True)
    return 0


@main.command()
@click.argument("workflow")
@click.argument("old", type=click.IntRange(1))
@click.argument("new", type=click.IntRange(1))
@_api_command
def diff(workflow: str, old: int, new: int) -> int:
    """Show what changed in WORKFLOW's definition from version OLD to version NEW, as a
    unified diff of the two definitions (JSON, keys sorted)."""
    import difflib

    client = _client()
    texts = []
    for number in (old, new):
        definition = client.version("workflow", workflow, number)["definition"]
        texts.append(json.dumps(definition, indent=2, sort_keys=True).splitlines(keepends=True))
    lines = list(
        difflib.unified_diff(
            texts[0], texts[1], f"{workflow} version {old}", f"{workflow} version {new}"
        )
    )
    out = _output()
    if out.as_json:
        out.json({"workflow": workflow, "from": old, "to": new, "diff": "".join(lines)})
    elif lines:
        click.echo("".join(lines), nl=False)
    else:
        click.echo(f"versions {old} and {new} of {workflow} are the same", err=True)
    return 0


def _canary(_: click.Context, __: click.Parameter, value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    version, _sep, percent = value.partition(":")
    try:
        parsed = {"version": int(version), "percent": float(percent)}
    except ValueError:
        raise click.BadParameter("expected VERSION:PERCENT, as in 3:10") from None
    return parsed


@main.command()
@click.argument("workflow")
@click.argument("version", type=click.IntRange(1))
@click.option(
    "--canary",
    metavar="VERSION:PERCENT",
    callback=_canary,
    help="Send that share of new events to another version, as in --canary 3:10.",
)
@_api_command
def live(workflow: str, version: int, canary: dict[str, Any] | None) -> int:
    """Make VERSION the one new events of WORKFLOW run (a rollback is this), optionally
    with a canary; events already sent keep the version they run."""
    answer = _client().set_live(workflow, version, canary)
    out = _output()
    if out.as_json:
        out.json(answer)
        return 0
    line = f"{workflow}: version {answer['live_version']} is live"
    if answer.get("canary"):
        line += f", version {answer['canary']['version']} takes {answer['canary']['percent']:g}%"
    click.echo(line)
    return 0


@main.command()
@_api_command
def openapi() -> int:
    """Print the API's OpenAPI document (GET /openapi.json)."""
    _output().json(_client().openapi())
    return 0
