"""Helpers for the end-to-end tests: stub services on loopback, definitions, registrations."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from loopback import Call, LoopbackServer, Reply, json_reply

if TYPE_CHECKING:
    from conftest import LocalStack

STATE_MACHINE_TYPES = ["STANDARD", "EXPRESS"]


@pytest.fixture(params=STATE_MACHINE_TYPES, name="local_stack")
def on_each_type(request: pytest.FixtureRequest) -> Any:
    """A module whose tests must hold on both state machine types imports this (it is its
    `local_stack`, so the registry and the stubs follow it): each test runs on the session's
    STANDARD stack, then on its EXPRESS one."""
    return request.getfixturevalue(
        "standard_stack" if request.param == "STANDARD" else "express_stack"
    )


# The `stub_service` fixture: start a loopback service answering with `respond(call, nth)`.
StartStub = Callable[[Callable[[Call, int], Reply]], LoopbackServer]


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


class Inbox:
    """A loopback `respond` that queues every request for the test, answering with `reply`
    (a fixed reply, or `reply(call, nth)`; 202 by default).

    A callback service's side of a dispatch (answer 202, keep the callback URL) or a
    notification receiver's: the test takes each request with `next`, waiting on a deadline.
    """

    def __init__(self, reply: Reply | Callable[[Call, int], Reply] | None = None) -> None:
        self.reply = reply or json_reply(202, {})
        self._calls: queue.Queue[Call] = queue.Queue()

    def __call__(self, call: Call, nth: int) -> Reply:
        self._calls.put(call)
        return self.reply(call, nth) if callable(self.reply) else self.reply

    def next(self, timeout: float = 10.0) -> Call:
        try:
            return self._calls.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no request arrived within {timeout}s")


def wait_for_notification(
    stack: LocalStack, event_id: str, timeout: float = 10.0
) -> dict[str, Any]:
    """The event once its completion notification is DELIVERED or FAILED (polled to `timeout`)."""

    def delivered_or_failed(event: dict[str, Any]) -> bool:
        note = event.get("notification")
        return note is not None and note["status"] != "PENDING"

    return stack.wait_until(
        event_id,
        delivered_or_failed,
        "event {event_id}'s notification is still {event[notification]} after {timeout}s",
        timeout,
    )


def newest_event(stack: LocalStack, workflow: str) -> str | None:
    """The id of the workflow's most recent event, if it has any."""
    items = stack.get(f"/workflows/{workflow}/events", params={"limit": 1}).json()["items"]
    return items[0]["event_id"] if items else None
