"""ServiceInvoker against a loopback server: what a call sends, and that what comes back
reaches the classifier (whose every case test_call_classifier.py tables without a socket)."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from loopback import FakeResolver, Loopback, Reply

from machinery_core.adapters.addresses import LOOPBACK_HOSTS, AddressPolicy
from machinery_core.adapters.invoker import MAX_RESPONSE_BYTES, ServiceInvoker
from machinery_core.domain.engine import CallOutcome
from machinery_core.domain.models import Service
from machinery_core.local.launch import free_port


@pytest.fixture
def invoker() -> Iterator[ServiceInvoker]:
    with requests.Session() as session:
        # The scripted services listen on loopback: the address guard must allow it here.
        yield ServiceInvoker(session, address_policy=AddressPolicy.parse(LOOPBACK_HOSTS))


def make_service(address: str, **extra: Any) -> Service:
    return Service.model_validate(
        {
            "name": "upper",
            "address": address,
            "spec": {"inputs": {"message": {"type": "string"}}, "outputs": {}},
            **extra,
        }
    )


def reply(status: int, body: bytes, **headers: str) -> Reply:
    return status, headers, body


def call(invoker: ServiceInvoker, address: str, timeout: float = 5, **extra: Any) -> CallOutcome:
    return invoker.call(
        make_service(address, **extra),
        {"message": "hello"},
        event_id="evt-1",
        step=2,
        timeout=timeout,
    )


def test_a_2xx_json_object_is_success_and_the_call_carries_its_headers(
    invoker: ServiceInvoker, loopback: Loopback
) -> None:
    # Given a service with static headers that answers a JSON object
    loopback.routes["/upper"] = lambda: reply(200, b'{"message": "HELLO"}')

    # When it is called for step 2 of evt-1
    outcome = call(
        invoker,
        loopback.url + "/upper",
        headers={"X-Api-Version": "7"},
        secret_headers={"Authorization": "Bearer s3cr3t"},
    )

    # Then the outcome is a success with the body
    assert outcome.error is None
    assert (outcome.status_code, outcome.body) == (200, {"message": "HELLO"})
    assert outcome.ended_at >= outcome.started_at
    # And the server received the payload and every header the contract names
    [request] = loopback.received
    assert (request.method, request.path) == ("POST", "/upper")
    assert json.loads(request.body) == {"message": "hello"}
    assert request.headers["Idempotency-Key"] == "evt-1:2"
    assert request.headers["X-Machinery-Event-Id"] == "evt-1"
    assert request.headers["X-Api-Version"] == "7"
    assert request.headers["Authorization"] == "Bearer s3cr3t"
    assert request.headers["Content-Type"] == "application/json"


def test_the_service_method_is_used(invoker: ServiceInvoker, loopback: Loopback) -> None:
    loopback.routes["/upper"] = lambda: reply(201, b"{}")

    outcome = call(invoker, loopback.url + "/upper", method="PUT")

    assert (outcome.status_code, outcome.body, outcome.error) == (201, {}, None)
    assert loopback.received[0].method == "PUT"


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_throttling_are_retryable(
    invoker: ServiceInvoker, loopback: Loopback, status: int
) -> None:
    loopback.routes["/upper"] = lambda: reply(status, b'{"error": "busy"}')

    outcome = call(invoker, loopback.url + "/upper")

    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("HttpError", True)
    assert outcome.error.status_code == outcome.status_code == status
    assert outcome.body is None


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_other_client_errors_are_not_retryable(
    invoker: ServiceInvoker, loopback: Loopback, status: int
) -> None:
    loopback.routes["/upper"] = lambda: reply(status, b'{"error": "no"}')

    outcome = call(invoker, loopback.url + "/upper")

    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable, outcome.error.status_code) == (
        "HttpError",
        False,
        status,
    )


def test_a_redirect_is_not_followed_and_not_success(
    invoker: ServiceInvoker, loopback: Loopback
) -> None:
    loopback.routes["/upper"] = lambda: reply(302, b"", Location="/elsewhere")

    outcome = call(invoker, loopback.url + "/upper")

    assert outcome.error is not None and outcome.error.retryable is False
    assert [r.path for r in loopback.received] == ["/upper"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>oops</html>", "the answer is not JSON"),
        (b"", "the answer is not JSON"),
        (b'["HELLO"]', "the answer is JSON but not an object"),
        (b'"HELLO"', "the answer is JSON but not an object"),
    ],
    ids=["html", "empty", "array", "string"],
)
def test_a_2xx_that_is_not_a_json_object_is_not_retryable(
    invoker: ServiceInvoker, loopback: Loopback, body: bytes, message: str
) -> None:
    loopback.routes["/upper"] = lambda: reply(200, body)

    outcome = call(invoker, loopback.url + "/upper")

    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.message) == ("InvalidResponse", message)
    assert outcome.error.retryable is False
    assert outcome.body is None


def test_a_read_timeout_is_a_retryable_timeout(invoker: ServiceInvoker, loopback: Loopback) -> None:
    # Given a service that holds the request until the test releases it
    def held() -> Reply:
        loopback.release.wait(timeout=5)
        return reply(200, b"{}")

    loopback.routes["/upper"] = held

    # When it is called with a 0.2 s timeout
    outcome = call(invoker, loopback.url + "/upper", timeout=0.2)
    loopback.release.set()

    # Then the call gives up quickly with a retryable Timeout
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("Timeout", True)
    assert outcome.status_code is None
    assert 0.15 <= outcome.duration_ms / 1000 < 2


def test_a_refused_connection_is_retryable(invoker: ServiceInvoker) -> None:
    # Given a loopback port with nothing listening on it
    port = free_port()

    outcome = call(invoker, f"http://127.0.0.1:{port}/upper")

    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("ConnectionError", True)
    assert outcome.status_code is None


def test_an_answer_over_256_kib_is_refused(invoker: ServiceInvoker, loopback: Loopback) -> None:
    big = json.dumps({"message": "x" * MAX_RESPONSE_BYTES}).encode()
    assert len(big) > 256 * 1024
    loopback.routes["/upper"] = lambda: reply(200, big)

    outcome = call(invoker, loopback.url + "/upper")

    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("ResponseTooLarge", False)
    assert outcome.body is None


def test_an_answer_of_exactly_256_kib_is_accepted(
    invoker: ServiceInvoker, loopback: Loopback
) -> None:
    padding = MAX_RESPONSE_BYTES - len(b'{"message": ""}')
    exact = json.dumps({"message": "x" * padding}).encode()
    assert len(exact) == MAX_RESPONSE_BYTES
    loopback.routes["/upper"] = lambda: reply(200, exact)

    outcome = call(invoker, loopback.url + "/upper")

    assert outcome.error is None
    assert outcome.body is not None and len(outcome.body["message"]) == padding


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("Wed, 21 Oct 2099 07:28:00 GMT", 3600.0), ("soon", None)],
)
def test_a_retry_after_header_is_read_on_a_retryable_answer(
    invoker: ServiceInvoker, loopback: Loopback, header: str, expected: float | None
) -> None:
    # Given a service that is unavailable and says when to come back
    loopback.routes["/busy"] = lambda: reply(503, b"{}", **{"Retry-After": header})

    # When it is called
    outcome = call(invoker, loopback.url + "/busy")

    # Then the delay is kept for the retry (seconds, a far date capped at an hour, junk ignored)
    assert outcome.error is not None and outcome.error.retryable
    assert outcome.retry_after == expected


# --- callback dispatch: extra headers, no body expected ----------------------------------


def dispatch(invoker: ServiceInvoker, address: str) -> CallOutcome:
    return invoker.call(
        make_service(address, headers={"X-Api-Version": "7"}),
        {"message": "hello"},
        event_id="evt-1",
        step=0,
        timeout=5,
        extra_headers={
            "X-Machinery-Callback-Url": "https://api.example.test/callbacks/tkn",
            "Idempotency-Key": "forged",
        },
        expect_body=False,
    )


@pytest.mark.parametrize("body", [b"", b"accepted", b'["queued"]'], ids=["empty", "text", "array"])
def test_a_dispatch_takes_any_2xx_as_accepted_whatever_the_body(
    invoker: ServiceInvoker, loopback: Loopback, body: bytes
) -> None:
    # Given a callback service that answers 202 with a body that is no JSON object
    loopback.routes["/translate"] = lambda: reply(202, body)

    # When the step is dispatched to it
    outcome = dispatch(invoker, loopback.url + "/translate")

    # Then the work counts as accepted, with no outputs
    assert (outcome.status_code, outcome.body, outcome.error) == (202, None, None)


def test_a_dispatch_sends_the_extra_headers_but_never_overrides_the_contract_ones(
    invoker: ServiceInvoker, loopback: Loopback
) -> None:
    loopback.routes["/translate"] = lambda: reply(202, b"")

    dispatch(invoker, loopback.url + "/translate")

    [request] = loopback.received
    assert request.headers["X-Machinery-Callback-Url"] == "https://api.example.test/callbacks/tkn"
    assert request.headers["X-Api-Version"] == "7"
    assert request.headers["Idempotency-Key"] == "evt-1:0"
    assert json.loads(request.body) == {"message": "hello"}


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (404, False)])
def test_a_dispatch_refused_is_classified_like_a_call(
    invoker: ServiceInvoker, loopback: Loopback, status: int, retryable: bool
) -> None:
    loopback.routes["/translate"] = lambda: reply(status, b"")

    outcome = dispatch(invoker, loopback.url + "/translate")

    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.status_code, outcome.error.retryable) == (
        "HttpError",
        status,
        retryable,
    )


def test_without_expect_body_false_an_empty_202_is_not_json(
    invoker: ServiceInvoker, loopback: Loopback
) -> None:
    # The default still insists on a JSON object, so a sync service cannot just answer 202
    loopback.routes["/upper"] = lambda: reply(202, b"")

    outcome = call(invoker, loopback.url + "/upper")

    assert outcome.error is not None and outcome.error.type == "InvalidResponse"


# --- deliver: completion notifications ---------------------------------------------------


def test_deliver_posts_the_bytes_and_headers_as_given(
    invoker: ServiceInvoker, loopback: Loopback
) -> None:
    loopback.routes["/hook"] = lambda: reply(204, b"")
    body = b'{"event_id":"evt-1","status":"SUCCEEDED"}'

    answer = invoker.deliver(
        loopback.url + "/hook", body, {"Content-Type": "application/json", "X-Sig": "abc"}
    )

    assert answer == (204, None)
    [request] = loopback.received
    assert (request.method, request.path, request.body) == ("POST", "/hook", body)
    assert (request.headers["Content-Type"], request.headers["X-Sig"]) == (
        "application/json",
        "abc",
    )


@pytest.mark.parametrize("status", [500, 404, 302])
def test_deliver_reports_a_non_2xx_answer(
    invoker: ServiceInvoker, loopback: Loopback, status: int
) -> None:
    loopback.routes["/hook"] = lambda: reply(status, b"", Location="/elsewhere")

    answer = invoker.deliver(loopback.url + "/hook", b"{}", {})

    assert answer == (status, f"the receiver answered {status}")
    assert [r.path for r in loopback.received] == ["/hook"]  # a redirect is not followed


def test_deliver_reports_a_refused_connection(invoker: ServiceInvoker) -> None:
    port = free_port()

    status, problem = invoker.deliver(f"http://127.0.0.1:{port}/hook", b"{}", {})

    assert status is None
    assert problem is not None and problem.startswith("ConnectionError: ")


def test_deliver_gives_up_after_its_timeout(invoker: ServiceInvoker, loopback: Loopback) -> None:
    def held() -> Reply:
        loopback.release.wait(timeout=5)
        return reply(200, b"")

    loopback.routes["/hook"] = held

    status, problem = invoker.deliver(loopback.url + "/hook", b"{}", {}, timeout=0.2)
    loopback.release.set()

    assert status is None
    assert problem is not None and "Timeout" in problem


def test_the_call_connects_to_the_address_the_guard_checked(
    loopback: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a name the guard resolves to loopback, and a system resolver that would not
    # resolve it at all (a second lookup at connect time is the DNS-rebinding window)
    real_getaddrinfo = socket.getaddrinfo

    def numeric_only(host: str, *args: Any, **kwargs: Any) -> Any:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise socket.gaierror(f"{host}: the test allows no DNS lookup") from None
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)
    port = int(loopback.url.rsplit(":", 1)[1])
    policy = AddressPolicy.parse(
        LOOPBACK_HOSTS, resolver=FakeResolver({"pinned.test": ["127.0.0.1"]})
    )
    invoker = ServiceInvoker(requests.Session(), address_policy=policy)
    loopback.routes["/upper"] = lambda: reply(200, b'{"message": "HELLO"}')

    # When it is called by name
    outcome = invoker.call(
        make_service(f"http://pinned.test:{port}/upper"),
        {"message": "hello"},
        event_id="evt-1",
        step=0,
        timeout=5,
    )

    # Then the connection went to the checked address, and the name stayed in the Host header
    assert outcome.error is None, outcome.error
    [request] = loopback.received
    assert request.headers["Host"] == f"pinned.test:{port}"
