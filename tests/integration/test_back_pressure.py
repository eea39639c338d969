"""Back-pressure: AWS throttling at each call site is a 503 with Retry-After, or a retry with
backoff, and never an event acknowledged and then lost.

First each call site on its own, through botocore's Stubber (the client answers the
throttling error a call gets once botocore's own retries are spent); then the API and the
template's state machine in the local runtime, a botocore hook throttling the next few
calls of one operation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from builders import at
from integration_kit import ended_event, one_step_runtime, raised_by_the_step_function
from loopback import LoopbackServer, json_reply
from test_store import PLAN, make_event

from machinery_core.adapters.executions import Executions
from machinery_core.adapters.store import Store
from machinery_core.adapters.store.events import plan_reference
from machinery_core.adapters.timers import Timers
from machinery_core.domain.errors import Throttled
from machinery_core.domain.models import IdempotencyClaim
from machinery_core.local.runtime import LocalRuntime

ROOT = Path(__file__).resolve().parents[2]
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:machinery-StateMachine"
ROLE = "arn:aws:iam::123456789012:role/scheduler"


# --- each call site, through botocore's Stubber -------------------------------------------


@pytest.fixture
def stubbed_dynamodb() -> Iterator[tuple[Store, Stubber]]:
    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stubber:
        yield Store(client, "machinery-test", timedelta(days=30)), stubber


def plan_on_record() -> dict[str, Any]:
    return {"Item": {"PK": {"S": f"PLAN#{plan_reference(PLAN)}"}}}


DYNAMODB_CALL_SITES = {
    "create the event (PutItem)": (
        [("get_item", plan_on_record()), ("put_item", "ProvisionedThroughputExceededException")],
        lambda store: store.create_event(make_event("e1"), PLAN),
    ),
    "create the event and its key (TransactWriteItems)": (
        [("get_item", plan_on_record()), ("transact_write_items", "ThrottlingError")],
        lambda store: store.create_event(
            make_event("e1"),
            PLAN,
            IdempotencyClaim(workflow_id="shout", key="k", request_hash="h", expires_at=at(86400)),
        ),
    ),
    "read the workflow (GetItem)": (
        [("get_item", "ThrottlingException")],
        lambda store: store.get_workflow("shout"),
    ),
    "read the services (BatchGetItem)": (
        [("batch_get_item", "RequestLimitExceeded")],
        lambda store: store.get_service_records({"upper"}),
    ),
    "read the event and its plan (GetItem)": (
        [("get_item", "ProvisionedThroughputExceededException")],
        lambda store: store.load_with_plan("e1"),
    ),
    "checkpoint a step (UpdateItem)": (
        [("update_item", "ProvisionedThroughputExceededException")],
        lambda store: store.save_event(make_event("e1")),
    ),
    "list the events (Query)": (
        # one shard and the unsharded partition, queried at once: the first error ends it
        [("query", "ThrottlingException")] * 2,
        lambda store: Store(
            store.table.client, "machinery-test", timedelta(days=30), index_shards=1
        ).list_events("shout", 10, None, None),
    ),
    "withdraw an event (TransactWriteItems)": (
        [("transact_write_items", "ProvisionedThroughputExceeded")],
        lambda store: store.withdraw_event(make_event("e1")),
    ),
}


def add_answer(stubber: Stubber, operation: str, answer: str | dict[str, Any]) -> None:
    if isinstance(answer, dict):
        stubber.add_response(operation, answer)
    elif answer in ("ThrottlingError", "ProvisionedThroughputExceeded"):
        # a transaction names the throttled item in its cancellation reasons
        stubber.add_client_error(
            operation,
            "TransactionCanceledException",
            http_status_code=400,
            response_meta={},
            modeled_fields={"CancellationReasons": [{"Code": "None"}, {"Code": answer}]},
        )
    else:
        stubber.add_client_error(operation, answer, http_status_code=400)


@pytest.mark.parametrize("site", list(DYNAMODB_CALL_SITES))
def test_dynamodb_throttling_at_each_call_site_raises_throttled(
    stubbed_dynamodb: tuple[Store, Stubber], site: str
) -> None:
    # Given DynamoDB throttling the call the site makes
    store, stubber = stubbed_dynamodb
    answers, call = DYNAMODB_CALL_SITES[site]
    for operation, answer in answers:
        add_answer(stubber, operation, answer)

    # When the store makes it, Then the domain's Throttled says to come back in a second
    with pytest.raises(Throttled, match="throttled") as raised:
        call(store)
    assert raised.value.status_code == 503
    assert raised.value.retry_after_seconds == 1
    if not site.startswith("list"):
        stubber.assert_no_pending_responses()  # the site made the calls it was stubbed for


def test_an_error_that_is_not_throttling_passes_through(
    stubbed_dynamodb: tuple[Store, Stubber],
) -> None:
    store, stubber = stubbed_dynamodb
    stubber.add_client_error("get_item", "AccessDeniedException", http_status_code=400)
    with pytest.raises(ClientError, match="AccessDenied"):
        store.get_workflow("shout")


@pytest.mark.parametrize(
    ("code", "retry_after"), [("ThrottlingException", 1), ("ExecutionLimitExceeded", 30)]
)
def test_step_functions_throttling_starting_an_execution_raises_throttled(
    code: str, retry_after: int
) -> None:
    client = boto3.client(
        "stepfunctions", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stubber:
        stubber.add_client_error("start_execution", code, http_status_code=400)
        with pytest.raises(Throttled) as raised:
            Executions(client, MACHINE).start("e1", "{}")
    assert raised.value.retry_after_seconds == retry_after


@pytest.mark.parametrize("operation", ["create_schedule", "delete_schedule"])
def test_scheduler_throttling_setting_or_deleting_a_timer_raises_throttled(operation: str) -> None:
    client = boto3.client(
        "scheduler", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    timers = Timers(client, "machinery-timers", MACHINE, ROLE)
    with Stubber(client) as stubber:
        stubber.add_client_error(operation, "ThrottlingException", http_status_code=400)
        with pytest.raises(Throttled):
            if operation == "create_schedule":
                timers.set("e1-t1", datetime(2030, 1, 1, tzinfo=UTC), "{}")
            else:
                timers.cancel("e1-t1")


# --- through the API and the state machine, in the local runtime ---------------------------


class Throttling:
    """Throttles the next `count` calls of one operation on one client, as AWS answers once
    botocore's own retries are spent."""

    def __init__(self, client: Any, event: str, code: str) -> None:
        self.client, self.event, self.code, self.left = client, event, code, 0
        self.operation = event.rsplit(".", 1)[1]

    def __call__(self, **_: Any) -> None:
        if self.left > 0:
            self.left -= 1
            error = {"Error": {"Code": self.code, "Message": "Rate exceeded"}}
            raise ClientError(error, self.operation)  # type: ignore[arg-type]

    def __enter__(self) -> Throttling:
        self.client.meta.events.register(f"before-call.{self.event}", self)
        return self

    def __exit__(self, *_: object) -> None:
        self.client.meta.events.unregister(f"before-call.{self.event}", self)


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    server = LoopbackServer(lambda call, _: json_reply(200, {"loud": call.json()["word"].upper()}))
    server.start()
    local = one_step_runtime(ROOT / "template.yaml", server, "shout", "word", "loud")
    yield local
    local.stop()
    server.stop()


def dynamodb_of(runtime: LocalRuntime) -> Any:
    return runtime.dependencies.store.table.client


def stepfunctions_of(runtime: LocalRuntime) -> Any:
    return runtime.dependencies.executions.client


def send(runtime: LocalRuntime, word: str, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    body = json.dumps({"data": {"word": word}}).encode()
    return runtime.handle_http("POST", "/e/shout-once", headers, body)


def listed(runtime: LocalRuntime) -> list[str]:
    answer = runtime.handle_http("GET", "/workflows/shout-once/events", {}, b"")
    return [item["event_id"] for item in json.loads(answer.body)["items"]]


@pytest.mark.parametrize(
    ("client_of", "event", "code", "retry_after"),
    [
        (dynamodb_of, "dynamodb.GetItem", "ThrottlingException", "1"),
        (dynamodb_of, "dynamodb.BatchGetItem", "ProvisionedThroughputExceededException", "1"),
        (dynamodb_of, "dynamodb.PutItem", "ProvisionedThroughputExceededException", "1"),
        (dynamodb_of, "dynamodb.TransactWriteItems", "ThrottlingException", "1"),
        (stepfunctions_of, "stepfunctions.StartExecution", "ThrottlingException", "1"),
        (stepfunctions_of, "stepfunctions.StartExecution", "ExecutionLimitExceeded", "30"),
    ],
    ids=["workflow-read", "services-read", "event-write", "event-and-key-write", "start", "open"],
)
def test_intake_throttled_answers_503_with_retry_after_and_acknowledges_nothing(
    runtime: LocalRuntime, client_of: Any, event: str, code: str, retry_after: str
) -> None:
    # Given AWS throttling one call the intake makes (an event sent with an Idempotency-Key
    # is written with its key in a transaction; without, in a PutItem)
    key = None if event.endswith("PutItem") else f"key-{event}-{code}"
    before = listed(runtime)
    with Throttling(client_of(runtime), event, code) as throttling:
        throttling.left = 1

        # When an event is sent
        refused = send(runtime, "calm", key)

    # Then it is refused for a moment, with when to try again, and no event is left behind
    assert refused.status == 503, refused.body
    assert refused.headers["Retry-After"] == retry_after
    assert "throttled" in json.loads(refused.body)["message"]
    assert listed(runtime) == before
    # and sent again with the same Idempotency-Key, it is a new event, accepted, and it runs
    accepted = send(runtime, "calm", key)
    assert accepted.status == 202, accepted.body
    assert accepted.headers.get("Idempotent-Replayed") is None
    ended = ended_event(runtime, json.loads(accepted.body)["event_id"])
    assert (ended["status"], ended["outputs"]) == ("SUCCEEDED", {"loud": "CALM"})


def test_a_step_throttled_by_dynamodb_is_retried_by_the_state_machine(
    runtime: LocalRuntime,
) -> None:
    # Given DynamoDB throttling the next three checkpoints of a step
    with (
        raised_by_the_step_function(runtime, Throttled) as failures,
        Throttling(
            dynamodb_of(runtime), "dynamodb.UpdateItem", "ProvisionedThroughputExceededException"
        ) as throttling,
    ):
        throttling.left = 3

        # When an event runs
        accepted = send(runtime, "steady")
        assert accepted.status == 202, accepted.body
        ended = ended_event(runtime, json.loads(accepted.body)["event_id"])

    # Then the Run state retried the throttled invocations until the table took the writes
    assert failures == ["Throttled"] * 3
    assert throttling.left == 0
    assert (ended["status"], ended["outputs"]) == ("SUCCEEDED", {"loud": "STEADY"})


def test_the_state_machine_retries_throttled_with_backoff_and_jitter() -> None:
    # Given the template's state machine
    from machinery_core.local.template import Template

    definition = json.loads(Template.load(ROOT / "template.yaml").asl())

    # Then each Task retries Throttled (and Lambda's own throttling) with capped, jittered backoff
    for name in ("Run", "Notify", "Abort"):
        retriers = definition["States"][name]["Retry"]
        (throttling,) = [r for r in retriers if "Throttled" in r["ErrorEquals"]]
        assert "Lambda.TooManyRequestsException" in throttling["ErrorEquals"], name
        assert throttling["JitterStrategy"] == "FULL", name
        assert throttling["MaxAttempts"] >= 6, name
        assert throttling["BackoffRate"] > 1, name
        before = retriers[: retriers.index(throttling)]
        assert not any("States.ALL" in r["ErrorEquals"] for r in before), name
        waited = sum(
            min(throttling["IntervalSeconds"] * throttling["BackoffRate"] ** n, 30)
            for n in range(throttling["MaxAttempts"])
        )
        assert waited < 180, name  # inside an EXPRESS execution's five minutes
