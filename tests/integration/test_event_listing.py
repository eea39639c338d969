"""A workflow's event listing, write-sharded: every entry once, newest first, across shards.

The listing index spreads each workflow's entries over N shards (GSI1 partitions); a page
merges them. These tests hold the merge to what one unsharded partition answered: the
order, the status filter, cursors through many pages, entries written before the sharding,
a shard count raised between two pages, and cursors that are not the API's.
"""

from __future__ import annotations

import base64
import json
import random
from datetime import timedelta
from typing import Any

import pytest
from builders import at
from test_store import PLAN, make_event

from machinery_core.adapters.store import Store, encode_cursor, keys, listing
from machinery_core.domain.errors import BadRequest
from machinery_core.domain.models import EventStatus


def sharded_store(dynamodb: Any, shards: int) -> Store:
    return Store(dynamodb, "machinery-test", timedelta(days=30), index_shards=shards)


def every_page(
    store: Store, limit: int, status: EventStatus | None = None, workflow: str = "shout"
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        items, cursor = store.list_events(workflow, limit, cursor, status)
        pages.append([item.event_id for item in items])
        if cursor is None:
            return pages
        assert len(pages) < 1000, "the cursor never ends"


def newest_first(event_ids: dict[str, float]) -> list[str]:
    return sorted(event_ids, key=lambda event_id: (event_ids[event_id], event_id), reverse=True)


def index_partitions(dynamodb: Any) -> dict[str, str]:
    """Every event item's listing partition, by event id."""
    items = dynamodb.scan(TableName="machinery-test")["Items"]
    return {
        keys.event_id_of(item["PK"]["S"]): item["GSI1PK"]["S"]
        for item in items
        if item["SK"]["S"] == keys.EVENT
    }


def create(store: Store, count: int, *, start: float = 0, prefix: str = "evt") -> dict[str, float]:
    """`count` events a tenth of a second apart, some sharing their moment."""
    created = {}
    for n in range(count):
        moment = start + (n // 3) * 0.1  # three at a time share a moment: ties by id
        event_id = f"{prefix}-{n:04d}"
        store.create_event(make_event(event_id, acknowledged=moment), PLAN)
        created[event_id] = moment
    return created


def test_each_entry_goes_to_the_shard_its_event_id_hashes_to(dynamodb: Any) -> None:
    # Given a store with 8 shards
    store = sharded_store(dynamodb, 8)

    # When 200 events of one workflow are accepted
    created = create(store, 200)

    # Then their entries are spread over all 8 partitions, each where its id says
    partitions = index_partitions(dynamodb)
    assert set(partitions.values()) == {f"EVENTS#shout#{shard}" for shard in range(8)}
    for event_id in created:
        assert partitions[event_id] == f"EVENTS#shout#{keys.event_shard(event_id, 8)}"
    per_shard = [list(partitions.values()).count(f"EVENTS#shout#{s}") for s in range(8)]
    assert min(per_shard) >= 10, per_shard  # a hash, not one hot shard


@pytest.mark.parametrize("limit", [1, 7, 500])
def test_pages_list_every_event_once_newest_first_across_shards(dynamodb: Any, limit: int) -> None:
    # Given 70 events of one workflow over 16 shards, and an event of another workflow
    store = sharded_store(dynamodb, 16)
    created = create(store, 70)
    store.create_event(make_event("elsewhere-1", acknowledged=5, workflow="elsewhere"), PLAN)
    expected = newest_first(created)

    # When every page is read
    pages = every_page(store, limit)

    # Then the pages hold at most `limit` each and, together, every event once in order
    assert all(len(page) <= limit for page in pages)
    assert [event_id for page in pages for event_id in page] == expected
    assert all(pages[:-1]), "an empty page before the end"


def test_the_status_filter_holds_across_shards_and_pages(dynamodb: Any) -> None:
    # Given 90 events, one in nine SUCCEEDED and one in nine FAILED, the rest PENDING
    store = sharded_store(dynamodb, 8)
    created = create(store, 90)
    statuses = {}
    for n, event_id in enumerate(sorted(created)):
        status = {0: EventStatus.SUCCEEDED, 4: EventStatus.FAILED}.get(n % 9, EventStatus.PENDING)
        statuses[event_id] = status
        if status is not EventStatus.PENDING:
            store.save_event(store.get_event(event_id).model_copy(update={"status": status}))

    # When each status is listed four at a time
    for status in (EventStatus.SUCCEEDED, EventStatus.FAILED, EventStatus.PENDING):
        pages = every_page(store, 4, status)

        # Then each listing holds exactly that status's events, newest first
        listed = [event_id for page in pages for event_id in page]
        wanted = {e: created[e] for e in created if statuses[e] is status}
        assert listed == newest_first(wanted), status


def test_a_sparse_filter_ends_pages_early_with_a_cursor_and_still_lists_all(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 300 events of which 3 FAILED, and a page that may make few queries
    store = sharded_store(dynamodb, 4)
    created = create(store, 300)
    failed = ["evt-0010", "evt-0150", "evt-0290"]
    for event_id in failed:
        event = store.get_event(event_id)
        store.save_event(event.model_copy(update={"status": EventStatus.FAILED}))
    monkeypatch.setattr(listing, "MAX_QUERIES_PER_PAGE", 10)

    # When the FAILED events are listed ten at a time
    pages = every_page(store, 10, EventStatus.FAILED)

    # Then some pages end short with a cursor, and together they list exactly those three
    assert len(pages) > 2
    assert [event_id for page in pages for event_id in page] == newest_first(
        {event_id: created[event_id] for event_id in failed}
    )


def test_entries_written_before_the_sharding_are_listed_with_the_rest(dynamodb: Any) -> None:
    # Given events whose entries sit in the unsharded partition (as stored before), and newer
    # ones in shards; some of the old ones newer than some of the new ones
    store = sharded_store(dynamodb, 8)
    old = {f"old-{n}": n * 1.0 for n in range(10)}
    for event_id, moment in old.items():
        store.create_event(make_event(event_id, acknowledged=moment), PLAN)
        dynamodb.update_item(
            TableName="machinery-test",
            Key=keys.event_key(event_id),
            UpdateExpression="SET GSI1PK = :legacy",
            ExpressionAttributeValues={":legacy": {"S": "EVENTS#shout"}},
        )
    new = create(store, 30, start=4.5)

    # When the workflow's events are listed, three at a time
    pages = every_page(store, 3)

    # Then both are listed, once each, in one order
    assert [event_id for page in pages for event_id in page] == newest_first({**old, **new})


def test_a_cursor_given_out_before_the_sharding_goes_on_below_its_entry(dynamodb: Any) -> None:
    # Given events in shards, and a cursor of the old form: the GSI1 key of one entry
    store = sharded_store(dynamodb, 8)
    created = create(store, 20)
    last_seen = newest_first(created)[4]
    sort_key = keys.events_sort_key(at(created[last_seen]), last_seen)
    old_cursor = encode_cursor(
        {
            **keys.event_key(last_seen),
            "GSI1PK": {"S": "EVENTS#shout"},
            "GSI1SK": {"S": sort_key},
        }
    )

    # When the listing goes on from it
    items, _ = store.list_events("shout", 100, old_cursor, None)

    # Then it lists what came after that entry, newest first
    assert [item.event_id for item in items] == newest_first(created)[5:]


def test_raising_the_shard_count_between_two_pages_loses_nothing(dynamodb: Any) -> None:
    # Given events written over 4 shards, then newer and older-looking ones over 8
    four, eight = sharded_store(dynamodb, 4), sharded_store(dynamodb, 8)
    created = create(four, 40)
    created |= create(eight, 40, start=0.05, prefix="late")

    # When the first page is read by a store with 4 shards and the rest with 8
    first, cursor = four.list_events("shout", 10, None, None)
    rest = every_page_from(eight, 10, cursor)

    # Then no entry of the first page repeats, and every entry below its last is listed
    listed = [item.event_id for item in first] + rest
    assert len(listed) == len(set(listed))
    cut = [item.event_id for item in first][-1]
    ordered = newest_first(created)
    assert rest == ordered[ordered.index(cut) + 1 :]


def every_page_from(store: Store, limit: int, cursor: str | None) -> list[str]:
    listed: list[str] = []
    while cursor is not None:
        items, cursor = store.list_events("shout", limit, cursor, None)
        listed += [item.event_id for item in items]
    return listed


def test_a_random_mix_of_moments_lists_in_order(dynamodb: Any) -> None:
    # Given 100 events at random moments (many shared) over 16 shards
    store = sharded_store(dynamodb, 16)
    chooser = random.Random(18)
    created = {}
    for n in range(100):
        moment = chooser.randrange(40) * 0.5
        store.create_event(make_event(f"r-{n:03d}", acknowledged=moment), PLAN)
        created[f"r-{n:03d}"] = moment

    # When they are listed 13 at a time
    pages = every_page(store, 13)

    # Then the order is the one total order (moment, then id), newest first
    assert [event_id for page in pages for event_id in page] == newest_first(created)


def cursor_of(body: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


GOOD_KEY = "2026-01-01T00:00:00+00:00#evt-1"


@pytest.mark.parametrize(
    "body",
    [
        {"w": "elsewhere", "b": None, "p": {}},
        {"w": "shout", "b": "not a sort key", "p": {}},
        {"w": "shout", "b": None, "p": {"64": None}},
        {"w": "shout", "b": None, "p": {"x": GOOD_KEY}},
        {"w": "shout", "b": None, "p": {"0": 7}},
        {"w": "shout", "b": None, "p": []},
        {"w": "shout", "b": None, "p": {}, "extra": 1},
        {
            "PK": {"S": "EVENT#e"},
            "SK": {"S": "EVENT"},
            "GSI1PK": {"S": "EVENTS#other"},
            "GSI1SK": {"S": GOOD_KEY},
        },
    ],
    ids=[
        "another-workflow",
        "bad-bound",
        "shard-out-of-range",
        "shard-not-a-number",
        "position-not-text",
        "positions-not-a-map",
        "unknown-field",
        "old-form-other-workflow",
    ],
)
def test_a_cursor_that_is_not_the_apis_is_a_bad_request(dynamodb: Any, body: Any) -> None:
    store = sharded_store(dynamodb, 8)
    with pytest.raises(BadRequest, match="cursor"):
        store.list_events("shout", 10, cursor_of(body), None)


def test_a_listing_of_no_events_has_no_cursor(dynamodb: Any) -> None:
    store = sharded_store(dynamodb, 16)
    assert store.list_events("shout", 10, None, None) == ([], None)
