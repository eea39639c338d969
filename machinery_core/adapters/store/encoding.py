"""How values are written to and read from items: attribute values, packed models, cursors.

The event's state and its plan are stored as zlib-compressed JSON (binary attributes; text
ones, from before, still read) without the fields that hold their default value, which
validation restores: DynamoDB bills a write per KB, and a three-step event's state then
stays under one.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from machinery_core.domain.errors import BadRequest, ItemTooLarge

# The most JSON one stored state or plan may hold, compressed or not: DynamoDB's item limit,
# so that what the API answers about an event stays within what it was before compression.
MAX_JSON_BYTES = 400 * 1024
TOO_LARGE = "the record would exceed DynamoDB's 400 KB item size limit"


def string(value: str) -> dict[str, str]:
    return {"S": value}


def number(value: int) -> dict[str, str]:
    return {"N": str(value)}


def moment(value: datetime) -> dict[str, str]:
    return {"S": value.isoformat()}


def epoch(value: datetime) -> dict[str, str]:
    """A time as DynamoDB's TTL reads it: whole seconds since the epoch."""
    return number(int(value.timestamp()))


def packed(model: BaseModel) -> dict[str, bytes]:
    """A stored model: its JSON without the fields at their default, compressed."""
    return packed_json(model.model_dump_json(exclude_defaults=True).encode())


def packed_json(text: bytes) -> dict[str, bytes]:
    if len(text) > MAX_JSON_BYTES:
        raise ItemTooLarge(TOO_LARGE)
    return {"B": zlib.compress(text)}


def unpacked(value: Mapping[str, Any]) -> str | bytes:
    """The JSON of a stored model, packed or (stored before packing) plain text."""
    if "B" in value:
        return zlib.decompress(value["B"])
    text: str = value["S"]
    return text


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error) as error:
        raise BadRequest("the cursor is not one this API gave out") from error
    if not isinstance(key, dict):
        raise BadRequest("the cursor is not one this API gave out")
    return key
