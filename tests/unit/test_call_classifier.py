"""`classify`, the pure half of a call: what each answer, or each failure to get one, means
for the step, with no socket (the unit tier opens none); tests/integration/test_invoker.py
covers the network half."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import requests
import urllib3.exceptions
from builders import T0, at

from machinery_core.adapters.addresses import AddressRefused, UnresolvedHost
from machinery_core.adapters.invoker import MAX_RESPONSE_BYTES, Answer, NoAnswer, classify
from machinery_core.domain.engine import CallOutcome
from machinery_core.domain.models import ErrorInfo

ENDED = at(0.25)
TIMEOUT = 5.0
HELLO = b'{"message": "HELLO"}'
TIMED = CallOutcome(started_at=T0, ended_at=ENDED)  # every row is timed the same


def outcome(
    status: int | None = None,
    *,
    body: dict[str, Any] | None = None,
    error: ErrorInfo | None = None,
    retry_after: float | None = None,
) -> CallOutcome:
    return replace(TIMED, status_code=status, body=body, error=error, retry_after=retry_after)


def http_error(status: int, *, retryable: bool) -> ErrorInfo:
    return ErrorInfo(
        type="HttpError",
        message=f"the service answered {status}",
        status_code=status,
        retryable=retryable,
    )


def final(kind: str, message: str, status: int | None = 200) -> ErrorInfo:
    return ErrorInfo(type=kind, message=message, status_code=status, retryable=False)


def retryable(kind: str, message: str) -> ErrorInfo:
    return ErrorInfo(type=kind, message=message, status_code=None, retryable=True)


def bare_http_errors(*statuses: int, retryable: bool) -> list[Any]:
    """A row per status, answered with no body: an HttpError whatever the call expects."""
    return [
        pytest.param(
            Answer(status),
            outcome(status, error=http_error(status, retryable=retryable)),
            id=str(status),
        )
        for status in statuses
    ]


NOT_JSON = final("InvalidResponse", "the answer is not JSON")
NOT_OBJECT = final("InvalidResponse", "the answer is JSON but not an object")
TOO_LARGE = final("ResponseTooLarge", f"the answer exceeds {MAX_RESPONSE_BYTES} bytes")
PADDING = MAX_RESPONSE_BYTES - len(b'{"m": ""}')
EXACTLY_AT_LIMIT = b'{"m": "' + b"x" * PADDING + b'"}'
CUT_AT_LIMIT = HELLO[:-1]  # what is kept of a body that went on past the limit


def http_date(moment: timedelta) -> str:
    return (T0 + moment).strftime("%a, %d %b %Y %H:%M:%S GMT")


SYNC_CALL = [
    # a 2xx answer must carry the outputs: one JSON object, within the size limit
    pytest.param(Answer(200, HELLO), outcome(200, body={"message": "HELLO"}), id="200-object"),
    pytest.param(Answer(201, b"{}"), outcome(201, body={}), id="201-empty-object"),
    pytest.param(
        Answer(200, HELLO, retry_after="7"),
        outcome(200, body={"message": "HELLO"}),
        id="200-ignores-retry-after",
    ),
    pytest.param(
        Answer(200, EXACTLY_AT_LIMIT),
        outcome(200, body={"m": "x" * PADDING}),
        id="200-exactly-at-the-limit",
    ),
    pytest.param(
        Answer(200, CUT_AT_LIMIT, over_limit=True), outcome(200, error=TOO_LARGE), id="200-too-big"
    ),
    pytest.param(Answer(200, b"<html>oops</html>"), outcome(200, error=NOT_JSON), id="200-html"),
    pytest.param(Answer(200, b""), outcome(200, error=NOT_JSON), id="200-empty"),
    pytest.param(Answer(200, b"\xff\xfe{"), outcome(200, error=NOT_JSON), id="200-not-utf8"),
    pytest.param(Answer(200, b'["HELLO"]'), outcome(200, error=NOT_OBJECT), id="200-array"),
    pytest.param(Answer(200, b'"HELLO"'), outcome(200, error=NOT_OBJECT), id="200-string"),
    pytest.param(Answer(200, b"null"), outcome(200, error=NOT_OBJECT), id="200-null"),
    pytest.param(
        Answer(202, b""),
        outcome(202, error=final("InvalidResponse", "the answer is not JSON", 202)),
        id="202-empty-is-no-outputs",
    ),
    pytest.param(
        Answer(204),
        outcome(204, error=final("InvalidResponse", "the answer is not JSON", 204)),
        id="204-no-content",
    ),
    # a redirect is never followed, so it is a final answer
    *bare_http_errors(301, 302, 304, 307, 308, retryable=False),
    # a client error will not change on a retry, whatever Retry-After says
    *bare_http_errors(400, 401, 403, 404, 409, 422, retryable=False),
    pytest.param(
        Answer(403, retry_after="7"),
        outcome(403, error=http_error(403, retryable=False)),
        id="403-ignores-retry-after",
    ),
    # throttling and server errors are retried, after Retry-After when the service sends one
    *bare_http_errors(429, 500, 502, 503, 504, 599, retryable=True),
    pytest.param(
        Answer(500, CUT_AT_LIMIT, over_limit=True),
        outcome(500, error=http_error(500, retryable=True)),
        id="500-too-big-is-still-a-500",
    ),
    *(
        pytest.param(
            Answer(status, retry_after=header),
            outcome(status, error=http_error(status, retryable=True), retry_after=seconds),
            id=f"{status}-retry-after-{name}",
        )
        for name, status, header, seconds in [
            ("seconds", 429, "7", 7.0),
            ("padded", 503, " 7 ", 7.0),
            ("capped-at-an-hour", 503, "7200", 3600.0),
            ("date-counts-from-the-start", 429, http_date(timedelta(seconds=30)), 30.0),
            ("far-date-capped-at-an-hour", 503, "Wed, 21 Oct 2099 07:28:00 GMT", 3600.0),
            ("past-date-is-now", 503, http_date(-timedelta(minutes=5)), 0.0),
            ("word-ignored", 503, "soon", None),
            ("negative-ignored", 503, "-5", None),
            ("empty-ignored", 503, "", None),
            ("blank-ignored", 503, "  ", None),
        ]
    ),
    # no answer: refused by the address guard before sending, or the request failed
    *(
        pytest.param(NoAnswer(failure), outcome(error=error), id=name)
        for name, failure, error in [
            (
                "address-refused",
                AddressRefused("metadata.example resolves to the cloud metadata endpoint"),
                final(
                    "AddressRefused",
                    "metadata.example resolves to the cloud metadata endpoint",
                    None,
                ),
            ),
            (
                "address-does-not-resolve",
                UnresolvedHost("nowhere.invalid does not resolve"),
                retryable("DnsError", "nowhere.invalid does not resolve"),
            ),
            (
                "read-timeout",
                requests.ReadTimeout("Read timed out. (read timeout=5)"),
                retryable("Timeout", "no answer within 5s: Read timed out. (read timeout=5)"),
            ),
            (
                "connect-timeout-is-a-timeout-not-a-connection-error",
                requests.ConnectTimeout("timed out"),
                retryable("Timeout", "no answer within 5s: timed out"),
            ),
            (
                "body-stalls-mid-read",
                urllib3.exceptions.ReadTimeoutError(None, "/upper", "Read timed out."),
                retryable("Timeout", "no answer within 5s: None: Read timed out."),
            ),
            (
                "connection-refused",
                requests.ConnectionError("[Errno 111] Connection refused"),
                retryable("ConnectionError", "[Errno 111] Connection refused"),
            ),
            (
                "body-cut-short",
                urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead"),
                retryable("ConnectionError", "Connection broken: IncompleteRead"),
            ),
            (
                "body-undecodable",
                urllib3.exceptions.DecodeError("failed to decode gzip"),
                retryable("ConnectionError", "failed to decode gzip"),
            ),
            (
                "request-that-cannot-be-sent",
                requests.exceptions.InvalidHeader("Invalid leading whitespace"),
                final("RequestError", "Invalid leading whitespace", None),
            ),
        ]
    ),
]


@pytest.mark.parametrize(("answer", "expected"), SYNC_CALL)
def test_a_sync_call_is_classified(answer: Answer | NoAnswer, expected: CallOutcome) -> None:
    classified = classify(answer, timeout=TIMEOUT, expect_body=True, started_at=T0, ended_at=ENDED)

    assert classified == expected


ACCEPTED_202 = outcome(202)
DISPATCH = [
    # a callback service only has to take the work: any 2xx, whatever its body
    pytest.param(Answer(202, b""), ACCEPTED_202, id="202-empty"),
    pytest.param(Answer(202, b"accepted"), ACCEPTED_202, id="202-text"),
    pytest.param(Answer(202, b'["queued"]'), ACCEPTED_202, id="202-array"),
    pytest.param(Answer(202, CUT_AT_LIMIT, over_limit=True), ACCEPTED_202, id="202-too-big"),
    pytest.param(Answer(200, HELLO), outcome(200), id="200-object-is-not-outputs"),
    pytest.param(Answer(204), outcome(204), id="204"),
    # a refusal is classified as on a sync call
    pytest.param(
        Answer(302), outcome(302, error=http_error(302, retryable=False)), id="302-not-followed"
    ),
    pytest.param(Answer(404), outcome(404, error=http_error(404, retryable=False)), id="404"),
    pytest.param(Answer(500), outcome(500, error=http_error(500, retryable=True)), id="500"),
    pytest.param(
        Answer(429, retry_after="7"),
        outcome(429, error=http_error(429, retryable=True), retry_after=7.0),
        id="429-retry-after",
    ),
    pytest.param(
        NoAnswer(requests.ConnectionError("[Errno 111] Connection refused")),
        outcome(error=retryable("ConnectionError", "[Errno 111] Connection refused")),
        id="connection-refused",
    ),
]


@pytest.mark.parametrize(("answer", "expected"), DISPATCH)
def test_a_callback_dispatch_is_classified(
    answer: Answer | NoAnswer, expected: CallOutcome
) -> None:
    classified = classify(answer, timeout=TIMEOUT, expect_body=False, started_at=T0, ended_at=ENDED)

    assert classified == expected


@pytest.mark.parametrize(("timeout", "shown"), [(0.2, "0.2s"), (10.0, "10s"), (1.5, "1.5s")])
def test_a_timeout_names_the_time_the_request_was_allowed(timeout: float, shown: str) -> None:
    classified = classify(
        NoAnswer(requests.ReadTimeout("read timed out")),
        timeout=timeout,
        expect_body=True,
        started_at=T0,
        ended_at=ENDED,
    )

    assert classified.error is not None
    assert classified.error.message == f"no answer within {shown}: read timed out"


def test_the_timing_is_the_one_the_invoker_measured() -> None:
    classified = classify(
        Answer(200, HELLO), timeout=TIMEOUT, expect_body=True, started_at=T0, ended_at=at(1.5)
    )

    assert (classified.started_at, classified.ended_at, classified.duration_ms) == (
        T0,
        at(1.5),
        1500.0,
    )


# A date the parser leaves without a zone (-0000), or a digit str.isdigit takes but float
# does not (a superscript), once raised out of the call.
@pytest.mark.parametrize(
    ("header", "expected"),
    [(http_date(timedelta(seconds=30)).replace("GMT", "-0000"), 30.0), ("\u00b2", None)],
    ids=["date-in-minus-zero-zone", "superscript-digit"],
)
def test_a_retry_after_the_parser_trips_on_still_classifies(
    header: str, expected: float | None
) -> None:
    classified = classify(
        Answer(503, retry_after=header),
        timeout=TIMEOUT,
        expect_body=True,
        started_at=T0,
        ended_at=ENDED,
    )

    assert classified.retry_after == expected
