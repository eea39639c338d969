"""What the handlers need from outside: clients, the store, the invoker and the clock.

Built once per Lambda container on first use (importing a handler creates nothing), or
injected whole by tests and the local runtime with `configure`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from machinery_core.invoker import ServiceInvoker
from machinery_core.models import utc_now
from machinery_core.store import Store

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


@dataclass
class Dependencies:
    store: Store
    stepfunctions: SFNClient
    state_machine_arn: str
    invoker: ServiceInvoker
    clock: Callable[[], datetime] = utc_now

    @classmethod
    def from_environment(cls) -> Dependencies:
        import boto3
        import requests
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "max_attempts": 3}, tcp_keepalive=True)
        dynamodb = boto3.client("dynamodb", config=config)
        retention = timedelta(days=int(os.environ.get("EVENT_RETENTION_DAYS", "30")))
        return cls(
            store=Store(dynamodb, os.environ["TABLE_NAME"], retention),
            stepfunctions=boto3.client("stepfunctions", config=config),
            state_machine_arn=os.environ.get("STATE_MACHINE_ARN", ""),
            invoker=ServiceInvoker(requests.Session()),
        )


_current: Dependencies | None = None
_lock = threading.Lock()


def dependencies() -> Dependencies:
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = Dependencies.from_environment()
    return _current


def configure(deps: Dependencies | None) -> None:
    """Install `deps` for every handler in this process (None: rebuild from the environment)."""
    global _current
    with _lock:
        _current = deps
