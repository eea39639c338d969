"""Events: the event item every step rewrites, its plan, its listing entry, its idempotency key.

An event's plan (every service definition it runs, pinned at intake) is a function of the
workflow's version and its services' versions: it is stored once per such combination,
content-addressed (`PLAN#{sha256}`), and the event item names it (`plan_ref`). So the event
item that every step rewrites, and DynamoDB bills by its whole size, holds only the
event's state, and an event whose plan is already stored writes no plan at all.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from machinery_core.adapters.store import keys, listing
from machinery_core.adapters.store.encoding import (
    epoch,
    moment,
    number,
    packed,
    packed_json,
    string,
    unpacked,
)
from machinery_core.adapters.store.table import Item, Table, cancelled_indexes, conditional
from machinery_core.contract import PAYLOAD_THRESHOLD_BYTES
from machinery_core.domain import payloads
from machinery_core.domain.errors import (
    Conflict,
    KeyAlreadyUsed,
    MachineryError,
    NotFound,
    StaleVersion,
)
from machinery_core.domain.models import (
    Event,
    EventStatus,
    EventSummary,
    IdempotencyClaim,
    Plan,
)

if TYPE_CHECKING:
    from machinery_core.adapters.payloads import PayloadBucket

STATUS_MEMORY = 4096  # event states whose stored status a store remembers
PLAN_MEMORY = 256  # plans a store remembers by reference: immutable, so never stale
PAYLOAD_MEMORY = 4096  # stored payloads a store remembers by (event id, reference)


def plan_reference(plan: Plan) -> str:
    """A plan's content address: the SHA-256 of its stored JSON."""
    return keys.sha256(plan.model_dump_json(exclude_defaults=True))


class EventItems:
    table: Table
    event_ttl: timedelta
    # How many listing shards a workflow's new event entries spread over (listing.py).
    index_shards: int
    # The status of each event state this store read or wrote, by (event id, version):
    # GSI1 copies `status` and `updated_at` for event listings, and a write that keeps
    # the status as it was leaves them, and so the index, alone. Unknown: they are set.
    stored_status: dict[tuple[str, int], EventStatus]
    # The plans this store knows are stored (written or read), by reference.
    known_plans: dict[str, Plan]
    # Where payloads past the threshold go (None: nowhere, an event stays in its item).
    payloads: PayloadBucket | None
    # The payloads this store wrote or read, by (event id, reference): not written again.
    known_payloads: set[tuple[str, str]]

    def _known(self, event: Event) -> Event:
        if len(self.stored_status) >= STATUS_MEMORY:
            self.stored_status.clear()  # only a saving, never a rule: forgetting is safe
        self.stored_status[(event.event_id, event.version)] = event.status
        return event

    def create_event(self, event: Event, plan: Plan, claim: IdempotencyClaim | None = None) -> None:
        """Store a new event; with `claim`, only if its Idempotency-Key is not on record.

        The plan is stored first (unless it is already), so an event on record always has
        its plan. Plans are shared and immutable: they carry no TTL, and one whose event
        was then refused serves the next event planned the same way.
        """
        expires = event.acknowledged_at + self.event_ttl
        item: Item = {
            **keys.event_key(event.event_id),
            "GSI1PK": string(
                keys.events_partition(
                    event.workflow_id, keys.event_shard(event.event_id, self.index_shards)
                )
            ),
            "GSI1SK": string(keys.events_sort_key(event.acknowledged_at, event.event_id)),
            "workflow_id": string(event.workflow_id),
            "status": string(event.status.value),
            "revision": number(event.version),
            "acknowledged_at": moment(event.acknowledged_at),
            "updated_at": moment(event.updated_at),
            "expires_at": epoch(expires),
            "state": self._stored_state(event),
            "plan_ref": string(self._store_plan(plan)),
        }
        if claim is None:
            with conditional(lambda _: Conflict(f"event {event.event_id!r} already exists")):
                self.table.client.put_item(
                    TableName=self.table.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(PK)",
                )
            return
        # The key and the event are written together: a key on record always has its event.
        key_item: Item = {
            **keys.key(keys.idempotency_pk(claim.workflow_id, claim.key), keys.IDEMPOTENCY),
            "event_id": string(event.event_id),
            "request_hash": string(claim.request_hash),
            "expires_at": epoch(claim.expires_at),
        }
        actions: list[Item] = [
            {
                "Put": {
                    "TableName": self.table.table_name,
                    "Item": key_item,
                    # TTL deletes lazily: a key past its expiry is free again
                    "ConditionExpression": "attribute_not_exists(PK) OR #expires < :now",
                    "ExpressionAttributeNames": {"#expires": "expires_at"},
                    "ExpressionAttributeValues": {":now": epoch(event.acknowledged_at)},
                }
            },
            {
                "Put": {
                    "TableName": self.table.table_name,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
        ]

        def refusal(error: ClientError) -> MachineryError:
            if 0 in cancelled_indexes(error):
                return KeyAlreadyUsed("the Idempotency-Key is already on record")
            return Conflict(f"event {event.event_id!r} already exists")

        with conditional(refusal):
            self.table.transact(actions)

    def withdraw_event(self, event: Event, claim: IdempotencyClaim | None = None) -> None:
        """Delete a new event that was never acknowledged, with its Idempotency-Key's record:
        only as it was created (its first revision), and the key only if it names it."""
        actions: list[Item] = [
            {
                "Delete": {
                    "TableName": self.table.table_name,
                    "Key": keys.event_key(event.event_id),
                    "ConditionExpression": "#revision = :created",
                    "ExpressionAttributeNames": {"#revision": "revision"},
                    "ExpressionAttributeValues": {":created": number(event.version)},
                }
            }
        ]
        if claim is not None:
            pk = keys.idempotency_pk(claim.workflow_id, claim.key)
            actions.append(
                {
                    "Delete": {
                        "TableName": self.table.table_name,
                        "Key": keys.key(pk, keys.IDEMPOTENCY),
                        "ConditionExpression": "#event = :event",
                        "ExpressionAttributeNames": {"#event": "event_id"},
                        "ExpressionAttributeValues": {":event": string(event.event_id)},
                    }
                }
            )
        with conditional(lambda _: StaleVersion(f"event {event.event_id!r} was advanced")):
            self.table.transact(actions)

    def _store_plan(self, plan: Plan) -> str:
        """The plan's reference, once it is stored: written only if no store wrote it yet
        (a read first, and none at all once this store knows it)."""
        value = packed(plan)
        reference = plan_reference(plan)
        if reference in self.known_plans:
            return reference
        key = keys.plan_key(reference)
        if self.table.get(key, attributes="#pk", names={"#pk": "PK"}) is None:
            try:
                self.table.client.put_item(
                    TableName=self.table.table_name,
                    Item={**key, "plan": value},
                    ConditionExpression="attribute_not_exists(PK)",
                )
            except ClientError as error:
                # another intake stored the same plan meanwhile: it is this one
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
        self._remember_plan(reference, plan)
        return reference

    def _remember_plan(self, reference: str, plan: Plan) -> None:
        if len(self.known_plans) >= PLAN_MEMORY:
            self.known_plans.clear()  # only a saving, never a rule: forgetting is safe
        self.known_plans[reference] = plan

    def get_idempotency(self, claim: IdempotencyClaim) -> tuple[str, str] | None:
        """(event id, request hash) recorded under the claim's key, if it has not expired."""
        pk = keys.idempotency_pk(claim.workflow_id, claim.key)
        item = self.table.get(keys.key(pk, keys.IDEMPOTENCY))
        if item is None:
            return None
        return item["event_id"]["S"], item["request_hash"]["S"]

    def get_event(self, event_id: str, inline_bytes: int | None = None, under: str = "") -> Event:
        """The event, every payload in place; or, for a view, those under `under` (a JSON
        pointer) that fit in `inline_bytes`, the rest named in `payloads` (never saved)."""
        item = self.table.get(
            keys.event_key(event_id), attributes="#state", names={"#state": "state"}
        )
        if item is None:
            raise NotFound(f"event {event_id!r} does not exist")
        event = self._loaded(unpacked(item["state"]), inline_bytes, under)
        return event if event.payloads else self._known(event)

    def load_with_plan(self, event_id: str) -> tuple[Event, Plan]:
        """The event with the plan it was accepted with: the event item, then its plan unless
        this store knows it already (plans are immutable).

        An event stored before plans were shared has its own plan item (or, before that,
        its plan on the event item): both read in one consistent Query.
        """
        item = self.table.get(
            keys.event_key(event_id),
            attributes="#state, #ref",
            names={"#state": "state", "#ref": "plan_ref"},
        )
        if item is None:
            raise NotFound(f"event {event_id!r} does not exist")
        if "plan_ref" not in item:
            return self._load_with_own_plan(event_id)
        event = self._known(self._loaded(unpacked(item["state"])))
        reference = item["plan_ref"]["S"]
        plan = self.known_plans.get(reference)
        if plan is None:
            stored = self.table.get(keys.plan_key(reference))
            if stored is None:
                raise NotFound(f"the plan of event {event_id!r} does not exist")
            plan = Plan.model_validate_json(unpacked(stored["plan"]))
            self._remember_plan(reference, plan)
        return event, plan

    def _load_with_own_plan(self, event_id: str) -> tuple[Event, Plan]:
        answer = self.table.client.query(
            TableName=self.table.table_name,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": "PK"},
            ExpressionAttributeValues={":pk": string(keys.event_pk(event_id))},
            ConsistentRead=True,
        )
        items = {item["SK"]["S"]: item for item in answer.get("Items", [])}
        event = items.get(keys.EVENT)
        if event is None:
            raise NotFound(f"event {event_id!r} does not exist")
        plan = items.get(keys.PLAN, event)
        if "plan" not in plan:
            raise NotFound(f"the plan of event {event_id!r} does not exist")
        return self._known(self._loaded(unpacked(event["state"]))), (
            Plan.model_validate_json(unpacked(plan["plan"]))
        )

    def _stored_state(self, event: Event) -> dict[str, bytes]:
        """The event's state attribute, its payloads past the threshold stored apart first
        (domain/payloads.py): an event that has none is stored exactly as before."""
        if event.payloads:
            raise ValueError(f"event {event.event_id!r} was read without all its payloads")
        text = event.model_dump_json(exclude_defaults=True).encode()
        if self.payloads is None or len(text) <= PAYLOAD_THRESHOLD_BYTES:
            return packed_json(text)
        document = json.loads(text)
        stored = payloads.offload(document)
        for ref, body in stored.bodies.items():
            if (event.event_id, ref) not in self.known_payloads:
                self.payloads.put(event.event_id, ref, body)
                self._remember_payload(event.event_id, ref)
        if stored.references:
            document["payloads"] = stored.references
        return packed_json(payloads.encoded(document))

    def _loaded(self, text: str | bytes, inline_bytes: int | None = None, under: str = "") -> Event:
        event = Event.model_validate_json(text)
        if not event.payloads:
            return event
        if self.payloads is None:
            raise NotFound(f"event {event.event_id!r} has payloads, and no payload bucket is set")
        bucket = self.payloads
        document = json.loads(text)

        def fetch(ref: str) -> Any:
            value = json.loads(bucket.get(event.event_id, ref))
            self._remember_payload(event.event_id, ref)
            return value

        document["payloads"] = payloads.restore(
            document, document["payloads"], fetch, budget=inline_bytes, under=under
        )
        return Event.model_validate(document)

    def _remember_payload(self, event_id: str, ref: str) -> None:
        if len(self.known_payloads) >= PAYLOAD_MEMORY:
            self.known_payloads.clear()  # only a saving, never a rule: forgetting is safe
        self.known_payloads.add((event_id, ref))

    def get_payload(self, event_id: str, ref: str) -> bytes:
        """One stored payload's JSON, as it was stored."""
        if self.payloads is None or not payloads.is_reference(ref):
            raise NotFound(f"payload {ref!r} of event {event_id!r} does not exist")
        return self.payloads.get(event_id, ref)

    def save_event(self, event: Event) -> Event:
        """Persist a transition; refused unless the stored version is the one it started from."""
        saved = event.model_copy(update={"version": event.version + 1})
        with conditional(
            lambda _: StaleVersion(f"event {event.event_id!r} was advanced concurrently")
        ):
            self.table.client.update_item(**self._event_update(event, saved))
        return self._known(saved)

    def _event_update(self, event: Event, saved: Event) -> dict[str, Any]:
        """The conditional update from `event` to `saved`.

        GSI1 projects `status` and `updated_at` (the event listings' summary): they are set
        only when the status changes, and the revision the condition checks is not projected,
        so a step that leaves the status as it was writes the table and not the index (each
        index write is billed like a table write).
        """
        names = {"#state": "state", "#revision": "revision"}
        values: Item = {
            ":state": self._stored_state(saved),
            ":next": number(saved.version),
            ":expected": number(event.version),
        }
        assignments = ["#state = :state", "#revision = :next"]
        if self.stored_status.pop((event.event_id, event.version), None) is not saved.status:
            names |= {"#status": "status", "#updated": "updated_at"}
            values |= {":status": string(saved.status.value), ":updated": moment(saved.updated_at)}
            assignments += ["#status = :status", "#updated = :updated"]
        return {
            "TableName": self.table.table_name,
            "Key": keys.event_key(event.event_id),
            "UpdateExpression": "SET " + ", ".join(assignments),
            # `version`: what an event stored before `revision` kept its version in
            "ConditionExpression": (
                "#revision = :expected"
                " OR (attribute_not_exists(#revision) AND #version = :expected)"
            ),
            "ExpressionAttributeNames": names | {"#version": "version"},
            "ExpressionAttributeValues": values,
        }

    def list_events(
        self, workflow_id: str, limit: int, cursor: str | None, status: EventStatus | None
    ) -> tuple[list[EventSummary], str | None]:
        """The workflow's events newest first, merged from its listing shards (listing.py)."""

        def query(
            partition: str, start: str | None, below: str | None, count: int
        ) -> tuple[list[Item], str | None]:
            condition = "#pk = :pk"
            names = {"#pk": "GSI1PK"}
            values: Item = {":pk": string(partition)}
            params: dict[str, Any] = {"ScanIndexForward": False, "Limit": count}
            if start is not None:
                params["ExclusiveStartKey"] = keys.listing_key(partition, start)
            elif below is not None:
                condition += " AND #sk < :below"
                names["#sk"] = "GSI1SK"
                values[":below"] = string(below)
            if status is not None:
                params["FilterExpression"] = "#status = :status"
                names["#status"] = "status"
                values[":status"] = string(status.value)
            answer = self.table.client.query(
                TableName=self.table.table_name,
                IndexName=keys.INDEX,
                KeyConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                **params,
            )
            last = answer.get("LastEvaluatedKey")
            return answer.get("Items", []), last["GSI1SK"]["S"] if last else None

        items, next_cursor = listing.page(workflow_id, self.index_shards, limit, cursor, query)
        summaries = [
            EventSummary(
                event_id=keys.event_id_of(item["PK"]["S"]),
                workflow_id=item["workflow_id"]["S"],
                status=EventStatus(item["status"]["S"]),
                acknowledged_at=datetime.fromisoformat(item["acknowledged_at"]["S"]),
                updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
            )
            for item in items
        ]
        return summaries, next_cursor

    def event_states(self, event_ids: list[str]) -> list[Event]:
        """The events' states as stored, in the order asked (one that is gone is left out):
        one BatchGetItem per 100, eventually consistent (statistics: what the listing index
        showed a moment ago). Nothing is read from the payload bucket: an event whose
        payloads are stored apart keeps their placeholders, and names them in `payloads`
        (never saved), as a view's copy does."""
        items = self.table.batch_get(
            [keys.event_key(event_id) for event_id in event_ids],
            consistent=False,
            attributes="#state",
            names={"#state": "state"},
        )
        states = [Event.model_validate_json(unpacked(item["state"])) for item in items]
        found = {event.event_id: event for event in states}
        return [found[event_id] for event_id in event_ids if event_id in found]
