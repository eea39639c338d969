"""What the handlers need from outside: clients, the store, the invoker and the clock.

Built once per Lambda container on first use (importing a handler creates nothing), or
injected whole by tests and the local runtime with `configure`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from machinery_core.adapters.addresses import PUBLIC_ONLY, AddressPolicy
from machinery_core.adapters.executions import Executions
from machinery_core.adapters.store import Store
from machinery_core.domain.models import utc_now
from machinery_core.runtime.settings import Settings

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_scheduler import EventBridgeSchedulerClient
    from mypy_boto3_stepfunctions import SFNClient

    # requests comes with the invoker: built on first use, it stays out of a cold start
    from machinery_core.adapters.invoker import ServiceInvoker
    from machinery_core.adapters.payloads import PayloadBucket
    from machinery_core.adapters.timers import Timers

T = TypeVar("T")


@dataclass
class Dependencies:
    store: Store
    executions: Executions
    invoker: ServiceInvoker
    clock: Callable[[], datetime] = utc_now
    # The API's own URL for callback services; None: the URL the request came in on.
    callback_base_url: str | None = None
    # The key completion notifications are signed with (HMAC-SHA256).
    signing_key: Callable[[], bytes] = field(default=lambda: b"")
    # Which service and notification addresses registration accepts (the invoker holds
    # the same policy for call time): by default nothing loopback, private or link-local.
    address_policy: AddressPolicy = PUBLIC_ONLY
    # The timers that resume an event waiting outside any execution (None: none configured,
    # and an event that must wait so fails).
    timers: Timers | None = None

    @classmethod
    def from_environment(cls, settings: Settings | None = None) -> Dependencies:
        import boto3
        from botocore.config import Config

        settings = settings or Settings.from_environment()
        config = Config(retries={"mode": "standard", "max_attempts": 3}, tcp_keepalive=True)
        dynamodb = boto3.client("dynamodb", config=config)
        retention = timedelta(days=settings.event_retention_days)
        policy = AddressPolicy.parse(settings.allowed_service_hosts)
        # Step Functions and the invoker only on first use: many invocations need neither
        # (the API's reads; most state-machine actions start no execution).
        stepfunctions = OnFirstUse(lambda: boto3.client("stepfunctions", config=config))
        return cls(
            store=Store(
                dynamodb,
                settings.table_name,
                retention,
                _payloads(settings, config),
                settings.event_index_shards,
                settings.definition_cache_seconds,
            ),
            executions=Executions(
                cast("SFNClient", stepfunctions),
                settings.state_machine_arn,
                settings.state_machine_type,
            ),
            invoker=cast("ServiceInvoker", OnFirstUse(lambda: _invoker(policy))),
            callback_base_url=settings.callback_base_url,
            signing_key=secret_reader(settings.notification_secret_arn, config),
            address_policy=policy,
            timers=_timers(settings, config),
        )


def _payloads(settings: Settings, config: Config) -> PayloadBucket | None:
    """The payload bucket, its client made on first use: most events never reach it."""
    if not settings.payload_bucket:
        return None
    import boto3
    from botocore.config import Config

    from machinery_core.adapters.payloads import PayloadBucket

    # S3 may answer 503 Slow Down for a moment: more attempts than the other clients
    more_attempts = Config(retries={"mode": "standard", "max_attempts": 5})
    s3 = OnFirstUse(lambda: boto3.client("s3", config=config.merge(more_attempts)))
    return PayloadBucket(cast("S3Client", s3), settings.payload_bucket)


def _timers(settings: Settings, config: Config) -> Timers | None:
    """The timers, their client made on first use: most invocations set none."""
    if not (settings.schedule_group and settings.scheduler_role_arn):
        return None
    import boto3

    from machinery_core.adapters.timers import Timers

    scheduler = OnFirstUse(lambda: boto3.client("scheduler", config=config))
    return Timers(
        cast("EventBridgeSchedulerClient", scheduler),
        settings.schedule_group,
        settings.state_machine_arn,
        settings.scheduler_role_arn,
    )


def _invoker(policy: AddressPolicy) -> ServiceInvoker:
    import requests

    from machinery_core.adapters.invoker import ServiceInvoker
    from machinery_core.runtime.observability import trace_requests

    trace_requests()
    return ServiceInvoker(requests.Session(), address_policy=policy)


class OnFirstUse(Generic[T]):
    """Stands in for the object `build` returns, building it on first attribute access (once,
    whichever thread gets there first), so a client some invocations never use costs them
    nothing at cold start."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._built: list[T] = []
        self._lock = threading.Lock()

    def get(self) -> T:
        if not self._built:
            with self._lock:
                if not self._built:
                    self._built.append(self._build())
        return self._built[0]

    def __getattr__(self, name: str) -> Any:
        # Only for what the instance lacks: never its own state (copy makes an instance
        # without it, then looks for __setstate__ and the like), nor protocol methods.
        if name.startswith("__") or name in ("_build", "_built", "_lock"):
            raise AttributeError(name)
        return getattr(self.get(), name)


def secret_reader(secret_arn: str, config: Config | None = None) -> Callable[[], bytes]:
    """Read the signing secret on first use (one GetSecretValue per container), not at init."""

    def read() -> bytes:
        import boto3

        client = boto3.client("secretsmanager", config=config)
        secret: str = client.get_secret_value(SecretId=secret_arn)["SecretString"]
        return secret.encode()

    return OnFirstUse(read).get


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
