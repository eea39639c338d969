"""What `machinery local` does once its options are read: the stack from template.yaml in an
in-process moto, the HTTP server in front of it, and (with --examples) the example services.

It lives here, not in the command line's package, because it imports moto and the server
side; `machinery --help` and the API commands import neither."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import click

# The runtime imports moto only once it starts; without the [local] extra, fail here, before
# anything has started, so that the command line can name the extra.
import moto  # noqa: F401
import yaml  # noqa: F401

from machinery_core.adapters.addresses import LOOPBACK_HOSTS
from machinery_core.local import examples as example_kit
from machinery_core.local.launch import API_BANNER
from machinery_core.local.runtime import LocalRuntime
from machinery_core.local.server import serve
from machinery_core.local.template import default_template
from machinery_core.runtime.observability import send_metrics_to


def metrics_line(record: dict[str, Any]) -> str:
    """An EMF record as one line: `metrics EventsAccepted=1 Count [workflow=x]`, each
    metric with its values and unit, then the dimensions of its most detailed set."""
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    shown = []
    for metric in directive["Metrics"]:
        values = record[metric["Name"]]
        values = values if isinstance(values, list) else [values]
        text = ",".join(f"{value:g}" for value in values)
        shown.append(f"{metric['Name']}={text} {metric['Unit']}")
    widest = max(directive["Dimensions"], key=len)
    dimensions = " ".join(f"{name}={record[name]}" for name in widest)
    return f"metrics {' '.join(shown)} [{dimensions}]"


def run(
    host: str,
    port: int,
    examples: bool,
    template: Path | None,
    time_scale: float,
    state_machine_type: str = "STANDARD",
    metrics: bool = False,
) -> None:
    """Serve until SIGTERM or Ctrl-C, then stop everything this started."""
    template_path = template or default_template()
    runtime = LocalRuntime(
        template_path, time_scale=time_scale, state_machine_type=state_machine_type
    ).start()
    if metrics:
        send_metrics_to(lambda record: click.echo(metrics_line(record)))
    server = serve(runtime, host, port)
    url = f"http://{host}:{server.server_address[1]}"
    runtime.serve_at(url)
    services = None
    try:
        if examples:
            examples_dir = template_path.parent / "examples"
            services = example_kit.start_services(examples_dir)
            registered = example_kit.register_definitions(runtime, examples_dir)
            click.echo(f"Registered the examples: {', '.join(registered)}")
        click.echo(address_guard_notice(runtime.allowed_service_hosts))
        click.echo(state_machine_notice(runtime.state_machine_type))
        click.echo(f"{API_BANNER}{url}")
        click.echo(f"Dashboard: {url}/ui")
        click.echo(
            "Completion notifications are signed (X-Machinery-Signature) with the key "
            f"{runtime.signing_key!r}; set MACHINERY_NOTIFICATION_SECRET to choose it."
        )
        if examples:
            click.echo("Send the example events:")
            click.echo(
                f"  curl -X POST {url}/e/process-text -d @examples/definitions/event-text.json"
            )
            click.echo(f"  curl -X POST {url}/e/order -d @examples/definitions/event-order.json")
            click.echo(f"Then read it:  curl {url}/events/<event_id>")
        click.echo("Press Ctrl-C to stop.", err=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    finally:
        server.shutdown()
        if services is not None:
            services.terminate()
            services.wait(timeout=5)
        runtime.stop()


def state_machine_notice(kind: str) -> str:
    """Which type of state machine runs the events, in a sentence."""
    if kind == "EXPRESS":
        return (
            "The state machine is EXPRESS: an execution ends at five (scaled) minutes, and "
            "what waits longer waits for a timer."
        )
    return "The state machine is STANDARD (--state-machine-type EXPRESS runs it as EXPRESS)."


def address_guard_notice(allowed: str) -> str:
    """What the service address guard lets through on this runtime, in a sentence."""
    if allowed == LOOPBACK_HOSTS:
        return (
            f"Loopback service addresses ({allowed.replace(',', ', ')}) are allowed because "
            "this is a development runtime (a deployed stack refuses them); set "
            "ALLOWED_SERVICE_HOSTS to change it."
        )
    if not allowed.strip():
        return (
            "ALLOWED_SERVICE_HOSTS is empty: loopback and private service addresses are "
            "refused, as in a deployed stack."
        )
    return (
        f"ALLOWED_SERVICE_HOSTS={allowed}: of the loopback and private service addresses, "
        "only these are allowed."
    )
