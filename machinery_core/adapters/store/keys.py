"""Every key of the table, built in one place (docs/architecture.md, "The table").

SERVICE#{name}   / DEFINITION   GSI1: SERVICES          / {name}
WORKFLOW#{id}    / DEFINITION   GSI1: WORKFLOWS         / {id}
SERVICE#{name} or WORKFLOW#{id} / VERSION#{n, 10 digits}  (each version, immutable)
EVENT#{id}       / EVENT        GSI1: EVENTS#{workflow}#{shard} / {acknowledged_at}#{id}
                                (before write shards: EVENTS#{workflow}, still listed)
PLAN#{sha256 of the plan} / PLAN  (a plan, shared by the events planned the same way)
EVENT#{id}       / PLAN         (an event's own plan, as stored before plans were shared)
CALLBACK#{sha256 of the token} / CALLBACK  (the raw token is never stored)
IDEMPOTENCY#{workflow}#{sha256 of the key} / IDEMPOTENCY  (kept 24 hours)
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

Key = dict[str, dict[str, str]]

INDEX = "GSI1"
DEFINITION = "DEFINITION"
SERVICES = "SERVICES"
WORKFLOWS = "WORKFLOWS"
EVENT = "EVENT"
PLAN = "PLAN"
VERSION = "VERSION#"
CALLBACK = "CALLBACK"
IDEMPOTENCY = "IDEMPOTENCY"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def key(pk: str, sk: str) -> Key:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


def service_pk(name: str) -> str:
    return f"SERVICE#{name}"


def workflow_pk(workflow_id: str) -> str:
    return f"WORKFLOW#{workflow_id}"


def event_pk(event_id: str) -> str:
    return f"EVENT#{event_id}"


def event_id_of(pk: str) -> str:
    return pk.removeprefix("EVENT#")


def callback_pk(token_hash: str) -> str:
    return f"CALLBACK#{token_hash}"


def idempotency_pk(workflow_id: str, idempotency_key: str) -> str:
    """The key's record: only its hash is stored, as a key may carry what a client chose."""
    return f"IDEMPOTENCY#{workflow_id}#{sha256(idempotency_key)}"


def events_partition(workflow_id: str, shard: int | None) -> str:
    """One of a workflow's listing partitions; `shard` None: the one entries were written
    to before the listing was write-sharded (docs/architecture.md, "The listing index")."""
    if shard is None:
        return f"EVENTS#{workflow_id}"
    return f"EVENTS#{workflow_id}#{shard}"


def event_shard(event_id: str, shards: int) -> int:
    """The listing shard an event's entry is written to: a hash, not the time, so that the
    entries written at the same moment spread over every shard."""
    return int(sha256(event_id)[:8], 16) % shards


def events_sort_key(acknowledged_at: datetime, event_id: str) -> str:
    return f"{acknowledged_at.isoformat()}#{event_id}"


def event_id_in(sort_key: str) -> str:
    return sort_key.rpartition("#")[2]


def listing_key(partition: str, sort_key: str) -> Key:
    """The GSI1 key of the event entry at `sort_key` in `partition` (an ExclusiveStartKey)."""
    return {
        **event_key(event_id_in(sort_key)),
        "GSI1PK": {"S": partition},
        "GSI1SK": {"S": sort_key},
    }


def service_key(name: str) -> Key:
    return key(service_pk(name), DEFINITION)


def workflow_key(workflow_id: str) -> Key:
    return key(workflow_pk(workflow_id), DEFINITION)


def version_key(pk: str, version: int) -> Key:
    """A version of a service's or a workflow's definition: they sort by number."""
    return key(pk, f"{VERSION}{version:010d}")


def version_of(sk: str) -> int:
    return int(sk.removeprefix(VERSION))


def plan_key(reference: str) -> Key:
    return key(f"PLAN#{reference}", PLAN)


def event_key(event_id: str) -> Key:
    return key(event_pk(event_id), EVENT)


def callback_key(token_hash: str) -> Key:
    return key(callback_pk(token_hash), CALLBACK)


def table_key_fits(start: dict[str, Any], pk: str, sk_prefix: str) -> bool:
    """Whether a decoded cursor is a key of the base table's partition it is used on."""
    return (
        set(start) == {"PK", "SK"}
        and all(
            isinstance(value, dict) and list(value) == ["S"] and isinstance(value["S"], str)
            for value in start.values()
        )
        and start["PK"]["S"] == pk
        and start["SK"]["S"].startswith(sk_prefix)
    )


def index_key_fits(start: dict[str, Any], partition: str) -> bool:
    """Whether a decoded cursor is a GSI1 key of the listing it is used on."""
    return (
        set(start) == {"PK", "SK", "GSI1PK", "GSI1SK"}
        and all(
            isinstance(value, dict) and list(value) == ["S"] and isinstance(value["S"], str)
            for value in start.values()
        )
        and start["GSI1PK"]["S"] == partition
    )
