"""Service definitions: one item each, with the set of workflows that use it (`used_by`).

Registering a workflow adds itself to `used_by` of every service it names, in the same
transaction that checks they exist: that is what lets a delete refuse atomically while a
workflow still uses the service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from machinery_core.adapters.store import keys
from machinery_core.adapters.store.encoding import encode_cursor, moment, number, string
from machinery_core.adapters.store.table import Item, Table, conditional
from machinery_core.adapters.store.versions import VersionItems, version_fields
from machinery_core.domain.errors import Conflict, MachineryError, NotFound, StaleVersion
from machinery_core.domain.models import Service, ServiceRecord, ServiceVersion, definition_hash


class ServiceItems(VersionItems):
    table: Table

    def save_service(
        self,
        service: Service,
        now: datetime,
        previous: ServiceRecord | None = None,
        *,
        create_only: bool,
    ) -> tuple[ServiceRecord, bool]:
        """Create or update a service and store its new version, in one transaction.

        `previous` is what the caller read (read here when not given for an update); the
        write is refused if the service changed, or appeared, since. `create_only` refuses
        an existing name.
        """
        if previous is None and not create_only:
            try:
                previous = self.get_service(service.name)
            except NotFound:
                previous = None
        version = previous.version + 1 if previous else 1
        definition = service.model_dump_json()
        update: dict[str, Any] = {
            "TableName": self.table.table_name,
            "Key": keys.service_key(service.name),
            "UpdateExpression": "SET #definition = :definition, #updated = :now, "
            "#created = if_not_exists(#created, :now), GSI1PK = :gsi_pk, GSI1SK = :name, "
            "#version = :version",
            "ExpressionAttributeNames": {
                "#definition": "definition",
                "#updated": "updated_at",
                "#created": "created_at",
                "#version": "version",
            },
            "ExpressionAttributeValues": {
                ":definition": string(definition),
                ":now": moment(now),
                ":gsi_pk": string(keys.SERVICES),
                ":name": string(service.name),
                ":version": number(version),
            },
        }
        if previous is None:
            update["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            update["ConditionExpression"] = "#version = :expected"
            update["ExpressionAttributeValues"][":expected"] = number(previous.version)
        pk = keys.service_pk(service.name)
        digest = definition_hash(service)
        actions: list[Item] = [
            {"Update": update},
            self._version_put(pk, version, definition, digest, now),
        ]

        def refusal(_: ClientError) -> MachineryError:
            if create_only:
                return Conflict(f"service {service.name!r} already exists; PUT updates it")
            return StaleVersion(f"service {service.name!r} changed concurrently; try again")

        with conditional(refusal):
            self.table.transact(actions)
        record = ServiceRecord(
            service_id=service.name,
            version=version,
            created_at=previous.created_at if previous else now,
            updated_at=now,
            definition=service,
            used_by=previous.used_by if previous else [],
        )
        return record, previous is None

    def get_service_version(self, name: str, version: int) -> ServiceVersion:
        item = self._version(keys.service_pk(name), version)
        if item is None:
            raise NotFound(f"service {name!r} has no version {version}")
        return _service_version(name, item)

    def list_service_versions(
        self, name: str, limit: int, cursor: str | None
    ) -> tuple[list[ServiceVersion], str | None]:
        items, next_cursor = self._versions(keys.service_pk(name), limit, cursor)
        return [_service_version(name, item) for item in items], next_cursor

    def get_service(self, name: str) -> ServiceRecord:
        item = self.table.get(keys.service_key(name))
        if item is None:
            raise NotFound(f"service {name!r} does not exist")
        return _service_record(item)

    def get_services(self, names: set[str]) -> dict[str, Service]:
        """Every named service that exists, in one BatchGetItem per 100 names."""
        return {name: record.definition for name, record in self.get_service_records(names).items()}

    def get_service_records(self, names: set[str]) -> dict[str, ServiceRecord]:
        """Every named service that exists, with its version, in one BatchGetItem per 100."""
        items = self.table.batch_get(
            [keys.service_key(name) for name in sorted(names)], consistent=True
        )
        records = [_service_record(item) for item in items]
        return {record.service_id: record for record in records}

    def list_services(
        self, limit: int, cursor: str | None
    ) -> tuple[list[ServiceRecord], str | None]:
        items, next_key = self.table.query_index(keys.SERVICES, limit, cursor, newest_first=False)
        return [_service_record(item) for item in items], encode_cursor(next_key)

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
            self.table.client.delete_item(
                TableName=self.table.table_name,
                Key=keys.service_key(name),
                ConditionExpression="attribute_exists(PK) AND attribute_not_exists(#used_by)",
                ExpressionAttributeNames={"#used_by": "used_by"},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        self._delete_versions(keys.service_pk(name))


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


def _service_version(name: str, item: Item) -> ServiceVersion:
    version, digest, created_at, definition = version_fields(item)
    return ServiceVersion(
        service_id=name,
        version=version,
        hash=digest,
        created_at=created_at,
        definition=Service.model_validate_json(definition),
    )
