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
from datetime import UTC, datetime, timedelta
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
# The scheduler backend calls the runtime's timers make from several threads at once (moto
# iterates a group's dict of schedules while listing them).
_SCHEDULER_CALLS = ("create_schedule", "delete_schedule", "get_schedule", "list_schedules")
# AWS ends an EXPRESS execution at five minutes (TIMED_OUT); here, five scaled minutes.
EXPRESS_DURATION_SECONDS = 300
_parse_lock = threading.Lock()
_programs: dict[str, Any] = {}
_installed = False
# The runtime started last: moto's interpreter is one per process, so its tasks, waits and
# execution ends go to whichever runtime is current, not the first one ever started.
_current: dict[str, Any] = {}


def install(
    invoke_lambda: LambdaInvoker,
    time_scale: Callable[[], float],
    on_execution_end: Callable[[dict[str, Any], str, str | None], None],
) -> None:
    """Patch moto once per process; `on_execution_end(input, status, execution ARN)` hears
    every end."""
    global _installed
    try:
        from moto.dynamodb.models import DynamoDBBackend
        from moto.dynamodb.models.dynamo_type import LimitedSizeDict
        from moto.scheduler.models import EventBridgeSchedulerBackend
        from moto.stepfunctions.models import StateMachineInstance
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.common.string.string_expression import (
            StringContextPath,
        )
        from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import Timeout
        from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
        from moto.stepfunctions.parser.asl.component.program.program import Program
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
        (StateMachineInstance, "__init__"),
        (Program, "eval"),
        (EvalComponent, "eval"),
        (StringContextPath, "_eval_body"),
        *((DynamoDBBackend, name) for name in _DYNAMODB_CALLS),
        *((EventBridgeSchedulerBackend, name) for name in _SCHEDULER_CALLS),
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
            _as_dict(execution.input_data),
            str(getattr(execution.exec_status, "value", "")),
            getattr(execution, "execution_arn", None),
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
            _current["ended"](inputs, "CRASHED", None)

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

    original_machine_init = StateMachineInstance.__init__

    def machine_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_machine_init(self, *args, **kwargs)
        # moto keeps the type asked for in `type` but hands the interpreter `sm_type`, which
        # it sets to STANDARD whatever the type: an EXPRESS execution would run as STANDARD.
        self.sm_type = self.type

    StateMachineInstance.__init__ = machine_init  # type: ignore[method-assign]

    original_program_eval = Program.eval

    def program_eval(self: Any, env: Any) -> None:
        # AWS ends an EXPRESS execution that runs past five minutes as TIMED_OUT; moto knows
        # only the definition's TimeoutSeconds. So here it also ends at five scaled minutes,
        # as moto ends it for TimeoutSeconds: the end is heard like any other.
        limit = _express_limit(env)
        if limit is None:
            original_program_eval(self, env)
            return
        declared = self.timeout_seconds.timeout_seconds if self.timeout_seconds else None
        env.next_state_name = self.start_at.start_at_name
        worker = threading.Thread(target=EvalComponent.eval, args=(self, env), daemon=True)
        TMP_THREADS.append(worker)
        worker.start()
        worker.join(timeout=limit if declared is None else min(declared, limit))
        if worker.is_alive():
            env.set_timed_out()

    Program.eval = program_eval  # type: ignore[method-assign]

    original_context_path = StringContextPath._eval_body

    def context_path(self: Any, env: Any) -> None:
        # $$.Execution.StartTime as the worker compares it with its clock to know how much
        # of an EXPRESS execution is left: the execution's age is scaled like every wait.
        execution = env.states.context_object.context_object_data.get("Execution")
        if isinstance(execution, dict) and "StartTime" in execution:
            execution["StartTime"] = _scaled_start(execution["StartTime"], _current["scale"]())
        original_context_path(self, env)

    StringContextPath._eval_body = context_path  # type: ignore[method-assign]

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
    # The timers' schedules are set and deleted by the functions while the runtime lists
    # them: moto's listing iterates a dict another thread may be changing.
    schedule_lock = threading.RLock()
    for name in _SCHEDULER_CALLS:
        scheduler_call = getattr(EventBridgeSchedulerBackend, name)
        setattr(EventBridgeSchedulerBackend, name, _serialised(scheduler_call, schedule_lock))

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


def _express_limit(env: Any) -> float | None:
    """How long (real seconds) an execution may run: five scaled minutes for an EXPRESS
    execution (not a Parallel or Map branch's frame), None for no limit of ours. A time
    scale of 0 makes every wait instant: no limit then, or every execution would time out."""
    kind = getattr(env.execution_type, "value", env.execution_type)
    if env.is_frame() or str(kind) != "EXPRESS":
        return None
    scale = _current["scale"]()
    return EXPRESS_DURATION_SECONDS * scale if scale > 0 else None


class _StartTime(str):
    """An execution's StartTime as a Task sees it (ISO 8601, milliseconds, Z), carrying the
    real start it is scaled from."""

    real: datetime

    def __new__(cls, text: str, real: datetime) -> _StartTime:
        value = super().__new__(cls, text)
        value.real = real
        return value

    def __copy__(self) -> str:
        return str(self)  # what a state reads of it (moto copies it out) is a plain string

    def __deepcopy__(self, memo: dict[int, Any]) -> str:
        return str(self)


def _scaled_start(start: Any, scale: float) -> str:
    """`now - (real elapsed / scale)`, as Step Functions writes a time: an execution's age in
    the same scaled time as its waits (scale 0: no time has passed)."""
    if isinstance(start, _StartTime):
        real = start.real
    elif isinstance(start, datetime):
        real = start
    else:
        real = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
    if real.tzinfo is None:
        real = real.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    age = (now - real) / scale if scale > 0 else timedelta(0)
    scaled = (now - age).astimezone(UTC)
    return _StartTime(f"{scaled:%Y-%m-%dT%H:%M:%S}.{scaled.microsecond // 1000:03d}Z", real)
