"""Any method, any path, never 5xx: what no route takes is API Gateway's own JSON 404, and
what the HTTP layer refuses (a malformed request) is JSON too, never an HTML page."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

pytestmark = pytest.mark.e2e

NOT_FOUND = {"message": "Not Found"}


def _request(stack: Any, method: str, path: str, **kwargs: Any) -> requests.Response:
    answer: requests.Response = stack.http.request(method, stack.url + path, timeout=10, **kwargs)
    return answer


def _raw(stack: Any, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as it is on a new connection; the status, headers and body answered."""
    parts = urlsplit(stack.url)
    assert parts.hostname == "127.0.0.1"
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            assert chunk, received
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers["Content-Length"])
        while len(body) < length:
            chunk = connection.recv(65536)
            assert chunk
            body += chunk
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("TRACE", "/health"),
        ("PATCH", "/health"),
        ("OPTIONS", "/health"),  # no CORS configured: API Gateway routes OPTIONS like any method
        ("OPTIONS", "/services"),
        ("DELETE", "/health"),
        ("PATCH", "/services/upper"),
        ("POST", "/events/no-such-event"),
        ("PROPFIND", "/health"),
        ("FOO", "/services"),
        ("CONNECT", "/health"),
        ("GET", "/nowhere"),
        ("GET", "/services/upper/extra"),
        ("GET", "/"),
    ],
)
def test_a_method_and_path_no_route_takes_answers_json_404(
    local_stack: Any, method: str, path: str
) -> None:
    # When a request no route takes is sent
    answer = _request(local_stack, method, path, data=b'{"a": 1}')

    # Then it is API Gateway's own answer: 404, JSON
    assert answer.status_code == 404, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == NOT_FOUND


def test_head_answers_404_without_a_body_and_the_connection_stays_usable(
    local_stack: Any,
) -> None:
    # Given one connection
    http = requests.Session()

    # When HEAD is sent (no route takes HEAD), then a GET on the same connection
    head = http.head(local_stack.url + "/health", timeout=10)
    health = http.get(local_stack.url + "/health", timeout=10)

    # Then HEAD is a 404 with no body, and the next request is answered as usual
    assert head.status_code == 404
    assert head.content == b""
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


def test_trace_on_a_raw_connection_is_json(local_stack: Any) -> None:
    status, headers, body = _raw(
        local_stack, b"TRACE /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )

    assert (status, headers["Content-Type"]) == (404, "application/json")
    assert body == b'{"message": "Not Found"}'


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT A REQUEST LINE AT ALL\r\n\r\n", 400),
        (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 505),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"POST /services HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n", 400),
        (b"POST /services HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
        (b"POST /services HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n", 413),
        (b"POST /services HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
    ids=[
        "garbage",
        "version",
        "uri-too-long",
        "length-nan",
        "length-negative",
        "too-large",
        "chunk",
    ],
)
def test_a_malformed_request_is_answered_in_json_and_the_connection_closed(
    local_stack: Any, request_bytes: bytes, status: int
) -> None:
    # When the HTTP layer cannot take a request
    answered, headers, body = _raw(local_stack, request_bytes)

    # Then it answers JSON as API Gateway would, never http.server's HTML error page
    assert answered == status
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert body.startswith(b'{"message": ')


def test_a_chunked_body_is_read(local_stack: Any) -> None:
    # Given a body sent in chunks (requests sends a generator that way)
    def chunks() -> Any:
        yield b'{"name": "chunked-'
        yield b'nowhere"}'

    # When it is sent to a route that reads it
    answer = _request(local_stack, "POST", "/services", data=chunks())

    # Then the route got the whole body (and refused it for what it says: no address, no spec)
    assert answer.status_code == 422, answer.text
    assert {detail["path"] for detail in answer.json()["details"]} >= {"address"}
