"""The example services and definitions under examples/, for `machinery local --examples`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from machinery_core.local.runtime import LocalRuntime


def start_services(examples: Path) -> subprocess.Popen[bytes]:
    """Run the example services on the ports their definitions name, and wait until they listen."""
    ports = {}
    for path in sorted((examples / "definitions").glob("service-*.json")):
        definition = json.loads(path.read_text())
        ports[definition["name"]] = urlsplit(definition["address"]).port
    for port in ports.values():
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise RuntimeError(
                    f"port {port} is taken; the example services need it (is another run active?)"
                )
    assignments = [f"{name}={port}" for name, port in ports.items()]
    process = subprocess.Popen(
        [sys.executable, str(examples / "services" / "serve.py"), *assignments],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    for port in ports.values():
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the example services exited ({process.returncode}); is port {port} taken?"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(f"example service on port {port} did not start") from None
                time.sleep(0.05)
    return process


def register_definitions(runtime: LocalRuntime, examples: Path) -> list[str]:
    """Register every service, then every workflow, through the API handler itself."""
    registered = []
    definitions = examples / "definitions"
    for pattern, route in (("service-*.json", "/services"), ("workflow-*.json", "/workflows")):
        for path in sorted(definitions.glob(pattern)):
            answer = runtime.handle_http(
                "POST", route, {"content-type": "application/json"}, path.read_bytes()
            )
            if answer.status != 201:
                raise RuntimeError(
                    f"registering {path.name} failed: {answer.status} {answer.body.decode()}"
                )
            registered.append(path.name)
    return registered
