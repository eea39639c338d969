"""Which payloads of an event leave its item, under which reference, and how they come back."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from machinery_core.contract import EVENT_ITEM_BUDGET_BYTES, PAYLOAD_THRESHOLD_BYTES
from machinery_core.domain import payloads

BIG = "x" * (PAYLOAD_THRESHOLD_BYTES + 1)


def _event(**parts: Any) -> dict[str, Any]:
    return {"event_id": "e1", "data": {"n": 1}, "context": {"n": 1}, **parts}


def _stored_values(document: dict[str, Any], stored: payloads.Stored) -> dict[str, Any]:
    return {
        pointer: json.loads(stored.bodies[ref["ref"]]) for pointer, ref in stored.references.items()
    }


def test_an_event_under_the_threshold_keeps_everything_in_place() -> None:
    # Given an event whose payloads are each under 16 KiB
    document = _event(steps=[{"index": 0, "input": {"a": "y" * 1000}, "output": {"b": 2}}])
    before = copy.deepcopy(document)

    # When it is offloaded
    stored = payloads.offload(document)

    # Then nothing leaves it
    assert stored.references == {}
    assert stored.bodies == {}
    assert document == before


def test_a_large_field_leaves_alone_and_the_small_ones_stay() -> None:
    # Given a step output with one large field and a small one
    document = _event(steps=[{"index": 0, "output": {"report": BIG, "count": 3}}])

    # When it is offloaded
    stored = payloads.offload(document)

    # Then the large field is stored under the SHA-256 of its JSON, the small one stays
    body = payloads.encoded(BIG)
    assert stored.references == {
        "/steps/0/output/report": {"ref": payloads.reference(body), "bytes": len(body)}
    }
    assert stored.bodies == {payloads.reference(body): body}
    assert document["steps"][0]["output"] == {"report": None, "count": 3}


def test_many_small_fields_leave_as_one_payload() -> None:
    # Given data of 40 fields of 500 bytes each: 20 KB, none worth a reference of its own
    data = {f"f{i}": "z" * 500 for i in range(40)}
    document = _event(data=data)

    # When it is offloaded
    stored = payloads.offload(document)

    # Then the data leaves whole, and `{}` holds its place
    assert list(stored.references) == ["/data"]
    assert _stored_values(document, stored) == {"/data": data}
    assert document["data"] == {}


def test_the_largest_fields_leave_first_and_only_as_many_as_needed() -> None:
    # Given a payload of a 12 KB field, a 10 KB field and a 2 KB field (24 KB)
    payload = {"a": "a" * 12_000, "b": "b" * 10_000, "c": "c" * 2_000}
    document = _event(outputs=payload)

    # When it is offloaded
    stored = payloads.offload(document)

    # Then only the 12 KB field leaves: what stays (12 KB) is under the threshold
    assert list(stored.references) == ["/outputs/a"]
    assert document["outputs"] == {"a": None, "b": payload["b"], "c": payload["c"]}


def test_one_value_in_several_places_is_stored_once() -> None:
    # Given a step output that went into the context and the outputs unchanged
    document = _event(
        context={"report": BIG},
        outputs={"report": BIG},
        steps=[{"index": 0, "output": {"report": BIG}}],
    )

    # When it is offloaded
    stored = payloads.offload(document)

    # Then three places name one stored value
    assert len(stored.references) == 3
    assert len({ref["ref"] for ref in stored.references.values()}) == 1
    assert len(stored.bodies) == 1


def test_nested_steps_and_earlier_runs_are_offloaded_too() -> None:
    # Given a group's nested step and an earlier run's step, each with a large output
    document = _event(
        steps=[{"index": 0, "steps": [{"index": 0, "branch": 1, "output": {"r": BIG}}]}],
        runs=[{"run": 1, "steps": [{"index": 0, "input": {"q": BIG + "q"}}]}],
    )

    # When it is offloaded
    stored = payloads.offload(document)

    # Then both leave, named by their JSON pointers
    assert set(stored.references) == {"/steps/0/steps/0/output/r", "/runs/0/steps/0/input/q"}


def test_a_field_name_with_a_slash_or_a_tilde_is_escaped_in_its_pointer() -> None:
    document = _event(outputs={"a/b~c": BIG})
    stored = payloads.offload(document)
    assert list(stored.references) == ["/outputs/a~1b~0c"]
    restored = payloads.restore(document, stored.references, lambda ref: BIG)
    assert restored == {}
    assert document["outputs"] == {"a/b~c": BIG}


def test_restoring_puts_every_value_back_and_fetches_each_once() -> None:
    # Given an offloaded event
    original = _event(
        data={"doc": BIG},
        context={"doc": BIG, "other": "o" * 20_000},
        steps=[{"index": 0, "input": {"doc": BIG}, "output": {"other": "o" * 20_000}}],
    )
    document = copy.deepcopy(original)
    stored = payloads.offload(document)
    fetched: list[str] = []

    def fetch(ref: str) -> Any:
        fetched.append(ref)
        return json.loads(stored.bodies[ref])

    # When everything is restored
    left = payloads.restore(document, stored.references, fetch)

    # Then the event is what it was, nothing is left, and each value was fetched once
    assert document == original
    assert left == {}
    assert sorted(fetched) == sorted(stored.bodies)


def test_a_budget_restores_in_order_and_leaves_the_rest() -> None:
    # Given data and two step outputs of 20 KB each, stored apart
    blob = "b" * 20_000
    document = _event(
        data={"d": blob + "d"},
        steps=[
            {"index": 0, "output": {"o": blob + "0"}},
            {"index": 1, "output": {"o": blob + "1"}},
        ],
    )
    stored = payloads.offload(document)

    # When restored with a budget that holds two of them
    left = payloads.restore(
        document, stored.references, lambda ref: json.loads(stored.bodies[ref]), budget=41_000
    )

    # Then the data and the first step's output are back; the second is left out
    assert document["data"] == {"d": blob + "d"}
    assert document["steps"][0]["output"] == {"o": blob + "0"}
    assert list(left) == ["/steps/1/output/o"]
    assert document["steps"][1]["output"] == {"o": None}


def test_a_budget_under_a_pointer_restores_only_that_part() -> None:
    blob = "b" * 20_000
    document = _event(
        data={"d": blob + "d"},
        steps=[{"index": 0, "output": {"o": blob + "0"}}],
    )
    stored = payloads.offload(document)
    left = payloads.restore(
        document,
        stored.references,
        lambda ref: json.loads(stored.bodies[ref]),
        budget=10**9,
        under="/steps/0",
    )
    assert list(left) == ["/data/d"]
    assert document["steps"][0]["output"] == {"o": blob + "0"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0" * 64, True), ("a" * 64, True), ("A" * 64, False), ("0" * 63, False), ("../x", False)],
)
def test_a_reference_is_64_lower_case_hex_digits(text: str, expected: bool) -> None:
    assert payloads.is_reference(text) is expected


def test_many_payloads_each_under_the_threshold_leave_largest_first_past_the_item_budget() -> None:
    # Given 40 steps each answering 3 KB (120 KB in all, none over the threshold)
    steps = [{"index": i, "output": {"o": f"{i:02}" + "s" * (3000 + i)}} for i in range(40)]
    document = _event(steps=steps)

    # When it is offloaded
    stored = payloads.offload(document)

    # Then the largest outputs leave whole until the item is under its budget, no more
    assert len(payloads.encoded(document)) <= EVENT_ITEM_BUDGET_BYTES
    left = [int(pointer.split("/")[2]) for pointer in stored.references]
    assert left == sorted(left, reverse=True)  # the largest (the last steps) first
    assert left[-1] > 0 and len(left) < 40
    assert all(pointer.endswith("/output") for pointer in stored.references)
    # and they come back
    payloads.restore(document, stored.references, lambda ref: json.loads(stored.bodies[ref]))
    assert document["steps"] == [
        {"index": i, "output": {"o": f"{i:02}" + "s" * (3000 + i)}} for i in range(40)
    ]


def test_a_view_never_fetches_the_context() -> None:
    # Given an event whose context holds a large field
    document = _event(context={"doc": BIG})
    stored = payloads.offload(document)

    # When it is restored for a view, with room to spare
    left = payloads.restore(document, stored.references, pytest.fail, budget=10**9)

    # Then nothing was fetched: the context stays a reference
    assert list(left) == ["/context/doc"]
