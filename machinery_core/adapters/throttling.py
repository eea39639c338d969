"""AWS throttling, after botocore's own retries: the one place it becomes `Throttled`.

Every client an adapter holds is wrapped in `ThrottleAware`, so whichever call DynamoDB,
Step Functions or EventBridge Scheduler throttles raises the same domain error: the API
answers it 503 with Retry-After, and the state machine retries a Task that raised it with
backoff (template.yaml). Other errors pass through untouched, for each adapter to decide on.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar, cast

from botocore.exceptions import ClientError

from machinery_core.domain.errors import Throttled

T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        # DynamoDB: a partition, a table or the account over its throughput
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        # DynamoDB, Step Functions, EventBridge Scheduler: API request rate
        "ThrottlingException",
        "TooManyRequestsException",
        # Step Functions: the open STANDARD executions quota (1,000,000 by default)
        "ExecutionLimitExceeded",
    }
)
# A transaction's cancellation reasons say when one of its items was throttled.
THROTTLING_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})
# How long a client should wait before trying again: throttling is a moment's, and the open
# executions quota frees as executions end.
RETRY_AFTER_SECONDS = {"ExecutionLimitExceeded": 30}


def throttling_code(error: ClientError) -> str | None:
    """The code of a throttling error (a transaction's, the first throttled reason)."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    if code in THROTTLING_CODES:
        return code
    if code == "TransactionCanceledException":
        reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
        return next((reason for reason in reasons if reason in THROTTLING_REASONS), None)
    return None


class ThrottleAware:
    """Stands in for a boto3 client: its operations raise `Throttled` when throttled."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute  # meta, exceptions

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except ClientError as error:
                code = throttling_code(error)
                if code is None:
                    raise
                raise Throttled(
                    f"AWS throttled {error.operation_name} ({code}); try again shortly",
                    retry_after_seconds=RETRY_AFTER_SECONDS.get(code, 1),
                ) from error

        return call


def throttle_aware(client: T) -> T:
    if isinstance(client, ThrottleAware):
        return client
    return cast(T, ThrottleAware(client))
