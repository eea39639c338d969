"""The one Logger, Tracer and Metrics of the project (powertools).

Tracing: the functions run with Lambda's active tracing (template.yaml, `Tracing: Active`),
which records every invocation, its cold start included, with no code. The Tracer adds the
X-Ray SDK's subsegments (each AWS call, each service call, the handler's ColdStart and Service
annotations) only where it will trace - inside Lambda, outside `sam local`, without
POWERTOOLS_TRACE_DISABLED: the rules powertools applies - and where the SDK is installed.
The layer leaves it out by default (see layers/machinery/requirements.txt for the trade-off).

Elsewhere the Tracer gets a provider that records nothing: powertools would otherwise import
the SDK even to disable it, and outside Lambda its recorder builds two botocore clients.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from importlib.util import find_spec
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from machinery_core.contract import METRICS, METRICS_NAMESPACE, METRICS_SERVICE

# What the X-Ray SDK instruments at init: the AWS calls. requests (the service calls) is
# patched when the invoker is built, on first use (`trace_requests`), so invocations that call
# no service neither import nor patch it. (patch_all would also import sqlite3 and look for
# database drivers, none of which the project uses.)
PATCHED_AT_INIT = ("botocore",)

_TRUTHY = {"1", "y", "yes", "t", "true", "on"}


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether powertools' Tracer would trace here (its Tracer._is_tracer_disabled rules)."""
    if environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in _TRUTHY:
        return False
    in_lambda = bool(environ.get("LAMBDA_TASK_ROOT"))
    emulated = bool(environ.get("AWS_SAM_LOCAL") or environ.get("AWS_CHALICE_CLI_MODE"))
    return in_lambda and not emulated


class _Untraced(BaseSegment):
    """A segment that records nothing."""

    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class _NoTracing(BaseProvider):
    """The provider of a Tracer that does not trace: no X-Ray SDK, nothing patched."""

    @contextmanager
    def in_subsegment(self, name: Any = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield _Untraced()

    @asynccontextmanager
    async def in_subsegment_async(
        self, name: Any = None, **kwargs: Any
    ) -> AsyncIterator[BaseSegment]:
        yield _Untraced()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


def _tracer() -> Tracer:
    if tracing_enabled():
        if find_spec("aws_xray_sdk") is not None:
            return Tracer(service=deployment_name(), patch_modules=PATCHED_AT_INIT)
        logger.warning(
            "POWERTOOLS_TRACE_DISABLED is false but the X-Ray SDK is not installed: only "
            "Lambda's own tracing applies (add aws-xray-sdk to the layer's requirements)"
        )
    # disabled=False: True would have powertools switch the SDK off, importing it to do so.
    return Tracer(
        service=deployment_name(), disabled=False, auto_patch=False, provider=_NoTracing()
    )


def trace_requests() -> None:
    """Have the tracer, if it traces, record each requests call as a subsegment."""
    tracer.patch(("requests",))


def deployment_name() -> str:
    """The `service` of every log line and metric: the stack (template.yaml sets
    POWERTOOLS_SERVICE_NAME to it), so that deployments sharing an account keep their
    metrics apart; `machinery` where nothing says (the local runtime, tests)."""
    return os.environ.get("POWERTOOLS_SERVICE_NAME") or METRICS_SERVICE


logger = Logger(service=deployment_name())
tracer = _tracer()

# Where each metrics record goes: None, standard output as embedded metric format (Lambda
# hands it to CloudWatch Logs, which makes the metrics), unless POWERTOOLS_METRICS_DISABLED;
# `machinery local --metrics` sets a printer of readable lines.
Sink = Callable[[dict[str, Any]], None]
_sink: list[Sink] = []


def send_metrics_to(sink: Sink | None) -> None:
    _sink[:] = [sink] if sink is not None else []


def record(values: Mapping[str, float], **dimensions: str) -> None:
    """One EMF record of the named metrics (contract.METRICS: they must share their
    dimension sets), recorded under each set, `dimensions` giving each its value.

    Each record is written at once (powertools' EphemeralMetrics, not a Metrics flushed by
    the handler): one invocation records for several workflows' and services' dimensions,
    a record has one value per dimension, and the local runtime's threads share nothing.
    """
    if not _sink and is_metrics_disabled():
        return
    names = list(values)
    sets = METRICS[names[0]].dimension_sets
    if any(METRICS[name].dimension_sets != sets for name in names):
        raise ValueError(f"metrics of different dimension sets in one record: {names}")
    service = deployment_name()
    emf = EphemeralMetrics(namespace=METRICS_NAMESPACE, service=service)
    for names_of_set in sets:
        if names_of_set != ("service",):  # the first set: the default dimension alone
            chosen = {name: dimensions[name] for name in names_of_set if name != "service"}
            emf.add_dimensions(service=service, **chosen)
    for name, value in values.items():
        emf.add_metric(name=name, unit=METRICS[name].unit, value=value)
    document: dict[str, Any] = dict(emf.serialize_metric_set())
    if _sink:
        _sink[0](document)
    else:
        print(json.dumps(document, separators=(",", ":")), flush=True)


@contextmanager
def event_context(event_id: str, workflow_id: str, trace_id: str) -> Iterator[None]:
    """Every log line written inside carries the event's correlation keys (this thread's)."""
    keys = {"event_id": event_id, "workflow_id": workflow_id, "trace_id": trace_id}
    logger.thread_safe_append_keys(**keys)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(keys)
