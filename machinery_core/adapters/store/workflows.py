"""Workflow definitions, written together with the `used_by` marks on their services."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from machinery_core.adapters.store import keys
from machinery_core.adapters.store.encoding import encode_cursor, moment, number, string
from machinery_core.adapters.store.table import Item, Table, cancelled_indexes, conditional
from machinery_core.adapters.store.versions import VersionItems, version_fields
from machinery_core.domain.errors import (
    Conflict,
    InvalidDefinition,
    MachineryError,
    NotFound,
    StaleVersion,
)
from machinery_core.domain.models import (
    Canary,
    Workflow,
    WorkflowRecord,
    WorkflowVersion,
    definition_hash,
)


class WorkflowItems(VersionItems):
    table: Table

    def save_workflow(
        self,
        workflow: Workflow,
        now: datetime,
        previous: WorkflowRecord | None,
        activate: bool = True,
    ) -> WorkflowRecord:
        """Write the workflow, its new version and its `used_by` marks on every service in
        one transaction; `activate`: the new version is the live one (else the live one
        stays what it was).

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
        definition = workflow.model_dump_json()
        live = version if activate or previous is None else previous.live
        canary = None if activate or previous is None else previous.canary
        workflow_item: Item = {
            **keys.workflow_key(name),
            "GSI1PK": string(keys.WORKFLOWS),
            "GSI1SK": string(name),
            "definition": string(definition),
            "version": number(version),
            "live": number(live),
            "created_at": moment(created_at),
            "updated_at": moment(now),
        }
        if canary is not None:
            workflow_item["canary"] = string(canary.model_dump_json())
        put: dict[str, Any] = {"TableName": self.table.table_name, "Item": workflow_item}
        if previous is None:
            put["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            put["ConditionExpression"] = "#version = :expected"
            put["ExpressionAttributeNames"] = {"#version": "version"}
            put["ExpressionAttributeValues"] = {":expected": number(previous.version)}
        digest = definition_hash(workflow)
        actions: list[Item] = [{"Put": put}]
        actions.append(self._version_put(keys.workflow_pk(name), version, definition, digest, now))
        actions += [self._mark(service, name) for service in services]
        actions += [self._unmark(service, name) for service in dropped]

        def refusal(error: ClientError) -> MachineryError:
            failed = cancelled_indexes(error)
            if 0 in failed:
                if previous is None:
                    return Conflict(f"workflow {name!r} already exists; PUT updates it")
                return StaleVersion(
                    f"workflow {name!r} changed concurrently; read it and try again"
                )
            if 1 in failed:
                # the version's number is taken: the history of a deleted workflow of that
                # name is still being removed
                return Conflict(f"workflow {name!r} has a version {version} already; try again")
            missing = [services[i - 2] for i in failed if 1 < i <= len(services) + 1]
            return InvalidDefinition(
                f"the workflow references unknown services: {', '.join(missing)}",
                [{"path": "spec.services", "message": f"unknown service {m!r}"} for m in missing],
            )

        with conditional(refusal):
            self.table.transact(actions)
        return WorkflowRecord(
            workflow_id=name,
            version=version,
            created_at=created_at,
            updated_at=now,
            definition=workflow,
            live_version=live,
            canary=canary,
        )

    def get_workflow_version(self, workflow_id: str, version: int) -> WorkflowVersion:
        item = self._version(keys.workflow_pk(workflow_id), version)
        if item is None:
            raise NotFound(f"workflow {workflow_id!r} has no version {version}")
        return _workflow_version(workflow_id, item)

    def list_workflow_versions(
        self, workflow_id: str, limit: int, cursor: str | None
    ) -> tuple[list[WorkflowVersion], str | None]:
        items, next_cursor = self._versions(keys.workflow_pk(workflow_id), limit, cursor)
        return [_workflow_version(workflow_id, item) for item in items], next_cursor

    def set_live(self, record: WorkflowRecord, live: int, canary: Canary | None) -> WorkflowRecord:
        """Switch the live version (and canary) of the workflow as the caller read it."""
        names = {"#live": "live", "#canary": "canary", "#version": "version"}
        values: Item = {":live": number(live), ":expected": number(record.version)}
        update = "SET #live = :live"
        if canary is None:
            update += " REMOVE #canary"
        else:
            update += ", #canary = :canary"
            values[":canary"] = string(canary.model_dump_json())
        with conditional(
            lambda _: StaleVersion(
                f"workflow {record.workflow_id!r} changed concurrently; read it and try again"
            )
        ):
            self.table.client.update_item(
                TableName=self.table.table_name,
                Key=keys.workflow_key(record.workflow_id),
                UpdateExpression=update,
                ConditionExpression="#version = :expected",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        return record.model_copy(update={"live_version": live, "canary": canary})

    def _mark(self, service: str, workflow: str) -> Item:
        """Add `workflow` to the service's users, if the service exists."""
        return {
            "Update": {
                "TableName": self.table.table_name,
                "Key": keys.service_key(service),
                "UpdateExpression": "ADD #used_by :workflow",
                "ConditionExpression": "attribute_exists(PK)",
                "ExpressionAttributeNames": {"#used_by": "used_by"},
                "ExpressionAttributeValues": {":workflow": {"SS": [workflow]}},
            }
        }

    def _unmark(self, service: str, workflow: str) -> Item:
        return {
            "Update": {
                "TableName": self.table.table_name,
                "Key": keys.service_key(service),
                "UpdateExpression": "DELETE #used_by :workflow",
                "ExpressionAttributeNames": {"#used_by": "used_by"},
                "ExpressionAttributeValues": {":workflow": {"SS": [workflow]}},
            }
        }

    def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        item = self.table.get(keys.workflow_key(workflow_id))
        if item is None:
            raise NotFound(f"workflow {workflow_id!r} does not exist")
        return _workflow_record(item)

    def list_workflows(
        self, limit: int, cursor: str | None
    ) -> tuple[list[WorkflowRecord], str | None]:
        items, next_key = self.table.query_index(keys.WORKFLOWS, limit, cursor, newest_first=False)
        return [_workflow_record(item) for item in items], encode_cursor(next_key)

    def delete_workflow(self, record: WorkflowRecord) -> None:
        name = record.workflow_id
        actions: list[Item] = [
            {
                "Delete": {
                    "TableName": self.table.table_name,
                    "Key": keys.workflow_key(name),
                    "ConditionExpression": "#version = :expected",
                    "ExpressionAttributeNames": {"#version": "version"},
                    "ExpressionAttributeValues": {":expected": number(record.version)},
                }
            }
        ]
        actions += [
            self._unmark(service, name) for service in sorted(record.definition.spec.all_services())
        ]
        with conditional(
            lambda _: StaleVersion(f"workflow {name!r} changed concurrently; try again")
        ):
            self.table.transact(actions)
        self._delete_versions(keys.workflow_pk(name))


def _workflow_record(item: Item) -> WorkflowRecord:
    workflow = Workflow.model_validate_json(item["definition"]["S"])
    canary = item.get("canary")
    return WorkflowRecord(
        workflow_id=workflow.name,
        version=int(item["version"]["N"]),
        created_at=datetime.fromisoformat(item["created_at"]["S"]),
        updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
        definition=workflow,
        live_version=int(item["live"]["N"]) if "live" in item else None,
        canary=Canary.model_validate_json(canary["S"]) if canary else None,
    )


def _workflow_version(workflow_id: str, item: Item) -> WorkflowVersion:
    version, digest, created_at, definition = version_fields(item)
    return WorkflowVersion(
        workflow_id=workflow_id,
        version=version,
        hash=digest,
        created_at=created_at,
        definition=Workflow.model_validate_json(definition),
    )
