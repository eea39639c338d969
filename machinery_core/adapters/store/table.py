"""The table every aggregate's items live in, and the one mapping of DynamoDB's errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from machinery_core.adapters.store import keys
from machinery_core.adapters.store.encoding import TOO_LARGE, decode_cursor, string
from machinery_core.adapters.throttling import throttle_aware
from machinery_core.domain.errors import BadRequest, Conflict, ItemTooLarge, MachineryError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Item = dict[str, Any]
BATCH_GET_KEYS = 100  # the most keys one BatchGetItem takes


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


def cancelled_indexes(error: ClientError) -> list[int]:
    """Which actions of a cancelled transaction failed their condition."""
    reasons = error.response.get("CancellationReasons", [])
    return [i for i, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"]


class Table:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self.client = throttle_aware(client)
        self.table_name = table_name

    def get(
        self, key: keys.Key, attributes: str | None = None, names: dict[str, str] | None = None
    ) -> Item | None:
        params: dict[str, Any] = {"TableName": self.table_name, "Key": key, "ConsistentRead": True}
        if attributes:
            params["ProjectionExpression"] = attributes
            params["ExpressionAttributeNames"] = names
        item: Item | None = self.client.get_item(**params).get("Item")
        return item

    def batch_get(
        self,
        item_keys: list[keys.Key],
        *,
        consistent: bool,
        attributes: str | None = None,
        names: dict[str, str] | None = None,
    ) -> list[Item]:
        """The items of `item_keys` that exist, in any order: a BatchGetItem per 100 keys
        (its limit), again for the keys DynamoDB left unprocessed."""
        found: list[Item] = []
        for start in range(0, len(item_keys), BATCH_GET_KEYS):
            asked: Item = {"Keys": item_keys[start : start + BATCH_GET_KEYS]}
            if consistent:
                asked["ConsistentRead"] = True
            if attributes:
                asked["ProjectionExpression"] = attributes
                asked["ExpressionAttributeNames"] = names
            request: Item = {self.table_name: asked}
            while request:
                answer = self.client.batch_get_item(RequestItems=request)
                found += answer["Responses"].get(self.table_name, [])
                request = answer.get("UnprocessedKeys") or {}
        return found

    def transact(self, actions: list[Item]) -> None:
        self.client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]

    def query_partition(
        self, pk: str, sk_prefix: str, limit: int, cursor: str | None, *, newest_first: bool
    ) -> tuple[list[Item], Item | None]:
        """The items of one partition whose sort key starts with `sk_prefix`, a page."""
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": string(pk), ":prefix": string(sk_prefix)},
            "ScanIndexForward": not newest_first,
            "Limit": limit,
        }
        start = decode_cursor(cursor)
        if start is not None and not keys.table_key_fits(start, pk, sk_prefix):
            raise BadRequest("the cursor is not one this API gave out")
        if start:
            params["ExclusiveStartKey"] = start
        answer = self.client.query(**params)
        return answer.get("Items", []), answer.get("LastEvaluatedKey")

    def query_index(
        self,
        partition: str,
        limit: int,
        cursor: str | None,
        *,
        newest_first: bool,
        status: str | None = None,
    ) -> tuple[list[Item], Item | None]:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": keys.INDEX,
            "KeyConditionExpression": "GSI1PK = :pk",
            "ExpressionAttributeValues": {":pk": string(partition)},
            "ScanIndexForward": not newest_first,
            "Limit": limit,
        }
        start = decode_cursor(cursor)
        if start is not None and not keys.index_key_fits(start, partition):
            raise BadRequest("the cursor is not one this API gave out")
        if start:
            params["ExclusiveStartKey"] = start
        if status is not None:
            params["FilterExpression"] = "#status = :status"
            params["ExpressionAttributeNames"] = {"#status": "status"}
            params["ExpressionAttributeValues"][":status"] = string(status)
        answer = self.client.query(**params)
        return answer.get("Items", []), answer.get("LastEvaluatedKey")
