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
from machinery_core.adapters.store.recent import Recent
from machinery_core.adapters.store.services import ServiceItems
from machinery_core.adapters.store.table import Table, conditional
from machinery_core.adapters.store.workflows import WorkflowItems
from machinery_core.contract import EVENT_INDEX_SHARDS
from machinery_core.domain.models import ServiceRecord, WorkflowRecord

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
        index_shards: int = EVENT_INDEX_SHARDS,
        definition_cache_seconds: float = 0,
    ) -> None:
        self.table = Table(client, table_name)
        self.event_ttl = event_ttl
        self.index_shards = index_shards
        self.recent_workflows: Recent[str, WorkflowRecord] = Recent(definition_cache_seconds)
        self.recent_services: Recent[str, ServiceRecord] = Recent(definition_cache_seconds)
        self.stored_status = {}
        self.known_plans = {}
        self.payloads = payloads
        self.known_payloads = set()

    def intake_workflow(self, workflow_id: str) -> WorkflowRecord:
        """The workflow as read at most `definition_cache_seconds` ago (recent.py)."""
        kept = self.recent_workflows.get(workflow_id)
        if kept is not None:
            return kept
        return self.recent_workflows.put(workflow_id, self.get_workflow(workflow_id))

    def intake_service_records(self, names: set[str]) -> dict[str, ServiceRecord]:
        """The named services that exist, each as read at most `definition_cache_seconds`
        ago (recent.py): one BatchGetItem for those not read since."""
        found: dict[str, ServiceRecord] = {}
        for name in names:
            kept = self.recent_services.get(name)
            if kept is not None:
                found[name] = kept
        missing = names - set(found)
        if missing:
            for name, record in self.get_service_records(missing).items():
                found[name] = self.recent_services.put(name, record)
        return found
