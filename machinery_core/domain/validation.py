"""Data against a spec, and the static type-flow check of a workflow."""

from __future__ import annotations

from typing import Any

from machinery_core.domain import mapping
from machinery_core.domain.errors import InvalidDefinition
from machinery_core.domain.mapping import Known
from machinery_core.domain.models import (
    ConditionEntry,
    Entry,
    Fallback,
    Fields,
    Located,
    MapEntry,
    ParallelEntry,
    Service,
    StepEntry,
    StepOperation,
    Workflow,
    WorkflowSpec,
)

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

    A field is certain after a step only when every way the step can end provides it: an
    on_error `continue`, a `when`, a condition's other way make it optional; a fallback
    must take the same inputs and counts only for the outputs both services give.
    Parallel branches see the context of the fork and may not produce the same field; a
    map's steps see the context and the element, and only its `collect` array leaves it.
    """
    spec = workflow.spec
    unknown = sorted(name for name in spec.all_services() if name not in services)
    if unknown:
        raise InvalidDefinition(
            f"the workflow references unknown services: {', '.join(unknown)}",
            [{"path": "spec.services", "message": f"unknown service {name!r}"} for name in unknown],
        )
    flow = _Flow(spec, services)
    context = {name: Known(field.type, field.required) for name, field in spec.inputs.items()}
    context = flow.sequence(spec.services, "spec.services", None, context)
    details = flow.details
    for name, field in spec.outputs.items():
        known = context.get(name)
        if known is None:
            details.append(
                {
                    "path": f"spec.outputs.{name}",
                    "message": f"workflow output {name!r} is not produced by any step or input",
                }
            )
        elif field.required and not known.definite:
            details.append(
                {
                    "path": f"spec.outputs.{name}",
                    "message": f"workflow output {name!r} is produced only on some paths "
                    "(a when, an otherwise, an on_error continue, an optional field)",
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


Context = dict[str, Known]


class _Flow:
    """The type-flow walk: what each entry leaves in the context, and the problems met."""

    def __init__(self, spec: WorkflowSpec, services: dict[str, Service]) -> None:
        self.spec = spec
        self.services = services
        self.details: list[Detail] = []

    def sequence(
        self, entries: list[Entry], prefix: str, top: int | None, context: Context
    ) -> Context:
        for index, entry in enumerate(entries):
            place = Located(entry, f"{prefix}[{index}]", index if top is None else top)
            context = self.entry(place, context)
        return context

    def entry(self, place: Located, context: Context) -> Context:
        entry = place.entry
        if isinstance(entry, ConditionEntry):
            taken = self.sequence(entry.steps, f"{place.path}.steps", place.top, context)
            other = self.sequence(entry.otherwise, f"{place.path}.otherwise", place.top, context)
            after = _either(taken, other)
        elif isinstance(entry, ParallelEntry):
            after = self.parallel(entry, place, context)
        elif isinstance(entry, MapEntry):
            after = self.map(entry, place, context)
        else:
            return self.step(place, context)
        if self.spec.on_error_for(place) == "continue" and not isinstance(entry, MapEntry):
            after = _either(after, context)  # a map's policy is per iteration: it still collects
        return after

    def step(self, place: Located, context: Context) -> Context:
        service_name = place.service
        assert service_name is not None
        service = self.services[service_name]
        operation = self.spec.operation_for(place)
        policy = self.spec.on_error_for(place)
        candidates = [(service, f"{place.path} ({service_name})")]
        if isinstance(policy, Fallback):
            fallback_path = f"spec.on_error.{service_name} (fallback {policy.fallback})"
            candidates.append((self.services[policy.fallback], fallback_path))
        conditional = policy == "continue" or (
            isinstance(place.entry, StepEntry) and place.entry.when is not None
        )
        produced = []
        for candidate, path in candidates:
            self.details.extend(_input_problems(candidate, operation, context, path))
            produced.append(_outputs(candidate, operation))
        after = dict(context)
        for name in set().union(*produced):
            here = [outputs[name] for outputs in produced if name in outputs]
            certain = len(here) == len(produced) and all(k.definite for k in here)
            certain = certain and not conditional
            types = {k.type for k in here}
            previous = context.get(name)
            if not certain and previous is not None:
                # the step may leave the earlier value in place
                types.add(previous.type)
                certain = previous.definite
            after[name] = Known(types.pop() if len(types) == 1 else "any", certain)
        return after

    def parallel(self, entry: ParallelEntry, place: Located, context: Context) -> Context:
        joined = dict(context)
        producers: dict[str, str] = {}
        for number, branch in enumerate(entry.parallel):
            path = f"{place.path}.parallel[{number}]"
            after = self.sequence(branch, path, place.top, context)
            for name, known in after.items():
                if known is context.get(name):
                    continue  # left as the fork had it
                if name in producers:
                    self.details.append(
                        {
                            "path": path,
                            "message": f"field {name!r} is produced by both {producers[name]} "
                            f"and {path}; rename one with operations",
                        }
                    )
                    continue
                producers[name] = path
                joined[name] = known
        return joined

    def map(self, entry: MapEntry, place: Located, context: Context) -> Context:
        items = mapping.static_source(entry.map, context)
        if items is None or not items.definite:
            self.details.append(
                {
                    "path": f"{place.path}.map",
                    "message": f"{entry.map!r} is not available from the workflow inputs "
                    "or an earlier step",
                }
            )
        elif not compatible(items.type, "array"):
            self.details.append(
                {
                    "path": f"{place.path}.map",
                    "message": f"{entry.map!r} gives {items.type}, not an array",
                }
            )
        iteration = {**context, entry.as_: Known("any", True)}
        self.sequence(entry.steps, f"{place.path}.steps", place.top, iteration)
        return {**context, entry.collect: Known("array", True)}


def _either(one: Context, other: Context) -> Context:
    """What is known after one of two ways ran, not knowing which."""
    merged: Context = {}
    for name in one.keys() | other.keys():
        first, second = one.get(name), other.get(name)
        if first is None or second is None:
            known = first or second
            assert known is not None
            merged[name] = Known(known.type, False)
        elif first is second:
            merged[name] = first
        else:
            same = first.type == second.type
            merged[name] = Known(first.type if same else "any", first.definite and second.definite)
    return merged


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
