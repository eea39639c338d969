"""The DynamoDB store on moto: conditional writes, references, listings."""

from __future__ import annotations

import zlib
from datetime import timedelta
from typing import Any

import pytest
from builders import STRING, T0, at, make_service

from machinery_core.adapters.store import (
    MAX_JSON_BYTES,
    Store,
    decode_cursor,
    encode_cursor,
)
from machinery_core.adapters.store.events import plan_reference
from machinery_core.domain.errors import (
    BadRequest,
    Conflict,
    InvalidDefinition,
    ItemTooLarge,
    KeyAlreadyUsed,
    NotFound,
    StaleVersion,
)
from machinery_core.domain.models import (
    Attempt,
    ErrorInfo,
    Event,
    EventStatus,
    FieldSpec,
    IdempotencyClaim,
    Notification,
    NotificationStatus,
    Plan,
    PlannedStep,
    RunRecord,
    StepOperation,
    StepRecord,
    StepStatus,
    Workflow,
)


def make_workflow(name: str = "shout", services: tuple[str, ...] = ("upper",)) -> Workflow:
    return Workflow.model_validate(
        {
            "name": name,
            "spec": {
                "services": list(services),
                "inputs": {"message": STRING},
                "outputs": {"message": STRING},
            },
        }
    )


def make_event(event_id: str = "evt-1", acknowledged: float = 0, workflow: str = "shout") -> Event:
    return Event(
        event_id=event_id,
        workflow_id=workflow,
        status=EventStatus.PENDING,
        data={"message": "hi"},
        context={"message": "hi"},
        acknowledged_at=at(acknowledged),
        updated_at=at(acknowledged),
    )


PLAN = Plan(
    workflow_version=1,
    steps=[PlannedStep(service=make_service())],
    outputs=make_workflow().spec.outputs,
)


def stored_item(dynamodb: Any, pk: str, sk: str) -> dict[str, Any]:
    item: dict[str, Any] = dynamodb.get_item(
        TableName="machinery-test", Key={"PK": {"S": pk}, "SK": {"S": sk}}
    )["Item"]
    return item


# --- events: conditional writes ----------------------------------------------------------


def test_save_event_bumps_the_version_and_persists_the_state(store: Store) -> None:
    store.create_event(make_event(), PLAN)
    loaded, plan = store.load_with_plan("evt-1")

    saved = store.save_event(loaded.model_copy(update={"status": EventStatus.RUNNING}))

    assert saved.version == 1
    event, plan_again = store.load_with_plan("evt-1")
    assert (event.status, event.version) == (EventStatus.RUNNING, 1)
    assert plan_again == plan == PLAN


def test_save_event_with_a_stale_version_is_refused_and_changes_nothing(
    store: Store, dynamodb: Any
) -> None:
    # Given an event that one writer has already advanced from version 0 to 1
    store.create_event(make_event(), PLAN)
    stale = store.get_event("evt-1")
    store.save_event(stale.model_copy(update={"status": EventStatus.RUNNING}))
    before = stored_item(dynamodb, "EVENT#evt-1", "EVENT")

    # When a second writer saves its transition from the version it read (0)
    with pytest.raises(StaleVersion):
        store.save_event(stale.model_copy(update={"status": EventStatus.FAILED}))

    # Then the stored item is exactly what the first writer left
    assert stored_item(dynamodb, "EVENT#evt-1", "EVENT") == before
    current = store.get_event("evt-1")
    assert (current.status, current.version) == (EventStatus.RUNNING, 1)


def test_creating_the_same_event_twice_conflicts(store: Store) -> None:
    store.create_event(make_event(), PLAN)

    with pytest.raises(Conflict, match="already exists"):
        store.create_event(make_event().model_copy(update={"data": {"other": 1}}), PLAN)

    assert store.get_event("evt-1").data == {"message": "hi"}


def test_an_unknown_event_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_event("nope")
    with pytest.raises(NotFound):
        store.load_with_plan("nope")


def test_event_items_carry_a_ttl(store: Store, dynamodb: Any) -> None:
    store.create_event(make_event(), PLAN)

    item = stored_item(dynamodb, "EVENT#evt-1", "EVENT")

    assert int(item["expires_at"]["N"]) == int((T0 + timedelta(days=30)).timestamp())


# --- services ----------------------------------------------------------------------------


def test_creating_a_service_twice_conflicts(store: Store) -> None:
    record, created = store.save_service(make_service(), at(0), create_only=True)
    assert (record.version, created) == (1, True)

    with pytest.raises(Conflict, match="already exists"):
        store.save_service(make_service(timeout_seconds=3), at(1), create_only=True)

    assert store.get_service("upper").definition.timeout_seconds == 10.0


def test_an_upsert_bumps_the_version_and_keeps_the_creation_time(store: Store) -> None:
    store.save_service(make_service(), at(0), create_only=True)

    record, created = store.save_service(make_service(timeout_seconds=3), at(5), create_only=False)

    assert (record.version, created) == (2, False)
    assert (record.created_at, record.updated_at) == (at(0), at(5))
    assert store.get_service("upper").definition.timeout_seconds == 3


def test_an_upsert_of_a_new_service_creates_it(store: Store) -> None:
    record, created = store.save_service(make_service(), at(0), create_only=False)
    assert (record.version, created) == (1, True)


def test_a_service_used_by_a_workflow_cannot_be_deleted_until_the_workflow_is(
    store: Store,
) -> None:
    # Given upper used by two workflows
    store.save_service(make_service(), at(0), create_only=True)
    first = store.save_workflow(make_workflow("shout"), at(1), None)
    second = store.save_workflow(make_workflow("yell"), at(1), None)

    # When it is deleted, the refusal lists both workflows
    with pytest.raises(Conflict) as caught:
        store.delete_service("upper")
    assert "shout, yell" in caught.value.message
    assert caught.value.details == [
        {"path": "used_by", "message": "shout"},
        {"path": "used_by", "message": "yell"},
    ]
    assert store.get_service("upper").version == 1

    # Then, once both workflows are gone, it can be deleted
    store.delete_workflow(first)
    with pytest.raises(Conflict, match="yell"):
        store.delete_service("upper")
    store.delete_workflow(second)
    store.delete_service("upper")
    with pytest.raises(NotFound):
        store.get_service("upper")


def test_deleting_an_unknown_service_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.delete_service("ghost")


def test_get_services_returns_only_those_that_exist(store: Store) -> None:
    store.save_service(make_service("upper"), at(0), create_only=True)
    store.save_service(make_service("reverse"), at(0), create_only=True)

    found = store.get_services({"upper", "reverse", "ghost"})

    assert sorted(found) == ["reverse", "upper"]
    assert found["upper"] == make_service("upper")


# --- workflows ---------------------------------------------------------------------------


def test_a_workflow_referencing_a_missing_service_is_refused_naming_it(store: Store) -> None:
    store.save_service(make_service("upper"), at(0), create_only=True)

    with pytest.raises(InvalidDefinition) as caught:
        store.save_workflow(make_workflow(services=("upper", "ghost")), at(1), None)

    assert "ghost" in caught.value.message
    assert caught.value.details == [{"path": "spec.services", "message": "unknown service 'ghost'"}]
    # Nothing was written: the workflow does not exist and upper is not marked as used
    with pytest.raises(NotFound):
        store.get_workflow("shout")
    store.delete_service("upper")


def test_a_workflow_saved_twice_without_previous_conflicts(store: Store) -> None:
    store.save_service(make_service(), at(0), create_only=True)
    store.save_workflow(make_workflow(), at(1), None)

    with pytest.raises(Conflict, match="already exists"):
        store.save_workflow(make_workflow(), at(2), None)


def test_saving_a_workflow_from_a_stale_read_is_refused(store: Store) -> None:
    # Given two writers that both read version 1
    store.save_service(make_service(), at(0), create_only=True)
    read = store.save_workflow(make_workflow(), at(1), None)
    updated = store.save_workflow(make_workflow(), at(2), read)
    assert updated.version == 2

    # When the second writer saves from version 1
    with pytest.raises(StaleVersion):
        store.save_workflow(make_workflow(), at(3), read)

    # Then the first writer's version stands
    current = store.get_workflow("shout")
    assert (current.version, current.updated_at, current.created_at) == (2, at(2), at(1))


def test_dropping_a_service_from_a_workflow_releases_it(store: Store) -> None:
    store.save_service(make_service("upper"), at(0), create_only=True)
    store.save_service(make_service("reverse"), at(0), create_only=True)
    read = store.save_workflow(make_workflow(services=("upper", "reverse")), at(1), None)

    store.save_workflow(make_workflow(services=("upper",)), at(2), read)

    store.delete_service("reverse")
    with pytest.raises(Conflict):
        store.delete_service("upper")


# --- listings ----------------------------------------------------------------------------


def test_list_events_is_newest_first_with_cursor_pagination(store: Store) -> None:
    # Given five events acknowledged one second apart, and one of another workflow
    for n in range(5):
        store.create_event(make_event(f"evt-{n}", acknowledged=n), PLAN)
    store.create_event(make_event("other", acknowledged=9, workflow="elsewhere"), PLAN)

    # When they are listed two at a time
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        items, cursor = store.list_events("shout", 2, cursor, None)
        pages.append([item.event_id for item in items])
        if cursor is None:
            break

    # Then the pages run newest first, without gaps or repeats
    assert [page for page in pages if page] == [["evt-4", "evt-3"], ["evt-2", "evt-1"], ["evt-0"]]
    first, _ = store.list_events("shout", 1, None, None)
    assert (first[0].status, first[0].acknowledged_at) == (EventStatus.PENDING, at(4))


def test_list_events_filters_by_status(store: Store) -> None:
    for n in range(4):
        store.create_event(make_event(f"evt-{n}", acknowledged=n), PLAN)
    for event_id in ("evt-1", "evt-3"):
        event = store.get_event(event_id)
        store.save_event(event.model_copy(update={"status": EventStatus.SUCCEEDED}))

    succeeded, _ = store.list_events("shout", 50, None, EventStatus.SUCCEEDED)
    pending, _ = store.list_events("shout", 50, None, EventStatus.PENDING)

    assert [item.event_id for item in succeeded] == ["evt-3", "evt-1"]
    assert [item.event_id for item in pending] == ["evt-2", "evt-0"]


def test_list_services_pages_in_name_order(store: Store) -> None:
    for name in ("reverse", "upper", "space-counter"):
        store.save_service(make_service(name), at(0), create_only=True)

    first, cursor = store.list_services(2, None)
    second, _ = store.list_services(2, cursor)

    assert [r.service_id for r in first] == ["reverse", "space-counter"]
    assert [r.service_id for r in second] == ["upper"]


def test_a_cursor_round_trips() -> None:
    key = {"PK": {"S": "EVENT#e"}, "SK": {"S": "EVENT"}}
    assert decode_cursor(encode_cursor(key)) == key
    assert encode_cursor(None) is None
    assert decode_cursor(None) is None


@pytest.mark.parametrize(
    "cursor",
    ["garbage!!", "bm90IGpzb24", "eyJhIjogMX@@@", "WzEsIDJd"],
    ids=["not-base64", "not-json", "truncated", "json-array"],
)
def test_a_garbage_cursor_is_a_bad_request(store: Store, cursor: str) -> None:
    with pytest.raises(BadRequest, match="cursor"):
        decode_cursor(cursor)
    with pytest.raises(BadRequest):
        store.list_events("shout", 10, cursor, None)


def test_a_cursor_from_another_listing_is_a_bad_request(store: Store) -> None:
    # Given a genuine cursor from the listing of one workflow's events
    for n in range(3):
        store.create_event(make_event(f"evt-{n}", acknowledged=n), PLAN)
    _, cursor = store.list_events("shout", 1, None, None)
    assert cursor is not None

    # Then it does not page through another listing
    with pytest.raises(BadRequest, match="cursor"):
        store.list_events("elsewhere", 1, cursor, None)
    with pytest.raises(BadRequest, match="cursor"):
        store.list_services(1, cursor)


# --- events: what is stored, and what DynamoDB bills for it -----------------------------------


def rich_plan() -> Plan:
    """A plan using every optional setting: fallback, operations, callbacks, secrets."""
    callback = make_service(
        "translate",
        mode="callback",
        timeout_seconds=60,
        retry={"max_attempts": 5, "interval_seconds": 0.5, "jitter": "full"},
        headers={"X-Team": "text"},
        secret_headers={"Authorization": "Bearer s3cret"},
        description="translates",
    )
    return Plan(
        workflow_version=7,
        steps=[
            PlannedStep(
                service=make_service(),
                operation=StepOperation(
                    inputs={"message": "data.text"}, outputs={"shout": "message"}
                ),
                on_error="fallback",
                fallback=make_service("reverse", method="PUT"),
            ),
            PlannedStep(service=callback, on_error="continue"),
            PlannedStep(service=make_service("empty", spec={})),
        ],
        outputs={"shout": FieldSpec(type="string", required=False, description="loud")},
        callback_base_url="https://api.example.test",
    )


def rich_event() -> Event:
    """An event using every part of the model, with values equal to defaults deep inside."""
    failure = ErrorInfo(type="Timeout", message="no answer", status_code=None, retryable=True)
    attempt = Attempt(
        attempt=1, started_at=at(1), ended_at=at(2), duration_ms=1000.0, error=failure
    )
    return Event(
        event_id="evt-rich",
        workflow_id="shout",
        status=EventStatus.WAITING,
        version=12,
        # user data keeps its nulls, zeros, empties and falses: they are values, not defaults
        data={
            "message": "hi",
            "none": None,
            "zero": 0,
            "empty": "",
            "no": False,
            "list": [],
            "map": {},
        },
        context={"message": "HI", "none": None, "nested": {"a": [None, 0, {}]}},
        step_index=1,
        steps=[
            StepRecord(
                index=0,
                service="reverse",
                status=StepStatus.SUCCEEDED,
                attempts=1,
                started_at=at(1),
                ended_at=at(4),
                duration_ms=3000.0,
                input={"message": "hi"},
                output={"message": "ih"},
                history=[
                    attempt,
                    Attempt(
                        attempt=1,
                        started_at=at(3),
                        ended_at=at(4),
                        duration_ms=0.0,
                        status_code=200,
                    ),
                ],
                fallback_from="upper",
            ),
            StepRecord(
                index=1,
                service="translate",
                status=StepStatus.WAITING,
                attempts=0,
                started_at=at(5),
                input={},
                output=None,
            ),
        ],
        outputs={},
        error=None,
        acknowledged_at=at(0),
        updated_at=at(5),
        notification=Notification(
            url="https://hooks.example.test/done",
            status=NotificationStatus.PENDING,
            attempts=0,
            last_status_code=None,
        ),
        run=2,
        runs=[
            RunRecord(
                run=1,
                status=EventStatus.FAILED,
                error=ErrorInfo(type="HTTPError", message="503", status_code=503, retryable=False),
                ended_at=at(0.5),
                steps=[StepRecord(index=1, service="translate", status=StepStatus.FAILED)],
            )
        ],
        claimed_by="invocation-1",
        claimed_until=at(60),
    )


def test_a_rich_event_and_plan_round_trip_through_their_stored_form() -> None:
    # Given an event and a plan using every optional part of their models
    event, plan = rich_event(), rich_plan()

    # When they are written without their defaults and read back
    event_json = event.model_dump_json(exclude_defaults=True)
    plan_json = plan.model_dump_json(exclude_defaults=True)

    # Then each is the identical model, although the stored form is smaller
    assert Event.model_validate_json(event_json) == event
    assert Plan.model_validate_json(plan_json) == plan
    assert Event.model_validate_json(event_json).model_dump() == event.model_dump()
    assert len(event_json) < len(event.model_dump_json())
    assert len(plan_json) < len(plan.model_dump_json())


def test_a_rich_event_round_trips_through_the_store(store: Store) -> None:
    # Given a rich event stored with a rich plan, then saved once more
    store.create_event(rich_event(), rich_plan())
    saved = store.save_event(rich_event().model_copy(update={"updated_at": at(6)}))

    # Then both read back identical, by either read
    event, plan = store.load_with_plan("evt-rich")
    assert (event, plan) == (saved, rich_plan())
    assert store.get_event("evt-rich") == saved


def test_the_event_item_holds_the_state_and_names_its_shared_plan(
    store: Store, dynamodb: Any
) -> None:
    # When an event is created and advanced
    store.create_event(make_event(), PLAN)
    store.save_event(make_event().model_copy(update={"status": EventStatus.RUNNING}))

    # Then the event item holds its state, compressed, and its plan's reference
    event_item = stored_item(dynamodb, "EVENT#evt-1", "EVENT")
    assert set(event_item) == {
        "PK", "SK", "GSI1PK", "GSI1SK", "workflow_id", "status", "revision",
        "acknowledged_at", "updated_at", "expires_at", "state", "plan_ref",
    }  # fmt: skip
    assert Event.model_validate_json(zlib.decompress(event_item["state"]["B"])).version == 1
    # And the plan is an item of its own, under its content's hash, with no TTL (shared)
    reference = event_item["plan_ref"]["S"]
    assert reference == plan_reference(PLAN)
    plan_item = stored_item(dynamodb, f"PLAN#{reference}", "PLAN")
    assert set(plan_item) == {"PK", "SK", "plan"}
    assert Plan.model_validate_json(zlib.decompress(plan_item["plan"]["B"])) == PLAN


def test_events_planned_the_same_way_share_one_plan_written_once(
    store: Store, dynamodb: Any
) -> None:
    # Given a plan already stored by one store (one Lambda container)
    store.create_event(make_event("evt-1"), PLAN)
    writes: list[str] = []
    dynamodb.meta.events.register(
        "before-call.dynamodb", lambda model, **_: writes.append(model.name)
    )

    # When the same store, then another one, creates events with the same plan
    store.create_event(make_event("evt-2"), PLAN)
    mine = list(writes)
    writes.clear()
    other = Store(dynamodb, "machinery-test", timedelta(days=30))
    other.create_event(make_event("evt-3"), PLAN)

    # Then the first writes only its event; the other reads that the plan exists, and
    # writes only its event too
    assert mine == ["PutItem"]
    assert writes == ["GetItem", "PutItem"]
    # And a third plan-less store reads it once, then knows it
    writes.clear()
    fresh = Store(dynamodb, "machinery-test", timedelta(days=30))
    assert fresh.load_with_plan("evt-3")[1] == PLAN
    assert fresh.load_with_plan("evt-2")[1] == PLAN
    assert writes == ["GetItem", "GetItem", "GetItem"]  # two events, one plan


def test_an_event_stored_before_plans_had_their_own_item_still_loads(
    store: Store, dynamodb: Any
) -> None:
    # Given an event item as it was stored before: plan and state inline, as JSON text
    dynamodb.put_item(
        TableName="machinery-test",
        Item={
            "PK": {"S": "EVENT#evt-old"},
            "SK": {"S": "EVENT"},
            "version": {"N": "0"},
            "plan": {"S": PLAN.model_dump_json()},
            "state": {"S": make_event("evt-old").model_dump_json()},
        },
    )

    # Then it loads with its plan, and saves on as before
    assert store.load_with_plan("evt-old") == (make_event("evt-old"), PLAN)
    saved = store.save_event(make_event("evt-old"))
    assert store.load_with_plan("evt-old") == (saved, PLAN)


def test_a_duplicate_event_does_not_change_the_plan_of_the_first(store: Store) -> None:
    # Given a stored event
    store.create_event(make_event(), PLAN)

    # When an event with the same id but another plan is created, then it is refused
    other = PLAN.model_copy(update={"workflow_version": 2})
    with pytest.raises(Conflict, match="already exists"):
        store.create_event(make_event(), other)

    # And the first event keeps its own plan
    assert store.load_with_plan("evt-1")[1] == PLAN


def test_a_replayed_idempotency_key_stores_no_event(store: Store) -> None:
    # Given an event created under an Idempotency-Key
    claim = IdempotencyClaim(workflow_id="shout", key="k", request_hash="h", expires_at=at(86_400))
    store.create_event(make_event("evt-1"), PLAN, claim)

    # When the same key comes with a new event, then it is refused as already used
    with pytest.raises(KeyAlreadyUsed):
        store.create_event(make_event("evt-2"), PLAN, claim)

    # And no event was stored for it; the first keeps its plan, which the two share
    with pytest.raises(NotFound):
        store.get_event("evt-2")
    assert store.load_with_plan("evt-1") == (make_event("evt-1"), PLAN)


def test_an_event_stored_with_its_own_plan_item_still_loads(store: Store, dynamodb: Any) -> None:
    # Given an event as it was stored before plans were shared: its own PLAN item
    store.create_event(make_event("evt-own"), PLAN)
    item = stored_item(dynamodb, "EVENT#evt-own", "EVENT")
    del item["plan_ref"]
    dynamodb.put_item(TableName="machinery-test", Item=item)
    dynamodb.put_item(
        TableName="machinery-test",
        Item={
            "PK": {"S": "EVENT#evt-own"},
            "SK": {"S": "PLAN"},
            "plan": {"B": zlib.compress(PLAN.model_dump_json().encode())},
        },
    )

    # Then it loads with that plan
    assert store.load_with_plan("evt-own") == (make_event("evt-own"), PLAN)


def test_a_state_over_the_item_limit_is_refused_before_it_is_written(
    store: Store, dynamodb: Any
) -> None:
    # Given a stored event
    store.create_event(make_event(), PLAN)
    before = stored_item(dynamodb, "EVENT#evt-1", "EVENT")

    # When a state larger than DynamoDB's item limit is saved, even one that compresses well
    huge = make_event().model_copy(update={"context": {"text": "x" * MAX_JSON_BYTES}})
    with pytest.raises(ItemTooLarge):
        store.save_event(huge)

    # Then it is refused as too large and nothing changed
    assert stored_item(dynamodb, "EVENT#evt-1", "EVENT") == before


def test_an_event_over_the_item_limit_is_refused_before_anything_is_written(
    store: Store, dynamodb: Any
) -> None:
    huge = make_event().model_copy(update={"data": {"text": "x" * MAX_JSON_BYTES}})

    with pytest.raises(ItemTooLarge):
        store.create_event(huge, PLAN)

    assert dynamodb.scan(TableName="machinery-test")["Items"] == []


def test_a_write_that_keeps_the_status_leaves_the_listing_index_copy_alone(
    store: Store, dynamodb: Any
) -> None:
    # Given a RUNNING event (GSI1 projects `status` and `updated_at` for event listings)
    store.create_event(make_event(), PLAN)
    running = store.save_event(
        store.get_event("evt-1").model_copy(
            update={"status": EventStatus.RUNNING, "updated_at": at(1)}
        )
    )
    writes: list[dict[str, Any]] = []
    dynamodb.meta.events.register(
        "provide-client-params.dynamodb.UpdateItem", lambda params, **_: writes.append(params)
    )

    # When a step is checkpointed without changing the status, then the event ends
    stepped = store.save_event(running.model_copy(update={"step_index": 1, "updated_at": at(2)}))
    store.save_event(
        stepped.model_copy(update={"status": EventStatus.SUCCEEDED, "updated_at": at(3)})
    )

    # Then the checkpoint set neither projected attribute (no index write is billed for it),
    # and the listing shows the time of the last status change
    step_write, end_write = writes
    assert "#status" not in step_write["ExpressionAttributeNames"]
    assert "#updated" not in step_write["ExpressionAttributeNames"]
    assert {"#status", "#updated"} <= set(end_write["ExpressionAttributeNames"])
    item = stored_item(dynamodb, "EVENT#evt-1", "EVENT")
    assert (item["status"]["S"], item["updated_at"]["S"]) == ("SUCCEEDED", at(3).isoformat())
    assert store.get_event("evt-1").updated_at == at(3)


def test_a_checkpoint_after_the_status_changed_unseen_still_sets_it(store: Store) -> None:
    # Given an event built by hand, whose stored status the store does not know
    store.create_event(make_event(), PLAN)
    unknown = make_event().model_copy(update={"status": EventStatus.SUCCEEDED})

    # When it is saved
    store.save_event(unknown)

    # Then the listing sees the new status
    items, _ = store.list_events("shout", 10, None, EventStatus.SUCCEEDED)
    assert [item.event_id for item in items] == ["evt-1"]
