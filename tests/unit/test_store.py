"""The DynamoDB store on moto: conditional writes, references, listings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from machinery_core.errors import BadRequest, Conflict, InvalidDefinition, NotFound, StaleVersion
from machinery_core.models import (
    Event,
    EventStatus,
    Plan,
    PlannedStep,
    Service,
    Workflow,
)
from machinery_core.store import Store, decode_cursor, encode_cursor

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
STRING = {"type": "string"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_service(name: str = "upper", **extra: Any) -> Service:
    return Service.model_validate(
        {
            "name": name,
            "address": f"http://127.0.0.1:5000/{name}",
            "spec": {"inputs": {"message": STRING}, "outputs": {"message": STRING}},
            **extra,
        }
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
    loaded, plan = store.load_run("evt-1")

    saved = store.save_event(loaded.model_copy(update={"status": EventStatus.RUNNING}))

    assert saved.version == 1
    event, plan_again = store.load_run("evt-1")
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
        store.load_run("nope")


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
