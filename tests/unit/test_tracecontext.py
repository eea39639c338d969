"""W3C Trace Context, as the intake begins an event's trace and each call carries it."""

from __future__ import annotations

import re

import pytest

from machinery_core.domain import tracecontext
from machinery_core.domain.engine import error_category
from machinery_core.domain.models import ErrorInfo, TraceContext

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def test_a_clients_traceparent_gives_the_trace_id_and_flags() -> None:
    trace = tracecontext.begin(f"00-{TRACE_ID}-00f067aa0ba902b7-00", "congo=t61rcWkgMzE", XRAY)
    assert (trace.trace_id, trace.flags, trace.state) == (TRACE_ID, "00", "congo=t61rcWkgMzE")
    # and the X-Ray trace of the invocation is recorded beside it
    assert trace.xray_trace_id == "1-5759e988-bd862e3fe1be46a994272793"


def test_a_future_version_with_more_fields_is_read_as_version_00() -> None:
    assert tracecontext.parse_traceparent(f"01-{TRACE_ID}-00f067aa0ba902b7-01-more") == (
        TRACE_ID,
        "01",
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra",  # version 00 has exactly four fields
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01",
        f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01",
    ],
)
def test_an_invalid_traceparent_is_not_taken(value: str | None) -> None:
    assert tracecontext.parse_traceparent(value) is None


def test_without_a_client_trace_the_xray_trace_is_taken_in_w3c_form() -> None:
    trace = tracecontext.begin(None, "ignored=1", XRAY)
    assert trace.trace_id == "5759e988bd862e3fe1be46a994272793"
    assert trace.state is None  # a tracestate without its traceparent means nothing


def test_without_either_a_new_trace_begins_each_time() -> None:
    first, second = tracecontext.begin(None, None, None), tracecontext.begin(None, None, "x")
    assert re.fullmatch(r"[0-9a-f]{32}", first.trace_id)
    assert first.trace_id != second.trace_id
    assert (first.flags, first.xray_trace_id, second.xray_trace_id) == ("01", None, None)


@pytest.mark.parametrize(
    ("state", "kept"),
    [
        ("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        ("not a member", None),
        ("k=" + "v" * 600, None),
        (",".join(f"k{n}=v" for n in range(33)), None),
    ],
)
def test_a_tracestate_is_passed_on_only_when_well_formed(state: str, kept: str | None) -> None:
    assert tracecontext.parse_tracestate(state) == kept


def test_each_call_gets_the_events_trace_and_a_parent_id_of_its_own() -> None:
    trace = TraceContext(trace_id=TRACE_ID, state="rojo=1")
    first, second = tracecontext.headers(trace), tracecontext.headers(trace)
    for sent in (first, second):
        assert re.fullmatch(rf"00-{TRACE_ID}-[0-9a-f]{{16}}-01", sent["traceparent"])
        assert sent["tracestate"] == "rojo=1"
    assert first["traceparent"] != second["traceparent"]
    assert "tracestate" not in tracecontext.headers(TraceContext(trace_id=TRACE_ID))


@pytest.mark.parametrize(
    ("error", "category"),
    [
        (ErrorInfo(type="Timeout", message="m"), "timeout"),
        (ErrorInfo(type="ConnectionError", message="m"), "connection"),
        (ErrorInfo(type="AddressRefused", message="m"), "refused"),
        (ErrorInfo(type="HttpError", message="m", status_code=429), "throttled"),
        (ErrorInfo(type="HttpError", message="m", status_code=503), "5xx"),
        (ErrorInfo(type="HttpError", message="m", status_code=404), "4xx"),
        (ErrorInfo(type="InvalidResponse", message="m", status_code=200), "invalid_output"),
        (ErrorInfo(type="OutputInvalid", message="m"), "invalid_output"),
        (ErrorInfo(type="InputInvalid", message="m"), "invalid_input"),
        (ErrorInfo(type="CallbackTimeout", message="m"), "callback_timeout"),
        (ErrorInfo(type="ServiceError", message="m"), "reported"),
        (ErrorInfo(type="AnythingAServiceSays", message="m"), "other"),
    ],
)
def test_a_calls_error_has_one_of_a_few_types(error: ErrorInfo, category: str) -> None:
    from machinery_core.contract import ERROR_TYPES

    assert error_category(error) == category
    assert category in ERROR_TYPES
