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
from machinery_core.domain.errors import Conflict, MachineryError, NotFound
from machinery_core.domain.models import Service, ServiceRecord


class ServiceItems:
    table: Table

    def save_service(
        self, service: Service, now: datetime, *, create_only: bool
    ) -> tuple[ServiceRecord, bool]:
        """Create or update a service; `create_only` refuses an existing name."""
        params: dict[str, Any] = {
            "TableName": self.table.table_name,
            "Key": keys.service_key(service.name),
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
                ":definition": string(service.model_dump_json()),
                ":now": moment(now),
                ":gsi_pk": string(keys.SERVICES),
                ":name": string(service.name),
                ":one": number(1),
            },
            "ReturnValues": "ALL_NEW",
        }
        if create_only:
            params["ConditionExpression"] = "attribute_not_exists(PK)"
        with conditional(
            lambda _: Conflict(f"service {service.name!r} already exists; PUT updates it")
        ):
            item = self.table.client.update_item(**params)["Attributes"]
        record = _service_record(item)
        return record, record.version == 1

    def get_service(self, name: str) -> ServiceRecord:
        item = self.table.get(keys.service_key(name))
        if item is None:
            raise NotFound(f"service {name!r} does not exist")
        return _service_record(item)

    def get_services(self, names: set[str]) -> dict[str, Service]:
        """Every named service that exists, in one BatchGetItem per 100 names."""
        found: dict[str, Service] = {}
        ordered = sorted(names)
        for start in range(0, len(ordered), 100):
            batch: list[Item] = [keys.service_key(name) for name in ordered[start : start + 100]]
            request: dict[str, Any] = {
                self.table.table_name: {"Keys": batch, "ConsistentRead": True}
            }
            while request:
                answer = self.table.client.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self.table.table_name, []):
                    service = Service.model_validate_json(item["definition"]["S"])
                    found[service.name] = service
                request = answer.get("UnprocessedKeys") or {}
        return found

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
