"""Callback token records in the DynamoDB store (moto): opened and spent in transactions."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from builders import STRING, at, make_service

from machinery_core.adapters.store import Store
from machinery_core.domain import engine
from machinery_core.domain.errors import Conflict, StaleVersion
from machinery_core.domain.models import (
    Callback,
    Event,
    EventStatus,
    Plan,
    PlannedStep,
    StepStatus,
    Waiting,
)

TOKEN_HASH = hashlib.sha256(b"a-token-the-store-never-sees").hexdigest()

SERVICE = make_service("translate", mode="callback", timeout_seconds=300)
PLAN = Plan(workflow_version=1, steps=[PlannedStep(service=SERVICE)], outputs={"message": STRING})


def make_callback(token_hash: str = TOKEN_HASH, **update: Any) -> Callback:
    fields: dict[str, Any] = {
        "token_hash": token_hash,
        "event_id": "evt-1",
        "step": 0,
        "attempt": 1,
        "dispatched_at": at(1),
        "expires_at": at(1 + 300 + 86_400),
        **update,
    }
    return Callback(**fields)


def stored_running_event(store: Store) -> Event:
    """evt-1, accepted and begun (version 1), about to dispatch its callback step."""
    now = at(0)
    store.create_event(
        Event(
            event_id="evt-1",
            workflow_id="translate-text",
            status=EventStatus.PENDING,
            data={"message": "hi"},
            context={"message": "hi"},
            acknowledged_at=now,
            updated_at=now,
        ),
        PLAN,
    )
    pending = store.get_event("evt-1")
    return store.save_event(engine.begin(pending, now))


def waiting_for(event: Event) -> Event:
    """The event as the worker dispatches its step: WAITING, until the step's timeout."""
    waiting = engine.wait_for_callback(event, PLAN, {"message": "hi"}, at(1))
    return engine.suspend(waiting, "callback", at(1 + 300))


def callback_then_outputs(event: Event) -> Event:
    return engine.record_call(
        event,
        PLAN,
        {"message": "hi"},
        engine.CallOutcome(started_at=at(1), ended_at=at(30), body={"message": "HI"}),
    ).event


def table_items(dynamodb: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = dynamodb.scan(TableName="machinery-test")["Items"]
    return items


def callback_items(dynamodb: Any) -> list[dict[str, Any]]:
    return [item for item in table_items(dynamodb) if item["PK"]["S"].startswith("CALLBACK#")]


# --- open_callback -----------------------------------------------------------------------


def test_open_callback_writes_the_token_record_and_the_waiting_event(
    store: Store, dynamodb: Any
) -> None:
    # Given a running event (version 1)
    event = stored_running_event(store)

    # When its step is dispatched to a callback service
    saved = store.open_callback(waiting_for(event), make_callback())

    # Then the event is saved WAITING at the next version
    assert (saved.status, saved.version) == (EventStatus.WAITING, 2)
    stored = store.get_event("evt-1")
    assert (stored.status, stored.version) == (EventStatus.WAITING, 2)
    assert stored.steps[0].status is StepStatus.WAITING
    # And with it the wait: its kind, when its timer fires, and one segment more
    assert (stored.waiting, stored.segment) == (Waiting(kind="callback", at=at(301)), 1)
    # And the token's record is keyed by the token's hash: the event, step and attempt it
    # may complete, open, until its expiry
    [item] = callback_items(dynamodb)
    assert item == {
        "PK": {"S": f"CALLBACK#{TOKEN_HASH}"},
        "SK": {"S": "CALLBACK"},
        "event_id": {"S": "evt-1"},
        "step": {"N": "0"},
        "attempt": {"N": "1"},
        "state": {"S": "OPEN"},
        "dispatched_at": {"S": at(1).isoformat()},
        # the table's TTL attribute, in epoch seconds
        "expires_at": {"N": str(int(at(1 + 300 + 86_400).timestamp()))},
    }
    # And it reads back as the callback that was opened
    assert store.get_callback(TOKEN_HASH) == make_callback()


def test_get_callback_of_an_unknown_hash_is_none(store: Store) -> None:
    assert store.get_callback(hashlib.sha256(b"never issued").hexdigest()) is None


def test_open_callback_on_a_stale_event_writes_neither_item(store: Store, dynamodb: Any) -> None:
    # Given an event read at version 1, then advanced by another writer to version 2
    event = stored_running_event(store)
    store.save_event(event.model_copy(update={"updated_at": at(2)}))
    before = table_items(dynamodb)

    # When the stale copy is dispatched
    with pytest.raises(StaleVersion):
        store.open_callback(waiting_for(event), make_callback())

    # Then no token record was written and the event is as the other writer left it
    assert store.get_callback(TOKEN_HASH) is None
    assert table_items(dynamodb) == before
    stored = store.get_event("evt-1")
    assert (stored.status, stored.version) == (EventStatus.RUNNING, 2)


def test_open_callback_never_overwrites_an_existing_token_record(
    store: Store, dynamodb: Any
) -> None:
    # Given a token record that has been spent
    event = store.open_callback(waiting_for(stored_running_event(store)), make_callback())
    store.use_callback(make_callback(), callback_then_outputs(event))
    before = table_items(dynamodb)

    # When a record with the same hash is opened again
    with pytest.raises(Conflict):
        store.open_callback(
            store.get_event("evt-1"), make_callback(attempt=2, dispatched_at=at(40))
        )

    # Then the spent record is not reopened and nothing else changed either
    assert table_items(dynamodb) == before
    callback = store.get_callback(TOKEN_HASH)
    assert callback is not None
    assert (callback.used, callback.attempt, callback.dispatched_at) == (True, 1, at(1))


# --- use_callback ------------------------------------------------------------------------


def test_use_callback_spends_the_token_and_saves_the_event(store: Store) -> None:
    # Given an event waiting on an open callback
    event = store.open_callback(waiting_for(stored_running_event(store)), make_callback())

    # When the callback's result is recorded
    saved = store.use_callback(make_callback(), callback_then_outputs(event))

    # Then the token is spent and the event holds the result, one version on
    callback = store.get_callback(TOKEN_HASH)
    assert callback is not None and callback.used is True
    assert saved.version == event.version + 1
    stored = store.get_event("evt-1")
    assert (stored.status, stored.version) == (EventStatus.SUCCEEDED, saved.version)
    assert stored.outputs == {"message": "HI"}


def test_a_token_is_spent_only_once(store: Store) -> None:
    # Given a callback already used
    event = store.open_callback(waiting_for(stored_running_event(store)), make_callback())
    saved = store.use_callback(make_callback(), callback_then_outputs(event))

    # When it is used again, even with the event's current version
    with pytest.raises(Conflict, match="already used") as refused:
        store.use_callback(make_callback(), saved.model_copy(update={"updated_at": at(99)}))

    # Then it is refused as used (not as a stale event) and the event is unchanged
    assert not isinstance(refused.value, StaleVersion)
    stored = store.get_event("evt-1")
    assert (stored.version, stored.updated_at) == (saved.version, saved.updated_at)


def test_use_callback_on_a_stale_event_leaves_the_token_unspent(store: Store) -> None:
    # Given an event waiting on a callback, then advanced by another writer (a timeout, say)
    event = store.open_callback(waiting_for(stored_running_event(store)), make_callback())
    advanced = store.save_event(event.model_copy(update={"updated_at": at(50)}))

    # When the callback's result is recorded against the stale copy
    with pytest.raises(StaleVersion):
        store.use_callback(make_callback(), callback_then_outputs(event))

    # Then the token stays open and the event is as the other writer left it
    callback = store.get_callback(TOKEN_HASH)
    assert callback is not None and callback.used is False
    stored = store.get_event("evt-1")
    assert (stored.status, stored.version) == (EventStatus.WAITING, advanced.version)
