"""Recording which function made which AWS call, for the permissions check (docs/architecture.md).

With MACHINERY_AWS_CALLS set to a directory, each local runtime writes one JSON-lines file
there: first the physical names of what it deployed (`{"stack": ...}`), then a line for
each distinct AWS request made while a function or the state machine was acting
(`{"principal", "service", "operation", "params"}`, the params reduced to the resources
they name). tests/e2e/test_permissions.py checks those calls against the roles that
template.yaml gives each function.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENVIRONMENT_VARIABLE = "MACHINERY_AWS_CALLS"

_acting: contextvars.ContextVar[str | None] = contextvars.ContextVar("acting", default=None)
_numbers = itertools.count()

# The parameters that name what a request acts on: all that IAM authorises a call against.
_NAMING = (
    "TableName",
    "IndexName",
    "stateMachineArn",
    "executionArn",
    "SecretId",
    "FunctionName",
    "Bucket",
    "Key",
    "Name",  # a schedule's (EventBridge Scheduler), with its group
    "GroupName",
)


@contextmanager
def acting_as(principal: str) -> Iterator[None]:
    """AWS calls made inside are made by `principal` (a function's or state machine's id)."""
    token = _acting.set(principal)
    try:
        yield
    finally:
        _acting.reset(token)


def acting() -> str | None:
    return _acting.get()


def naming_params(params: dict[str, Any]) -> dict[str, Any]:
    """What of a request's parameters names a resource (transactions and batches: per item)."""
    named: dict[str, Any] = {key: params[key] for key in _NAMING if key in params}
    if "TransactItems" in params:
        named["TransactItems"] = [
            {kind: {"TableName": body.get("TableName")} for kind, body in item.items()}
            for item in params["TransactItems"]
        ]
    if "RequestItems" in params:
        named["RequestItems"] = {table: {} for table in params["RequestItems"]}
    if isinstance(params.get("Target"), dict):
        # a schedule's target: what it starts, and the role it passes (not the input)
        target = params["Target"]
        named["Target"] = {key: target[key] for key in ("Arn", "RoleArn") if key in target}
    return named


class CallRecorder:
    """One runtime's recording: a JSON-lines file, appended to by every thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._written: set[str] = set()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    @classmethod
    def from_environment(cls) -> CallRecorder | None:
        directory = os.environ.get(ENVIRONMENT_VARIABLE)
        if not directory:
            return None
        return cls(Path(directory) / f"aws-calls-{os.getpid()}-{next(_numbers)}.jsonl")

    def attach(self, events: Any) -> None:
        """Hear every request of the clients made from a boto3 session with these `events`."""
        events.register("before-parameter-build", self._before_parameter_build)

    def stack(self, physical: dict[str, Any]) -> None:
        self._write({"stack": physical})

    def record(self, principal: str, service: str, operation: str, params: dict[str, Any]) -> None:
        self._write(
            {"principal": principal, "service": service, "operation": operation, "params": params}
        )

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def _before_parameter_build(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        principal = _acting.get()
        if principal is None:
            return  # the runtime deploying itself, not a function at work
        service = model.service_model.service_name
        self.record(principal, service, model.name, naming_params(params))

    def _write(self, line: dict[str, Any]) -> None:
        text = json.dumps(line, sort_keys=True)
        with self._lock:
            # A permission is about which call names which resource, not how often: one line
            # for each distinct call keeps a long run's file small.
            if text not in self._written and not self._file.closed:
                self._written.add(text)
                # flushed per line: a runtime that is killed keeps what it recorded
                self._file.write(text + "\n")
                self._file.flush()
