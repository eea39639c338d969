"""What the server and the `machinery` command must agree on: statuses, limits, durations.

Standard library only: the command imports it at start-up, where pydantic and boto3 would
cost it about 100 ms (docs/architecture.md, "Layers").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum


class EventStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in ENDED


ENDED = frozenset({EventStatus.SUCCEEDED, EventStatus.FAILED, EventStatus.CANCELLED})


class StepStatus(StrEnum):
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    WAITING = "WAITING"  # for a callback
    SUCCEEDED = "SUCCEEDED"
    SKIPPED = "SKIPPED"  # its `when` did not hold
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# An EXPRESS execution ends at five minutes. An invocation keeps the last SEGMENT_MARGIN of
# them for what follows its last call (the checkpoint, the answer, the next states): a
# backoff, or a call, that would end later ends the execution (a segment of the event's run)
# and a timer, or a fresh execution, goes on. A sync call on EXPRESS may therefore take at
# most EXPRESS_MAX_CALL_SECONDS (registration refuses a longer timeout), and a run goes on in
# a fresh execution when less than MIN_SEGMENT_SECONDS is left of this one.
EXPRESS_EXECUTION_SECONDS = 300
SEGMENT_MARGIN_SECONDS = 30
EXPRESS_MAX_CALL_SECONDS = 240
MIN_SEGMENT_SECONDS = 5

# The longest sync wait on POST /e/{workflow_id}?wait=N: API Gateway answers within 30 s.
MAX_WAIT_SECONDS = 25
# The largest request body the API reads (API Gateway's own limit is 10 MB).
MAX_BODY_BYTES = 256 * 1024
MAX_IDEMPOTENCY_KEY = 256
# How many times `machinery send` sends again when the API answers 429 or 503 (throttled or
# busy: nothing was acknowledged), after the Retry-After it gives.
SEND_RETRIES = 5
# A payload (event data, a step's input or output, the context, the outputs) whose JSON is
# larger than this is stored in the payload bucket and the event item keeps its reference:
# an event item stays far below DynamoDB's 400 KB whatever its steps pass each other.
PAYLOAD_THRESHOLD_BYTES = 16 * 1024
# And when payloads each under it add up past this (many steps), the largest of them go too:
# a step's write is billed by the item's size, and the item stays far from 400 KB.
EVENT_ITEM_BUDGET_BYTES = 64 * 1024
# What GET /events/{id} answers inline of the payloads stored apart; past it, a link each.
# Well under Lambda's 6 MB response (and API Gateway's 10 MB), and quick to read.
EVENT_INLINE_BYTES = 1024 * 1024
# The same for one step, GET /events/{id}/steps/{step}.
STEP_INLINE_BYTES = 4 * 1024 * 1024
# The listing shards a workflow's event entries spread over (template.yaml's
# EventIndexShards): an index partition takes about 1,000 write units a second and an event
# writes its entry 3 times (created, running, ended), so 16 shards take 5,000 events a
# second of one workflow. Raise it, never lower it: entries in the shards above the new
# count would no longer be listed.
EVENT_INDEX_SHARDS = 16


class StatsWindow(StrEnum):
    """The windows GET /workflows/{workflow_id}/stats takes: the last hour, day or week."""

    HOUR = "1h"
    DAY = "24h"
    WEEK = "7d"

    @property
    def length(self) -> timedelta:
        return _WINDOW_LENGTHS[self]


_WINDOW_LENGTHS = {
    StatsWindow.HOUR: timedelta(hours=1),
    StatsWindow.DAY: timedelta(hours=24),
    StatsWindow.WEEK: timedelta(days=7),
}
# The most events a workflow's statistics read: the newest of the window (its answer's
# `sample.cut` says when the window held more).
STATS_EVENT_LIMIT = 1000


def retry_after_seconds(retry_after: str | None, now: datetime) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP date, RFC 9110) as seconds from `now`,
    never below 0; None when there is none or it is neither (a service's answer, the API's)."""
    if not retry_after:
        return None
    value = retry_after.strip()
    if value.isascii() and value.isdigit():  # isdigit alone takes "²", which float refuses
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # RFC 5322's "-0000": a time in UTC, zone unknown
        moment = moment.replace(tzinfo=UTC)
    return max((moment - now).total_seconds(), 0.0)


def duration_text(milliseconds: float | None) -> str:
    """A duration as every view shows it (CLI, diagrams, dashboard): ms below a second."""
    if milliseconds is None:
        return "-"
    if milliseconds < 1000:
        return f"{milliseconds:.1f} ms"
    return f"{milliseconds / 1000:.2f} s"


# Who may call each route of a deployed API with IAM authorization: template.yaml's two
# managed policies, the consumer's (send events, follow and steer them, read definitions)
# and the management's (everything, changing services and workflows included). The callback
# route is in neither: its single-use token is its credential. Every route has its line here;
# tests/integration/test_api_policies.py fails on a route without one and on a policy of the
# template that disagrees.
CONSUMER_POLICY = "MachineryConsumerPolicy"
MANAGEMENT_POLICY = "MachineryManagementPolicy"
_BOTH = (CONSUMER_POLICY, MANAGEMENT_POLICY)
ROUTE_POLICIES: dict[str, tuple[str, ...]] = {
    "POST /services": (MANAGEMENT_POLICY,),
    "GET /services": _BOTH,
    "GET /services/{name}": _BOTH,
    "PUT /services/{name}": (MANAGEMENT_POLICY,),
    "DELETE /services/{name}": (MANAGEMENT_POLICY,),
    "GET /services/{name}/versions": _BOTH,
    "GET /services/{name}/versions/{version}": _BOTH,
    "POST /workflows": (MANAGEMENT_POLICY,),
    "GET /workflows": _BOTH,
    "GET /workflows/{workflow_id}": _BOTH,
    "PUT /workflows/{workflow_id}": (MANAGEMENT_POLICY,),
    "DELETE /workflows/{workflow_id}": (MANAGEMENT_POLICY,),
    "GET /workflows/{workflow_id}/events": _BOTH,
    "GET /workflows/{workflow_id}/diagram": _BOTH,
    "GET /workflows/{workflow_id}/stats": _BOTH,
    "GET /workflows/{workflow_id}/versions": _BOTH,
    "GET /workflows/{workflow_id}/versions/{version}": _BOTH,
    "PUT /workflows/{workflow_id}/live": (MANAGEMENT_POLICY,),
    "POST /callbacks/{token}": (),
    "POST /e/{workflow_id}": _BOTH,
    "POST /events/{event_id}/cancel": _BOTH,
    "POST /events/{event_id}/retry": _BOTH,
    "GET /events/{event_id}": _BOTH,
    "GET /events/{event_id}/diagram": _BOTH,
    "GET /events/{event_id}/steps/{step}": _BOTH,
    "GET /events/{event_id}/payloads/{ref}": _BOTH,
    "GET /openapi.json": _BOTH,
    "GET /health": _BOTH,
    "GET /ui": _BOTH,
}


def route_of(method: str, path: str) -> str | None:
    """The route ("METHOD /template") that a request's method and path (no query) match."""
    asked = path.rstrip("/").split("/") if path != "/" else [""]
    for route in ROUTE_POLICIES:
        route_method, _, template = route.partition(" ")
        parts = template.split("/")
        if route_method == method.upper() and len(parts) == len(asked):
            if all(p == a or (p.startswith("{") and a) for p, a in zip(parts, asked, strict=True)):
                return route
    return None


# --- metrics (CloudWatch, embedded metric format: runtime/observability.py) ----------------
# Every record carries the deployment's dimension `service` = METRICS_SERVICE (powertools'
# default dimension); each metric is recorded under each of its dimension sets, so an alarm
# or a graph takes the whole deployment ("service" alone) or one workflow, one called
# service, one error type. No dimension is ever unbounded (an event id, a URL): those go in
# the logs. template.yaml's dashboard and alarms name these, and a test holds them to it.
METRICS_NAMESPACE = "Machinery"
METRICS_SERVICE = "machinery"
WORKFLOW_DIMENSION = "workflow"
CALLED_SERVICE_DIMENSION = "service_name"
ERROR_TYPE_DIMENSION = "error_type"
_DEPLOYMENT: tuple[str, ...] = ("service",)
_PER_WORKFLOW = (_DEPLOYMENT, ("service", WORKFLOW_DIMENSION))
_PER_SERVICE = (_DEPLOYMENT, ("service", CALLED_SERVICE_DIMENSION))


@dataclass(frozen=True)
class MetricSpec:
    unit: str
    dimension_sets: tuple[tuple[str, ...], ...]
    meaning: str


METRICS: dict[str, MetricSpec] = {
    "EventsAccepted": MetricSpec("Count", _PER_WORKFLOW, "events acknowledged (202)"),
    "EventsSucceeded": MetricSpec("Count", _PER_WORKFLOW, "events that ended SUCCEEDED"),
    "EventsFailed": MetricSpec("Count", _PER_WORKFLOW, "events that ended FAILED"),
    "EventsCancelled": MetricSpec("Count", _PER_WORKFLOW, "events that ended CANCELLED"),
    "EventDuration": MetricSpec(
        "Milliseconds", _PER_WORKFLOW, "from acknowledgement to end, per ended event"
    ),
    "ServiceCalls": MetricSpec("Count", _PER_SERVICE, "HTTP calls to a service (each attempt)"),
    "ServiceCallLatency": MetricSpec(
        "Milliseconds", _PER_SERVICE, "how long each call took, answered or not"
    ),
    "ServiceCallFailures": MetricSpec(
        "Count",
        (*_PER_SERVICE, ("service", CALLED_SERVICE_DIMENSION, ERROR_TYPE_DIMENSION)),
        "calls that failed, by error type (ERROR_TYPES)",
    ),
    "ServiceCallRetries": MetricSpec(
        "Count", _PER_SERVICE, "failed calls that will be tried again (after a backoff)"
    ),
    "CallbackWaitTime": MetricSpec(
        "Milliseconds", _PER_SERVICE, "from a callback service's dispatch to its callback"
    ),
    "NotificationsDelivered": MetricSpec(
        "Count", _PER_WORKFLOW, "completion notifications the receiver accepted (2xx)"
    ),
    "NotificationsFailed": MetricSpec(
        "Count", _PER_WORKFLOW, "completion notification attempts that were not accepted"
    ),
}
# The values of the error_type dimension (domain.engine.error_category).
ERROR_TYPES = (
    "timeout",  # no answer in the service's timeout
    "connection",  # no connection, or the request could not be sent
    "refused",  # the address guard refused the address
    "throttled",  # 429
    "5xx",
    "4xx",
    "invalid_output",  # not JSON, not an object, too large, or outputs not as declared
    "invalid_input",  # the step's input did not match the service's inputs
    "callback_timeout",  # a callback service did not call back in time
    "reported",  # a callback service reported an error
    "other",
)
