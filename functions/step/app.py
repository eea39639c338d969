"""The state-loop worker: every Task state of the state machine invokes it with an action."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from machinery_core.runtime.dependencies import dependencies
from machinery_core.runtime.observability import logger, tracer
from machinery_core.service import notifications, worker


@logger.inject_lambda_context(correlation_id_path="event_id")
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps, event_id = dependencies(), event["event_id"]
    plan = event.get("plan")  # the execution's copy of the event's plan, if it carries one
    match event.get("action", "advance"):
        case "advance":
            route = event.get("route") or {}
            return worker.advance(
                deps,
                event_id,
                context.get_remaining_time_in_millis,
                context.aws_request_id,
                plan,
                started_at=event.get("started_at"),
                execution=event.get("execution"),
                wake=event.get("wake"),
                after_wait=route.get("status") == "BACKOFF",
            )
        case "notify":
            return notifications.notify(deps, event_id)
        case "abort":
            return worker.abort(deps, event_id, event["error"], event.get("execution"))
    raise ValueError(f"unknown action {event.get('action')!r}")
