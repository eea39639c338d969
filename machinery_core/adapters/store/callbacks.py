"""Callback tokens: one item per dispatched callback step, keyed by the token's SHA-256."""

from __future__ import annotations

from datetime import UTC, datetime

from botocore.exceptions import ClientError

from machinery_core.adapters.store import keys
from machinery_core.adapters.store.encoding import epoch, moment, number, string
from machinery_core.adapters.store.events import EventItems
from machinery_core.adapters.store.table import Item, cancelled_indexes, conditional
from machinery_core.domain.errors import Conflict, MachineryError, StaleVersion
from machinery_core.domain.models import Callback, Event


class CallbackItems(EventItems):
    def open_callback(self, event: Event, *callbacks: Callback) -> Event:
        """Save the event (its steps now WAITING) and its callbacks' token records in one
        transaction (at most 99 callbacks: DynamoDB's limit is 100 actions)."""
        saved = event.model_copy(update={"version": event.version + 1})
        actions: list[Item] = []
        for callback in callbacks:
            item: Item = {
                **keys.callback_key(callback.token_hash),
                "event_id": string(callback.event_id),
                "step": number(callback.step),
                "attempt": number(callback.attempt),
                "state": string("OPEN"),
                "dispatched_at": moment(callback.dispatched_at),
                "expires_at": epoch(callback.expires_at),
            }
            if callback.path is not None:
                item["path"] = string(".".join(map(str, callback.path)))
            actions.append(
                {
                    "Put": {
                        "TableName": self.table.table_name,
                        "Item": item,
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                }
            )
        actions.append({"Update": self._event_update(event, saved)})
        with conditional(
            lambda _: StaleVersion(f"event {event.event_id!r} was advanced concurrently")
        ):
            self.table.transact(actions)
        return self._known(saved)

    def get_callback(self, token_hash: str) -> Callback | None:
        item = self.table.get(keys.callback_key(token_hash))
        if item is None:
            return None
        return Callback(
            token_hash=token_hash,
            event_id=item["event_id"]["S"],
            step=int(item["step"]["N"]),
            attempt=int(item["attempt"]["N"]),
            used=item["state"]["S"] != "OPEN",
            dispatched_at=datetime.fromisoformat(item["dispatched_at"]["S"]),
            expires_at=datetime.fromtimestamp(int(item["expires_at"]["N"]), UTC),
            path=tuple(map(int, item["path"]["S"].split("."))) if "path" in item else None,
        )

    def use_callback(self, callback: Callback, event: Event) -> Event:
        """Spend the callback's token and save what it brought, both or neither."""
        saved = event.model_copy(update={"version": event.version + 1})
        actions: list[Item] = [
            {
                "Update": {
                    "TableName": self.table.table_name,
                    "Key": keys.callback_key(callback.token_hash),
                    "UpdateExpression": "SET #state = :used",
                    "ConditionExpression": "#state = :open",
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": {":used": string("USED"), ":open": string("OPEN")},
                }
            },
            {"Update": self._event_update(event, saved)},
        ]

        def refusal(error: ClientError) -> MachineryError:
            if 0 in cancelled_indexes(error):
                return Conflict("this callback was already used")
            return StaleVersion(f"event {event.event_id!r} was advanced concurrently")

        with conditional(refusal):
            self.table.transact(actions)
        return self._known(saved)
