"""The state-loop worker invoked by the state machine's Run (and Abort) states."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from machinery_core import worker
from machinery_core.dependencies import dependencies
from machinery_core.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="event_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "abort" in event:
        return worker.abort(dependencies(), event["event_id"], event["abort"])
    return worker.advance(dependencies(), event["event_id"], context.get_remaining_time_in_millis)
