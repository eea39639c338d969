"""The `machinery` command."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from machinery_core.addresses import LOOPBACK_HOSTS


@click.group()
@click.version_option(package_name="machinery")
def main() -> None:
    """Machinery: a workflow orchestrator for HTTP microservices."""


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
def local(host: str, port: int, examples: bool, template: Path | None, time_scale: float) -> None:
    """Run the stack locally: template.yaml deployed into an in-process moto."""
    from machinery_core.local import examples as example_kit
    from machinery_core.local.runtime import LocalRuntime
    from machinery_core.local.server import serve
    from machinery_core.local.template import default_template

    template_path = template or default_template()
    runtime = LocalRuntime(template_path, time_scale=time_scale).start()
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
        click.echo(_address_guard_notice(runtime.allowed_service_hosts))
        click.echo(f"Machinery API: {url}")
        click.echo(
            "Completion notifications are signed (X-Machinery-Signature) with the key "
            f"{runtime.signing_key!r}; set MACHINERY_NOTIFICATION_SECRET to choose it."
        )
        if examples:
            click.echo("Send the example event:")
            click.echo(
                f"  curl -X POST {url}/e/process-text -d @examples/definitions/event-text.json"
            )
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


def _address_guard_notice(allowed: str) -> str:
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


if __name__ == "__main__":
    main()
