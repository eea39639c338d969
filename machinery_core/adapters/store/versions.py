"""Versions of a service's or a workflow's definition: one immutable item each, beside the
definition's own item (SERVICE#{name} or WORKFLOW#{id} / VERSION#{n})."""

from __future__ import annotations

from datetime import datetime

from machinery_core.adapters.store import keys
from machinery_core.adapters.store.encoding import encode_cursor, moment, number, string
from machinery_core.adapters.store.table import Item, Table

# DynamoDB's BatchWriteItem takes 25 requests.
BATCH = 25


class VersionItems:
    table: Table

    def _version_put(
        self, pk: str, version: int, definition_json: str, digest: str, now: datetime
    ) -> Item:
        """A transaction's Put of a new version (refused if that number exists already)."""
        return {
            "Put": {
                "TableName": self.table.table_name,
                "Item": {
                    **keys.version_key(pk, version),
                    "definition": string(definition_json),
                    "hash": string(digest),
                    "version": number(version),
                    "created_at": moment(now),
                },
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }

    def _versions(self, pk: str, limit: int, cursor: str | None) -> tuple[list[Item], str | None]:
        """A page of the versions, the newest first."""
        items, next_key = self.table.query_partition(
            pk, keys.VERSION, limit, cursor, newest_first=True
        )
        return items, encode_cursor(next_key)

    def _version(self, pk: str, version: int) -> Item | None:
        return self.table.get(keys.version_key(pk, version))

    def _delete_versions(self, pk: str) -> None:
        """Every version of a definition that is gone (its history goes with it)."""
        cursor: str | None = None
        while True:
            items, cursor = self._versions(pk, 100, cursor)
            for start in range(0, len(items), BATCH):
                requests = [
                    {"DeleteRequest": {"Key": {"PK": item["PK"], "SK": item["SK"]}}}
                    for item in items[start : start + BATCH]
                ]
                pending = {self.table.table_name: requests}
                while pending:
                    answer = self.table.client.batch_write_item(RequestItems=pending)  # type: ignore[arg-type]
                    pending = answer.get("UnprocessedItems") or {}  # type: ignore[assignment]
            if cursor is None:
                return


def version_fields(item: Item) -> tuple[int, str, datetime, str]:
    """A version item's number, hash, creation time and definition JSON."""
    return (
        keys.version_of(item["SK"]["S"]),
        item["hash"]["S"],
        datetime.fromisoformat(item["created_at"]["S"]),
        item["definition"]["S"],
    )
