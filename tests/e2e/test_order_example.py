"""The order example (README, "Workflows beyond a straight line"): a condition, a when
group, parallel branches with a callback service, and a map, through the local stack's
own state machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

EVENT_FILE = Path(__file__).resolve().parents[2] / "examples" / "definitions" / "event-order.json"


def _send(stack: Any, data: dict[str, Any]) -> dict[str, Any]:
    answer = stack.post("/e/order", json={"data": data})
    assert answer.status_code == 202, answer.text
    event: dict[str, Any] = stack.wait_for_end(answer.json()["event_id"])
    return event


def _tree(steps: list[dict[str, Any]]) -> list[Any]:
    return [
        (s["kind"], s["service"], s["status"], s["branch"], s["iteration"], _tree(s["steps"]))
        for s in steps
    ]


def test_the_example_order_runs_every_kind_of_step(local_stack: Any) -> None:
    # Given the example order: 250 from France, three lines
    data = json.loads(EVENT_FILE.read_text())["data"]

    # When it is sent
    event = _send(local_stack, data)

    # Then it ends with every output the README shows
    assert event["status"] == "SUCCEEDED", event
    assert event["outputs"] == {
        "segment": "large",
        "risk": "low",
        "vat": 50.0,
        "reservation": "res-3-lines",
        "receipt": "paid, charge ch-300.00",
        "enriched": [
            {"sku": "tea", "price": 4.5, "total": 9.0},
            {"sku": "cup", "price": 3.0, "total": 12.0},
            {"sku": "pot", "price": 18.0, "total": 18.0},
        ],
        "message": "order o-1001: 3 lines, paid, charge ch-300.00",
    }
    # And its steps show the way it took: the fraud check ran, the French VAT, both
    # branches (the card charged by callback), each line priced
    ok = "SUCCEEDED"
    assert _tree(event["steps"]) == [
        ("service", "classify", ok, None, None, []),
        ("service", "fraud-check", ok, None, None, []),
        ("when", None, ok, None, None, [("service", "vat-fr", ok, 0, None, [])]),
        (
            "parallel",
            None,
            ok,
            None,
            None,
            [
                ("service", "reserve-stock", ok, 0, None, []),
                ("service", "charge-card", ok, 1, None, []),
                ("service", "receipt", ok, 1, None, []),
            ],
        ),
        ("map", None, ok, None, None, [("service", "enrich", ok, None, n, []) for n in range(3)]),
        ("service", "notify-customer", ok, None, None, []),
    ]
    group = event["steps"][4]
    assert (group["id"], group["completed"], group["total"]) == ("price-lines", 3, 3)


def test_a_small_order_outside_france_skips_the_fraud_check(local_stack: Any) -> None:
    # Given an order of 40 to Germany
    event = _send(
        local_stack,
        {"order_id": "o-7", "amount": 40, "country": "DE", "lines": [{"sku": "cup", "qty": 1}]},
    )

    # Then the fraud check is SKIPPED, the other way of the condition ran, and the optional
    # output it gives is absent
    assert event["status"] == "SUCCEEDED", event
    assert event["steps"][1]["status"] == "SKIPPED"
    assert event["steps"][2]["decision"] is False
    assert [s["service"] for s in event["steps"][2]["steps"]] == ["vat-default"]
    assert "risk" not in event["outputs"]
    assert event["outputs"]["vat"] == 0.0


def test_the_order_workflow_and_its_event_are_drawn(local_stack: Any) -> None:
    # Given a finished order
    event = _send(local_stack, json.loads(EVENT_FILE.read_text())["data"])

    # When their diagrams are read, in both formats
    for path in ("/workflows/order/diagram", f"/events/{event['event_id']}/diagram"):
        for form in ("mermaid", "svg"):
            answer = local_stack.get(f"{path}?format={form}")

            # Then each is drawn
            assert answer.status_code == 200, answer.text
            assert "vat-fr" in answer.text and "enrich" in answer.text


def test_each_step_of_the_order_reads_by_its_path_its_id_or_its_service(local_stack: Any) -> None:
    # Given the example order, ended
    event = _send(local_stack, json.loads(EVENT_FILE.read_text())["data"])
    event_id = event["event_id"]

    def step(name: str) -> Any:
        return local_stack.get(f"/events/{event_id}/steps/{name}")

    # When its steps are read by path, inside a parallel branch and a map's iteration
    receipt = step("3.1.1").json()
    second_line = step("4.0:1").json()
    # by id, and by a top-level step's service
    map_group = step("price-lines").json()
    classify = step("classify").json()

    # Then each answers that step's record as the event holds it
    assert (receipt["service"], receipt["branch"], receipt["path"]) == ("receipt", 1, "3.1.1")
    assert receipt["output"] == event["steps"][3]["steps"][2]["output"]
    assert (second_line["service"], second_line["iteration"]) == ("enrich", 1)
    assert second_line["output"] == event["steps"][4]["steps"][1]["output"]
    assert (map_group["kind"], map_group["path"], len(map_group["steps"])) == ("map", "4", 3)
    assert classify == {
        **event["steps"][0],
        "event_id": event_id,
        "path": "0",
        "linked_payloads": [],
    }
    # and a service inside a group is no name of its own, nor an iteration the map never ran
    assert step("enrich").status_code == 404
    missing = step("4.0:9")
    assert missing.status_code == 404, missing.text
    assert "no step '4.0:9'" in missing.json()["message"]
