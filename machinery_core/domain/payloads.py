"""Payloads stored apart from their event: which values go, under which name, and how they
come back. Pure: the store does the I/O (docs/architecture.md, "Payloads").

An event lives in one DynamoDB item (400 KB) that every step rewrites, and DynamoDB bills a
write by the item's size. So a payload (the event's data, its context, its outputs, a
step's input or output) whose JSON is over `contract.PAYLOAD_THRESHOLD_BYTES` leaves the
item: its largest fields one by one (each a value of its own: the context grows by a field
per step, and each field is written once, not the whole context again), or, when small
fields alone keep it over the threshold, the payload whole. And when payloads each under
the threshold add up to an item over `contract.EVENT_ITEM_BUDGET_BYTES` (many steps), the
largest of them leave whole until it is under. Each value is stored under the
SHA-256 of its JSON, so one value in several places (a step's output and the context it
went into) is stored once. The item keeps, in place of each, a placeholder, and beside the
state the map from each place (a JSON pointer, RFC 6901) to its reference.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from machinery_core.contract import EVENT_ITEM_BUDGET_BYTES, PAYLOAD_THRESHOLD_BYTES

# A field smaller than this stays in the item: its reference would cost about as much.
FIELD_MINIMUM_BYTES = 1024
REFERENCE_LENGTH = 64  # hex digits of a SHA-256


@dataclass(frozen=True)
class Stored:
    """What left the item: the reference of each place, and each distinct value's JSON."""

    references: dict[str, dict[str, Any]]  # pointer -> {"ref", "bytes"}
    bodies: dict[str, bytes]  # ref -> JSON


def encoded(value: Any) -> bytes:
    """A value's JSON as it is stored and hashed (pydantic's compact form)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def reference(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def is_reference(text: str) -> bool:
    return len(text) == REFERENCE_LENGTH and all(c in "0123456789abcdef" for c in text)


def _escaped(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _unescaped(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def places(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Each payload of an event's JSON as (pointer, its container, its key): the data, the
    outputs, each step's input and output (nested steps and earlier runs' too), the context.
    In that order: a view that inlines what its budget allows inlines those first."""
    yield "/data", document, "data"
    yield "/outputs", document, "outputs"
    yield from _step_places(document.get("steps") or [], "/steps")
    for r, run in enumerate(document.get("runs") or []):
        yield from _step_places(run.get("steps") or [], f"/runs/{r}/steps")
    yield "/context", document, "context"


def _step_places(
    steps: list[dict[str, Any]], prefix: str
) -> Iterator[tuple[str, dict[str, Any], str]]:
    for s, step in enumerate(steps):
        yield f"{prefix}/{s}/input", step, "input"
        yield f"{prefix}/{s}/output", step, "output"
        yield from _step_places(step.get("steps") or [], f"{prefix}/{s}/steps")


def offload(
    document: dict[str, Any],
    threshold: int = PAYLOAD_THRESHOLD_BYTES,
    budget: int = EVENT_ITEM_BUDGET_BYTES,
) -> Stored:
    """Take every payload over `threshold` out of `document` (in place), leaving `None` for a
    field and `{}` for a whole payload; then, while the document is over `budget`, its largest
    payloads left (many steps each under the threshold add up). Answer what was taken."""
    stored = Stored({}, {})
    kept: list[tuple[int, str, dict[str, Any], str, bytes]] = []
    for pointer, container, key in places(document):
        value = container.get(key)
        if not value:
            continue
        body = encoded(value)
        if len(body) <= threshold:
            if len(body) >= FIELD_MINIMUM_BYTES:
                kept.append((len(body), pointer, container, key, body))
            continue
        fields = _fields_to_store(value, len(body), threshold) if isinstance(value, dict) else None
        if fields is None:
            _take(stored, pointer, body)
            container[key] = {}
            continue
        for name, field_body in fields:
            _take(stored, f"{pointer}/{_escaped(name)}", field_body)
            value[name] = None
    if not kept:
        return stored
    size = len(encoded(document))
    for length, pointer, container, key, body in sorted(kept, key=lambda k: k[0], reverse=True):
        if size <= budget:
            break
        _take(stored, pointer, body)
        container[key] = {}
        size -= length - len(b"{}")
    return stored


def _fields_to_store(
    payload: dict[str, Any], size: int, threshold: int
) -> list[tuple[str, bytes]] | None:
    """The largest fields whose leaving brings `payload` under `threshold`; None when small
    fields alone keep it over (the payload then leaves whole)."""
    bodies = sorted(
        ((encoded(value), name) for name, value in payload.items()),
        key=lambda pair: len(pair[0]),
        reverse=True,
    )
    chosen: list[tuple[str, bytes]] = []
    for body, name in bodies:
        if size <= threshold:
            return chosen
        if len(body) < FIELD_MINIMUM_BYTES:
            return None
        chosen.append((name, body))
        size -= len(body) - len(b"null")
    return chosen if size <= threshold else None


def _take(stored: Stored, pointer: str, body: bytes) -> None:
    ref = reference(body)
    stored.references[pointer] = {"ref": ref, "bytes": len(body)}
    stored.bodies[ref] = body


def restore(
    document: dict[str, Any],
    references: dict[str, dict[str, Any]],
    fetch: Callable[[str], Any],
    *,
    budget: int | None = None,
    under: str = "",
) -> dict[str, dict[str, Any]]:
    """Put the stored values back into `document` (in place), fetching each distinct one
    once: all of them, or (with `budget`, for a view) those under `under` that fit, in
    order, never the context (no view shows it). Answers the references left out, which
    stay placeholders."""
    left: dict[str, dict[str, Any]] = {}
    fetched: dict[str, Any] = {}
    spent = 0
    for pointer, stored in references.items():
        inside = (pointer == under or pointer.startswith(under + "/") or not under) and not (
            pointer.startswith("/context/") or pointer == "/context"
        )
        if budget is not None and (not inside or spent + stored["bytes"] > budget):
            left[pointer] = stored
            continue
        ref = stored["ref"]
        if ref not in fetched:
            fetched[ref] = fetch(ref)
        spent += stored["bytes"]
        put_at(document, pointer, fetched[ref])
    return left


def _walk(document: Any, pointer: str) -> tuple[Any, str | int]:
    tokens = [_unescaped(token) for token in pointer.split("/")[1:]]
    container = document
    for token in tokens[:-1]:
        container = container[int(token)] if isinstance(container, list) else container[token]
    last = tokens[-1]
    return container, int(last) if isinstance(container, list) else last


def put_at(document: Any, pointer: str, value: Any) -> None:
    container, key = _walk(document, pointer)
    container[key] = value


def child(pointer: str, key: str | int) -> str:
    return f"{pointer}/{_escaped(str(key))}"
