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

import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from importlib.util import find_spec
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

SERVICE = "machinery"

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
            return Tracer(service=SERVICE, patch_modules=PATCHED_AT_INIT)
        logger.warning(
            "POWERTOOLS_TRACE_DISABLED is false but the X-Ray SDK is not installed: only "
            "Lambda's own tracing applies (add aws-xray-sdk to the layer's requirements)"
        )
    # disabled=False: True would have powertools switch the SDK off, importing it to do so.
    return Tracer(service=SERVICE, disabled=False, auto_patch=False, provider=_NoTracing())


def trace_requests() -> None:
    """Have the tracer, if it traces, record each requests call as a subsegment."""
    tracer.patch(("requests",))


logger = Logger(service=SERVICE)
tracer = _tracer()
metrics = Metrics(namespace="Machinery", service=SERVICE)
