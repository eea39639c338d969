"""The user-facing contract as pydantic models."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from machinery_core.domain.models import FieldSpec, RetryPolicy, Service, Workflow

SEED_UPPER: dict[str, Any] = {
    "name": "upper",
    "address": "http://127.0.0.1:5001/",
    "spec": {
        "inputs": {"message": {"type": "string", "description": "The text to transform"}},
        "outputs": {"message": {"type": "string", "description": "The transformed text"}},
    },
}

PROTOTYPE_UPPER: dict[str, Any] = {
    "name": "upper",
    "address": "http://127.0.0.1:5001/",
    "inputs": [{"name": "message", "type": "str", "description": "The text to transform"}],
    "outputs": [{"name": "message", "type": "str", "description": "The transformed text"}],
}


def service(**overrides: Any) -> dict[str, Any]:
    return {**SEED_UPPER, **overrides}


def workflow(**spec: Any) -> dict[str, Any]:
    return {"name": "process-text", "spec": {"services": ["upper", "reverse"], **spec}}


# --- Service -----------------------------------------------------------------------------


def test_seed_and_prototype_forms_give_the_same_canonical_service() -> None:
    # Given the same service in the seed form and in the prototype's list form
    # When both are validated
    seed = Service.model_validate(SEED_UPPER)
    prototype = Service.model_validate(PROTOTYPE_UPPER)

    # Then they are the same canonical model, stored with a `spec` block
    assert prototype == seed
    dumped = prototype.model_dump()
    assert dumped["spec"]["inputs"] == {
        "message": {"type": "string", "description": "The text to transform", "required": True}
    }
    assert "inputs" not in dumped


def test_service_defaults_follow_the_contract() -> None:
    # Given a service that states only what is required
    parsed = Service.model_validate(SEED_UPPER)

    # Then the optional settings take their documented defaults
    assert parsed.method == "POST"
    assert parsed.mode == "sync"
    assert parsed.headers == {}
    assert parsed.retry == RetryPolicy(max_attempts=3, interval_seconds=1.0, backoff_rate=2.0)


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("int", "integer"),
        ("float", "number"),
        ("bool", "boolean"),
        ("str", "string"),
        ("dict", "object"),
        ("list", "array"),
        ("INT", "integer"),
        ("any", "any"),
    ],
)
def test_type_aliases_map_to_canonical_types(alias: str, canonical: str) -> None:
    # When a field is declared with an alias
    field = FieldSpec.model_validate({"type": alias})

    # Then it is stored under the canonical type name
    assert field.type == canonical


def test_an_unknown_type_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        Service.model_validate(
            service(spec={"inputs": {"message": {"type": "text"}}, "outputs": {}})
        )
    assert any(error["loc"][-1] == "type" for error in caught.value.errors())


@pytest.mark.parametrize(
    "name", ["Upper", "-upper", "_upper", "", "with space", "upper!", "a" * 65, "ünïcode"]
)
def test_names_that_are_not_slugs_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Service.model_validate(service(name=name))
    assert caught.value.errors()[0]["loc"] == ("name",)


def test_a_64_character_slug_is_accepted() -> None:
    assert Service.model_validate(service(name="a" * 64)).name == "a" * 64


@pytest.mark.parametrize(
    "address",
    ["ftp://127.0.0.1/upper", "127.0.0.1:5001", "/upper", "http://", "file:///etc/passwd"],
)
def test_addresses_that_are_not_http_urls_are_rejected(address: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Service.model_validate(service(address=address))
    assert caught.value.errors()[0]["loc"] == ("address",)


def test_https_addresses_are_accepted() -> None:
    parsed = Service.model_validate(service(address="https://upper.example.com/v1"))
    assert parsed.address == "https://upper.example.com/v1"


def test_a_field_declared_twice_in_the_list_form_is_rejected() -> None:
    # Given the prototype form with `message` declared twice
    body = {
        **PROTOTYPE_UPPER,
        "inputs": [{"name": "message", "type": "str"}, {"name": "message", "type": "int"}],
    }

    # Then validation refuses it and names the duplicate
    with pytest.raises(ValidationError, match="'message' is declared twice"):
        Service.model_validate(body)


@pytest.mark.parametrize(
    "body",
    [
        service(colour="red"),
        service(spec={"inputs": {}, "outputs": {}, "extra": {}}),
        service(spec={"inputs": {"message": {"type": "string", "format": "email"}}}),
        service(retry={"max_attempts": 2, "spread": True}),
    ],
    ids=["service", "spec", "field", "retry"],
)
def test_extra_fields_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        Service.model_validate(body)
    assert {error["type"] for error in caught.value.errors()} == {"extra_forbidden"}


def test_an_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Service.model_validate(service(mode="carrier-pigeon"))


# --- Workflow ----------------------------------------------------------------------------


def test_operations_may_be_keyed_by_service_name_or_step_index() -> None:
    # Given operations naming one step by service and one by index
    parsed = Workflow.model_validate(
        workflow(
            operations={
                "upper": {"inputs": {"message": "text"}},
                "1": {"outputs": {"reversed": "message"}},
            }
        )
    )

    # Then each step finds its operation
    first, second = parsed.spec.operation_for(0), parsed.spec.operation_for(1)
    assert first is not None and first.inputs == {"message": "text"}
    assert second is not None and second.outputs == {"reversed": "message"}


@pytest.mark.parametrize("key", ["ghost", "2", "-1", "01x"])
def test_operations_keys_must_name_a_service_or_a_step_index(key: str) -> None:
    with pytest.raises(ValidationError, match="names neither a service"):
        Workflow.model_validate(workflow(operations={key: {"inputs": {"message": "text"}}}))


@pytest.mark.parametrize("expression", ["message[", "a..b", "`unterminated", "foo("])
def test_invalid_jmespath_in_operations_is_rejected(expression: str) -> None:
    with pytest.raises(ValidationError, match="invalid JMESPath expression"):
        Workflow.model_validate(workflow(operations={"upper": {"inputs": {"message": expression}}}))


def test_a_workflow_needs_at_least_one_service() -> None:
    with pytest.raises(ValidationError) as caught:
        Workflow.model_validate({"name": "empty", "spec": {"services": []}})
    assert caught.value.errors()[0]["loc"] == ("spec", "services")


def test_workflow_fields_accept_the_list_form_too() -> None:
    parsed = Workflow.model_validate(
        workflow(inputs=[{"name": "message", "type": "str", "required": False}])
    )
    assert parsed.spec.inputs["message"].type == "string"
    assert parsed.spec.inputs["message"].required is False


# --- RetryPolicy -------------------------------------------------------------------------


def test_delay_before_grows_by_the_backoff_rate() -> None:
    policy = RetryPolicy(max_attempts=5, interval_seconds=1.5, backoff_rate=2.0)

    # The first retry (attempt 2) waits the interval; each later one multiplies it
    assert [policy.delay_before(attempt) for attempt in (2, 3, 4, 5)] == [1.5, 3.0, 6.0, 12.0]


def test_delay_before_with_a_rate_of_one_is_constant() -> None:
    policy = RetryPolicy(interval_seconds=0.5, backoff_rate=1.0)
    assert {policy.delay_before(attempt) for attempt in range(2, 8)} == {0.5}


@pytest.mark.parametrize(
    "retry",
    [{"max_attempts": 0}, {"max_attempts": 11}, {"interval_seconds": -1}, {"backoff_rate": 0.5}],
)
def test_retry_policy_bounds_are_enforced(retry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy.model_validate(retry)


def test_the_prototypes_workflow_file_with_an_empty_list_of_operations_is_accepted() -> None:
    # Given the prototype's workflow file: list-form fields and `"operations": [ ]`
    prototype = {
        "name": "process-text",
        "spec": {
            "services": ["upper", "reverse", "space-counter"],
            "inputs": [{"name": "message", "type": "str", "description": "The text"}],
            "outputs": [
                {"name": "message", "type": "str"},
                {"name": "space_count", "type": "int"},
            ],
            "operations": [],
        },
    }

    # When it is validated, then it means the same as the seed form with no operations
    workflow = Workflow.model_validate(prototype)
    assert workflow.spec.operations == {}
    assert workflow.spec.outputs["space_count"].type == "integer"
    # and the same holds with the spec's fields beside the name
    flat = {"name": "process-text", **prototype["spec"]}  # type: ignore[dict-item]
    assert Workflow.model_validate(flat) == workflow


def test_a_non_empty_list_of_operations_is_still_refused() -> None:
    with pytest.raises(ValidationError):
        Workflow.model_validate(
            {"name": "w", "spec": {"services": ["upper"], "operations": [{"upper": {}}]}}
        )


# --- the step forms: when, condition groups, parallel, map --------------------------------


def _spec(services: list[Any], **extra: Any) -> dict[str, Any]:
    return {"name": "order", "spec": {"services": services, **extra}}


def test_a_map_reads_and_writes_its_element_name_as_as() -> None:
    entry = {"map": "lines", "as": "line", "steps": ["enrich"], "collect": "enriched"}

    parsed = Workflow.model_validate(_spec([entry]))

    dumped = parsed.model_dump(mode="json")["spec"]["services"][0]
    assert dumped["as"] == "line" and "as_" not in dumped
    assert dumped["max_concurrency"] == 10


@pytest.mark.parametrize("concurrency", [0, 41])
def test_a_map_runs_one_to_forty_iterations_at_once(concurrency: int) -> None:
    entry = {"map": "l", "steps": ["e"], "collect": "c", "max_concurrency": concurrency}
    with pytest.raises(ValidationError, match="max_concurrency"):
        Workflow.model_validate(_spec([entry]))


def test_step_ids_are_unique_and_may_key_operations_and_on_error() -> None:
    ok = _spec(
        [{"parallel": [[{"service": "a", "id": "first"}], ["b"]]}],
        operations={"first": {"inputs": {"x": "y"}}},
        on_error={"first": "continue"},
    )
    Workflow.model_validate(ok)

    twice = _spec([{"service": "a", "id": "x"}, {"service": "b", "id": "x"}])
    with pytest.raises(ValidationError, match="step id 'x' is used twice"):
        Workflow.model_validate(twice)


def test_a_group_may_not_fall_back_to_a_service() -> None:
    spec = _spec([{"parallel": [["a"]], "id": "fork"}], on_error={"fork": {"fallback": "b"}})
    with pytest.raises(ValidationError, match="a group cannot fall back"):
        Workflow.model_validate(spec)


@pytest.mark.parametrize(
    "entry",
    [
        {"service": "a", "when": "amount >"},
        {"when": "x", "steps": []},
        {"parallel": []},
        {"map": "lines", "steps": ["a"]},
        5,
    ],
    ids=["bad-when", "no-steps", "no-branch", "no-collect", "number"],
)
def test_a_malformed_entry_is_refused(entry: Any) -> None:
    with pytest.raises(ValidationError):
        Workflow.model_validate(_spec([entry]))


def test_the_seed_form_is_unchanged() -> None:
    parsed = Workflow.model_validate(_spec(["upper", "reverse"]))
    assert parsed.spec.services == ["upper", "reverse"]
    assert parsed.spec.step_services() == ["upper", "reverse"]
