"""The DynamoDB store: one table, every state change a conditional write.

Keys (PK / SK, and GSI1 for listings, newest first for events):
  SERVICE#{name}   / DEFINITION   GSI1: SERVICES         / {name}
  WORKFLOW#{id}    / DEFINITION   GSI1: WORKFLOWS        / {id}
  EVENT#{id}       / EVENT        GSI1: EVENTS#{workflow} / {acknowledged_at}#{id}
  EVENT#{id}       / PLAN         (the plan the event was accepted with; written once)
  CALLBACK#{sha256 of the token} / CALLBACK  (the raw token is never stored)
  IDEMPOTENCY#{workflow}#{sha256 of the key} / IDEMPOTENCY  (kept 24 hours)

A service item keeps `used_by`, the set of workflows that reference it; registering a
workflow adds itself there in the same transaction that checks every service exists,
which is what lets a service delete refuse atomically while a workflow still uses it.

An event's plan (every service definition it runs, pinned at intake) is its own item,
written once before the event, so the event item that every step rewrites, and DynamoDB
bills by its whole size, holds only the event's state. The state and the plan are stored
as zlib-compressed JSON (binary attributes; text ones, from before, still read) without
the fields that hold their default value, which validation restores: DynamoDB bills a
write per KB, and a three-step event's state then stays under one.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from machinery_core.errors import (
    BadRequest,
    Conflict,
    InvalidDefinition,
    ItemTooLarge,
    KeyAlreadyUsed,
    MachineryError,
    NotFound,
    StaleVersion,
)
from machinery_core.models import (
    Callback,
    Event,
    EventStatus,
    EventSummary,
    IdempotencyClaim,
    Plan,
    Service,
    ServiceRecord,
    Workflow,
    WorkflowRecord,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Item = dict[str, Any]
GSI = "GSI1"
STATUS_MEMORY = 4096  # event states whose stored status a store remembers
# A plan outlives its event's TTL by this much: DynamoDB deletes expired items in no order.
PLAN_TTL_MARGIN = timedelta(days=1)
# The most JSON one stored state or plan may hold, compressed or not: DynamoDB's item limit,
# so that what the API answers about an event stays within what it was before compression.
MAX_JSON_BYTES = 400 * 1024
TOO_LARGE = "the record would exceed DynamoDB's 400 KB item size limit"


@contextmanager
def conditional(on_failure: Callable[[ClientError], MachineryError]) -> Iterator[None]:
    """The one place DynamoDB error codes become domain errors.

    A failed condition (alone or inside a transaction) means another writer got there
    first, or the item is not in the state the caller assumed: `on_failure` says which.
    """
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException":
            raise on_failure(error) from error
        if code == "TransactionCanceledException":
            reasons = [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:
                raise on_failure(error) from error
            if "TransactionConflict" in reasons:
                raise Conflict("a concurrent change touched the same items; try again") from error
        if code == "ValidationException" and "maximum allowed size" in str(error):
            raise ItemTooLarge(TOO_LARGE) from error
        raise


def _cancelled_indexes(error: ClientError) -> list[int]:
    reasons = error.response.get("CancellationReasons", [])
    return [i for i, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"]


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _packed(model: Event | Plan) -> dict[str, bytes]:
    """A stored model: its JSON without the fields at their default, compressed."""
    text = model.model_dump_json(exclude_defaults=True).encode()
    if len(text) > MAX_JSON_BYTES:
        raise ItemTooLarge(TOO_LARGE)
    return {"B": zlib.compress(text)}


def _unpacked(value: Mapping[str, Any]) -> str | bytes:
    """The JSON of a stored model, packed or (stored before packing) plain text."""
    if "B" in value:
        return zlib.decompress(value["B"])
    text: str = value["S"]
    return text


def encode_cursor(key: Item | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str | None) -> Item | None:
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error) as error:
        raise BadRequest("the cursor is not one this API gave out") from error
    if not isinstance(key, dict):
        raise BadRequest("the cursor is not one this API gave out")
    return key


def _cursor_fits(key: Item, partition: str) -> bool:
    """Whether a decoded cursor is a GSI1 key of the listing it is used on."""
    return (
        set(key) == {"PK", "SK", "GSI1PK", "GSI1SK"}
        and all(
            isinstance(value, dict) and list(value) == ["S"] and isinstance(value["S"], str)
            for value in key.values()
        )
        and key["GSI1PK"]["S"] == partition
    )


class Store:
    def __init__(self, client: DynamoDBClient, table_name: str, event_ttl: timedelta) -> None:
        self._db = client
        self._table = table_name
        self._event_ttl = event_ttl
        # The status of each event state this store read or wrote, by (event id, version):
        # GSI1 copies `status` and `updated_at` for event listings, and a write that keeps
        # the status as it was leaves them, and so the index, alone. Unknown: they are set.
        self._stored_status: dict[tuple[str, int], EventStatus] = {}

    def _known(self, event: Event) -> Event:
        if len(self._stored_status) >= STATUS_MEMORY:
            self._stored_status.clear()  # only a saving, never a rule: forgetting is safe
        self._stored_status[(event.event_id, event.version)] = event.status
        return event

    # --- services ------------------------------------------------------------------

    def save_service(
        self, service: Service, now: datetime, *, create_only: bool
    ) -> tuple[ServiceRecord, bool]:
        """Create or update a service; `create_only` refuses an existing name."""
        condition = "attribute_not_exists(PK)" if create_only else None
        params: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"PK": _s(f"SERVICE#{service.name}"), "SK": _s("DEFINITION")},
            "UpdateExpression": "SET #definition = :definition, #updated = :now, "
            "#created = if_not_exists(#created, :now), GSI1PK = :gsi_pk, GSI1SK = :name "
            "ADD #version :one",
            "ExpressionAttributeNames": {
                "#definition": "definition",
                "#updated": "updated_at",
                "#created": "created_at",
                "#version": "version",
            },
            "ExpressionAttributeValues": {
                ":definition": _s(service.model_dump_json()),
                ":now": _s(_iso(now)),
                ":gsi_pk": _s("SERVICES"),
                ":name": _s(service.name),
                ":one": _n(1),
            },
            "ReturnValues": "ALL_NEW",
        }
        if condition:
            params["ConditionExpression"] = condition
        with conditional(
            lambda _: Conflict(f"service {service.name!r} already exists; PUT updates it")
        ):
            item = self._db.update_item(**params)["Attributes"]
        record = self._service_record(item)
        return record, record.version == 1

    def get_service(self, name: str) -> ServiceRecord:
        item = self._get(f"SERVICE#{name}", "DEFINITION")
        if item is None:
            raise NotFound(f"service {name!r} does not exist")
        return self._service_record(item)

    def get_services(self, names: set[str]) -> dict[str, Service]:
        """Every named service that exists, in one BatchGetItem per 100 names."""
        found: dict[str, Service] = {}
        ordered = sorted(names)
        for start in range(0, len(ordered), 100):
            keys: list[Item] = [
                {"PK": _s(f"SERVICE#{name}"), "SK": _s("DEFINITION")}
                for name in ordered[start : start + 100]
            ]
            request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                answer = self._db.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self._table, []):
                    service = Service.model_validate_json(item["definition"]["S"])
                    found[service.name] = service
                request = answer.get("UnprocessedKeys") or {}
        return found

    def list_services(
        self, limit: int, cursor: str | None
    ) -> tuple[list[ServiceRecord], str | None]:
        items, next_key = self._query_index("SERVICES", limit, cursor, newest_first=False)
        return [self._service_record(item) for item in items], encode_cursor(next_key)

    def delete_service(self, name: str) -> None:
        def refusal(error: ClientError) -> MachineryError:
            item: Item = dict(error.response.get("Item") or {})  # type: ignore[call-overload]
            if not item:
                return NotFound(f"service {name!r} does not exist")
            users = sorted(item.get("used_by", {}).get("SS", []))
            return Conflict(
                f"service {name!r} is used by workflows: {', '.join(users)}",
                [{"path": "used_by", "message": workflow} for workflow in users],
            )

        with conditional(refusal):
            self._db.delete_item(
                TableName=self._table,
                Key={"PK": _s(f"SERVICE#{name}"), "SK": _s("DEFINITION")},
                ConditionExpression="attribute_exists(PK) AND attribute_not_exists(#used_by)",
                ExpressionAttributeNames={"#used_by": "used_by"},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )

    @staticmethod
    def _service_record(item: Item) -> ServiceRecord:
        service = Service.model_validate_json(item["definition"]["S"])
        return ServiceRecord(
            service_id=service.name,
            version=int(item["version"]["N"]),
            created_at=datetime.fromisoformat(item["created_at"]["S"]),
            updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
            definition=service,
            used_by=sorted(item.get("used_by", {}).get("SS", [])),
        )

    # --- workflows -----------------------------------------------------------------

    def save_workflow(
        self, workflow: Workflow, now: datetime, previous: WorkflowRecord | None
    ) -> WorkflowRecord:
        """Write the workflow and its `used_by` marks on every service in one transaction.

        `previous` is the version the caller read; the write is refused if the workflow
        changed (or appeared) since.
        """
        name = workflow.name
        services = sorted(workflow.spec.all_services())
        dropped = (
            sorted(previous.definition.spec.all_services() - set(services)) if previous else []
        )
        version = previous.version + 1 if previous else 1
        created_at = previous.created_at if previous else now
        workflow_item: Item = {
            "PK": _s(f"WORKFLOW#{name}"),
            "SK": _s("DEFINITION"),
            "GSI1PK": _s("WORKFLOWS"),
            "GSI1SK": _s(name),
            "definition": _s(workflow.model_dump_json()),
            "version": _n(version),
            "created_at": _s(_iso(created_at)),
            "updated_at": _s(_iso(now)),
        }
        put: dict[str, Any] = {"TableName": self._table, "Item": workflow_item}
        if previous is None:
            put["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            put["ConditionExpression"] = "#version = :expected"
            put["ExpressionAttributeNames"] = {"#version": "version"}
            put["ExpressionAttributeValues"] = {":expected": _n(previous.version)}
        actions: list[Item] = [{"Put": put}]
        marker = {":workflow": {"SS": [name]}}
        for service in services:
            actions.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"PK": _s(f"SERVICE#{service}"), "SK": _s("DEFINITION")},
                        "UpdateExpression": "ADD #used_by :workflow",
                        "ConditionExpression": "attribute_exists(PK)",
                        "ExpressionAttributeNames": {"#used_by": "used_by"},
                        "ExpressionAttributeValues": marker,
                    }
                }
            )
        for service in dropped:
            actions.append(self._unmark(service, name))

        def refusal(error: ClientError) -> MachineryError:
            failed = _cancelled_indexes(error)
            if 0 in failed:
                if previous is None:
                    return Conflict(f"workflow {name!r} already exists; PUT updates it")
                return StaleVersion(
                    f"workflow {name!r} changed concurrently; read it and try again"
                )
            missing = [services[i - 1] for i in failed if 0 < i <= len(services)]
            return InvalidDefinition(
                f"the workflow references unknown services: {', '.join(missing)}",
                [{"path": "spec.services", "message": f"unknown service {m!r}"} for m in missing],
            )

        with conditional(refusal):
            self._db.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        return WorkflowRecord(
            workflow_id=name,
            version=version,
            created_at=created_at,
            updated_at=now,
            definition=workflow,
        )

    def _unmark(self, service: str, workflow: str) -> Item:
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"PK": _s(f"SERVICE#{service}"), "SK": _s("DEFINITION")},
                "UpdateExpression": "DELETE #used_by :workflow",
                "ExpressionAttributeNames": {"#used_by": "used_by"},
                "ExpressionAttributeValues": {":workflow": {"SS": [workflow]}},
            }
        }

    def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        item = self._get(f"WORKFLOW#{workflow_id}", "DEFINITION")
        if item is None:
            raise NotFound(f"workflow {workflow_id!r} does not exist")
        return self._workflow_record(item)

    def list_workflows(
        self, limit: int, cursor: str | None
    ) -> tuple[list[WorkflowRecord], str | None]:
        items, next_key = self._query_index("WORKFLOWS", limit, cursor, newest_first=False)
        return [self._workflow_record(item) for item in items], encode_cursor(next_key)

    def delete_workflow(self, record: WorkflowRecord) -> None:
        name = record.workflow_id
        actions: list[Item] = [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": {"PK": _s(f"WORKFLOW#{name}"), "SK": _s("DEFINITION")},
                    "ConditionExpression": "#version = :expected",
                    "ExpressionAttributeNames": {"#version": "version"},
                    "ExpressionAttributeValues": {":expected": _n(record.version)},
                }
            }
        ]
        actions += [
            self._unmark(service, name) for service in sorted(record.definition.spec.all_services())
        ]
        with conditional(
            lambda _: StaleVersion(f"workflow {name!r} changed concurrently; try again")
        ):
            self._db.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]

    @staticmethod
    def _workflow_record(item: Item) -> WorkflowRecord:
        workflow = Workflow.model_validate_json(item["definition"]["S"])
        return WorkflowRecord(
            workflow_id=workflow.name,
            version=int(item["version"]["N"]),
            created_at=datetime.fromisoformat(item["created_at"]["S"]),
            updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
            definition=workflow,
        )

    # --- events --------------------------------------------------------------------

    def create_event(self, event: Event, plan: Plan, claim: IdempotencyClaim | None = None) -> None:
        """Store a new event; with `claim`, only if its Idempotency-Key is not on record.

        The plan is written first, so an event on record always has its plan; a plan whose
        event is then refused (a duplicate, a replayed Idempotency-Key) expires by TTL.
        """
        expires = event.acknowledged_at + self._event_ttl
        item: Item = {
            "PK": _s(f"EVENT#{event.event_id}"),
            "SK": _s("EVENT"),
            "GSI1PK": _s(f"EVENTS#{event.workflow_id}"),
            "GSI1SK": _s(f"{_iso(event.acknowledged_at)}#{event.event_id}"),
            "workflow_id": _s(event.workflow_id),
            "status": _s(event.status.value),
            "revision": _n(event.version),
            "acknowledged_at": _s(_iso(event.acknowledged_at)),
            "updated_at": _s(_iso(event.updated_at)),
            "expires_at": _n(int(expires.timestamp())),
            "state": _packed(event),
        }
        self._put_plan(event.event_id, plan, expires + PLAN_TTL_MARGIN)
        if claim is None:
            with conditional(lambda _: Conflict(f"event {event.event_id!r} already exists")):
                self._db.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(PK)",
                )
            return
        # The key and the event are written together: a key on record always has its event.
        key_item: Item = {
            "PK": _s(claim.pk),
            "SK": _s("IDEMPOTENCY"),
            "event_id": _s(event.event_id),
            "request_hash": _s(claim.request_hash),
            "expires_at": _n(int(claim.expires_at.timestamp())),
        }
        actions: list[Item] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": key_item,
                    # TTL deletes lazily: a key past its expiry is free again
                    "ConditionExpression": "attribute_not_exists(PK) OR #expires < :now",
                    "ExpressionAttributeNames": {"#expires": "expires_at"},
                    "ExpressionAttributeValues": {
                        ":now": _n(int(event.acknowledged_at.timestamp()))
                    },
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
        ]

        def refusal(error: ClientError) -> MachineryError:
            if 0 in _cancelled_indexes(error):
                return KeyAlreadyUsed("the Idempotency-Key is already on record")
            return Conflict(f"event {event.event_id!r} already exists")

        with conditional(refusal):
            self._db.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]

    def _put_plan(self, event_id: str, plan: Plan, expires: datetime) -> None:
        packed = _packed(plan)
        with conditional(lambda _: Conflict(f"event {event_id!r} already exists")):
            self._db.put_item(
                TableName=self._table,
                Item={
                    "PK": _s(f"EVENT#{event_id}"),
                    "SK": _s("PLAN"),
                    "plan": packed,
                    "expires_at": _n(int(expires.timestamp())),
                },
                # idempotent (an SDK retry of this put), but never another event's plan
                ConditionExpression="attribute_not_exists(PK) OR #plan = :plan",
                ExpressionAttributeNames={"#plan": "plan"},
                ExpressionAttributeValues={":plan": packed},
            )

    def get_idempotency(self, claim: IdempotencyClaim) -> tuple[str, str] | None:
        """(event id, request hash) recorded under the claim's key, if it has not expired."""
        item = self._get(claim.pk, "IDEMPOTENCY")
        if item is None:
            return None
        return item["event_id"]["S"], item["request_hash"]["S"]

    def get_event(self, event_id: str) -> Event:
        item = self._get(
            f"EVENT#{event_id}", "EVENT", attributes="#state", names={"#state": "state"}
        )
        if item is None:
            raise NotFound(f"event {event_id!r} does not exist")
        return self._known(Event.model_validate_json(_unpacked(item["state"])))

    def load_run(self, event_id: str) -> tuple[Event, Plan]:
        """The event with the plan it was accepted with, both items in one consistent Query.

        (A Query is billed for the two items' summed size, where two GetItems would each
        round up to 4 KB.) An event stored before plans had their own item keeps its plan
        on the event item.
        """
        answer = self._db.query(
            TableName=self._table,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": "PK"},
            ExpressionAttributeValues={":pk": _s(f"EVENT#{event_id}")},
            ConsistentRead=True,
        )
        items = {item["SK"]["S"]: item for item in answer.get("Items", [])}
        event = items.get("EVENT")
        if event is None:
            raise NotFound(f"event {event_id!r} does not exist")
        plan = items.get("PLAN", event)
        if "plan" not in plan:
            raise NotFound(f"the plan of event {event_id!r} does not exist")
        return self._known(Event.model_validate_json(_unpacked(event["state"]))), (
            Plan.model_validate_json(_unpacked(plan["plan"]))
        )

    def save_event(self, event: Event) -> Event:
        """Persist a transition; refused unless the stored version is the one it started from."""
        saved = event.model_copy(update={"version": event.version + 1})
        with conditional(
            lambda _: StaleVersion(f"event {event.event_id!r} was advanced concurrently")
        ):
            self._db.update_item(**self._event_update(event, saved))
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
            ":state": _packed(saved),
            ":next": _n(saved.version),
            ":expected": _n(event.version),
        }
        assignments = ["#state = :state", "#revision = :next"]
        if self._stored_status.pop((event.event_id, event.version), None) is not saved.status:
            names |= {"#status": "status", "#updated": "updated_at"}
            values |= {":status": _s(saved.status.value), ":updated": _s(_iso(saved.updated_at))}
            assignments += ["#status = :status", "#updated = :updated"]
        return {
            "TableName": self._table,
            "Key": {"PK": _s(f"EVENT#{event.event_id}"), "SK": _s("EVENT")},
            "UpdateExpression": "SET " + ", ".join(assignments),
            # `version`: what an event stored before `revision` kept its version in
            "ConditionExpression": (
                "#revision = :expected"
                " OR (attribute_not_exists(#revision) AND #version = :expected)"
            ),
            "ExpressionAttributeNames": names | {"#version": "version"},
            "ExpressionAttributeValues": values,
        }

    # --- callbacks -----------------------------------------------------------------

    def open_callback(self, event: Event, callback: Callback) -> Event:
        """Save the event (now WAITING) and its callback's token record in one transaction."""
        saved = event.model_copy(update={"version": event.version + 1})
        item: Item = {
            "PK": _s(f"CALLBACK#{callback.token_hash}"),
            "SK": _s("CALLBACK"),
            "event_id": _s(callback.event_id),
            "step": _n(callback.step),
            "attempt": _n(callback.attempt),
            "task_token": _s(callback.task_token),
            "state": _s("OPEN"),
            "dispatched_at": _s(_iso(callback.dispatched_at)),
            "expires_at": _n(int(callback.expires_at.timestamp())),
        }
        actions: list[Item] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            {"Update": self._event_update(event, saved)},
        ]
        with conditional(
            lambda _: StaleVersion(f"event {event.event_id!r} was advanced concurrently")
        ):
            self._db.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        return self._known(saved)

    def get_callback(self, token_hash: str) -> Callback | None:
        item = self._get(f"CALLBACK#{token_hash}", "CALLBACK")
        if item is None:
            return None
        return Callback(
            token_hash=token_hash,
            event_id=item["event_id"]["S"],
            step=int(item["step"]["N"]),
            attempt=int(item["attempt"]["N"]),
            task_token=item["task_token"]["S"],
            used=item["state"]["S"] != "OPEN",
            dispatched_at=datetime.fromisoformat(item["dispatched_at"]["S"]),
            expires_at=datetime.fromtimestamp(int(item["expires_at"]["N"]), UTC),
        )

    def use_callback(self, callback: Callback, event: Event) -> Event:
        """Spend the callback's token and save what it brought, both or neither."""
        saved = event.model_copy(update={"version": event.version + 1})
        actions: list[Item] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"PK": _s(f"CALLBACK#{callback.token_hash}"), "SK": _s("CALLBACK")},
                    "UpdateExpression": "SET #state = :used",
                    "ConditionExpression": "#state = :open",
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": {":used": _s("USED"), ":open": _s("OPEN")},
                }
            },
            {"Update": self._event_update(event, saved)},
        ]

        def refusal(error: ClientError) -> MachineryError:
            if 0 in _cancelled_indexes(error):
                return Conflict("this callback was already used")
            return StaleVersion(f"event {event.event_id!r} was advanced concurrently")

        with conditional(refusal):
            self._db.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        return self._known(saved)

    def list_events(
        self, workflow_id: str, limit: int, cursor: str | None, status: EventStatus | None
    ) -> tuple[list[EventSummary], str | None]:
        items, next_key = self._query_index(
            f"EVENTS#{workflow_id}", limit, cursor, newest_first=True, status=status
        )
        summaries = [
            EventSummary(
                event_id=item["PK"]["S"].removeprefix("EVENT#"),
                workflow_id=item["workflow_id"]["S"],
                status=EventStatus(item["status"]["S"]),
                acknowledged_at=datetime.fromisoformat(item["acknowledged_at"]["S"]),
                updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
            )
            for item in items
        ]
        return summaries, encode_cursor(next_key)

    # --- plumbing ------------------------------------------------------------------

    def _get(
        self, pk: str, sk: str, attributes: str | None = None, names: dict[str, str] | None = None
    ) -> Item | None:
        params: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"PK": _s(pk), "SK": _s(sk)},
            "ConsistentRead": True,
        }
        if attributes:
            params["ProjectionExpression"] = attributes
            params["ExpressionAttributeNames"] = names
        item: Item | None = self._db.get_item(**params).get("Item")
        return item

    def _query_index(
        self,
        partition: str,
        limit: int,
        cursor: str | None,
        *,
        newest_first: bool,
        status: EventStatus | None = None,
    ) -> tuple[list[Item], Item | None]:
        params: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": GSI,
            "KeyConditionExpression": "GSI1PK = :pk",
            "ExpressionAttributeValues": {":pk": _s(partition)},
            "ScanIndexForward": not newest_first,
            "Limit": limit,
        }
        start = decode_cursor(cursor)
        if start is not None and not _cursor_fits(start, partition):
            raise BadRequest("the cursor is not one this API gave out")
        if start:
            params["ExclusiveStartKey"] = start
        if status is not None:
            params["FilterExpression"] = "#status = :status"
            params["ExpressionAttributeNames"] = {"#status": "status"}
            params["ExpressionAttributeValues"][":status"] = _s(status.value)
        answer = self._db.query(**params)
        return answer.get("Items", []), answer.get("LastEvaluatedKey")
