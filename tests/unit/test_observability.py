"""When the Tracer traces, what it does when it does not, and clients built on first use."""

from __future__ import annotations

import threading

import pytest
from aws_lambda_powertools import Tracer

from machinery_core.runtime.dependencies import OnFirstUse
from machinery_core.runtime.observability import _NoTracing, tracing_enabled

IN_LAMBDA = {"LAMBDA_TASK_ROOT": "/var/task"}


@pytest.mark.parametrize(
    ("environ", "traces"),
    [
        (IN_LAMBDA, True),
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({**IN_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "1"}, False),
        ({**IN_LAMBDA, "AWS_SAM_LOCAL": "true"}, False),  # sam local invoke
        ({**IN_LAMBDA, "AWS_CHALICE_CLI_MODE": "true"}, False),
        ({}, False),  # not in Lambda: a test, a script, the local runtime
    ],
)
def test_the_tracer_traces_only_in_lambda_unless_disabled(
    environ: dict[str, str], traces: bool
) -> None:
    assert tracing_enabled(environ) is traces


def test_a_tracer_that_does_not_trace_still_runs_the_handler_and_raises_its_errors() -> None:
    tracer = Tracer(service="test", disabled=False, auto_patch=False, provider=_NoTracing())

    @tracer.capture_lambda_handler
    def handler(event: dict[str, str], context: object) -> dict[str, str]:
        if event.get("fail"):
            raise ValueError("failed")
        tracer.put_annotation("key", "value")
        return {"echo": event["say"]}

    @tracer.capture_method
    def helper() -> int:
        return 42

    assert handler({"say": "hi"}, None) == {"echo": "hi"}
    assert helper() == 42
    with pytest.raises(ValueError, match="failed"):
        handler({"fail": "yes"}, None)


def test_on_first_use_builds_once_on_first_attribute_access_whatever_the_threads() -> None:
    builds: list[int] = []
    # The build is held until every thread is about to use `lazy`, so that they overlap it
    arrived = threading.Barrier(9)  # the 8 threads and this one
    everyone_arrived = threading.Event()

    def build() -> str:
        builds.append(1)
        everyone_arrived.wait(timeout=10)
        return "built"

    lazy = OnFirstUse(build)
    assert builds == []  # nothing until used

    def use() -> None:
        arrived.wait()
        lazy.upper()

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    arrived.wait()
    everyone_arrived.set()
    for thread in threads:
        thread.join()

    assert builds == [1]
    assert lazy.upper() == "BUILT"
    assert lazy.get() == "built"
