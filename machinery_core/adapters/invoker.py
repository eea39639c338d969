"""Calls a service over HTTP and classifies what came back (DESIGN §1, "Calling a service")."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from machinery_core.adapters.addresses import PUBLIC_ONLY, AddressError, AddressPolicy
from machinery_core.contract import retry_after_seconds
from machinery_core.domain import tracecontext
from machinery_core.domain.engine import CallOutcome
from machinery_core.domain.models import ErrorInfo, Service, TraceContext, utc_now

_pins = threading.local()


@contextmanager
def _pinned(host: str, address: str) -> Iterator[None]:
    """While the block runs, this thread's connections to `host` go to `address`."""
    pins: dict[str, str] = getattr(_pins, "map", {})
    _pins.map = {**pins, host: address}
    try:
        yield
    finally:
        _pins.map = pins


def _pinned_connection(base: type[HTTPConnection]) -> type[HTTPConnection]:
    class Pinned(base):  # type: ignore[valid-type,misc]
        def _new_conn(self) -> socket.socket:
            # Connect to the address the policy checked; the host name stays for the
            # Host header, SNI and certificate checks.
            address = getattr(_pins, "map", {}).get(self.host.strip("[]").lower())
            if address is None:
                sock: socket.socket = super()._new_conn()
                return sock
            resolved_by_name: str = self._dns_host  # type: ignore[has-type]
            self._dns_host = address
            try:
                sock = super()._new_conn()
            finally:
                self._dns_host = resolved_by_name
            return sock

    return Pinned


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _pinned_connection(HTTPConnection)


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _pinned_connection(HTTPSConnection)  # type: ignore[assignment]


class PinnedAdapter(HTTPAdapter):
    """A requests adapter whose connections honour `_pinned`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PinnedHTTPPool,
            "https": _PinnedHTTPSPool,
        }


MAX_RESPONSE_BYTES = 256 * 1024
MAX_RETRY_AFTER_SECONDS = 3600.0

# What can stop a call before any response: the address guard, or the request itself.
Failure = AddressError | requests.RequestException | urllib3.exceptions.HTTPError


@dataclass(frozen=True)
class Answer:
    """A response as the invoker read it: what `classify` needs of it, and no socket."""

    status_code: int
    body: bytes = b""  # at most MAX_RESPONSE_BYTES of it
    over_limit: bool = False  # the service sent more than MAX_RESPONSE_BYTES
    retry_after: str | None = None  # the header as sent


@dataclass(frozen=True)
class NoAnswer:
    """A call that got no response."""

    failure: Failure


def classify(
    answer: Answer | NoAnswer,
    *,
    timeout: float,
    expect_body: bool,
    started_at: datetime,
    ended_at: datetime,
) -> CallOutcome:
    """What one call's answer means for its step; no clock, no network.

    `timeout` is what the request was allowed (a Timeout names it); `expect_body=False`, a
    callback dispatch, takes any 2xx as accepted. A Retry-After date counts from `started_at`.
    """
    if isinstance(answer, NoAnswer):
        failed = _failure_error(answer.failure, timeout)
        return CallOutcome(started_at=started_at, ended_at=ended_at, error=failed)
    status = answer.status_code
    body: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    retry_after: float | None = None
    if status >= 500 or status == 429:
        error = _error("HttpError", f"the service answered {status}", status, retryable=True)
        asked = retry_after_seconds(answer.retry_after, started_at)
        retry_after = None if asked is None else min(asked, MAX_RETRY_AFTER_SECONDS)
    elif not 200 <= status < 300:
        # A redirect too: following it would reach an address the guard never checked.
        error = _error("HttpError", f"the service answered {status}", status, retryable=False)
    elif expect_body:
        body, error = _json_object(answer)
    return CallOutcome(
        started_at=started_at,
        ended_at=ended_at,
        status_code=status,
        body=body,
        error=error,
        retry_after=retry_after,
    )


def _failure_error(failure: Failure, timeout: float) -> ErrorInfo:
    if isinstance(failure, AddressError):
        return _error(failure.kind, str(failure), retryable=failure.retryable)
    # Timeouts first: requests' ConnectTimeout is also a ConnectionError, and urllib3's
    # ReadTimeoutError (a body that stalls mid-read) is also one of its HTTPErrors.
    if isinstance(failure, (requests.Timeout, urllib3.exceptions.TimeoutError)):
        return _error("Timeout", f"no answer within {timeout:g}s: {failure}", retryable=True)
    if isinstance(failure, (requests.ConnectionError, urllib3.exceptions.HTTPError)):
        return _error("ConnectionError", str(failure), retryable=True)
    return _error("RequestError", str(failure), retryable=False)


def _json_object(answer: Answer) -> tuple[dict[str, Any] | None, ErrorInfo | None]:
    """The outputs a sync service's 2xx carries: one JSON object within the size limit."""

    def invalid(kind: str, message: str) -> tuple[None, ErrorInfo]:
        return None, _error(kind, message, answer.status_code, retryable=False)

    if answer.over_limit:
        return invalid("ResponseTooLarge", f"the answer exceeds {MAX_RESPONSE_BYTES} bytes")
    try:
        body = json.loads(answer.body)
    except ValueError:
        return invalid("InvalidResponse", "the answer is not JSON")
    if not isinstance(body, dict):
        return invalid("InvalidResponse", "the answer is JSON but not an object")
    return body, None


def _error(kind: str, message: str, status: int | None = None, *, retryable: bool) -> ErrorInfo:
    return ErrorInfo(type=kind, message=message, status_code=status, retryable=retryable)


class ServiceInvoker:
    """Calls services through `session`; `address_policy` decides which hosts it may reach.

    The default policy refuses loopback, private, link-local and metadata addresses: pass
    one that allows them (`AddressPolicy.parse(...)`) where they are meant to be called.
    """

    def __init__(
        self,
        session: requests.Session,
        clock: Callable[[], datetime] = utc_now,
        *,
        address_policy: AddressPolicy = PUBLIC_ONLY,
    ) -> None:
        self._session = session
        self._clock = clock
        self.address_policy = address_policy
        for scheme in ("http://", "https://"):
            # Only requests' own adapter is swapped: a transport the caller chose stays.
            if type(session.get_adapter(scheme)) is HTTPAdapter:
                session.mount(scheme, PinnedAdapter(pool_connections=32, pool_maxsize=64))

    def call(
        self,
        service: Service,
        payload: dict[str, Any],
        *,
        event_id: str,
        step: int | str,
        timeout: float,
        extra_headers: dict[str, str] | None = None,
        expect_body: bool = True,
        trace: TraceContext | None = None,
    ) -> CallOutcome:
        """One call; `expect_body=False` (a callback dispatch) takes any 2xx as accepted.

        `step` is the step's index, or for a step in a group its path (`3.1.0`, and
        `4.0:7` for iteration 7 of a map), so that each call has its own Idempotency-Key.
        `trace`: the event's, sent as `traceparent` with a parent id of this call's own.
        """
        headers = {
            **service.headers,
            **service.secret_headers,
            **(extra_headers or {}),
            **(tracecontext.headers(trace) if trace is not None else {}),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": f"{event_id}:{step}",
            "X-Machinery-Event-Id": event_id,
        }
        started_at = self._clock()
        answer = self._send(service, payload, headers, timeout)
        return classify(
            answer,
            timeout=timeout,
            expect_body=expect_body,
            started_at=started_at,
            ended_at=self._clock(),
        )

    def _send(
        self, service: Service, payload: dict[str, Any], headers: dict[str, str], timeout: float
    ) -> Answer | NoAnswer:
        """The network half of `call`: the guard, then the request to the address it checked."""
        try:
            pin = self.address_policy.check_call(service.address)
        except AddressError as refused:
            return NoAnswer(refused)
        try:
            with (
                _pinned(*pin),
                self._session.request(
                    service.method,
                    service.address,
                    data=json.dumps(payload, separators=(",", ":")),
                    headers=headers,
                    timeout=timeout,
                    stream=True,
                    allow_redirects=False,
                ) as response,
            ):
                # One byte past the limit tells an answer that fits from one that does not.
                raw = response.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
                return Answer(
                    status_code=response.status_code,
                    body=raw[:MAX_RESPONSE_BYTES],
                    over_limit=len(raw) > MAX_RESPONSE_BYTES,
                    retry_after=response.headers.get("Retry-After"),
                )
        except (requests.RequestException, urllib3.exceptions.HTTPError) as failed:
            return NoAnswer(failed)

    def deliver(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float = 10.0,
        trace: TraceContext | None = None,
    ) -> tuple[int | None, str | None]:
        """POST a notification: (status code, None) when a 2xx took it, else what went wrong.
        `trace`: the event's, sent as `traceparent` as with every call."""
        if trace is not None:
            headers = {**headers, **tracecontext.headers(trace)}
        try:
            pin = self.address_policy.check_call(url)
        except AddressError as refused:
            return None, f"{refused.kind}: {refused}"
        try:
            with (
                _pinned(*pin),
                self._session.post(
                    url, data=body, headers=headers, timeout=timeout, allow_redirects=False
                ) as response,
            ):
                if 200 <= response.status_code < 300:
                    return response.status_code, None
                return response.status_code, f"the receiver answered {response.status_code}"
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}"
