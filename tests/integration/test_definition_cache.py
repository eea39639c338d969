"""The intake's definitions, kept for DefinitionCacheSeconds: the hot keys read once a second
per container, an update seen once that has passed, and nothing missing ever kept."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from builders import at, make_service
from test_store import make_workflow

from machinery_core.adapters.store import Store
from machinery_core.adapters.store.recent import Recent
from machinery_core.domain.errors import NotFound


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Reads:
    """Counts the store's GetItem and BatchGetItem requests."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        client.meta.events.register("before-call.dynamodb.GetItem", self)
        client.meta.events.register("before-call.dynamodb.BatchGetItem", self)

    def __call__(self, **_: Any) -> None:
        self.count += 1


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cached(dynamodb: Any, clock: Clock) -> Store:
    store = Store(dynamodb, "machinery-test", timedelta(days=30), definition_cache_seconds=1)
    store.recent_workflows = Recent(1, clock)
    store.recent_services = Recent(1, clock)
    store.save_service(make_service("upper"), at(0), create_only=True)
    store.save_workflow(make_workflow(), at(0), None)
    return store


def test_the_intake_reads_a_definition_once_per_window(
    cached: Store, dynamodb: Any, clock: Clock
) -> None:
    # Given a store keeping definitions for a second
    reads = Reads(dynamodb)

    # When 100 events' intakes read the workflow and its services within that second
    for _ in range(100):
        cached.intake_workflow("shout")
        cached.intake_service_records({"upper"})

    # Then DynamoDB was read once for each
    assert reads.count == 2

    # And once the second has passed, read again
    clock.now += 1
    cached.intake_workflow("shout")
    cached.intake_service_records({"upper"})
    assert reads.count == 4


def test_an_update_reaches_the_intake_once_the_window_has_passed(
    cached: Store, clock: Clock
) -> None:
    # Given the intake has read the workflow
    first = cached.intake_workflow("shout")

    # When it is updated to a new version
    cached.save_service(make_service("lower"), at(1), create_only=True)
    cached.save_workflow(make_workflow(services=("lower",)), at(2), first)
    assert cached.get_workflow("shout").version == 2

    # Then the intake runs the version it read until the window passes, then the new one
    assert cached.intake_workflow("shout").version == 1
    clock.now += 1
    assert cached.intake_workflow("shout").version == 2


def test_what_was_not_found_is_never_kept(cached: Store) -> None:
    # Given the intake looked for a workflow and a service that did not exist
    with pytest.raises(NotFound):
        cached.intake_workflow("late")
    assert cached.intake_service_records({"upper", "later"}).keys() == {"upper"}

    # When they are created
    cached.save_service(make_service("later"), at(1), create_only=True)
    cached.save_workflow(make_workflow("late"), at(1), None)

    # Then the next intake finds them at once
    assert cached.intake_workflow("late").workflow_id == "late"
    assert cached.intake_service_records({"upper", "later"}).keys() == {"upper", "later"}


def test_a_store_without_the_window_reads_every_time(dynamodb: Any) -> None:
    # Given the store as tests and the local runtime build it (no window)
    store = Store(dynamodb, "machinery-test", timedelta(days=30))
    store.save_service(make_service("upper"), at(0), create_only=True)
    store.save_workflow(make_workflow("plain"), at(0), None)
    reads = Reads(dynamodb)

    # When the intake reads the workflow three times, Then DynamoDB is read three times
    for _ in range(3):
        store.intake_workflow("plain")
    assert reads.count == 3
