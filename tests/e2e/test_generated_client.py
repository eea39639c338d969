"""A Python client generated from the served OpenAPI document (openapi-python-client) runs the
README's walk through that client alone: register a service and a workflow, send an event,
read it to the end, replay it, read a 404 and a 422.

The client is generated into a temporary folder from `GET /openapi.json` of the local runtime,
with --fail-on-warning: a document the generator has to guess about fails here. Its requests
are signed with SigV4 as they would be for a deployed API (the local runtime takes them signed
or not), to show that the generated client can sign: through an httpx.Auth.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import uuid
from collections.abc import Generator, Iterator
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

pytestmark = pytest.mark.e2e

PACKAGE = "machinery_client"
# The example service `upper` that `machinery local --examples` runs (tests/conftest.py)
UPPER = "http://127.0.0.1:5001/"


class SigV4(httpx.Auth):
    """Signs each request for API Gateway's `execute-api`, as the README shows."""

    requires_request_body = True

    def __init__(self, credentials: Credentials, region: str) -> None:
        self.signer = SigV4Auth(credentials, "execute-api", region)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        signed = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers={k: v for k, v in request.headers.items() if k.lower() == "content-type"},
        )
        self.signer.add_auth(signed)
        request.headers.update(dict(signed.headers.items()))
        yield request


def _generate(document_url: str, folder: Path) -> None:
    document = folder / "openapi.json"
    document.write_bytes(httpx.get(document_url, timeout=10, trust_env=False).content)
    config = folder / "config.json"
    config.write_text('{"post_hooks": []}')  # no formatter run over the generated code
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
            "--fail-on-warning",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "Warning" not in generated.stdout + generated.stderr, generated.stdout


@pytest.fixture(scope="module")
def generated(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The generated package, importable as `machinery_client` for this module's tests."""
    folder = tmp_path_factory.mktemp("generated-client")
    _generate(local_stack.url + "/openapi.json", folder)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_operations_are_grouped_by_tag_and_named_by_operation_id(generated: Any) -> None:
    # Then each tag is a module of the generated client, each operation a function module
    for tag, operations in {
        "services": ["create_service", "list_services", "get_service", "put_service"],
        "workflows": ["create_workflow", "get_workflow", "get_workflow_diagram"],
        "events": ["send_event", "get_event", "list_events", "cancel_event", "retry_event"],
        "callbacks": ["complete_callback"],
        "meta": ["get_health", "get_open_api", "get_dashboard"],
    }.items():
        for operation in operations:
            assert callable(_module(f"api.{tag}.{operation}").sync_detailed), (tag, operation)


def test_the_readme_walk_through_the_generated_client(local_stack: Any, generated: Any) -> None:
    services = _module("api.services")
    workflows = _module("api.workflows")
    events = _module("api.events")
    models = _module("models")
    for name in ("create_service", "delete_service"):
        importlib.import_module(f"{services.__name__}.{name}")
    for name in ("create_workflow", "delete_workflow"):
        importlib.import_module(f"{workflows.__name__}.{name}")
    for name in ("send_event", "get_event"):
        importlib.import_module(f"{events.__name__}.{name}")

    # Given a client of the local runtime, signing as it would for a deployed API
    signed: list[str] = []

    def record(request: httpx.Request) -> None:
        signed.append(request.headers.get("Authorization", ""))

    client = generated.Client(
        base_url=local_stack.url,
        raise_on_unexpected_status=True,
        httpx_args={
            "auth": SigV4(Credentials("testing", "testing"), "us-east-1"),
            "event_hooks": {"request": [record]},
            "trust_env": False,
        },
    )
    suffix = uuid.uuid4().hex[:8]
    service, workflow = f"shout-{suffix}", f"shout-reversed-{suffix}"

    # When a service is registered
    answer = services.create_service.sync_detailed(
        client=client,
        body=models.Service.from_dict(
            {
                "name": service,
                "address": UPPER,
                "spec": {
                    "inputs": {"message": {"type": "string"}},
                    "outputs": {"message": {"type": "string"}},
                },
            }
        ),
    )
    assert answer.status_code == HTTPStatus.CREATED
    assert isinstance(answer.parsed, models.ServiceAccepted)
    assert answer.headers["Location"] == f"/services/{service}"
    try:
        # And a workflow of it and the example `reverse`
        answer = workflows.create_workflow.sync_detailed(
            client=client,
            body=models.Workflow.from_dict(
                {
                    "name": workflow,
                    "spec": {
                        "services": [service, "reverse"],
                        "inputs": {"message": {"type": "string"}},
                        "outputs": {"message": {"type": "string"}},
                    },
                }
            ),
        )
        assert answer.status_code == HTTPStatus.CREATED
        assert isinstance(answer.parsed, models.WorkflowAccepted)
        try:
            _walk(client, models, events, workflow, service)
        finally:
            deleted = workflows.delete_workflow.sync_detailed(workflow, client=client)
            assert deleted.status_code == HTTPStatus.NO_CONTENT
    finally:
        deleted = services.delete_service.sync_detailed(service, client=client)
        assert deleted.status_code == HTTPStatus.NO_CONTENT

    # And every request went signed
    assert signed and all(value.startswith("AWS4-HMAC-SHA256 ") for value in signed)


def _walk(client: Any, models: Any, events: Any, workflow: str, service: str) -> None:
    body = models.EventRequest.from_dict({"data": {"message": "hello ada"}})
    key = f"walk-{uuid.uuid4()}"

    # When an event is sent with an Idempotency-Key
    sent = events.send_event.sync_detailed(workflow, client=client, body=body, idempotency_key=key)

    # Then it is acknowledged: 202, the acknowledgement, a Location
    assert sent.status_code == HTTPStatus.ACCEPTED
    accepted = sent.parsed
    assert isinstance(accepted, models.EventAccepted)
    assert accepted.replayed is False
    assert sent.headers["Location"] == f"/events/{accepted.event_id}"

    # And it can be read to its end
    deadline = time.monotonic() + 20
    while True:
        event = events.get_event.sync(accepted.event_id, client=client)
        assert isinstance(event, models.EventView)
        if event.status.value in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
        assert time.monotonic() < deadline, f"still {event.status.value}"
        time.sleep(0.05)
    assert event.status.value == "SUCCEEDED"
    assert event.outputs.to_dict() == {"message": "ADA OLLEH"}
    assert [step.service for step in event.steps] == [service, "reverse"]

    # When it is sent again with the same key: the replay is answered as the first request
    replay = events.send_event.sync_detailed(
        workflow, client=client, body=body, idempotency_key=key
    )
    assert replay.status_code == HTTPStatus.ACCEPTED
    assert isinstance(replay.parsed, models.EventAccepted)
    assert (replay.parsed.event_id, replay.parsed.replayed) == (accepted.event_id, True)
    assert replay.headers["Idempotent-Replayed"] == "true"
    # And, with ?wait, as a first request that ends within it: 200, the event
    waited = events.send_event.sync_detailed(
        workflow, client=client, body=body, idempotency_key=key, wait=5
    )
    assert waited.status_code == HTTPStatus.OK
    assert isinstance(waited.parsed, models.EventView)
    assert waited.parsed.to_dict() == event.to_dict()
    assert waited.headers["Idempotent-Replayed"] == "true"

    # When an unknown event is read: a 404 with the error body
    missing = events.get_event.sync_detailed(str(uuid.uuid4()), client=client)
    assert missing.status_code == HTTPStatus.NOT_FOUND
    assert isinstance(missing.parsed, models.ErrorBody)
    assert "does not exist" in missing.parsed.message

    # When data breaks the workflow's inputs: a 422 naming the field
    refused = events.send_event.sync_detailed(
        workflow, client=client, body=models.EventRequest.from_dict({"data": {"message": 5}})
    )
    assert refused.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert isinstance(refused.parsed, models.ErrorBody)
    assert [detail.path for detail in refused.parsed.details] == ["data.message"]
