"""The DynamoDB store: one table, every state change a conditional write.

One module per aggregate (services, workflows, events with their plans and idempotency
keys, callbacks), over the shared table and its one error mapping (table.py), the keys
(keys.py) and the encoding of values (encoding.py). docs/architecture.md, "The table",
says what each item holds and why.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from machinery_core.adapters.store.callbacks import CallbackItems
from machinery_core.adapters.store.encoding import MAX_JSON_BYTES, decode_cursor, encode_cursor
from machinery_core.adapters.store.services import ServiceItems
from machinery_core.adapters.store.table import Table, conditional
from machinery_core.adapters.store.workflows import WorkflowItems

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from machinery_core.adapters.payloads import PayloadBucket

__all__ = [
    "MAX_JSON_BYTES",
    "Store",
    "Table",
    "conditional",
    "decode_cursor",
    "encode_cursor",
]


class Store(ServiceItems, WorkflowItems, CallbackItems):
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        event_ttl: timedelta,
        payloads: PayloadBucket | None = None,
    ) -> None:
        self.table = Table(client, table_name)
        self.event_ttl = event_ttl
        self.stored_status = {}
        self.known_plans = {}
        self.payloads = payloads
        self.known_payloads = set()
