"""Integration-tier fixtures: dependencies on moto for the handlers, loopback services."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
import requests
from integration_kit import ACCOUNT, REGION, Services, Wired, example_behaviours

from machinery_core.dependencies import Dependencies, configure
from machinery_core.invoker import ServiceInvoker
from machinery_core.store import Store

PASS_MACHINE = json.dumps(
    {
        "Comment": "A stand-in: the API only starts executions",
        "StartAt": "Done",
        "States": {"Done": {"Type": "Pass", "End": True}},
    }
)


@pytest.fixture
def wired(store: Store) -> Iterator[Wired]:
    """Dependencies on moto (the `store` fixture's mock) installed for every handler."""
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    machine = stepfunctions.create_state_machine(
        name="machinery-test",
        definition=PASS_MACHINE,
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/machinery-state-machine",
    )
    with requests.Session() as session:
        deps = Dependencies(
            store=store,
            stepfunctions=stepfunctions,
            state_machine_arn=machine["stateMachineArn"],
            invoker=ServiceInvoker(session),
        )
        configure(deps)
        try:
            yield Wired(deps, store, stepfunctions, machine["stateMachineArn"])
        finally:
            configure(None)


@pytest.fixture
def services() -> Iterator[Services]:
    """The example services' behaviour on a loopback port, recording every call."""
    state: dict[str, Services] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            registry = state["services"]
            data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            with registry.lock:
                registry.calls.append((self.path, self.headers["Idempotency-Key"], data))
            behaviour = registry.behaviours.get(self.path)
            status, answer = behaviour(data) if behaviour else (404, {"error": "no route"})
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")  # no idle handler thread left at teardown
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    state["services"] = Services(
        url=f"http://127.0.0.1:{server.server_address[1]}", behaviours=example_behaviours()
    )
    yield state["services"]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
