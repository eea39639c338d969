"""The HTTP API: registry, event intake and event status (API Gateway HTTP API -> Lambda)."""

from __future__ import annotations

import base64
import json
from http import HTTPStatus
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from machinery_core import __version__
from machinery_core.domain import diagram
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
    Page,
    Service,
    ServiceAccepted,
    ServiceRecord,
    Workflow,
    WorkflowAccepted,
    WorkflowRecord,
)
from machinery_core.runtime.dependencies import dependencies
from machinery_core.runtime.observability import logger, metrics, tracer
from machinery_core.service import callbacks, events, registry
from machinery_core.ui import dashboard as dashboard_page

MAX_BODY_BYTES = 256 * 1024
MAX_WAIT_SECONDS = 25  # API Gateway answers within 30 s
MAX_IDEMPOTENCY_KEY = 256
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=2048)]
DiagramFormat = Annotated[Literal["mermaid", "svg"], Query()]

app = APIGatewayHttpResolver(enable_validation=True)


def _answers(
    success: int | tuple[int, ...], model: Any, *errors: int
) -> dict[int, OpenAPIResponse]:
    """What a route answers, for the OpenAPI document: its successes, then ErrorBody errors.

    `model` is the success body: a pydantic model, a JSON schema, or None for no body.
    """
    answers: dict[int, OpenAPIResponse] = {}
    for code in success if isinstance(success, tuple) else (success,):
        # No model: no body (powertools would otherwise document the return annotation's).
        answers[code] = {"description": HTTPStatus(code).phrase, "content": {}}
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
    return _json(HTTPStatus(error.status_code), error.to_body())


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
def _invalid_request(error: RequestValidationError) -> Response[Any]:
    problems = list(error.errors())
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return _json(HTTPStatus.BAD_REQUEST, {"message": "the request body is not valid JSON"})
    details = [
        {
            "path": ".".join(str(part) for part in problem.get("loc", ())[1:] if part != "body")
            or "body",
            "location": str(problem.get("loc", ("body",))[0]),
            "message": problem.get("msg", "invalid"),
        }
        for problem in problems
    ]
    return _json(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        {"message": "the request does not match the contract", "details": details},
    )


@app.exception_handler(UnicodeDecodeError)  # type: ignore[untyped-decorator]
def _not_text(_: UnicodeDecodeError) -> Response[Any]:
    return _json(HTTPStatus.BAD_REQUEST, {"message": "the request body is not UTF-8 JSON"})


@app.not_found
def _no_route(_: Exception) -> Response[Any]:
    return _json(HTTPStatus.NOT_FOUND, {"message": "no such route"})


# --- services ----------------------------------------------------------------------------


@app.post("/services", status_code=201, responses=_answers(201, ServiceAccepted, 400, 409))
def create_service(service: Service) -> Response[ServiceAccepted]:
    accepted, _ = registry.save_service(dependencies(), service, create_only=True)
    return _json(HTTPStatus.CREATED, accepted, {"Location": f"/services/{accepted.service_id}"})


@app.get("/services", responses=_answers(200, Page[ServiceRecord], 400))
def list_services(limit: Limit = 50, cursor: Cursor = None) -> Page[ServiceRecord]:
    return registry.list_services(dependencies(), limit, cursor)


@app.get("/services/<name>", responses=_answers(200, ServiceRecord, 404))
def get_service(name: str) -> ServiceRecord:
    return registry.get_service(dependencies(), name)


@app.put("/services/<name>", responses=_answers((200, 201), ServiceAccepted, 400, 409))
def put_service(name: str, service: Service) -> Response[ServiceAccepted]:
    _same_name(name, service.name)
    accepted, created = registry.save_service(dependencies(), service, create_only=False)
    return _json(HTTPStatus.CREATED if created else HTTPStatus.OK, accepted)


@app.delete("/services/<name>", status_code=204, responses=_answers(204, None, 404, 409))
def delete_service(name: str) -> Response[None]:
    dependencies().store.delete_service(name)
    return Response(status_code=HTTPStatus.NO_CONTENT)


# --- workflows ---------------------------------------------------------------------------


@app.post("/workflows", status_code=201, responses=_answers(201, WorkflowAccepted, 400, 409))
def create_workflow(workflow: Workflow) -> Response[WorkflowAccepted]:
    accepted, _ = registry.save_workflow(dependencies(), workflow, create_only=True)
    return _json(HTTPStatus.CREATED, accepted, {"Location": f"/workflows/{accepted.workflow_id}"})


@app.get("/workflows", responses=_answers(200, Page[WorkflowRecord], 400))
def list_workflows(limit: Limit = 50, cursor: Cursor = None) -> Page[WorkflowRecord]:
    return registry.list_workflows(dependencies(), limit, cursor)


@app.get("/workflows/<workflow_id>", responses=_answers(200, WorkflowRecord, 404))
def get_workflow(workflow_id: str) -> WorkflowRecord:
    return dependencies().store.get_workflow(workflow_id)


@app.put("/workflows/<workflow_id>", responses=_answers((200, 201), WorkflowAccepted, 400, 409))
def put_workflow(workflow_id: str, workflow: Workflow) -> Response[WorkflowAccepted]:
    _same_name(workflow_id, workflow.name)
    accepted, created = registry.save_workflow(dependencies(), workflow, create_only=False)
    return _json(HTTPStatus.CREATED if created else HTTPStatus.OK, accepted)


@app.delete("/workflows/<workflow_id>", status_code=204, responses=_answers(204, None, 404, 409))
def delete_workflow(workflow_id: str) -> Response[None]:
    registry.delete_workflow(dependencies(), workflow_id)
    return Response(status_code=HTTPStatus.NO_CONTENT)


@app.get("/workflows/<workflow_id>/events", responses=_answers(200, Page[EventSummary], 400, 404))
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


@app.get("/workflows/<workflow_id>/diagram", responses=_DIAGRAM)
def workflow_diagram(workflow_id: str, format: DiagramFormat = "mermaid") -> Response[str]:
    return _diagram(registry.workflow_diagram(dependencies(), workflow_id, format), format)


# --- events ------------------------------------------------------------------------------


_SENT = _answers(202, EventAccepted, 400, 404, 409, 503)
_SENT[200] = {
    "description": "The event ended within `wait`",
    "content": {"application/json": {"model": EventView}},
}


@app.post("/e/<workflow_id>", status_code=202, responses=_SENT)
def send_event(
    workflow_id: str,
    request: EventRequest,
    wait: Annotated[int, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0,
) -> Response[EventAccepted | EventView]:
    deps = dependencies()
    api_url = f"https://{app.current_event.request_context.domain_name}"
    key = app.current_event.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidDefinition(
            "the Idempotency-Key header is empty or too long",
            [{"path": "Idempotency-Key", "message": f"1 to {MAX_IDEMPOTENCY_KEY} characters"}],
        )
    accepted = events.accept_event(deps, workflow_id, request, api_url, key)
    location = {"Location": f"/events/{accepted.event_id}"}
    if accepted.replayed:
        return _json(HTTPStatus.OK, accepted, location)
    ended = events.wait_for_end(deps, accepted.event_id, wait) if wait else None
    if ended is not None:
        return _json(HTTPStatus.OK, ended, location)
    return _json(HTTPStatus.ACCEPTED, accepted, location)


@app.get("/events/<event_id>", responses=_answers(200, EventView, 404))
def get_event(event_id: str) -> EventView:
    return events.get_event(dependencies(), event_id)


@app.get("/events/<event_id>/diagram", responses=_DIAGRAM)
def event_diagram(event_id: str, format: DiagramFormat = "mermaid") -> Response[str]:
    return _diagram(events.event_diagram(dependencies(), event_id, format), format)


@app.post("/events/<event_id>/cancel", responses=_answers(200, EventView, 404, 409))
def cancel_event(event_id: str) -> EventView:
    return events.cancel_event(dependencies(), event_id)


@app.post(
    "/events/<event_id>/retry",
    status_code=202,
    responses=_answers(202, EventAccepted, 404, 409, 503),
)
def retry_event(event_id: str) -> Response[EventAccepted]:
    accepted = events.redrive_event(dependencies(), event_id)
    return _json(HTTPStatus.ACCEPTED, accepted, {"Location": f"/events/{accepted.event_id}"})


@app.post("/callbacks/<token>", responses=_answers(200, CallbackAccepted, 400, 404, 409))
def complete_callback(token: str, body: Annotated[Any, Body()]) -> CallbackAccepted:
    return callbacks.complete(dependencies(), token, body)


# --- meta --------------------------------------------------------------------------------


@app.get("/health", responses=_answers(200, Health))
def health() -> Health:
    return Health(version=__version__)


@app.get("/openapi.json", responses=_answers(200, {"type": "object"}))
def openapi() -> Response[Any]:
    schema = app.get_openapi_json_schema(title="Machinery", version=__version__)
    return Response(
        status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON, body=schema
    )


# The dashboard: one HTML page whose script reads the API from the same origin, so it gets the
# API's own authorisation. Its CSP admits only its inline style and script, by their digests.
_HTML = {**_answers(200, None), 200: _text_answer("The web dashboard (HTML)", "text/html")}


@app.get("/ui", responses=_HTML)
def dashboard() -> Response[str]:
    page = dashboard_page()
    return Response(
        status_code=HTTPStatus.OK,
        content_type=page.content_type,
        body=page.body,
        headers=page.headers,
    )


def _same_name(path_name: str, body_name: str) -> None:
    if path_name != body_name:
        raise InvalidDefinition(
            "the name in the body differs from the one in the path",
            [{"path": "name", "message": f"expected {path_name!r}, got {body_name!r}"}],
        )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
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
