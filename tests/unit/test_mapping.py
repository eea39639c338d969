"""`operations`: building a step's input from the context and merging its answer back."""

from __future__ import annotations

from typing import Any

from machinery_core.domain.mapping import build_input, merge_outputs
from machinery_core.domain.models import Service, StepOperation

STRING = {"type": "string"}
INTEGER = {"type": "integer"}


def make_service(inputs: dict[str, Any], outputs: dict[str, Any]) -> Service:
    return Service.model_validate(
        {
            "name": "svc",
            "address": "http://127.0.0.1:5000/",
            "spec": {"inputs": inputs, "outputs": outputs},
        }
    )


def operation(
    inputs: dict[str, str] | None = None, outputs: dict[str, str] | None = None
) -> StepOperation:
    return StepOperation(inputs=inputs or {}, outputs=outputs or {})


UPPER = make_service({"message": STRING}, {"message": STRING})
COUNTER = make_service({"text": STRING}, {"count": INTEGER})


# --- build_input -------------------------------------------------------------------------


def test_without_operation_the_service_gets_only_its_declared_inputs() -> None:
    context = {"message": "hello world", "space_count": 1, "secret": "x"}

    assert build_input(UPPER, None, context) == {"message": "hello world"}


def test_absent_context_fields_are_left_out_rather_than_sent_as_null() -> None:
    service = make_service({"message": STRING, "note": {**STRING, "required": False}}, {})

    assert build_input(service, None, {"message": "hi"}) == {"message": "hi"}


def test_input_names_that_are_not_identifiers_are_read_verbatim() -> None:
    # A bare `first-name` would be JMESPath subtraction; the default source quotes it
    service = make_service({"first-name": STRING}, {})

    assert build_input(service, None, {"first-name": "Ada"}) == {"first-name": "Ada"}


def test_an_operation_renames_an_input() -> None:
    payload = build_input(COUNTER, operation({"text": "message"}), {"message": "a b c"})

    assert payload == {"text": "a b c"}


def test_an_operation_reads_nested_paths_and_functions() -> None:
    service = make_service({"name": STRING, "first_tag": STRING, "tags": INTEGER}, {})
    context = {"user": {"profile": {"name": "Ada"}}, "tags": ["math", "engines"]}

    payload = build_input(
        service,
        operation({"name": "user.profile.name", "first_tag": "tags[0]", "tags": "length(tags)"}),
        context,
    )

    assert payload == {"name": "Ada", "first_tag": "math", "tags": 2}


def test_an_operation_overrides_only_the_inputs_it_names() -> None:
    service = make_service({"text": STRING, "lang": STRING}, {})

    payload = build_input(
        service, operation({"text": "message"}), {"message": "hola", "lang": "es"}
    )

    assert payload == {"text": "hola", "lang": "es"}


def test_an_operation_path_that_finds_nothing_leaves_the_input_out() -> None:
    payload = build_input(COUNTER, operation({"text": "user.missing"}), {"user": {}})

    assert payload == {}


# --- merge_outputs -----------------------------------------------------------------------


def test_without_operation_declared_outputs_are_merged_into_the_context() -> None:
    context = {"message": "hello", "kept": True}
    response = {"message": "HELLO", "undeclared": 1}

    merged = merge_outputs(UPPER, None, response, context)

    # The declared output replaces the old value; undeclared fields stay out; others are kept
    assert merged == {"message": "HELLO", "kept": True}
    assert context == {"message": "hello", "kept": True}  # the input context is not mutated


def test_a_declared_output_missing_from_the_answer_leaves_the_context_alone() -> None:
    service = make_service({}, {"message": STRING, "extra": {**STRING, "required": False}})

    merged = merge_outputs(service, None, {"message": "X"}, {"extra": "before"})

    assert merged == {"message": "X", "extra": "before"}


def test_an_outputs_mapping_replaces_the_default_merge() -> None:
    # Given space_count <- count
    merged = merge_outputs(
        COUNTER, operation(outputs={"space_count": "count"}), {"count": 2}, {"message": "a b c"}
    )

    # Then the answer lands under the mapped name only
    assert merged == {"message": "a b c", "space_count": 2}


def test_an_outputs_mapping_reads_nested_paths() -> None:
    response = {"stats": {"spaces": 3, "words": [{"w": "a"}, {"w": "b"}]}}

    merged = merge_outputs(
        COUNTER,
        operation(outputs={"space_count": "stats.spaces", "words": "stats.words[*].w"}),
        response,
        {},
    )

    assert merged == {"space_count": 3, "words": ["a", "b"]}


def test_an_operation_with_only_inputs_keeps_the_default_merge() -> None:
    merged = merge_outputs(COUNTER, operation({"text": "message"}), {"count": 4}, {})

    assert merged == {"count": 4}
