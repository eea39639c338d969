"""The local runtime: template.yaml deployed into an in-process moto (docs/architecture.md).

The table is created from the template's own resource, the functions are the template's
handlers imported from their CodeUri and invoked in-process, and the state machine is
the template's own ASL run by moto's interpreter. HTTP requests become API Gateway
(HTTP API, payload 2.0) events for the same handler that Lambda would run.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import os
import secrets
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from machinery_core.adapters.addresses import LOOPBACK_HOSTS, AddressPolicy
from machinery_core.local import moto_seams, powertools_seams
from machinery_core.local.aws_calls import CallRecorder, acting, acting_as
from machinery_core.local.template import FunctionSpec, Template, callback_tasks

ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "machinery-local"
PRUNE_EVERY = 256
STATE_MACHINE_TYPES = ("STANDARD", "EXPRESS")
LOG = logging.getLogger(__name__)


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


class LambdaContext:
    """What the handlers read of a Lambda context, with a real deadline."""

    def __init__(self, function: FunctionSpec, arn: str) -> None:
        self.function_name = f"{STACK}-{function.logical_id}"
        self.function_version = "$LATEST"
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = function.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + function.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


@dataclass
class DeployedFunction:
    spec: FunctionSpec
    arn: str
    handler: Callable[[dict[str, Any], Any], Any]


def _load_handler(spec: FunctionSpec) -> Callable[[dict[str, Any], Any], Any]:
    module_name, _, attribute = spec.handler.rpartition(".")
    path = spec.code_uri / f"{module_name.replace('.', '/')}.py"
    module_spec = importlib.util.spec_from_file_location(f"machinery_local_{spec.logical_id}", path)
    if module_spec is None or module_spec.loader is None:
        raise RuntimeError(f"cannot load {spec.logical_id} from {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # pydantic resolves generic models through it
    module_spec.loader.exec_module(module)
    handler: Callable[[dict[str, Any], Any], Any] = getattr(module, attribute)
    return handler


class LocalRuntime:
    def __init__(
        self,
        template_path: Path,
        *,
        time_scale: float = 1.0,
        allowed_service_hosts: str | None = None,
        state_machine_type: str = "STANDARD",
    ) -> None:
        self.template = Template.load(template_path)
        self.time_scale = time_scale
        self.state_machine_type = state_machine_type.upper()
        if self.state_machine_type not in STATE_MACHINE_TYPES:
            raise ValueError(f"state_machine_type {state_machine_type!r}: STANDARD or EXPRESS")
        # the timers: the template's schedule group, and the role its schedules start the
        # state machine as (the one role the template declares itself)
        self.schedule_group_id, _ = self.template.resource_of_type("AWS::Scheduler::ScheduleGroup")
        self.scheduler_role_id, _ = self.template.resource_of_type("AWS::IAM::Role")
        self.schedule_group = f"{STACK}-timers"
        self.scheduler_role_arn = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-{self.scheduler_role_id}"
        # each schedule's due time (real, UTC), by its ARN and creation: the scaled clock's
        self._timers_due: dict[tuple[str, datetime], datetime] = {}
        self._timers_firing = threading.Lock()  # one pass at a time (the thread, a test)
        self._timers_stop = threading.Event()
        self._timers_thread: threading.Thread | None = None
        self.functions: dict[str, DeployedFunction] = {}
        self.state_machine_arn = ""
        self.state_machine_id = ""
        self.aws_calls: CallRecorder | None = None
        self.table_name = f"{STACK}-table"
        self.payload_bucket = f"{STACK}-payloads"
        self._mock: Any = None
        self.signing_key = ""
        self._ended = 0
        self._prune_lock = threading.Lock()
        # A development runtime: services run on this machine, so loopback is allowed
        # unless ALLOWED_SERVICE_HOSTS says otherwise. The deployed stack allows none.
        if allowed_service_hosts is None:
            allowed_service_hosts = os.environ.get("ALLOWED_SERVICE_HOSTS", LOOPBACK_HOSTS)
        self.allowed_service_hosts = allowed_service_hosts

    # --- deployment ----------------------------------------------------------------

    def start(self) -> LocalRuntime:
        self._refuse_what_create_state_machine_refuses()
        for key, value in {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
        }.items():
            os.environ[key] = value
        from machinery_core.runtime.observability import logger

        # the logger may have been made before: it reads the level once, when it is made
        logger.setLevel(os.environ["POWERTOOLS_LOG_LEVEL"])
        from moto import mock_aws

        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()

        import boto3
        import requests

        from machinery_core.adapters.executions import Executions, StateMachineType
        from machinery_core.adapters.invoker import ServiceInvoker
        from machinery_core.adapters.payloads import PayloadBucket
        from machinery_core.adapters.store import Store
        from machinery_core.adapters.timers import Timers
        from machinery_core.runtime.dependencies import Dependencies, configure

        aws = boto3.session.Session(region_name=REGION)
        self.aws_calls = CallRecorder.from_environment()
        if self.aws_calls is not None:
            self.aws_calls.attach(aws.events)
        dynamodb = aws.client("dynamodb")
        stepfunctions = aws.client("stepfunctions")
        secretsmanager = aws.client("secretsmanager")
        s3 = aws.client("s3")
        self._scheduler = aws.client("scheduler")
        self._stepfunctions = stepfunctions
        secret_arn = self._create_signing_secret(secretsmanager)
        self.template.create_table(dynamodb, self.table_name)
        self.template.create_bucket(s3, self.payload_bucket)
        for spec in self.template.functions().values():
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-{spec.logical_id}"
            self.functions[spec.logical_id] = DeployedFunction(spec, arn, _load_handler(spec))
        self._create_state_machine(stepfunctions)
        self._scheduler.create_schedule_group(Name=self.schedule_group)
        if self.aws_calls is not None:
            self.aws_calls.stack(self._physical_names(secret_arn))

        session = requests.Session()
        parameters = self.template.document["Parameters"]
        retention = int(parameters["EventRetentionDays"]["Default"])
        policy = AddressPolicy.parse(self.allowed_service_hosts)
        self.dependencies = Dependencies(
            store=Store(
                dynamodb,
                self.table_name,
                timedelta(days=retention),
                PayloadBucket(s3, self.payload_bucket),
                int(parameters["EventIndexShards"]["Default"]),
                # not DefinitionCacheSeconds: on a laptop, a definition just changed is what
                # the next event runs (the cache is for thousands of events a second)
                definition_cache_seconds=0,
            ),
            executions=Executions(
                stepfunctions, self.state_machine_arn, StateMachineType(self.state_machine_type)
            ),
            timers=Timers(
                self._scheduler,
                self.schedule_group,
                self.state_machine_arn,
                self.scheduler_role_arn,
            ),
            invoker=ServiceInvoker(session, address_policy=policy),
            signing_key=_signing_key_per_function(secretsmanager, secret_arn),
            address_policy=policy,
        )
        configure(self.dependencies)
        moto_seams.install(
            self._invoke_for_state_machine, lambda: self.time_scale, self.execution_ended
        )
        powertools_seams.install()  # the API handler serves concurrent requests here
        self._timers_thread = threading.Thread(
            target=self._fire_timers_until_stopped, name="local-timers", daemon=True
        )
        self._timers_thread.start()
        return self

    def stop(self) -> None:
        from machinery_core.runtime.dependencies import configure

        self._timers_stop.set()
        if self._timers_thread is not None:
            self._timers_thread.join(timeout=5)

        configure(None)
        if self.aws_calls is not None:
            self.aws_calls.close()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None

    def serve_at(self, url: str) -> None:
        """Where the API listens: callback services are told to call back there."""
        self.dependencies.callback_base_url = url

    def _create_signing_secret(self, secretsmanager: Any) -> str:
        """The template's notification signing secret; MACHINERY_NOTIFICATION_SECRET sets it."""
        name, props = self.template.resource_of_type("AWS::SecretsManager::Secret")
        value = os.environ.get("MACHINERY_NOTIFICATION_SECRET") or secrets.token_urlsafe(36)
        self.signing_key = value
        answer = secretsmanager.create_secret(
            Name=f"{STACK}-{name}", Description=props.get("Description", ""), SecretString=value
        )
        arn: str = answer["ARN"]
        return arn

    def _refuse_what_create_state_machine_refuses(self) -> None:
        """moto creates an EXPRESS state machine that waits for a task token; AWS refuses
        it, so this refuses it as a deploy would fail, before anything is created."""
        if self.state_machine_type != "EXPRESS":
            return
        _, props = self.template.state_machine()
        found = callback_tasks(props["Definition"])
        if found:
            from botocore.exceptions import ClientError

            message = (
                "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: Express state "
                "machine does not support '.waitForTaskToken' service integration at "
                + ", ".join(found)
                + "'"
            )
            error = {"Error": {"Code": "InvalidDefinition", "Message": message}}
            raise ClientError(error, "CreateStateMachine")  # type: ignore[arg-type]

    def _create_state_machine(self, stepfunctions: Any) -> None:
        name, props = self.template.state_machine()
        substitutions = {
            key: self._resolve(value)
            for key, value in props.get("DefinitionSubstitutions", {}).items()
        }
        answer = stepfunctions.create_state_machine(
            name=f"{STACK}-{name}",
            definition=self.template.asl(substitutions),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/{STACK}-{name}",
            type=self.state_machine_type,
        )
        self.state_machine_arn = answer["stateMachineArn"]
        self.state_machine_id = name

    def _physical_names(self, secret_arn: str) -> dict[str, Any]:
        """What each logical id of the template is here, as a deploy would name it."""
        table, _ = self.template.resource_of_type("AWS::DynamoDB::Table")
        secret, _ = self.template.resource_of_type("AWS::SecretsManager::Secret")
        bucket, _ = self.template.resource_of_type("AWS::S3::Bucket")
        resources: dict[str, dict[str, str]] = {
            bucket: {"Ref": self.payload_bucket, "Arn": f"arn:aws:s3:::{self.payload_bucket}"},
            table: {
                "Ref": self.table_name,
                "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.table_name}",
            },
            self.state_machine_id: {
                "Ref": self.state_machine_arn,
                "Arn": self.state_machine_arn,
                "Name": f"{STACK}-{self.state_machine_id}",
            },
            secret: {"Ref": secret_arn, "Id": secret_arn},
            self.schedule_group_id: {
                "Ref": self.schedule_group,
                "Arn": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/{self.schedule_group}",
            },
            self.scheduler_role_id: {
                "Ref": f"{STACK}-{self.scheduler_role_id}",
                "Arn": self.scheduler_role_arn,
            },
        }
        for logical_id, deployed in self.functions.items():
            resources[logical_id] = {"Ref": f"{STACK}-{logical_id}", "Arn": deployed.arn}
        return {"region": REGION, "account": ACCOUNT, "stack_name": STACK, "resources": resources}

    def _resolve(self, value: Any) -> str:
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            if logical_id in self.functions and attribute == "Arn":
                return self.functions[logical_id].arn
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in self.functions:
            return self.functions[value["Ref"]].arn
        if isinstance(value, str):
            return value
        raise ValueError(f"the local runtime cannot resolve {value!r}")

    # --- timers ----------------------------------------------------------------------

    def _fire_timers_until_stopped(self) -> None:
        # Listing the schedules costs a few ms under moto's lock: the loop lists only while
        # some may exist (one was set since the last pass, or one is waiting to be due).
        created = threading.Event()
        created.set()
        self._scheduler.meta.events.register(
            "after-call.scheduler.CreateSchedule", lambda **_: created.set()
        )
        while not self._timers_stop.wait(0.02):
            if not created.is_set() and not self._timers_due:
                continue
            created.clear()
            try:
                self.fire_due_timers()
            except Exception:  # the loop must outlive one bad schedule
                LOG.exception("a timer could not be fired")
                created.set()

    def fire_due_timers(self) -> list[str]:
        """Fire the schedules of the timers' group that are due, as EventBridge Scheduler
        would (moto stores schedules and never fires them): StartExecution of the target
        with its input, as the scheduler's role, then the schedule deleted
        (ActionAfterCompletion DELETE). Due on this runtime's scaled clock: when the real
        time is past `created + (at - created) * time_scale`. The names fired."""
        with self._timers_firing:
            return self._fire_due_timers()

    def _fire_due_timers(self) -> list[str]:
        from botocore.exceptions import ClientError

        from machinery_core.adapters.timers import moment_of

        listed = [
            schedule
            for page in self._scheduler.get_paginator("list_schedules").paginate(
                GroupName=self.schedule_group
            )
            for schedule in page.get("Schedules", [])
        ]
        keys = {(schedule["Arn"], schedule["CreationDate"]): schedule for schedule in listed}
        for key in set(self._timers_due) - set(keys):
            del self._timers_due[key]  # fired, or deleted
        fired = []
        now = datetime.now(UTC)
        for key, listing in sorted(keys.items(), key=lambda item: item[0][0]):
            name = listing["Name"]
            due = self._timers_due.get(key)
            schedule = None
            if due is None:
                try:
                    schedule = self._scheduler.get_schedule(
                        Name=name, GroupName=self.schedule_group
                    )
                except ClientError:
                    continue  # deleted since it was listed
                created = schedule["CreationDate"]
                at = moment_of(schedule["ScheduleExpression"])
                due = self._timers_due[key] = created + (at - created) * self.time_scale
            if due > now:
                continue
            if schedule is None:
                try:
                    schedule = self._scheduler.get_schedule(
                        Name=name, GroupName=self.schedule_group
                    )
                except ClientError:
                    continue
            target = schedule["Target"]
            try:
                with acting_as(self.scheduler_role_id):
                    # unnamed, as Scheduler starts it: Step Functions names it with a UUID
                    # (moto would name it "None", and only once)
                    self._stepfunctions.start_execution(
                        stateMachineArn=target["Arn"],
                        name=str(uuid.uuid4()),
                        input=target.get("Input", "{}"),
                    )
            except ClientError:
                # Scheduler retries a failed start (the target's RetryPolicy): the next pass
                LOG.warning("timer %s could not start its execution", name, exc_info=True)
                continue
            try:
                self._scheduler.delete_schedule(Name=name, GroupName=self.schedule_group)
            except ClientError:
                pass  # cancelled meanwhile: it has fired all the same
            self._timers_due.pop(key, None)
            fired.append(name)
        return fired

    # --- Lambda ----------------------------------------------------------------------

    def function(self, name: str) -> DeployedFunction | None:
        """The deployed function `name` names: its ARN, logical id or function name."""
        return next(
            (
                f
                for f in self.functions.values()
                if name in (f.arn, f.spec.logical_id, f"{STACK}-{f.spec.logical_id}")
            ),
            None,
        )

    def invoke(self, function: str, payload: dict[str, Any]) -> tuple[Any, str | None]:
        """Run a function's handler in-process: (result, None) or (error payload, error type)."""
        deployed = self.function(function)
        if deployed is None:
            return {
                "errorType": "ResourceNotFoundException",
                "errorMessage": function,
            }, "ResourceNotFoundException"
        try:
            with acting_as(deployed.spec.logical_id):
                return deployed.handler(payload, LambdaContext(deployed.spec, deployed.arn)), None
        except Exception as error:
            error_type = type(error).__name__
            return {
                "errorType": error_type,
                "errorMessage": str(error),
                "stackTrace": traceback.format_exception(error),
            }, error_type

    def _invoke_for_state_machine(
        self, function: str, payload: dict[str, Any]
    ) -> tuple[Any, str | None]:
        """A Task's lambda:invoke: the state machine's role must allow it."""
        if self.aws_calls is not None:
            params = {"FunctionName": function}
            self.aws_calls.record(self.state_machine_id, "lambda", "Invoke", params)
        return self.invoke(function, payload)

    def execution_ended(
        self, execution_input: dict[str, Any], status: str, execution: str | None = None
    ) -> None:
        if status != "SUCCEEDED":
            # The event must not stay RUNNING because its execution ended some other way
            # (unless another execution has taken it up since: a retried run's).
            event_id = execution_input.get("event_id")
            if event_id:
                cause = f"the state machine execution ended {status}"
                self.invoke(
                    "StepFunction",
                    {
                        "event_id": event_id,
                        "action": "abort",
                        "error": {"Error": "States.ExecutionEnded", "Cause": cause},
                        "execution": execution,
                    },
                )
        with self._prune_lock:
            self._ended += 1
            if self._ended % PRUNE_EVERY == 0:
                self.prune_executions()

    def prune_executions(self) -> None:
        """moto keeps every execution and scans them linearly on each start: keep it short."""
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        backend = stepfunctions_parser_backends[ACCOUNT][REGION]
        for machine in backend.state_machines:
            machine.executions[:] = [e for e in machine.executions if str(e.status) == "RUNNING"]

    # --- HTTP ------------------------------------------------------------------------

    def handle_http(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        source_ip: str = "127.0.0.1",
    ) -> HttpAnswer:
        path, _, query = target.partition("?")
        for deployed in self.functions.values():
            for route in deployed.spec.routes:
                match = route.pattern.match(path)
                if match and route.method in (method, "ANY"):
                    event = _http_api_event(
                        route.route_key, method, path, query, headers, body, source_ip
                    )
                    event["pathParameters"] = match.groupdict() or None
                    result, error = self.invoke(deployed.spec.logical_id, event)
                    if error is not None:
                        LOG.error(
                            "%s failed: %s", deployed.spec.logical_id, "".join(result["stackTrace"])
                        )
                        return _json_answer(500, {"message": "Internal Server Error"})
                    return _answer_from(result)
        return _json_answer(404, {"message": "Not Found"})


def _signing_key_per_function(secretsmanager: Any, secret_arn: str) -> Callable[[], bytes]:
    """The signing secret, read once by each function that needs it: as each Lambda
    container reads it once, and so that the permissions check sees every reader."""
    keys: dict[str | None, bytes] = {}
    lock = threading.Lock()

    def read() -> bytes:
        with lock:
            function = acting()
            if function not in keys:
                answer = secretsmanager.get_secret_value(SecretId=secret_arn)
                keys[function] = answer["SecretString"].encode()
            return keys[function]

    return read


def _http_api_event(
    route_key: str,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    source_ip: str,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    lowered = {key.lower(): value for key, value in headers.items()}
    return {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "queryStringParameters": params or None,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": lowered.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": text if body else None,
        "isBase64Encoded": encoded,
    }


def _answer_from(result: dict[str, Any]) -> HttpAnswer:
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    headers = {key: str(value) for key, value in (result.get("headers") or {}).items()}
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers[key] = ", ".join(str(v) for v in values)
    return HttpAnswer(status=int(result.get("statusCode", 200)), headers=headers, body=raw)


def _json_answer(status: int, body: dict[str, Any]) -> HttpAnswer:
    return HttpAnswer(status, {"Content-Type": "application/json"}, json.dumps(body).encode())
