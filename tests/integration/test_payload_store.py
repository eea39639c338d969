"""The store with the payload bucket (moto's S3, created from template.yaml): what leaves the
event item, what a small event still writes, and the bucket failing for a moment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from builders import UPPER, make_event, make_plan
from integration_kit import ended_event, one_step_runtime, raised_by_the_step_function
from loopback import LoopbackServer, json_reply

from machinery_core.adapters.payloads import PayloadBucket, object_key
from machinery_core.adapters.store import Store
from machinery_core.adapters.store.encoding import packed
from machinery_core.domain.errors import NotFound, PayloadStoreUnavailable
from machinery_core.local.runtime import LocalRuntime
from machinery_core.local.template import Template

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "machinery-test-payloads"
BIG = "x" * 40_000


@pytest.fixture
def s3(dynamodb: object) -> Any:
    """moto's S3, inside the `dynamodb` fixture's mock, with the template's bucket."""
    client = boto3.client("s3", region_name="us-east-1")
    Template.load(ROOT / "template.yaml").create_bucket(client, BUCKET)
    return client


@pytest.fixture
def store(dynamodb: object, s3: Any) -> Store:
    return Store(
        dynamodb,  # type: ignore[arg-type]
        "machinery-test",
        timedelta(days=30),
        PayloadBucket(s3, BUCKET),
    )


def _keys(s3: Any) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def _state(store: Store, event_id: str) -> bytes:
    item = store.table.get({"PK": {"S": f"EVENT#{event_id}"}, "SK": {"S": "EVENT"}})
    assert item is not None
    value: bytes = item["state"]["B"]
    return value


def _puts(s3: Any) -> list[str]:
    """The keys of every PutObject the client sends from now on."""
    keys: list[str] = []
    s3.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **_: keys.append(params["Key"])
    )
    return keys


def test_a_small_event_is_stored_exactly_as_before_and_writes_nothing_to_the_bucket(
    store: Store, s3: Any
) -> None:
    # Given an event whose payloads are a few bytes
    event = make_event()

    # When it is created and saved
    store.create_event(event, make_plan(UPPER))
    saved = store.save_event(event)

    # Then its item holds the state as it always did, and the bucket is empty
    assert _state(store, event.event_id) == packed(saved)["B"]
    assert _keys(s3) == []


def test_a_large_payload_leaves_the_item_and_comes_back_whole(store: Store, s3: Any) -> None:
    # Given an event whose data has a 40 KB field
    event = make_event(data={"text": BIG, "n": 1})

    # When it is created
    store.create_event(event, make_plan(UPPER))

    # Then the field is in the bucket under the event, the item keeps its reference
    (key,) = _keys(s3)
    assert key.startswith(f"events/{event.event_id}/")
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()) == BIG
    assert BIG.encode() not in _state(store, event.event_id)
    # and the event reads whole
    assert store.get_event(event.event_id).data == {"text": BIG, "n": 1}
    # or, for a view with no budget, with the field named and a placeholder in its place
    view = store.get_event(event.event_id, inline_bytes=0)
    assert view.data == {"text": None, "n": 1}
    size = len(json.dumps(BIG))
    assert [(pointer, ref.bytes) for pointer, ref in view.payloads.items()] == [
        ("/data/text", size),
        ("/context/text", size),  # the same value: stored once
    ]


def test_a_payload_already_stored_is_not_written_again(store: Store, s3: Any) -> None:
    # Given a stored event with a large field, read back by a store that knew nothing of it
    event = make_event(data={"text": BIG})
    store.create_event(event, make_plan(UPPER))
    fresh = Store(store.table.client, "machinery-test", timedelta(days=30), store.payloads)
    loaded = fresh.get_event(event.event_id)
    puts = _puts(s3)

    # When it is saved again (as every step does)
    fresh.save_event(loaded)

    # Then the bucket is not written: the value was read, so it is known to be there
    assert puts == []


def test_an_event_read_for_a_view_cannot_be_saved(store: Store) -> None:
    event = make_event(data={"text": BIG})
    store.create_event(event, make_plan(UPPER))
    partial = store.get_event(event.event_id, inline_bytes=0)
    with pytest.raises(ValueError, match="without all its payloads"):
        store.save_event(partial)


def test_the_bucket_refusing_a_put_is_payload_store_unavailable_and_nothing_is_recorded(
    store: Store, s3: Any
) -> None:
    # Given the bucket refusing every put
    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}}, "PutObject")

    s3.meta.events.register("provide-client-params.s3.PutObject", refuse)
    event = make_event(data={"text": BIG})

    # When an event with a large payload is created
    with pytest.raises(PayloadStoreUnavailable):
        store.create_event(event, make_plan(UPPER))

    # Then no event item was written without its payload
    assert store.table.get({"PK": {"S": f"EVENT#{event.event_id}"}, "SK": {"S": "EVENT"}}) is None


def test_a_missing_payload_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_payload("e1", "0" * 64)
    with pytest.raises(NotFound):
        store.get_payload("e1", "../../secrets")


def test_the_payload_bucket_is_encrypted_private_and_expires_with_the_events(s3: Any) -> None:
    # Given the bucket as the local runtime creates it from template.yaml
    # Then it is encrypted, closed to the public, and its objects expire with the events
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    retention = Template.load(ROOT / "template.yaml").document["Parameters"]["EventRetentionDays"]
    assert rule["Expiration"]["Days"] == retention["Default"]
    assert rule["Filter"]["Prefix"] == "events/"


# --- the bucket down for a moment, through the template's state machine -----------------


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    """The local runtime in-process; one service answering 40 KB."""
    server = LoopbackServer(lambda call, _: json_reply(200, {"report": BIG + call.json()["n"]}))
    server.start()
    local = one_step_runtime(ROOT / "template.yaml", server, "report", "n", "report")
    yield local
    local.stop()
    server.stop()


class Outage:
    """The bucket refusing the next `count` puts (as S3 does with 503 Slow Down once the
    client's own retries are spent)."""

    def __init__(self, count: int) -> None:
        self.left = count

    def __call__(self, **_: Any) -> None:
        if self.left > 0:
            self.left -= 1
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "down"}}, "PutObject")


@pytest.fixture
def outage(runtime: LocalRuntime) -> Iterator[Outage]:
    bucket = runtime.dependencies.store.payloads
    assert bucket is not None
    outage = Outage(0)
    bucket.client.meta.events.register("provide-client-params.s3.PutObject", outage)
    yield outage
    bucket.client.meta.events.unregister("provide-client-params.s3.PutObject", outage)


def test_a_step_whose_output_cannot_be_stored_for_a_moment_is_retried_not_lost(
    runtime: LocalRuntime, outage: Outage
) -> None:
    # Given the bucket refusing the next three puts: each fails the step's checkpoint
    outage.left = 3
    with raised_by_the_step_function(runtime, PayloadStoreUnavailable) as failures:
        # When an event runs the 40 KB step
        answer = runtime.handle_http("POST", "/e/report-once", {}, b'{"data": {"n": "1"}}')
        assert answer.status == 202, answer.body
        event = ended_event(runtime, json.loads(answer.body)["event_id"])

    # Then the state machine retried the invocation until the bucket answered again
    assert failures == ["PayloadStoreUnavailable"] * 3
    assert outage.left == 0
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == {"report": BIG + "1"}


def test_an_event_whose_data_cannot_be_stored_is_refused_with_a_503_then_accepted(
    runtime: LocalRuntime, outage: Outage
) -> None:
    # Given the bucket refusing the next put
    outage.left = 1
    body = json.dumps({"data": {"n": BIG}}).encode()

    # When an event with 40 KB of data is sent
    refused = runtime.handle_http("POST", "/e/report-once", {}, body)

    # Then it is refused for a moment, nothing acknowledged, and says when to try again
    assert refused.status == 503, refused.body
    assert refused.headers["Retry-After"] == "1"
    assert "payload store" in json.loads(refused.body)["message"]
    # and sent again, it is accepted and runs
    accepted = runtime.handle_http("POST", "/e/report-once", {}, body)
    assert accepted.status == 202, accepted.body
    event = ended_event(runtime, json.loads(accepted.body)["event_id"])
    assert event["status"] == "SUCCEEDED", event
    assert event["data"] == {"n": BIG}
    assert object_key(event["event_id"], "x").startswith(f"events/{event['event_id']}/")
