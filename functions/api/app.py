"""The HTTP API: registry, event intake and event status (API Gateway HTTP API -> Lambda)."""

from __future__ import annotations

import base64
import json
import os
import re
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import (
    APIKey,
    Contact,
    License,
    SecurityScheme,
    Tag,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import (
    OpenAPIResponse,
    OpenAPIResponseHeader,
)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from machinery_core import __version__
from machinery_core.contract import (
    MAX_BODY_BYTES,
    MAX_IDEMPOTENCY_KEY,
    MAX_WAIT_SECONDS,
    STATS_EVENT_LIMIT,
    StatsWindow,
)
from machinery_core.domain import diagram, tracecontext
from machinery_core.domain.errors import InvalidDefinition, MachineryError, PayloadTooLarge
from machinery_core.domain.models import (
    CallbackAccepted,
    ErrorBody,
    EventAccepted,
    EventRequest,
    EventStatus,
    EventSummary,
    EventView,
    Health,
    LiveRequest,
    Page,
    Service,
    ServiceAccepted,
    ServiceRecord,
    ServiceVersion,
    StepView,
    Workflow,
    WorkflowAccepted,
    WorkflowLive,
    WorkflowRecord,
    WorkflowStats,
    WorkflowVersion,
)
from machinery_core.runtime.dependencies import dependencies
from machinery_core.runtime.observability import logger, tracer
from machinery_core.service import callbacks, events, registry, stats
from machinery_core.ui import dashboard as dashboard_page

Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=2048)]
VersionNumber = Annotated[int, Path(ge=1, description="a version's number, from 1")]
DiagramFormat = Annotated[Literal["mermaid", "svg"], Query()]
TraceParent = Annotated[
    str | None,
    Header(
        alias="traceparent",
        max_length=256,
        description="W3C Trace Context: the event's calls join this trace (its trace id is "
        "the event's `trace_id`); a missing or invalid one starts a new trace",
    ),
]
TraceState = Annotated[
    str | None,
    Header(
        alias="tracestate",
        max_length=1024,
        description="W3C Trace Context: passed on to the services with `traceparent`",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        description=(
            "Anything unique to this request, 1 to 256 characters. The same key with the same "
            "body within 24 hours answers the event it first created, as that first request "
            "was answered, marked `replayed` and with `Idempotent-Replayed: true`; with another "
            "body it is a 409. Keys belong to their workflow."
        ),
    ),
]
# Set (to `true`) on every answer to a request whose Idempotency-Key named an event already.
REPLAYED_HEADER = "Idempotent-Replayed"

app = APIGatewayHttpResolver(enable_validation=True)


def _answers(
    success: int | tuple[int, ...],
    model: Any,
    *errors: int,
    headers: dict[str, OpenAPIResponseHeader] | None = None,
) -> dict[int, OpenAPIResponse]:
    """What a route answers, for the OpenAPI document: its successes, then ErrorBody errors.

    `model` is the success body: a pydantic model, a JSON schema, or None for no body;
    `headers` the response headers every success carries.
    """
    answers: dict[int, OpenAPIResponse] = {}
    for code in success if isinstance(success, tuple) else (success,):
        # No model: no body (powertools would otherwise document the return annotation's).
        answers[code] = {"description": HTTPStatus(code).phrase, "content": {}}
        if headers:
            answers[code]["headers"] = headers
        if isinstance(model, dict):
            answers[code]["content"] = {"application/json": {"schema": model}}
        elif model is not None:
            answers[code]["content"] = {"application/json": {"model": model}}
    for code in (*errors, 413, 422):
        answers[code] = {
            "description": HTTPStatus(code).phrase,
            "content": {"application/json": {"model": ErrorBody}},
        }
    return answers


def _location(what: str) -> dict[str, OpenAPIResponseHeader]:
    return {"Location": {"description": what, "schema": {"type": "string"}}}


_REPLAYED: dict[str, OpenAPIResponseHeader] = {
    REPLAYED_HEADER: {
        "description": (
            "`true` when the request's Idempotency-Key named an event already: this answer "
            "replays the event that key first created (absent otherwise)"
        ),
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def _text_answer(description: str, *content_types: str) -> OpenAPIResponse:
    """A success whose body is text (of any of `content_types`), for the OpenAPI document."""
    return {
        "description": description,
        "content": {kind: {"schema": {"type": "string"}} for kind in content_types},
    }


def _json(
    status: HTTPStatus, body: BaseModel | dict[str, Any], headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers
    )


@app.exception_handler(MachineryError)  # type: ignore[untyped-decorator]
def _domain_error(error: MachineryError) -> Response[Any]:
    # a 503 is a moment's unavailability (throttling, the payload store, starting the execution)
    headers = None
    if error.status_code == HTTPStatus.SERVICE_UNAVAILABLE:
        headers = {"Retry-After": str(error.retry_after_seconds)}
    return _json(HTTPStatus(error.status_code), error.to_body(), headers)


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
def _invalid_request(error: RequestValidationError) -> Response[Any]:
    problems = list(error.errors())
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return _json(HTTPStatus.BAD_REQUEST, {"message": "the request body is not valid JSON"})
    details = [
        {
            "path": _field_path(problem.get("loc", ("body",))),
            "location": str(problem.get("loc", ("body",))[0]),
            "message": problem.get("msg", "invalid"),
        }
        for problem in problems
    ]
    return _json(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        {"message": "the request does not match the contract", "details": details},
    )


def _field_path(loc: tuple[Any, ...]) -> str:
    """Where a problem is: the body's field path, or a parameter's name (a header's as
    documented, `Idempotency-Key`, although the resolver reads it in lower case)."""
    if loc and loc[0] == "header" and len(loc) > 1:
        return _header_name(str(loc[1]))
    parts = [str(part) for part in loc[1:] if part != "body"]
    # a workflow step's form (`parallel entry`...) is in the location, not in the body
    return ".".join(part for part in parts if not part.endswith(" entry")) or "body"


def _header_name(name: str) -> str:
    """`idempotency-key` as it is documented and usually written: `Idempotency-Key`."""
    return "-".join(part.capitalize() for part in name.split("-"))


@app.exception_handler(UnicodeDecodeError)  # type: ignore[untyped-decorator]
def _not_text(_: UnicodeDecodeError) -> Response[Any]:
    return _json(HTTPStatus.BAD_REQUEST, {"message": "the request body is not UTF-8 JSON"})


@app.not_found
def _no_route(_: Exception) -> Response[Any]:
    # What API Gateway (HTTP API) itself answers for a method and path no route takes.
    return _json(HTTPStatus.NOT_FOUND, {"message": "Not Found"})


# --- services ----------------------------------------------------------------------------


@app.post(
    "/services",
    status_code=201,
    operation_id="createService",
    tags=["services"],
    summary="Register a service",
    description=(
        "Registers an HTTP service: its address and the typed fields it takes and gives. "
        "A name already registered is a 409 (PUT /services/{name} replaces one)."
    ),
    responses=_answers(
        201, ServiceAccepted, 400, 409, headers=_location("The service's path, /services/{name}")
    ),
)
def create_service(service: Service) -> Response[ServiceAccepted]:
    accepted, _ = registry.save_service(dependencies(), service, create_only=True)
    return _json(HTTPStatus.CREATED, accepted, {"Location": f"/services/{accepted.service_id}"})


@app.get(
    "/services",
    operation_id="listServices",
    tags=["services"],
    summary="List the services",
    description="The registered services by name, a page at a time (`next_cursor`).",
    responses=_answers(200, Page[ServiceRecord], 400),
)
def list_services(limit: Limit = 50, cursor: Cursor = None) -> Page[ServiceRecord]:
    return registry.list_services(dependencies(), limit, cursor)


@app.get(
    "/services/<name>",
    operation_id="getService",
    tags=["services"],
    summary="Read a service",
    description="The service's definition (secret headers shown as `<redacted>`), its version "
    "and the workflows that use it.",
    responses=_answers(200, ServiceRecord, 404),
)
def get_service(name: str) -> ServiceRecord:
    return registry.get_service(dependencies(), name)


@app.put(
    "/services/<name>",
    operation_id="putService",
    tags=["services"],
    summary="Create or replace a service",
    description="Registers the service under the path's name (201) or replaces it (200); a "
    "secret header sent back as `<redacted>` keeps its stored value.",
    responses=_answers((200, 201), ServiceAccepted, 400, 409),
)
def put_service(name: str, service: Service) -> Response[ServiceAccepted]:
    _same_name(name, service.name)
    accepted, created = registry.save_service(dependencies(), service, create_only=False)
    return _json(HTTPStatus.CREATED if created else HTTPStatus.OK, accepted)


@app.delete(
    "/services/<name>",
    status_code=204,
    operation_id="deleteService",
    tags=["services"],
    summary="Delete a service",
    description="Deletes the service; one that a workflow uses (or names as a fallback) is a 409.",
    responses=_answers(204, None, 404, 409),
)
def delete_service(name: str) -> Response[None]:
    dependencies().store.delete_service(name)
    return Response(status_code=HTTPStatus.NO_CONTENT)


@app.get(
    "/services/<name>/versions",
    operation_id="listServiceVersions",
    tags=["services"],
    summary="List a service's versions",
    description="Every version the service has had, the newest first, a page at a time; "
    "each immutable, with the hash of its definition (secret headers redacted).",
    responses=_answers(200, Page[ServiceVersion], 400, 404),
)
def list_service_versions(
    name: str, limit: Limit = 50, cursor: Cursor = None
) -> Page[ServiceVersion]:
    return registry.service_versions(dependencies(), name, limit, cursor)


@app.get(
    "/services/<name>/versions/<version>",
    operation_id="getServiceVersion",
    tags=["services"],
    summary="Read a version of a service",
    description="The service as that version defined it (secret headers redacted).",
    responses=_answers(200, ServiceVersion, 404),
)
def get_service_version(name: str, version: VersionNumber) -> ServiceVersion:
    return registry.service_version(dependencies(), name, version)


# --- workflows ---------------------------------------------------------------------------


@app.post(
    "/workflows",
    status_code=201,
    operation_id="createWorkflow",
    tags=["workflows"],
    summary="Register a workflow",
    description=(
        "Registers a workflow: registered services called in order. It is checked first: an "
        "unknown service, an input nothing provides, a type that does not fit or an output "
        "nothing produces is a 422 naming the field."
    ),
    responses=_answers(
        201,
        WorkflowAccepted,
        400,
        409,
        headers=_location("The workflow's path, /workflows/{workflow_id}"),
    ),
)
def create_workflow(workflow: Workflow) -> Response[WorkflowAccepted]:
    accepted, _ = registry.save_workflow(dependencies(), workflow, create_only=True)
    return _json(HTTPStatus.CREATED, accepted, {"Location": f"/workflows/{accepted.workflow_id}"})


@app.get(
    "/workflows",
    operation_id="listWorkflows",
    tags=["workflows"],
    summary="List the workflows",
    description="The registered workflows by name, a page at a time (`next_cursor`).",
    responses=_answers(200, Page[WorkflowRecord], 400),
)
def list_workflows(limit: Limit = 50, cursor: Cursor = None) -> Page[WorkflowRecord]:
    return registry.list_workflows(dependencies(), limit, cursor)


@app.get(
    "/workflows/<workflow_id>",
    operation_id="getWorkflow",
    tags=["workflows"],
    summary="Read a workflow",
    description="The workflow's definition and version.",
    responses=_answers(200, WorkflowRecord, 404),
)
def get_workflow(workflow_id: str) -> WorkflowRecord:
    return dependencies().store.get_workflow(workflow_id)


@app.put(
    "/workflows/<workflow_id>",
    operation_id="putWorkflow",
    tags=["workflows"],
    summary="Create or replace a workflow",
    description="Registers the workflow under the path's name (201) or replaces it (200), "
    "checked as on registration; events already sent keep the version they were sent to.",
    responses=_answers((200, 201), WorkflowAccepted, 400, 409),
)
def put_workflow(
    workflow_id: str,
    workflow: Workflow,
    activate: Annotated[
        bool,
        Query(description="false: store the new version without making it the live one"),
    ] = True,
) -> Response[WorkflowAccepted]:
    _same_name(workflow_id, workflow.name)
    accepted, created = registry.save_workflow(
        dependencies(), workflow, create_only=False, activate=activate
    )
    return _json(HTTPStatus.CREATED if created else HTTPStatus.OK, accepted)


@app.get(
    "/workflows/<workflow_id>/versions",
    operation_id="listWorkflowVersions",
    tags=["workflows"],
    summary="List a workflow's versions",
    description="Every version the workflow has had, the newest first, a page at a time; "
    "each immutable, with the hash of its definition.",
    responses=_answers(200, Page[WorkflowVersion], 400, 404),
)
def list_workflow_versions(
    workflow_id: str, limit: Limit = 50, cursor: Cursor = None
) -> Page[WorkflowVersion]:
    return registry.workflow_versions(dependencies(), workflow_id, limit, cursor)


@app.get(
    "/workflows/<workflow_id>/versions/<version>",
    operation_id="getWorkflowVersion",
    tags=["workflows"],
    summary="Read a version of a workflow",
    description="The workflow as that version defined it.",
    responses=_answers(200, WorkflowVersion, 404),
)
def get_workflow_version(workflow_id: str, version: VersionNumber) -> WorkflowVersion:
    return registry.workflow_version(dependencies(), workflow_id, version)


@app.put(
    "/workflows/<workflow_id>/live",
    operation_id="setLiveVersion",
    tags=["workflows"],
    summary="Choose the version new events run",
    description="Makes `version` the one POST /e/{workflow_id} runs (a rollback is this); "
    "with `canary`, that share (percent) of new events runs the canary's version instead. "
    "Events already sent keep the version they run.",
    responses=_answers(200, WorkflowLive, 400, 404),
)
def set_live_version(workflow_id: str, request: LiveRequest) -> WorkflowLive:
    return registry.set_live(dependencies(), workflow_id, request)


@app.delete(
    "/workflows/<workflow_id>",
    status_code=204,
    operation_id="deleteWorkflow",
    tags=["workflows"],
    summary="Delete a workflow",
    description="Deletes the workflow; its events stay readable.",
    responses=_answers(204, None, 404, 409),
)
def delete_workflow(workflow_id: str) -> Response[None]:
    registry.delete_workflow(dependencies(), workflow_id)
    return Response(status_code=HTTPStatus.NO_CONTENT)


@app.get(
    "/workflows/<workflow_id>/events",
    operation_id="listEvents",
    tags=["events"],
    summary="List a workflow's events",
    description="The workflow's events, newest first, a page at a time; `status` keeps those "
    "in one status.",
    responses=_answers(200, Page[EventSummary], 400, 404),
)
def list_events(
    workflow_id: str,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: Annotated[EventStatus | None, Query()] = None,
) -> Page[EventSummary]:
    return events.list_events(dependencies(), workflow_id, limit, cursor, status)


# A diagram answers text: Mermaid source as text/plain (shown, not saved, by browsers and
# curl), or a standalone SVG image.
_DIAGRAM = {
    **_answers(200, None, 404),
    200: _text_answer(
        "The diagram: Mermaid flowchart source (format=mermaid) or an SVG image",
        *diagram.CONTENT_TYPES.values(),
    ),
}


def _diagram(text: str, form: str) -> Response[str]:
    return Response(status_code=HTTPStatus.OK, content_type=diagram.CONTENT_TYPES[form], body=text)


@app.get(
    "/workflows/<workflow_id>/diagram",
    operation_id="getWorkflowDiagram",
    tags=["workflows"],
    summary="Draw a workflow",
    description="The workflow as a Mermaid flowchart (text/plain) or a standalone SVG image.",
    responses=_DIAGRAM,
)
def workflow_diagram(workflow_id: str, format: DiagramFormat = "mermaid") -> Response[str]:
    return _diagram(registry.workflow_diagram(dependencies(), workflow_id, format), format)


@app.get(
    "/workflows/<workflow_id>/stats",
    operation_id="getWorkflowStats",
    tags=["workflows"],
    summary="A workflow's statistics",
    description=(
        "The workflow's events acknowledged within the window (the last `1h`, `24h` or "
        f"`7d`), at most the newest {STATS_EVENT_LIMIT} of them (`sample.cut` says when the "
        "window held more): counted by status (PENDING, accepted and not started yet, "
        "counts as RUNNING), the p50, p95 and maximum of the ended events' durations, a row "
        "per planned step (its attempts, failed attempts, retries, and the p50 and p95 of "
        "its attempts' durations, a map's iterations folded into their step) and the "
        "failed events by error type. Percentiles are nearest-rank: always one of the "
        "values, null when there is none."
    ),
    responses=_answers(200, WorkflowStats, 404),
)
def workflow_stats(
    workflow_id: str,
    window: Annotated[
        StatsWindow, Query(description="The last hour, day or week, up to now")
    ] = StatsWindow.DAY,
) -> WorkflowStats:
    return stats.workflow_stats(dependencies(), workflow_id, window)


# --- events ------------------------------------------------------------------------------


# One status, one schema: 202 is always the acknowledgement, 200 always the ended event,
# whether the request is a first one or the replay of one (Idempotency-Key).
_EVENT_HEADERS = {**_location("The event's path, /events/{event_id}"), **_REPLAYED}
_SENT = _answers(202, EventAccepted, 400, 404, 409, 503, headers=_EVENT_HEADERS)
_SENT[200] = {
    "description": "The event ended within `wait`: the event, as GET /events/{event_id} reads it",
    "headers": _EVENT_HEADERS,
    "content": {"application/json": {"model": EventView}},
}


@app.post(
    "/e/<workflow_id>",
    status_code=202,
    operation_id="sendEvent",
    tags=["events"],
    summary="Send an event",
    description=(
        "Stores the event, starts it and answers 202 with its id and a Location; with "
        "`wait=N` it answers 200 with the ended event if it ends within N seconds. The same "
        "Idempotency-Key with the same body answers the event that key first created, as "
        "the first request was answered (202, or 200 if it ends within `wait`), marked "
        "`replayed: true` and `Idempotent-Replayed: true`."
    ),
    responses=_SENT,
)
def send_event(
    workflow_id: str,
    request: EventRequest,
    wait: Annotated[int, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0,
    idempotency_key: IdempotencyKey = None,
    version: Annotated[
        int | None,
        Query(ge=1, description="run this version of the workflow rather than the live one"),
    ] = None,
    traceparent: TraceParent = None,
    tracestate: TraceState = None,
) -> Response[EventAccepted | EventView]:
    deps = dependencies()
    api_url = f"https://{app.current_event.request_context.domain_name}"
    # the X-Ray trace Lambda gives this invocation, when its tracing is on
    trace = tracecontext.begin(traceparent, tracestate, os.environ.get("_X_AMZN_TRACE_ID"))
    accepted = events.accept_event(
        deps, workflow_id, request, api_url, idempotency_key, version, trace
    )
    headers = {"Location": f"/events/{accepted.event_id}"}
    if accepted.replayed:
        headers[REPLAYED_HEADER] = "true"
    ended = events.wait_for_end(deps, accepted.event_id, wait) if wait else None
    if ended is not None:
        return _json(HTTPStatus.OK, ended, headers)
    return _json(HTTPStatus.ACCEPTED, accepted, headers)


@app.get(
    "/events/<event_id>",
    operation_id="getEvent",
    tags=["events"],
    summary="Read an event",
    description="The event's status, data, outputs or error, and every step with its attempts.",
    responses=_answers(200, EventView, 404),
)
def get_event(event_id: str) -> EventView:
    return events.get_event(dependencies(), event_id)


StepName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=200,
        description="The step's path in the current run (`3`, `3.1.0` in a parallel group, "
        "`4.0:7` for iteration 7 of a map), its id, or its service (a top-level step)",
    ),
]
PayloadRef = Annotated[
    str, Path(pattern="^[0-9a-f]{64}$", description="The SHA-256 of the payload's JSON")
]


@app.get(
    "/events/<event_id>/steps/<step>",
    operation_id="getEventStep",
    tags=["events"],
    summary="Read one step of an event",
    description="One step's record in the event's current run, with its input and output "
    "inline up to 4 MiB of stored payloads (links past it, as GET /events/{event_id} gives).",
    responses=_answers(200, StepView, 400, 404),
)
def get_event_step(event_id: str, step: StepName) -> StepView:
    return events.get_event_step(dependencies(), event_id, step)


@app.get(
    "/events/<event_id>/payloads/<ref>",
    operation_id="getEventPayload",
    tags=["events"],
    summary="Read a payload of an event",
    description="A value the event stored apart (over 16 KiB), as JSON: what a link of GET "
    "/events/{event_id} or of a step names.",
    responses={
        **_answers(200, None, 404, 503),
        200: {"description": "The value", "content": {"application/json": {"schema": {}}}},
    },
)
def get_event_payload(event_id: str, ref: PayloadRef) -> Response[str]:
    body = events.get_payload(dependencies(), event_id, ref)
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=body.decode(),
    )


@app.get(
    "/events/<event_id>/diagram",
    operation_id="getEventDiagram",
    tags=["events"],
    summary="Draw an event's run",
    description="The workflow as the event ran it, each step coloured by its status, as a "
    "Mermaid flowchart (text/plain) or a standalone SVG image.",
    responses=_DIAGRAM,
)
def event_diagram(event_id: str, format: DiagramFormat = "mermaid") -> Response[str]:
    return _diagram(events.event_diagram(dependencies(), event_id, format), format)


@app.post(
    "/events/<event_id>/cancel",
    operation_id="cancelEvent",
    tags=["events"],
    summary="Cancel an event",
    description="Stops an event that has not ended: it is CANCELLED at once and its execution "
    "is stopped. An event that has ended is a 409.",
    responses=_answers(200, EventView, 404, 409),
)
def cancel_event(event_id: str) -> EventView:
    return events.cancel_event(dependencies(), event_id)


@app.post(
    "/events/<event_id>/retry",
    status_code=202,
    operation_id="retryEvent",
    tags=["events"],
    summary="Retry a failed event",
    description="Runs a FAILED event again from its failed step, keeping what the steps before "
    "it gave. An event in any other status is a 409.",
    responses=_answers(
        202, EventAccepted, 404, 409, 503, headers=_location("The event's path, /events/{event_id}")
    ),
)
def retry_event(event_id: str) -> Response[EventAccepted]:
    accepted = events.redrive_event(dependencies(), event_id)
    return _json(HTTPStatus.ACCEPTED, accepted, {"Location": f"/events/{accepted.event_id}"})


# The token is the credential (a callback service holds no AWS credentials): no SigV4 here.
# powertools drops an empty `security=[]`, so it is set as an extension of the operation.
@app.post(
    "/callbacks/<token>",
    operation_id="completeCallback",
    tags=["callbacks"],
    summary="Complete a waiting step",
    description=(
        "A callback service answers its step here, with the token it was sent: the body is "
        'the step\'s output object, or `{"error": …}` to fail it. The token is the '
        "credential: this route is not signed."
    ),
    openapi_extensions={"security": []},
    responses=_answers(200, CallbackAccepted, 400, 404, 409),
)
def complete_callback(token: str, body: Annotated[Any, Body()]) -> CallbackAccepted:
    return callbacks.complete(dependencies(), token, body)


# --- meta --------------------------------------------------------------------------------


@app.get(
    "/health",
    operation_id="getHealth",
    tags=["meta"],
    summary="Health check",
    description="Answers 200 with the version that runs.",
    responses=_answers(200, Health),
)
def health() -> Health:
    return Health(version=__version__)


@app.get(
    "/openapi.json",
    operation_id="getOpenApi",
    tags=["meta"],
    summary="This document",
    description="The API's OpenAPI 3.1 document.",
    responses=_answers(200, {"type": "object"}),
)
def openapi() -> Response[Any]:
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=openapi_document(),
    )


# The dashboard: one HTML page whose script reads the API from the same origin, so it gets the
# API's own authorisation. Its CSP admits only its inline style and script, by their digests.
_HTML = {**_answers(200, None), 200: _text_answer("The web dashboard (HTML)", "text/html")}


@app.get(
    "/ui",
    operation_id="getDashboard",
    tags=["meta"],
    summary="The web dashboard",
    description="One HTML page that lists the workflows, services and events and sends, "
    "cancels and retries events through this API.",
    responses=_HTML,
)
def dashboard() -> Response[str]:
    page = dashboard_page()
    return Response(
        status_code=HTTPStatus.OK,
        content_type=page.content_type,
        body=page.body,
        headers=page.headers,
    )


_TAGS = [
    Tag(name="services", description="The HTTP services workflows call, and their typed specs"),
    Tag(name="workflows", description="Typed chains of services, checked when registered"),
    Tag(name="events", description="Sending events, reading them, cancelling and retrying"),
    Tag(name="callbacks", description="Where callback services complete their steps"),
    Tag(name="meta", description="Health, this document and the web dashboard"),
]
# A deployed API signs with SigV4 (ApiAuthorization=AWS_IAM, the default): the scheme
# API Gateway's own OpenAPI extension names, in the Authorization header.
_SECURITY_SCHEMES: dict[str, SecurityScheme] = {
    "sigv4": APIKey.model_validate(
        {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "AWS Signature Version 4 for the `execute-api` service, on every route of a "
                "deployed API (ApiAuthorization=AWS_IAM, the default) but POST "
                "/callbacks/{token}. The local runtime, and a stack deployed with "
                "ApiAuthorization=NONE, take requests unsigned."
            ),
            "x-amazon-apigateway-authtype": "awsSigv4",
        }
    )
}


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document GET /openapi.json serves (`make openapi-lint` lints this one)."""
    document: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title="Machinery",
            version=__version__,
            description=(
                "A serverless workflow orchestrator for HTTP microservices: register services "
                "and typed workflows of them, send events, and read each event's steps. Every "
                "error answers an `ErrorBody`; a method and path no route takes answer 404 "
                '`{"message": "Not Found"}`.'
            ),
            contact=Contact(name="Machinery"),
            license_info=License(name="Apache-2.0", identifier="Apache-2.0"),
            tags=list(_TAGS),
            security_schemes=_SECURITY_SCHEMES,
            security=[{"sigv4": []}],
        )
    )
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "header":
                    _as_documented_header(parameter)
    return _without_unused_schemas(_twins_merged(document))


def _twins_merged(document: dict[str, Any]) -> dict[str, Any]:
    """One schema for a model pydantic documents twice, as `X-Input` and `X-Output`, when
    the two are the same but for their references to each other (a workflow's steps nest,
    and pydantic does not see that a cycle of such twins is one model)."""
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    twins = [name[: -len("-Input")] for name in schemas if name.endswith("-Input")]
    twins = [name for name in twins if f"{name}-Output" in schemas]
    pattern = re.compile(
        r"#/components/schemas/(" + "|".join(map(re.escape, twins)) + r')-(?:Input|Output)"'
    )

    def merged(value: Any) -> Any:
        return json.loads(pattern.sub(r'#/components/schemas/\1"', json.dumps(value)))

    if not twins or any(
        merged(schemas[f"{name}-Input"]) != merged(schemas[f"{name}-Output"]) for name in twins
    ):
        return document
    for name in twins:
        schemas[name] = schemas.pop(f"{name}-Input")
        del schemas[f"{name}-Output"]
    result: dict[str, Any] = merged(document)
    return result


def _as_documented_header(parameter: dict[str, Any]) -> None:
    """A header parameter as HTTP spells it (the resolver documents it in lower case), and,
    when optional, simply absent rather than null (a header has no null)."""
    parameter["name"] = _header_name(parameter["name"])
    schema = parameter.get("schema", {})
    options = [option for option in schema.get("anyOf", []) if option != {"type": "null"}]
    if len(options) == 1 and len(schema["anyOf"]) == 2:
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        parameter["schema"] = {**options[0], **rest}


def _without_unused_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """The document without the component schemas nothing refers to (the resolver adds its
    own validation error schemas, which this API never answers)."""
    components = document.get("components", {})
    schemas: dict[str, Any] = components.get("schemas", {})
    outside = {key: value for key, value in document.items() if key != "components"}
    outside["components"] = {key: value for key, value in components.items() if key != "schemas"}
    used: set[str] = set()
    pending = list(_schema_refs(outside))
    while pending:
        name = pending.pop()
        if name not in used and name in schemas:
            used.add(name)
            pending.extend(_schema_refs(schemas[name]))
    if schemas:
        components["schemas"] = {name: schemas[name] for name in schemas if name in used}
    return document


def _schema_refs(node: Any) -> list[str]:
    """The component schemas `node` refers to, by name."""
    prefix = "#/components/schemas/"
    if isinstance(node, dict):
        found = (
            [node["$ref"][len(prefix) :]] if str(node.get("$ref", "")).startswith(prefix) else []
        )
        return found + [name for value in node.values() for name in _schema_refs(value)]
    if isinstance(node, list):
        return [name for item in node for name in _schema_refs(item)]
    return []


def _same_name(path_name: str, body_name: str) -> None:
    if path_name != body_name:
        raise InvalidDefinition(
            "the name in the body differs from the one in the path",
            [{"path": "name", "message": f"expected {path_name!r}, got {body_name!r}"}],
        )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    refusal = _screen_body(event)
    if refusal is not None:
        return {
            "statusCode": refusal.status_code,
            "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": json.dumps(refusal.to_body()),
            "isBase64Encoded": False,
        }
    return app.resolve(_as_json_request(event), context)


def _screen_body(event: dict[str, Any]) -> MachineryError | None:
    """What must be refused before the resolver sees the body.

    Its request validation runs ahead of any middleware, so an oversized body would answer
    400 or 422 instead of 413; and it unwraps a JSON array for a parameter that is not a
    list, quietly taking the first item and dropping the rest.
    """
    body: str = event.get("body") or ""
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())
    if size > MAX_BODY_BYTES:
        return PayloadTooLarge(f"the request body exceeds {MAX_BODY_BYTES} bytes")
    try:
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        if not body.lstrip().startswith("["):
            return None
        json.loads(body)
    except ValueError:
        return None  # not text, or not JSON: the resolver answers 400
    return InvalidDefinition(
        "the request does not match the contract",
        [{"path": "body", "location": "body", "message": "expected a JSON object, got an array"}],
    )


def _as_json_request(event: dict[str, Any]) -> dict[str, Any]:
    """Every body is JSON, whatever the client labels it (`curl -d` says form-urlencoded)."""
    headers = event.get("headers") or {}
    if event.get("body") and "json" not in headers.get("content-type", ""):
        event = {**event, "headers": {**headers, "content-type": "application/json"}}
    return event
