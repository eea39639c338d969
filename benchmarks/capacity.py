"""DynamoDB capacity units of a request, computed from item sizes by DynamoDB's documented rules.

moto answers `ReturnConsumedCapacity` with a constant (1.0 per write, 0.5 per read, whatever
the size: `probe_moto_capacity` checks), so the benchmark computes what DynamoDB on-demand
would bill instead, from the items as they are before and after each request:

- item size: the UTF-8 length of every attribute name plus its value: a string its UTF-8
  length, a number 1 byte per two significant digits plus 1, binary its length, a boolean
  or null 1 byte, a list or map 3 bytes plus, per element, 1 byte and the element (a map
  element's name counts too), a set the sum of its elements.
- writes: 1 write unit per KB (1,024 bytes, rounded up, at least 1) of the larger of the
  item before and after (PutItem, UpdateItem, DeleteItem; a write whose condition fails is
  billed on the stored item); transactional writes (TransactWriteItems, ConditionCheck
  included) twice that.
- global secondary indexes: a write that adds an item to an index, removes it, or changes
  an attribute the index projects costs 1 write unit per KB of the projected item, and 2
  writes (delete and put) when it changes the index key.
- reads: 1 read unit per 4 KB (rounded up, at least 1) of the whole item (whatever the
  projection) for a strongly consistent read, half for an eventually consistent one;
  BatchGetItem rounds each item, Query and Scan the total of the items they return;
  transactional reads twice.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
SOURCE_COMPUTED = (
    "computed from item sizes by DynamoDB's documented rules (moto's ConsumedCapacity is a "
    "constant per request, whatever the item size)"
)
SOURCE_MOTO = "as moto reports it (ReturnConsumedCapacity=TOTAL)"

Attributes = dict[str, dict[str, Any]]  # an item in DynamoDB JSON: name -> {type: value}
Snapshot = Callable[[str, Attributes], Attributes | None]  # (table, key) -> the stored item


# --- item size ---------------------------------------------------------------------------


def _text(value: str) -> int:
    return len(value.encode("utf-8"))


def _binary(value: Any) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    return len(base64.b64decode(value))  # DynamoDB JSON carries binary base64-encoded


def number_size(text: str) -> int:
    digits = Decimal(str(text)).normalize().as_tuple().digits
    significant = len(digits) if digits != (0,) else 1
    return math.ceil(significant / 2) + 1


def value_size(value: dict[str, Any]) -> int:
    (kind, content), *_ = value.items()
    if kind == "S":
        return _text(content)
    if kind == "N":
        return number_size(content)
    if kind == "B":
        return _binary(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(_text(v) for v in content)
    if kind == "NS":
        return sum(number_size(v) for v in content)
    if kind == "BS":
        return sum(_binary(v) for v in content)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in content)
    if kind == "M":
        return 3 + sum(1 + _text(k) + value_size(v) for k, v in content.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Attributes | None) -> int:
    if not item:
        return 0
    return sum(_text(name) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(math.ceil(size / WRITE_UNIT_BYTES), 1)


def read_units(size: int, consistent: bool) -> float:
    units = max(math.ceil(size / READ_UNIT_BYTES), 1)
    return float(units) if consistent else units / 2


# --- tables and indexes ------------------------------------------------------------------


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[str, ...]
    projection: str  # KEYS_ONLY, INCLUDE or ALL
    non_key_attributes: tuple[str, ...] = ()

    def projected(self, item: Attributes, table_keys: tuple[str, ...]) -> Attributes:
        if self.projection == "ALL":
            return item
        names = {*table_keys, *self.keys, *self.non_key_attributes}
        return {name: value for name, value in item.items() if name in names}

    def write_sizes(
        self, before: Attributes | None, after: Attributes | None, table_keys: tuple[str, ...]
    ) -> list[int]:
        """The sizes of the index writes that turning `before` into `after` costs."""
        had = before is not None and all(key in before for key in self.keys)
        has = after is not None and all(key in after for key in self.keys)
        old = self.projected(before, table_keys) if had and before is not None else None
        new = self.projected(after, table_keys) if has and after is not None else None
        if old is None and new is None:
            return []
        if old is None or new is None:  # added to, or removed from, the index
            return [item_size(old or new)]
        if any(old[key] != new[key] for key in self.keys):
            return [item_size(old), item_size(new)]  # a delete and a put
        if old != new:
            return [max(item_size(old), item_size(new))]
        return []


@dataclass(frozen=True)
class Table:
    name: str
    keys: tuple[str, ...]  # partition key, then sort key
    indexes: tuple[Index, ...] = ()

    def key_of(self, item: Attributes) -> Attributes:
        return {name: item[name] for name in self.keys if name in item}


# --- one request -------------------------------------------------------------------------


@dataclass
class Units:
    read: float = 0.0
    write: float = 0.0  # the table's
    index_write: float = 0.0  # the global secondary indexes'

    def add(self, other: Units) -> None:
        self.read += other.read
        self.write += other.write
        self.index_write += other.index_write


@dataclass
class Write:
    table: str
    key: Attributes
    factor: int  # 2 in a transaction
    condition_only: bool = False  # a ConditionCheck: billed as a write, changes nothing


@dataclass
class Pending:
    """What a request will touch, with the items as they were before it ran."""

    operation: str
    writes: list[tuple[Write, Attributes | None]] = field(default_factory=list)


def _writes(operation: str, params: dict[str, Any], tables: dict[str, Table]) -> list[Write]:
    if operation == "PutItem":
        table = tables[params["TableName"]]
        return [Write(table.name, table.key_of(params["Item"]), 1)]
    if operation in ("UpdateItem", "DeleteItem"):
        return [Write(params["TableName"], params["Key"], 1)]
    if operation == "BatchWriteItem":
        found = []
        for name, requests in params["RequestItems"].items():
            for request in requests:
                if "PutRequest" in request:
                    found.append(Write(name, tables[name].key_of(request["PutRequest"]["Item"]), 1))
                else:
                    found.append(Write(name, request["DeleteRequest"]["Key"], 1))
        return found
    if operation == "TransactWriteItems":
        found = []
        for action in params["TransactItems"]:
            (kind, body), *_ = action.items()
            name = body["TableName"]
            key = tables[name].key_of(body["Item"]) if kind == "Put" else body["Key"]
            found.append(Write(name, key, 2, condition_only=kind == "ConditionCheck"))
        return found
    return []


def before_request(
    operation: str, params: dict[str, Any], tables: dict[str, Table], snapshot: Snapshot
) -> Pending:
    pending = Pending(operation)
    for write in _writes(operation, params, tables):
        pending.writes.append((write, snapshot(write.table, write.key)))
    return pending


def after_request(
    pending: Pending,
    params: dict[str, Any],
    parsed: dict[str, Any],
    tables: dict[str, Table],
    snapshot: Snapshot,
) -> Units:
    """The units of a request that has run (`parsed`: its answer, an error's included)."""
    units = Units()
    for write, before in pending.writes:
        table = tables[write.table]
        after = before if write.condition_only else snapshot(write.table, write.key)
        units.write += write_units(max(item_size(before), item_size(after))) * write.factor
        for index in table.indexes:
            for size in index.write_sizes(before, after, table.keys):
                units.index_write += write_units(size) * write.factor
    operation = pending.operation
    if operation == "GetItem":
        item = snapshot(params["TableName"], params["Key"])
        units.read += read_units(item_size(item), bool(params.get("ConsistentRead")))
    elif operation in ("BatchGetItem", "TransactGetItems"):
        for name, key, consistent, factor in _gets(operation, params):
            units.read += read_units(item_size(snapshot(name, key)), consistent) * factor
    elif operation in ("Query", "Scan"):
        items = parsed.get("Items") or []
        size = sum(item_size(item) for item in items)
        units.read += read_units(size, bool(params.get("ConsistentRead")))
    return units


def _gets(operation: str, params: dict[str, Any]) -> Iterable[tuple[str, Attributes, bool, int]]:
    if operation == "BatchGetItem":
        for name, request in params["RequestItems"].items():
            for key in request["Keys"]:
                yield name, key, bool(request.get("ConsistentRead")), 1
    else:
        for action in params["TransactItems"]:
            yield action["Get"]["TableName"], action["Get"]["Key"], True, 2


def moto_units(parsed: dict[str, Any]) -> float | None:
    """What moto says the request consumed (None: it said nothing)."""
    consumed = parsed.get("ConsumedCapacity")
    if consumed is None:
        return None
    entries = consumed if isinstance(consumed, list) else [consumed]
    return float(sum(entry.get("CapacityUnits", 0) for entry in entries))
