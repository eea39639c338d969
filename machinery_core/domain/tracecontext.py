"""W3C Trace Context (https://www.w3.org/TR/trace-context/): one trace per event.

An event's trace id is the client's, when its request carried a valid `traceparent`; else
the one of the API invocation's X-Ray trace, when Lambda traces (X-Ray takes W3C trace ids:
`1-5759e988-bd862e3fe1be46a994272793` is `5759e988bd862e3fe1be46a994272793`), so that the
services' spans land in the same trace; else a new one. Every call to a service and every
completion notification carries `traceparent: 00-{trace id}-{a new parent id}-{flags}` (and
the client's `tracestate`), so a service that traces (OpenTelemetry, X-Ray with W3C) joins
the event's trace, each call its own span's parent.
"""

from __future__ import annotations

import re
import secrets

from machinery_core.domain.models import TraceContext

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_XRAY_ROOT = re.compile(r"^1-([0-9a-f]{8})-([0-9a-f]{24})$")
_INVALID_TRACE_ID = "0" * 32
_INVALID_PARENT_ID = "0" * 16
# tracestate: at most 32 list members of `key=value`, 512 characters kept (the spec lets a
# vendor drop what it cannot carry: better none than a malformed one passed on)
_TRACESTATE_MEMBER = re.compile(
    r"^[a-z0-9][a-z0-9_\-*/@]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}$"
)
MAX_TRACESTATE = 512
SAMPLED = "01"


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, flags) of a valid `traceparent`, else None (the spec: restart the trace)."""
    if not value:
        return None
    found = _TRACEPARENT.match(value.strip())
    if found is None:
        return None
    version, trace_id, parent_id, flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == _INVALID_TRACE_ID or parent_id == _INVALID_PARENT_ID:
        return None
    return trace_id, flags


def parse_tracestate(value: str | None) -> str | None:
    """A `tracestate` to pass on as it came, when it is well formed and short enough."""
    if not value:
        return None
    members = [member.strip() for member in value.split(",") if member.strip()]
    if not members or len(members) > 32:
        return None
    if not all(_TRACESTATE_MEMBER.match(member) for member in members):
        return None
    text = ",".join(members)
    return text if len(text) <= MAX_TRACESTATE else None


def xray_root(trace_header: str | None) -> str | None:
    """The `Root` of an X-Ray trace header (`Root=1-...;Parent=...;Sampled=1`), if any."""
    for part in (trace_header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root" and _XRAY_ROOT.match(value):
            return value
    return None


def from_xray(root: str) -> str:
    """The W3C trace id of an X-Ray trace id (its time and its random part, hex)."""
    found = _XRAY_ROOT.match(root)
    if found is None:
        raise ValueError(f"not an X-Ray trace id: {root!r}")
    return found.group(1) + found.group(2)


def begin(
    traceparent: str | None, tracestate: str | None, xray_trace_header: str | None
) -> TraceContext:
    """The trace of a new event: the client's, else the X-Ray invocation's, else new."""
    root = xray_root(xray_trace_header)
    client = parse_traceparent(traceparent)
    if client is not None:
        trace_id, flags = client
        state = parse_tracestate(tracestate)
    else:
        trace_id = from_xray(root) if root is not None else new_trace_id()
        flags, state = SAMPLED, None
    return TraceContext(trace_id=trace_id, flags=flags, state=state, xray_trace_id=root)


def new_trace_id() -> str:
    while True:
        trace_id = secrets.token_hex(16)
        if trace_id != _INVALID_TRACE_ID:
            return trace_id


def new_parent_id() -> str:
    while True:
        parent_id = secrets.token_hex(8)
        if parent_id != _INVALID_PARENT_ID:
            return parent_id


def headers(trace: TraceContext) -> dict[str, str]:
    """What one outgoing call carries: the event's trace, a parent id of its own."""
    found = {"traceparent": f"00-{trace.trace_id}-{new_parent_id()}-{trace.flags}"}
    if trace.state:
        found["tracestate"] = trace.state
    return found
