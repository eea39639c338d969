"""Helpers for the end-to-end tests: stub services on loopback, definitions, registrations."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from loopback import Reply

if TYPE_CHECKING:
    from conftest import LocalStack


def unique(prefix: str) -> str:
    """A slug no other test (or earlier run against the same stack) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def text_reply(status: int, text: str) -> Reply:
    return status, {"Content-Type": "text/plain"}, text.encode()


class Registry:
    """Registers definitions over HTTP and deletes them (workflows first) when the test ends."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.services: list[str] = []
        self.workflows: list[str] = []

    def track_service(self, name: str) -> None:
        if name not in self.services:
            self.services.append(name)

    def track_workflow(self, name: str) -> None:
        if name not in self.workflows:
            self.workflows.append(name)

    def service(self, definition: dict[str, Any]) -> dict[str, Any]:
        answer = self.stack.post("/services", json=definition)
        assert answer.status_code == 201, answer.text
        self.track_service(definition["name"])
        body: dict[str, Any] = answer.json()
        return body

    def workflow(self, definition: dict[str, Any]) -> dict[str, Any]:
        answer = self.stack.post("/workflows", json=definition)
        assert answer.status_code == 201, answer.text
        self.track_workflow(definition["name"])
        body: dict[str, Any] = answer.json()
        return body

    def cleanup(self) -> None:
        for name in reversed(self.workflows):
            answer = self.stack.delete(f"/workflows/{name}")
            assert answer.status_code in (204, 404), answer.text
        for name in reversed(self.services):
            answer = self.stack.delete(f"/services/{name}")
            assert answer.status_code in (204, 404), answer.text


def service_definition(
    name: str,
    address: str,
    inputs: dict[str, str],
    outputs: dict[str, str],
    **options: Any,
) -> dict[str, Any]:
    """A canonical service definition; `inputs`/`outputs` map field names to types."""
    return {
        "name": name,
        "address": address,
        "spec": {
            "inputs": {key: {"type": kind} for key, kind in inputs.items()},
            "outputs": {key: {"type": kind} for key, kind in outputs.items()},
        },
        **options,
    }


def workflow_definition(
    name: str,
    services: list[str],
    inputs: dict[str, str],
    outputs: dict[str, str],
    operations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "spec": {
            "services": services,
            "inputs": {key: {"type": kind} for key, kind in inputs.items()},
            "outputs": {key: {"type": kind} for key, kind in outputs.items()},
            "operations": operations or {},
        },
    }
