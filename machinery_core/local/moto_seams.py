"""Where the local runtime reaches into moto's Step Functions interpreter (moto 5.2).

Each patch answers a pitfall listed in docs/architecture.md ("The local runtime"). moto's
minor version is pinned in pyproject.toml; `install` fails loudly if a seam has moved, and a
test runs it.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import types
from collections.abc import Callable
from typing import Any

LambdaInvoker = Callable[[str, dict[str, Any]], tuple[Any, str | None]]
"""(function name or ARN, payload) -> (result, error type or None)."""

# The DynamoDB backend calls that read or write items (transact_write_items calls the others).
_DYNAMODB_CALLS = (
    "get_item",
    "put_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "transact_write_items",
)
_parse_lock = threading.Lock()
_programs: dict[str, Any] = {}
_installed = False
# The runtime started last: moto's interpreter is one per process, so its tasks, waits and
# execution ends go to whichever runtime is current, not the first one ever started.
_current: dict[str, Any] = {}


def install(
    invoke_lambda: LambdaInvoker,
    time_scale: Callable[[], float],
    on_execution_end: Callable[[dict[str, Any], str], None],
) -> None:
    """Patch moto once per process; `on_execution_end(input, status)` hears every end."""
    global _installed
    try:
        from moto.dynamodb.models import DynamoDBBackend
        from moto.dynamodb.models.dynamo_type import LimitedSizeDict
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import Timeout
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
            WaitFunction,
        )
        from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
        from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
        from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
        from moto.stepfunctions.parser.utils import TMP_THREADS
    except ImportError as error:  # pragma: no cover - only when moto moves
        raise RuntimeError(f"moto's Step Functions interpreter moved: {error}") from error
    seams: list[tuple[Any, str]] = [
        (lambda_eval_utils, "_invoke_lambda_function"),
        (ExecutionWorker, "_get_evaluation_entrypoint"),
        (WaitFunction, "_wait_interval"),
        (retrier_decl, "time"),
        (Timeout, "_eval_body"),
        (BaseExecutionWorkerCommunication, "terminated"),
        (ExecutionWorker, "_execution_logic"),
        (ExecutionWorker, "_get_evaluation_environment"),
        (ExecutionWorker, "stop"),
        *((DynamoDBBackend, name) for name in _DYNAMODB_CALLS),
    ]
    for owner, attribute in seams:
        if not hasattr(owner, attribute):
            raise RuntimeError(
                f"moto seam {owner.__name__}.{attribute} is gone; check the pinned moto version"
            )
    _current.update(invoke=invoke_lambda, scale=time_scale, ended=on_execution_end)
    if _installed:
        return
    _installed = True

    def invoke(parameters: dict[str, Any], region: str, state_credentials: Any) -> dict[str, Any]:
        # In-process, no boto3 client per Task (4-5 ms each) and no Docker.
        payload = parameters.get("Payload")
        if isinstance(payload, bytes | bytearray):
            payload = json.loads(payload or b"{}")
        result, error_type = _current["invoke"](parameters["FunctionName"], payload or {})
        response: dict[str, Any] = {
            "StatusCode": 200,
            "Payload": result,
            "ExecutedVersion": "$LATEST",
        }
        if error_type is not None:
            # An errorType in the payload becomes the ASL error name that Retry/Catch match.
            response["FunctionError"] = "Unhandled"
        return response

    lambda_eval_utils._invoke_lambda_function = invoke

    def entrypoint(self: Any) -> Any:
        # Parsing is both slow (antlr4, 4-8 ms) and racy: the Preprocessor keeps its
        # query-language scope stack in a class-level list shared by every thread.
        definition = self._evaluation_details.state_machine_details.definition
        with _parse_lock:
            program = _programs.get(definition)
            if program is None:
                program = AmazonStateLanguageParser.parse(definition)[0]
                _programs[definition] = program
        return program

    ExecutionWorker._get_evaluation_entrypoint = entrypoint  # type: ignore[method-assign]

    def wait_interval(self: Any, env: Any, wait_seconds: float) -> None:
        scaled = wait_seconds * _current["scale"]()
        if scaled > 0:
            env.program_state_event.wait(scaled)

    WaitFunction._wait_interval = wait_interval  # type: ignore[method-assign]

    def scaled_timeout(self: Any, env: Any) -> None:
        seconds = self._eval_seconds(env=env)
        env.stack.append(seconds if self.is_default_value() else seconds * _current["scale"]())

    Timeout._eval_body = scaled_timeout  # type: ignore[method-assign]

    scaled_time = types.SimpleNamespace(
        sleep=lambda seconds: time.sleep(seconds * _current["scale"]())
    )
    retrier_decl.time = scaled_time  # type: ignore[attr-defined,assignment]  # Retry interval sleeps through it

    original_terminated = BaseExecutionWorkerCommunication.terminated

    def terminated(self: Any) -> None:
        original_terminated(self)
        # moto keeps every worker Thread it ever started; a long-lived runtime drops the
        # finished ones instead of growing without bound.
        if len(TMP_THREADS) > 256:
            TMP_THREADS[:] = [thread for thread in TMP_THREADS if thread.is_alive()]
        execution = self.execution
        _current["ended"](
            _as_dict(execution.input_data), str(getattr(execution.exec_status, "value", ""))
        )

    BaseExecutionWorkerCommunication.terminated = terminated  # type: ignore[method-assign]

    original_logic = ExecutionWorker._execution_logic

    def execution_logic(self: Any) -> None:
        # A worker thread that dies leaves its execution RUNNING forever; say so instead.
        try:
            original_logic(self)
        except Exception:
            logging.getLogger(__name__).exception("a state machine worker crashed")
            inputs = _as_dict(self._evaluation_details.execution_details.inpt)
            _current["ended"](inputs, "CRASHED")

    ExecutionWorker._execution_logic = execution_logic  # type: ignore[method-assign]

    # moto's StopExecution fails with AttributeError (a 500 here) for an execution whose
    # worker has not built its environment yet, where AWS stops it: the stop is kept and
    # applied as soon as the environment exists. The lock closes the window between the two.
    stop_lock = threading.Lock()
    original_environment = ExecutionWorker._get_evaluation_environment
    original_stop = ExecutionWorker.stop

    def environment(self: Any) -> Any:
        with stop_lock:
            self.env = original_environment(self)
            pending = getattr(self, "_pending_stop", None)
        if pending is not None:
            self.env.set_stop(**pending)
        return self.env

    def stop(self: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
        with stop_lock:
            if self.env is None:
                self._pending_stop = {"stop_date": stop_date, "error": error, "cause": cause}
                return
        original_stop(self, stop_date=stop_date, error=error, cause=cause)

    ExecutionWorker._get_evaluation_environment = environment  # type: ignore[method-assign]
    ExecutionWorker.stop = stop  # type: ignore[method-assign]

    original_setitem = LimitedSizeDict.__setitem__

    def setitem(self: Any, key: str, value: Any) -> None:
        # moto counts an attribute it replaces twice (old and new value), so an item over
        # half of DynamoDB's 400 KB limit could never be updated; DynamoDB limits the result.
        missing = object()
        old = dict.pop(self, key, missing)
        try:
            original_setitem(self, key, value)
        except Exception:
            if old is not missing:
                dict.__setitem__(self, key, old)
            raise

    LimitedSizeDict.__setitem__ = setitem  # type: ignore[method-assign]

    # moto's transact_write_items snapshots whole tables and, when a condition fails, puts
    # the snapshot back, undoing every write another thread made meanwhile (a callback
    # answered 200 left its event WAITING for good), and its other calls see a transaction
    # half applied. DynamoDB isolates transactions; here one lock serialises every call.
    table_lock = threading.RLock()
    for name in _DYNAMODB_CALLS:
        setattr(DynamoDBBackend, name, _serialised(getattr(DynamoDBBackend, name), table_lock))

    for noisy in ("moto.stepfunctions.parser", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def _serialised(call: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    @functools.wraps(call)
    def serialised(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return call(*args, **kwargs)

    return serialised


def _as_dict(document: Any) -> dict[str, Any]:
    if isinstance(document, str | bytes):
        document = json.loads(document or "{}")
    return document if isinstance(document, dict) else {}
