"""Data against a spec (check_data) and the static type-flow check (check_workflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from builders import INTEGER, STRING, make_service
from pydantic import TypeAdapter

from machinery_core.domain.errors import InvalidDefinition
from machinery_core.domain.models import Fields, Service, Workflow
from machinery_core.domain.validation import check_data, check_workflow

DEFINITIONS = Path(__file__).resolve().parents[2] / "examples" / "definitions"


def fields(spec: dict[str, Any]) -> Fields:
    return TypeAdapter(Fields).validate_python(spec)


def seed_services() -> dict[str, Service]:
    services = [
        Service.model_validate_json(path.read_text())
        for path in sorted(DEFINITIONS.glob("service-*.json"))
    ]
    return {s.name: s for s in services}


def refusal(workflow: Workflow, services: dict[str, Service]) -> InvalidDefinition:
    with pytest.raises(InvalidDefinition) as caught:
        check_workflow(workflow, services)
    return caught.value


# --- check_data --------------------------------------------------------------------------


def test_data_that_matches_passes() -> None:
    spec = fields({"message": STRING, "count": INTEGER})
    assert check_data(spec, {"message": "hi", "count": 3}, "data") == []


def test_a_missing_required_field_is_reported_with_its_path() -> None:
    spec = fields({"message": STRING, "count": INTEGER})

    details = check_data(spec, {"count": 3}, "data")

    assert details == [{"path": "data.message", "message": "required field is missing"}]


def test_wrong_types_are_reported_with_expected_and_actual_types() -> None:
    spec = fields({"message": STRING, "count": INTEGER, "tags": {"type": "array"}})

    details = check_data(spec, {"message": 7, "count": "3", "tags": {"a": 1}}, "data")

    assert details == [
        {"path": "data.message", "message": "expected string, got integer"},
        {"path": "data.count", "message": "expected integer, got string"},
        {"path": "data.tags", "message": "expected array, got object"},
    ]


@pytest.mark.parametrize("flag", [True, False])
def test_booleans_are_not_integers_nor_numbers(flag: bool) -> None:
    spec = fields({"count": INTEGER, "ratio": {"type": "number"}})

    details = check_data(spec, {"count": flag, "ratio": flag}, "data")

    assert [d["path"] for d in details] == ["data.count", "data.ratio"]
    assert all(d["message"].endswith("got boolean") for d in details)


def test_integers_are_not_booleans() -> None:
    details = check_data(fields({"flag": {"type": "boolean"}}), {"flag": 1}, "data")
    assert details == [{"path": "data.flag", "message": "expected boolean, got integer"}]


def test_an_integer_is_accepted_for_a_number_but_not_the_reverse() -> None:
    assert check_data(fields({"ratio": {"type": "number"}}), {"ratio": 3}, "data") == []
    assert check_data(fields({"count": INTEGER}), {"count": 3.0}, "data") == [
        {"path": "data.count", "message": "expected integer, got number"}
    ]


def test_optional_fields_may_be_absent_but_are_checked_when_present() -> None:
    spec = fields({"note": {"type": "string", "required": False}})

    assert check_data(spec, {}, "data") == []
    assert check_data(spec, {"note": None}, "data") == [
        {"path": "data.note", "message": "expected string, got null"}
    ]


def test_any_accepts_every_json_value() -> None:
    spec = fields({"value": {"type": "any"}})
    for value in ["s", 1, 1.5, True, None, [], {}]:
        assert check_data(spec, {"value": value}, "data") == []


def test_extra_fields_pass_through() -> None:
    assert check_data(fields({"message": STRING}), {"message": "a", "other": 1}, "data") == []


@pytest.mark.parametrize(
    ("data", "actual"), [([1, 2], "array"), ("text", "string"), (None, "null"), (3, "integer")]
)
def test_data_that_is_not_an_object_is_refused_at_its_root(data: Any, actual: str) -> None:
    details = check_data(fields({"message": STRING}), data, "data")
    assert details == [{"path": "data", "message": f"expected an object, got {actual}"}]


# --- check_workflow ----------------------------------------------------------------------


def test_the_seed_example_type_checks() -> None:
    # Given the seed services and the seed workflow
    workflow = Workflow.model_validate_json(
        (DEFINITIONS / "workflow-process-text.json").read_text()
    )

    # Then the data flow type-checks (no exception)
    check_workflow(workflow, seed_services())


def test_unknown_services_are_listed() -> None:
    workflow = Workflow.model_validate(
        {"name": "w", "spec": {"services": ["upper", "ghost", "phantom", "ghost"]}}
    )

    error = refusal(workflow, seed_services())

    assert "ghost, phantom" in error.message
    assert error.details == [
        {"path": "spec.services", "message": "unknown service 'ghost'"},
        {"path": "spec.services", "message": "unknown service 'phantom'"},
    ]


def test_a_required_service_input_that_nothing_provides_is_refused() -> None:
    # Given a workflow whose inputs do not provide `message` to upper
    workflow = Workflow.model_validate(
        {"name": "w", "spec": {"services": ["upper"], "inputs": {"text": STRING}}}
    )

    error = refusal(workflow, seed_services())

    assert error.details == [
        {
            "path": "spec.services[0] (upper).inputs.message",
            "message": "required input 'message' is not available from the workflow inputs "
            "or an earlier step",
        }
    ]


def test_an_earlier_step_output_satisfies_a_later_input() -> None:
    # Given `shout` needs `loud`, which only `upper2` produces
    services = {
        "upper2": make_service("upper2", inputs={"message": STRING}, outputs={"loud": STRING}),
        "shout": make_service(
            "shout", inputs={"loud": STRING}, outputs={"done": {"type": "boolean"}}
        ),
    }
    workflow = Workflow.model_validate(
        {
            "name": "w",
            "spec": {
                "services": ["upper2", "shout"],
                "inputs": {"message": STRING},
                "outputs": {"done": {"type": "boolean"}},
            },
        }
    )
    check_workflow(workflow, services)

    # But in the other order `loud` is not there yet
    reordered = workflow.model_copy(
        update={"spec": workflow.spec.model_copy(update={"services": ["shout", "upper2"]})}
    )
    error = refusal(reordered, services)
    assert [d["path"] for d in error.details] == ["spec.services[0] (shout).inputs.loud"]


def test_a_type_mismatch_is_refused_with_the_field_path() -> None:
    # Given an integer workflow input feeding upper's string input
    workflow = Workflow.model_validate(
        {"name": "w", "spec": {"services": ["upper"], "inputs": {"message": INTEGER}}}
    )

    error = refusal(workflow, seed_services())

    assert error.details == [
        {
            "path": "spec.services[0] (upper).inputs.message",
            "message": "input 'message' expects string but receives integer",
        }
    ]


def test_an_integer_may_feed_a_number_input() -> None:
    services = {"half": make_service("half", inputs={"value": {"type": "number"}}, outputs={})}
    workflow = Workflow.model_validate(
        {"name": "w", "spec": {"services": ["half"], "inputs": {"value": INTEGER}}}
    )
    check_workflow(workflow, services)


def test_a_workflow_output_that_is_never_produced_is_refused() -> None:
    workflow = Workflow.model_validate(
        {
            "name": "w",
            "spec": {
                "services": ["upper"],
                "inputs": {"message": STRING},
                "outputs": {"message": STRING, "space_count": INTEGER},
            },
        }
    )

    error = refusal(workflow, seed_services())

    assert error.details == [
        {
            "path": "spec.outputs.space_count",
            "message": "workflow output 'space_count' is not produced by any step or input",
        }
    ]


def test_a_workflow_output_of_the_wrong_type_is_refused() -> None:
    workflow = Workflow.model_validate(
        {
            "name": "w",
            "spec": {
                "services": ["space-counter"],
                "inputs": {"message": STRING},
                "outputs": {"space_count": STRING},
            },
        }
    )

    error = refusal(workflow, seed_services())

    assert [d["path"] for d in error.details] == ["spec.outputs.space_count"]
    assert "declared string but the data flow gives integer" in error.details[0]["message"]


def test_an_optional_workflow_input_cannot_satisfy_a_required_service_input() -> None:
    workflow = Workflow.model_validate(
        {
            "name": "w",
            "spec": {"services": ["upper"], "inputs": {"message": {**STRING, "required": False}}},
        }
    )

    error = refusal(workflow, seed_services())

    assert [d["path"] for d in error.details] == ["spec.services[0] (upper).inputs.message"]


def test_an_optional_workflow_input_may_feed_an_optional_service_input() -> None:
    services = {
        "greet": make_service("greet", inputs={"name": {**STRING, "required": False}}, outputs={})
    }
    workflow = Workflow.model_validate(
        {
            "name": "w",
            "spec": {"services": ["greet"], "inputs": {"name": {**STRING, "required": False}}},
        }
    )
    check_workflow(workflow, services)


def test_every_problem_is_reported_at_once() -> None:
    workflow = Workflow.model_validate(
        {
            "name": "w",
            "spec": {
                "services": ["upper", "reverse"],
                "inputs": {"message": INTEGER},
                "outputs": {"missing": STRING},
            },
        }
    )

    error = refusal(workflow, seed_services())

    assert [d["path"] for d in error.details] == [
        "spec.services[0] (upper).inputs.message",
        # upper's string output replaces the integer, so reverse type-checks
        "spec.outputs.missing",
    ]


# --- operations --------------------------------------------------------------------------

RENAMED_COUNTER = make_service("space-counter", inputs={"text": STRING}, outputs={"count": INTEGER})
COUNTING = {
    "name": "count-spaces",
    "spec": {
        "services": ["upper", "space-counter"],
        "inputs": {"message": STRING},
        "outputs": {"message": STRING, "space_count": INTEGER},
    },
}


def test_without_operations_renamed_fields_do_not_type_check() -> None:
    # Given a space-counter that takes `text` and answers `count`
    services = {**seed_services(), "space-counter": RENAMED_COUNTER}

    error = refusal(Workflow.model_validate(COUNTING), services)

    assert [d["path"] for d in error.details] == [
        "spec.services[1] (space-counter).inputs.text",
        "spec.outputs.space_count",
    ]


@pytest.mark.parametrize("key", ["space-counter", "1"])
def test_operations_mappings_make_the_flow_type_check(key: str) -> None:
    # Given the mapping text <- message and space_count <- count
    services = {**seed_services(), "space-counter": RENAMED_COUNTER}
    workflow = Workflow.model_validate(
        {
            **COUNTING,
            "spec": {
                **COUNTING["spec"],
                "operations": {
                    key: {"inputs": {"text": "message"}, "outputs": {"space_count": "count"}}
                },
            },
        }
    )

    # Then the flow type-checks
    check_workflow(workflow, services)


def test_an_operation_from_a_missing_context_field_is_refused() -> None:
    services = {**seed_services(), "space-counter": RENAMED_COUNTER}
    workflow = Workflow.model_validate(
        {
            **COUNTING,
            "spec": {
                **COUNTING["spec"],
                "operations": {
                    "space-counter": {
                        "inputs": {"text": "nowhere"},
                        "outputs": {"space_count": "count"},
                    }
                },
            },
        }
    )

    error = refusal(workflow, services)

    assert [d["path"] for d in error.details] == ["spec.services[1] (space-counter).inputs.text"]


def test_an_operation_output_replaces_the_default_merge() -> None:
    # Given an outputs mapping on upper that only keeps `shouted`
    workflow = Workflow.model_validate(
        {
            "name": "w",
            "spec": {
                "services": ["upper"],
                "inputs": {"text": STRING},
                "outputs": {"shouted": STRING},
                "operations": {
                    "upper": {"inputs": {"message": "text"}, "outputs": {"shouted": "message"}}
                },
            },
        }
    )
    check_workflow(workflow, seed_services())

    # Then `message` is no longer produced under its own name
    asks_message = workflow.model_copy(
        update={
            "spec": workflow.spec.model_copy(
                update={"outputs": fields({"shouted": STRING, "message": STRING})}
            )
        }
    )
    error = refusal(asks_message, seed_services())
    assert [d["path"] for d in error.details] == ["spec.outputs.message"]


def test_a_richer_expression_is_typed_any_and_accepted() -> None:
    # Given an input built by a JMESPath function over the context
    services = {"count": make_service("count", inputs={"n": INTEGER}, outputs={"n": INTEGER})}
    workflow = Workflow.model_validate(
        {
            "name": "w",
            "spec": {
                "services": ["count"],
                "inputs": {"items": {"type": "array"}},
                "outputs": {"n": INTEGER},
                "operations": {"count": {"inputs": {"n": "length(items)"}}},
            },
        }
    )

    # Then it is checked when the step runs, not refused now
    check_workflow(workflow, services)


# --- conditions, parallel branches, maps ------------------------------------------------

NUMBER = {"type": "number"}
GROUP_SERVICES = {
    s.name: s
    for s in (
        make_service("fraud-check", inputs={"amount": NUMBER}, outputs={"verdict": STRING}),
        make_service("vat-fr", inputs={"country": STRING}, outputs={"vat": NUMBER}),
        make_service("vat-default", inputs={"country": STRING}, outputs={"vat": NUMBER}),
        make_service("vat-uk", inputs={"country": STRING}, outputs={"uk_vat": NUMBER}),
        make_service("reserve-stock", inputs={}, outputs={"reservation": STRING}),
        make_service("charge-card", inputs={"amount": NUMBER}, outputs={"charge": STRING}),
        make_service("recharge", inputs={"amount": NUMBER}, outputs={"charge": STRING}),
        make_service("receipt", inputs={"charge": STRING}, outputs={"receipt": STRING}),
        make_service("needs-verdict", inputs={"verdict": STRING}, outputs={}),
        make_service("enrich", inputs={"line": {"type": "object"}}, outputs={"price": NUMBER}),
        make_service("total", inputs={"enriched": {"type": "array"}}, outputs={"sum": NUMBER}),
    )
}


def order(services: list[Any], outputs: dict[str, Any] | None = None, **spec: Any) -> Workflow:
    return Workflow.model_validate(
        {
            "name": "order",
            "spec": {
                "inputs": {"amount": NUMBER, "country": STRING, "lines": {"type": "array"}},
                "services": services,
                "outputs": outputs or {},
                **spec,
            },
        }
    )


def test_the_issue_example_type_checks() -> None:
    workflow = order(
        [
            {"service": "fraud-check", "when": "amount > `100`"},
            {"when": "country == 'FR'", "steps": ["vat-fr"], "otherwise": ["vat-default"]},
            {"parallel": [["reserve-stock"], ["charge-card", "receipt"]]},
            {"map": "lines", "as": "line", "steps": ["enrich"], "collect": "enriched"},
            "total",
        ],
        outputs={"vat": NUMBER, "receipt": STRING, "enriched": {"type": "array"}, "sum": NUMBER},
    )
    check_workflow(workflow, GROUP_SERVICES)


def test_a_field_given_only_under_a_when_is_optional_afterwards() -> None:
    workflow = order([{"service": "fraud-check", "when": "amount > `100`"}, "needs-verdict"])

    problem = refusal(workflow, GROUP_SERVICES)

    assert [d["path"] for d in problem.details] == [
        "spec.services[1] (needs-verdict).inputs.verdict"
    ]


def test_a_field_given_only_by_one_way_of_a_condition_is_optional() -> None:
    workflow = order(
        [{"when": "country == 'UK'", "steps": ["vat-uk"], "otherwise": ["vat-default"]}],
        outputs={"uk_vat": NUMBER},
    )

    problem = refusal(workflow, GROUP_SERVICES)

    assert problem.details[0]["path"] == "spec.outputs.uk_vat"
    assert "only on some paths" in problem.details[0]["message"]


def test_a_field_given_by_both_ways_is_certain() -> None:
    workflow = order(
        [{"when": "country == 'FR'", "steps": ["vat-fr"], "otherwise": ["vat-default"]}],
        outputs={"vat": NUMBER},
    )
    check_workflow(workflow, GROUP_SERVICES)


def test_two_branches_producing_one_field_are_refused_naming_both() -> None:
    workflow = order([{"parallel": [["charge-card"], ["reserve-stock", "recharge"]]}])

    problem = refusal(workflow, GROUP_SERVICES)

    [detail] = problem.details
    assert detail["path"] == "spec.services[0].parallel[1]"
    assert "spec.services[0].parallel[0]" in detail["message"] and "'charge'" in detail["message"]


def test_operations_keyed_by_step_id_settle_a_branch_conflict() -> None:
    workflow = order(
        [{"parallel": [["charge-card"], [{"service": "recharge", "id": "second"}]]}],
        outputs={"charge": STRING, "second_charge": STRING},
        operations={"second": {"outputs": {"second_charge": "charge"}}},
    )
    check_workflow(workflow, GROUP_SERVICES)


def test_a_branch_sees_only_what_existed_at_the_fork() -> None:
    workflow = order([{"parallel": [["charge-card"], ["receipt"]]}])

    problem = refusal(workflow, GROUP_SERVICES)

    assert [d["path"] for d in problem.details] == [
        "spec.services[0].parallel[1][0] (receipt).inputs.charge"
    ]


def test_a_map_collects_an_array_and_its_element_is_any() -> None:
    workflow = order(
        [{"map": "lines", "as": "line", "steps": ["enrich"], "collect": "enriched"}],
        outputs={"enriched": {"type": "array"}, "price": NUMBER},
    )

    problem = refusal(workflow, GROUP_SERVICES)

    # the iteration's fields stay inside it: only the collected array comes out
    assert [d["path"] for d in problem.details] == ["spec.outputs.price"]


def test_a_map_over_what_is_not_an_array_is_refused() -> None:
    workflow = order([{"map": "country", "as": "line", "steps": ["enrich"], "collect": "x"}])

    problem = refusal(workflow, GROUP_SERVICES)

    assert problem.details == [
        {"path": "spec.services[0].map", "message": "'country' gives string, not an array"}
    ]


def test_a_nested_step_is_named_by_its_path() -> None:
    workflow = order(
        [
            {
                "map": "lines",
                "as": "line",
                "collect": "done",
                "steps": [{"parallel": [["enrich"], [{"when": "line", "steps": ["receipt"]}]]}],
            }
        ]
    )

    problem = refusal(workflow, GROUP_SERVICES)

    assert [d["path"] for d in problem.details] == [
        "spec.services[0].steps[0].parallel[1][0].steps[0] (receipt).inputs.charge"
    ]
