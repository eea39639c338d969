"""Data against a spec, and the static type-flow check of a workflow."""

from __future__ import annotations

from typing import Any

from machinery_core.domain import mapping
from machinery_core.domain.errors import InvalidDefinition
from machinery_core.domain.mapping import Known
from machinery_core.domain.models import Fallback, Fields, Service, StepOperation, Workflow

Detail = dict[str, Any]


def type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null" if value is None else type(value).__name__


def value_matches(expected: str, value: Any) -> bool:
    actual = type_of(value)
    return expected == "any" or actual == expected or (expected == "number" and actual == "integer")


def check_data(fields: Fields, data: Any, path: str) -> list[Detail]:
    """Field-path errors of `data` against `fields`; extra fields pass through untouched."""
    if not isinstance(data, dict):
        return [{"path": path, "message": f"expected an object, got {type_of(data)}"}]
    details: list[Detail] = []
    for name, field in fields.items():
        if name not in data:
            if field.required:
                details.append({"path": f"{path}.{name}", "message": "required field is missing"})
            continue
        value = data[name]
        if not value_matches(field.type, value):
            details.append(
                {
                    "path": f"{path}.{name}",
                    "message": f"expected {field.type}, got {type_of(value)}",
                }
            )
    return details


def compatible(source: str, target: str) -> bool:
    """Whether a value statically known as `source` may feed a field declared `target`."""
    return (
        source == target or "any" in (source, target) or (source, target) == ("integer", "number")
    )


def check_workflow(workflow: Workflow, services: dict[str, Service]) -> None:
    """Refuse a workflow whose services are unknown or whose data flow cannot type-check.

    With an on_error policy, a step's outputs are certain only when every way the step
    can end provides them: `continue` makes them all uncertain; a fallback must take the
    same inputs and counts only for the outputs both services give.
    """
    spec = workflow.spec
    unknown = sorted(name for name in spec.all_services() if name not in services)
    if unknown:
        raise InvalidDefinition(
            f"the workflow references unknown services: {', '.join(unknown)}",
            [{"path": "spec.services", "message": f"unknown service {name!r}"} for name in unknown],
        )

    context = {name: Known(field.type, field.required) for name, field in spec.inputs.items()}
    details: list[Detail] = []
    for index, service_name in enumerate(spec.services):
        operation = spec.operation_for(index)
        policy = spec.on_error_for(index)
        candidates = [(services[service_name], f"spec.services[{index}] ({service_name})")]
        if isinstance(policy, Fallback):
            fallback_path = f"spec.on_error.{service_name} (fallback {policy.fallback})"
            candidates.append((services[policy.fallback], fallback_path))
        produced = []
        for service, path in candidates:
            details += _input_problems(service, operation, context, path)
            produced.append(_outputs(service, operation))
        for name in set().union(*produced):
            here = [outputs[name] for outputs in produced if name in outputs]
            certain = len(here) == len(produced) and all(k.definite for k in here)
            certain = certain and policy != "continue"
            types = {k.type for k in here}
            previous = context.get(name)
            if not certain and previous is not None:
                # the step may leave the earlier value in place
                types.add(previous.type)
                certain = previous.definite
            context[name] = Known(types.pop() if len(types) == 1 else "any", certain)

    for name, field in spec.outputs.items():
        known = context.get(name)
        if known is None or (field.required and not known.definite):
            details.append(
                {
                    "path": f"spec.outputs.{name}",
                    "message": f"workflow output {name!r} is not produced by any step or input",
                }
            )
        elif not compatible(known.type, field.type):
            details.append(
                {
                    "path": f"spec.outputs.{name}",
                    "message": f"workflow output {name!r} is declared {field.type} "
                    f"but the data flow gives {known.type}",
                }
            )
    if details:
        raise InvalidDefinition("the workflow's data flow does not type-check", details)


def _input_problems(
    service: Service, operation: StepOperation | None, context: dict[str, Known], path: str
) -> list[Detail]:
    problems: list[Detail] = []
    sources = mapping.input_sources(service, operation)
    for name, field in service.spec.inputs.items():
        source = mapping.static_source(sources[name], context)
        if source is None or (field.required and not source.definite):
            if field.required:
                problems.append(
                    {
                        "path": f"{path}.inputs.{name}",
                        "message": f"required input {name!r} is not available from the "
                        "workflow inputs or an earlier step",
                    }
                )
            continue
        if not compatible(source.type, field.type):
            problems.append(
                {
                    "path": f"{path}.inputs.{name}",
                    "message": f"input {name!r} expects {field.type} but receives {source.type}",
                }
            )
    return problems


def _outputs(service: Service, operation: StepOperation | None) -> dict[str, Known]:
    """What a successful call of `service` puts into the context."""
    response = {
        name: Known(field.type, field.required) for name, field in service.spec.outputs.items()
    }
    produced: dict[str, Known] = {}
    for target, expression in mapping.output_sources(service, operation).items():
        known = mapping.static_source(expression, response)
        if known is not None:
            produced[target] = known
        elif operation is not None and target in operation.outputs:
            produced[target] = Known("any", False)
    return produced
