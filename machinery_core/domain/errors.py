"""Domain errors. Each carries its HTTP status; the API maps them to responses in one place."""

from __future__ import annotations

from typing import Any


class MachineryError(Exception):
    status_code = 500
    # For a 503: how long a client should wait before trying again (Retry-After).
    retry_after_seconds = 1

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(MachineryError):
    status_code = 400


class NotFound(MachineryError):
    status_code = 404


class Conflict(MachineryError):
    status_code = 409


class PayloadTooLarge(MachineryError):
    status_code = 413


class ItemTooLarge(PayloadTooLarge):
    """A write would make its DynamoDB item exceed the 400 KB item size limit."""


class Unprocessable(MachineryError):
    """Well-formed JSON that breaks the contract (422)."""

    status_code = 422


class InvalidDefinition(Unprocessable):
    """A service or workflow definition that cannot be registered as it is."""


class InvalidInput(Unprocessable):
    """What a request carries for a run (event data, a callback's outputs, an address to
    notify) does not match what the definitions declare."""


class DispatchFailed(MachineryError):
    """The event was stored but its state machine execution could not be started."""

    status_code = 503


class StaleVersion(Conflict):
    """A conditional write lost the race: someone else advanced the item first."""


class NotificationFailed(MachineryError):
    """A completion notification was not accepted; the Notify state retries on this name."""

    status_code = 502


class KeyAlreadyUsed(Conflict):
    """An Idempotency-Key already names an event."""


class ClaimHeld(StaleVersion):
    """Another invocation is advancing the event; the state machine retries on this name."""


class PayloadStoreUnavailable(MachineryError):
    """The payload bucket did not answer (after the client's own retries): nothing is
    acknowledged or recorded without its payloads, so the request or the step is retried
    (the state machine retries on this name)."""

    status_code = 503


class Throttled(MachineryError):
    """AWS throttled a call (DynamoDB, Step Functions, EventBridge Scheduler) past the
    client's own retries: nothing was acknowledged or recorded that needed it, so the
    request or the step is tried again later (the state machine retries on this name)."""

    status_code = 503

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
