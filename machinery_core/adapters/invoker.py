"""Calls a service over HTTP and classifies what came back (DESIGN §1, "Calling a service")."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from machinery_core.adapters.addresses import PUBLIC_ONLY, AddressError, AddressPolicy
from machinery_core.domain.engine import CallOutcome
from machinery_core.domain.models import ErrorInfo, Service, utc_now

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


def _seconds_until(retry_after: str | None, now: datetime) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP date) as seconds from `now`."""
    if not retry_after:
        return None
    value = retry_after.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (moment - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


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
        step_index: int,
        timeout: float,
        extra_headers: dict[str, str] | None = None,
        expect_body: bool = True,
    ) -> CallOutcome:
        """One call; `expect_body=False` (a callback dispatch) takes any 2xx as accepted."""
        headers = {
            **service.headers,
            **service.secret_headers,
            **(extra_headers or {}),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": f"{event_id}:{step_index}",
            "X-Machinery-Event-Id": event_id,
        }
        started = self._clock()
        status: int | None = None
        try:
            pin = self.address_policy.check_call(service.address)
        except AddressError as refused:
            return self._outcome(
                started, error=_error(refused.kind, str(refused), retryable=refused.retryable)
            )
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
                status = response.status_code
                retry_after = _seconds_until(response.headers.get("Retry-After"), started)
                raw = response.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
        except (requests.Timeout, urllib3.exceptions.TimeoutError) as exc:
            return self._outcome(
                started,
                error=_error("Timeout", f"no answer within {timeout:g}s: {exc}", retryable=True),
            )
        except (requests.ConnectionError, urllib3.exceptions.HTTPError) as exc:
            return self._outcome(started, error=_error("ConnectionError", str(exc), retryable=True))
        except requests.RequestException as exc:
            return self._outcome(started, error=_error("RequestError", str(exc), retryable=False))

        if status >= 500 or status == 429:
            return self._outcome(
                started,
                status,
                error=_error("HttpError", f"the service answered {status}", status, retryable=True),
                retry_after=retry_after,
            )
        if not 200 <= status < 300:
            return self._outcome(
                started,
                status,
                error=_error(
                    "HttpError", f"the service answered {status}", status, retryable=False
                ),
            )
        if not expect_body:
            return self._outcome(started, status)
        if len(raw) > MAX_RESPONSE_BYTES:
            return self._outcome(
                started,
                status,
                error=_error(
                    "ResponseTooLarge",
                    f"the answer exceeds {MAX_RESPONSE_BYTES} bytes",
                    status,
                    retryable=False,
                ),
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return self._outcome(
                started,
                status,
                error=_error("InvalidResponse", "the answer is not JSON", status, retryable=False),
            )
        if not isinstance(body, dict):
            return self._outcome(
                started,
                status,
                error=_error(
                    "InvalidResponse",
                    "the answer is JSON but not an object",
                    status,
                    retryable=False,
                ),
            )
        return self._outcome(started, status, body=body)

    def _outcome(
        self,
        started: datetime,
        status: int | None = None,
        *,
        body: dict[str, Any] | None = None,
        error: ErrorInfo | None = None,
        retry_after: float | None = None,
    ) -> CallOutcome:
        return CallOutcome(
            retry_after=retry_after,
            started_at=started,
            ended_at=self._clock(),
            status_code=status,
            body=body,
            error=error,
        )

    def deliver(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float = 10.0
    ) -> tuple[int | None, str | None]:
        """POST a notification: (status code, None) when a 2xx took it, else what went wrong."""
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
