"""A workflow's events, newest first, merged from its listing shards.

Each event's listing entry is written to one of the workflow's N shards (GSI1 partitions
`EVENTS#{workflow}#{shard}`, the shard a hash of the event id), so that no one index
partition takes every write of a busy workflow: a partition takes about 1,000 write units a
second, and a time-ordered sort key keeps all the new ones at the same end of it. Entries
written before the sharding sit in `EVENTS#{workflow}` and are read as one more shard.

A page queries every shard (at once, on threads), then merges: it takes the newest entry
among the shards' next ones, and only while every shard that may hold more has one fetched,
so that an entry can never come out before a newer one that was not read yet. The cursor
carries the shards' positions: the last entry listed, below which every shard goes on
(every entry not listed yet is older than it), and the sort key of each shard that knows
better (it was read further down, past entries a filter left out) or null for one that
ended. So a shard the cursor does not name (the shard count was raised between two pages)
goes on below that entry too. A filtered listing (`status`) may have to read past many
entries that do not match: a page makes at most MAX_QUERIES_PER_PAGE queries, and may then
hold fewer than `limit` entries, with a cursor to go on (DynamoDB's own pages do the same).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from machinery_core.adapters.store import keys
from machinery_core.domain.errors import BadRequest

Item = dict[str, Any]
# (partition, the sort key to go on after or None, the sort key to stay below or None,
# how many) -> (entries newest first, the sort key of the last entry read, None at the end)
Query = Callable[[str, str | None, str | None, int], tuple[list[Item], str | None]]

LEGACY = "-"  # the cursor's name for the partition written before the sharding
MAX_QUERIES_PER_PAGE = 64
MAX_SHARDS = 64
_SORT_KEY = re.compile(r"^\d{4}-\d\d-\d\dT[0-9:.+\-Z]{1,40}#[A-Za-z0-9-]{1,64}$")
BAD_CURSOR = "the cursor is not one this API gave out"


@dataclass
class Shard:
    name: str  # its number, or LEGACY
    partition: str
    start: str | None  # where its next query goes on after (None: from the top, or below)
    done: bool = False  # nothing in it past what `fetched` holds
    fetched: list[Item] = field(default_factory=list)  # read, not listed yet, newest first


@dataclass(frozen=True)
class Position:
    """Where a listing goes on: some shards' places, and the last entry it listed."""

    shards: dict[str, str | None]  # shard name -> sort key to go on after (None: it ended)
    below: str | None = None


def page(
    workflow_id: str,
    shard_count: int,
    limit: int,
    cursor: str | None,
    query: Query,
) -> tuple[list[Item], str | None]:
    """Up to `limit` entries newest first, and the cursor to the next page (None: the end)."""
    position = decode(workflow_id, cursor) or Position(shards={})
    shards = []
    for name in [str(number) for number in range(shard_count)] + [LEGACY]:
        partition = keys.events_partition(workflow_id, None if name == LEGACY else int(name))
        start = position.shards.get(name)
        shards.append(Shard(name, partition, start, done=name in position.shards and not start))
    listed: list[Item] = []
    queries = 0
    with ThreadPoolExecutor(max_workers=min(8, len(shards))) as pool:
        while len(listed) < limit:
            empty = [shard for shard in shards if not shard.done and not shard.fetched]
            if empty:
                if queries + len(empty) > MAX_QUERIES_PER_PAGE:
                    break
                queries += len(empty)
                wanted = limit - len(listed) + 1  # one more: a full page then knows if it ended

                def read(shard: Shard, wanted: int = wanted) -> tuple[list[Item], str | None]:
                    return query(shard.partition, shard.start, position.below, wanted)

                for shard, (items, last) in zip(empty, pool.map(read, empty), strict=True):
                    shard.fetched, shard.start, shard.done = items, last, last is None
                continue
            ready = [shard for shard in shards if shard.fetched]
            if not ready:
                break
            newest = max(ready, key=lambda shard: _sort_key(shard.fetched[0]))
            listed.append(newest.fetched.pop(0))
    if all(shard.done and not shard.fetched for shard in shards):
        return listed, None
    return listed, encode(workflow_id, shards, _sort_key(listed[-1]) if listed else position.below)


def _sort_key(item: Item) -> str:
    text: str = item["GSI1SK"]["S"]
    return text


def encode(workflow_id: str, shards: list[Shard], below: str | None) -> str:
    """The cursor after a page whose last entry is `below`.

    Every entry still unlisted in any shard is older than every entry listed (the merge
    lists the newest first), so a shard goes on below the last one listed; the cursor names
    only the shards that know better: those read further down (past entries the filter
    left out) and those that ended.
    """
    places: dict[str, str | None] = {}
    for shard in shards:
        if shard.done and not shard.fetched:
            places[shard.name] = None
        elif not shard.fetched and shard.start is not None:
            places[shard.name] = shard.start
    body = {"w": workflow_id, "b": below, "p": places}
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()


def decode(workflow_id: str, cursor: str | None) -> Position | None:
    if not cursor:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error) as error:
        raise BadRequest(BAD_CURSOR) from error
    if not isinstance(body, dict):
        raise BadRequest(BAD_CURSOR)
    if "GSI1PK" in body:
        return _unsharded(workflow_id, body)
    places, below = body.get("p"), body.get("b")
    if (
        set(body) != {"w", "b", "p"}
        or body["w"] != workflow_id
        or not isinstance(places, dict)
        or not (below is None or _is_sort_key(below))
        or not all(_is_shard(name) and (v is None or _is_sort_key(v)) for name, v in places.items())
    ):
        raise BadRequest(BAD_CURSOR)
    return Position(shards=places, below=below)


def _unsharded(workflow_id: str, start: dict[str, Any]) -> Position:
    """A cursor given out before the sharding (a GSI1 key): every shard goes on below it."""
    if not keys.index_key_fits(start, keys.events_partition(workflow_id, None)):
        raise BadRequest(BAD_CURSOR)
    sort_key = start["GSI1SK"]["S"]
    if not _is_sort_key(sort_key):
        raise BadRequest(BAD_CURSOR)
    return Position(shards={}, below=sort_key)


def _is_shard(name: object) -> bool:
    return name == LEGACY or (isinstance(name, str) and name.isdigit() and int(name) < MAX_SHARDS)


def _is_sort_key(value: object) -> bool:
    return isinstance(value, str) and _SORT_KEY.match(value) is not None
