"""`operations`: JMESPath mappings between the running context and each service.

Without an operation a service receives the context fields named in its spec inputs and
its spec outputs are merged into the context under the same names. An operation's
`inputs` overrides the source of the fields it names; its `outputs`, when given, replaces
the default merge for that step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from machinery_core.domain.models import Service, StepOperation, compile_expression


@dataclass(frozen=True)
class Known:
    """What the type-flow check knows of a field before anything runs."""

    type: str
    definite: bool  # present on every run, not only when an optional field was given


def _quote(name: str) -> str:
    return name if name.isidentifier() else '"' + name.replace('"', '\\"') + '"'


def input_sources(service: Service, operation: StepOperation | None) -> dict[str, str]:
    sources = {name: _quote(name) for name in service.spec.inputs}
    if operation is not None:
        sources.update(operation.inputs)
    return sources


def output_sources(service: Service, operation: StepOperation | None) -> dict[str, str]:
    if operation is not None and operation.outputs:
        return dict(operation.outputs)
    return {name: _quote(name) for name in service.spec.outputs}


def static_source(expression: str, known: dict[str, Known]) -> Known | None:
    """What can be said before running of an expression over `known` fields.

    A bare field name has that field's type; anything richer is typed `any` and counts
    as present, and the value is checked against the spec when the step runs.
    """
    tree = compile_expression(expression).parsed
    if tree["type"] == "field":
        return known.get(tree["value"])
    return Known("any", True)


def search(expression: str, data: dict[str, Any]) -> Any:
    return compile_expression(expression).search(data)


def build_input(
    service: Service, operation: StepOperation | None, context: dict[str, Any]
) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for name, expression in input_sources(service, operation).items():
        value = search(expression, context)
        if value is not None:
            payload[name] = value
    return payload


def merge_outputs(
    service: Service,
    operation: StepOperation | None,
    response: dict[str, Any],
    context: dict[str, Any],
) -> dict[str, Any]:
    merged = dict(context)
    for target, expression in output_sources(service, operation).items():
        value = search(expression, response)
        if value is not None:
            merged[target] = value
    return merged


def holds(condition: str, context: dict[str, Any]) -> bool:
    """Whether a `when` holds: JMESPath's truth (null, false, "", [] and {} are false, and
    every number is true)."""
    value = search(condition, context)
    if value is None or value is False:
        return False
    return not (isinstance(value, str | list | dict) and len(value) == 0)
