"""Accepting events and reading them back."""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, get_args

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import TypeAdapter, ValidationError

from machinery_core.adapters.store import keys
from machinery_core.contract import EVENT_INLINE_BYTES, STEP_INLINE_BYTES
from machinery_core.domain import diagram, engine, tracecontext
from machinery_core.domain.errors import (
    BadRequest,
    Conflict,
    DispatchFailed,
    InvalidInput,
    KeyAlreadyUsed,
    MachineryError,
    NotFound,
    NotificationFailed,
    StaleVersion,
    Throttled,
)
from machinery_core.domain.models import (
    ConditionEntry,
    Entry,
    ErrorInfo,
    Event,
    EventAccepted,
    EventRequest,
    EventStatus,
    EventSummary,
    EventView,
    Fallback,
    FieldName,
    FieldSpec,
    FieldType,
    IdempotencyClaim,
    Located,
    MapEntry,
    Notification,
    OnError,
    Page,
    ParallelEntry,
    Plan,
    PlannedGroup,
    PlannedNode,
    PlannedStep,
    Service,
    ServiceRecord,
    StepEntry,
    StepOperation,
    StepRecord,
    StepView,
    TraceContext,
    Workflow,
    WorkflowRecord,
    WorkflowSpec,
    children,
    link_payloads,
)
from machinery_core.domain.validation import check_data, type_of
from machinery_core.runtime.dependencies import Dependencies
from machinery_core.runtime.observability import event_context, logger
from machinery_core.service import notifications, observe

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# The execution input carries the plan up to this size (Step Functions allows 256 KB for
# the input and for every state's data, which also holds the worker's answers and errors).
PLAN_INPUT_LIMIT = 32 * 1024


def accept_event(
    deps: Dependencies,
    workflow_id: str,
    request: EventRequest,
    api_url: str,
    idempotency_key: str | None = None,
    version: int | None = None,
    trace: TraceContext | None = None,
) -> EventAccepted:
    """Store the event, then start its execution: once this returns, the event is durable.

    `api_url` is where the request came in; callback services are told to call back there
    unless the deployment names another base URL. The same `idempotency_key` with the same
    request within 24 hours answers the event it first created (`replayed`); with another
    request it is refused. The event runs `version` of the workflow if given, else the
    live one (or, for the canary's share of events, the canary's). `trace`: the W3C trace
    its calls join (tracecontext.begin: the client's, the X-Ray invocation's, or a new one).
    """
    record = deps.store.intake_workflow(workflow_id)
    chosen = version if version is not None else _drawn_version(record)
    if chosen == record.version:
        definition = record.definition
    else:
        definition = deps.store.get_workflow_version(workflow_id, chosen).definition
    spec = definition.spec
    problems = check_data(spec.inputs, request.data, "data")
    if problems:
        raise InvalidInput("the event data does not match the workflow inputs", problems)
    if request.notify is not None:
        deps.address_policy.check_registration(request.notify.url, "notify.url")
    records = deps.store.intake_service_records(spec.all_services())
    missing = sorted(spec.all_services() - set(records))
    if missing:
        raise Conflict(f"the workflow's services are gone: {', '.join(missing)}")
    plan = Plan(
        workflow_version=chosen,
        steps=planned_steps(spec, spec.services, "spec.services", None, records),
        outputs=spec.outputs,
        callback_base_url=deps.callback_base_url or api_url,
    )
    notify = request.notify or spec.notify
    now = deps.clock()
    event = Event(
        event_id=str(uuid.uuid4()),
        workflow_id=workflow_id,
        status=EventStatus.PENDING,
        data=request.data,
        context=dict(request.data),
        acknowledged_at=now,
        updated_at=now,
        notification=Notification(url=notify.url) if notify else None,
        workflow_version=chosen,
        trace_context=trace or tracecontext.begin(None, None, None),
    )
    claim = None
    if idempotency_key:
        claim = IdempotencyClaim(
            workflow_id=workflow_id,
            key=idempotency_key,
            request_hash=keys.sha256(request.model_dump_json()),
            expires_at=now + IDEMPOTENCY_WINDOW,
        )
    try:
        deps.store.create_event(event, plan, claim)
    except KeyAlreadyUsed:
        assert claim is not None
        return _replay(deps, claim)
    with event_context(event.event_id, workflow_id, event.trace.trace_id):
        _start(deps, event, plan, withdraw=lambda: deps.store.withdraw_event(event, claim))
        observe.event_accepted(event)
    return EventAccepted.of(event)


def _drawn_version(record: WorkflowRecord) -> int:
    """The live version, or the canary's for its share of events."""
    canary = record.canary
    if canary is not None and random.random() * 100 < canary.percent:
        return canary.version
    return record.live


def planned_steps(
    spec: WorkflowSpec,
    entries: list[Entry],
    prefix: str,
    top: int | None,
    services: dict[str, ServiceRecord],
) -> list[PlannedNode]:
    """The entries as they will run, each service's definition pinned with its version."""
    planned: list[PlannedNode] = []
    for index, entry in enumerate(entries):
        place = Located(entry, f"{prefix}[{index}]", index if top is None else top)
        policy = spec.on_error_for(place)
        if place.service is not None:
            service = services[place.service]
            step = PlannedStep(
                service=service.definition,
                service_version=service.version,
                operation=spec.operation_for(place),
                when=entry.when if isinstance(entry, StepEntry) else None,
                id=place.step_id,
            )
            if isinstance(policy, Fallback):
                fallback = services[policy.fallback]
                step.on_error, step.fallback = "fallback", fallback.definition
                step.fallback_version = fallback.version
            else:
                step.on_error = policy
            planned.append(step)
            continue
        assert not isinstance(entry, str | StepEntry) and not isinstance(policy, Fallback)
        group = PlannedGroup(kind="when", branches=[], on_error=policy, id=place.step_id)
        for inner, path in children(entry, place.path):
            group.branches.append(planned_steps(spec, inner, path, place.top, services))
        if isinstance(entry, ConditionEntry):
            group.when = entry.when
            if len(group.branches) == 1:
                group.branches.append([])
        elif isinstance(entry, ParallelEntry):
            group.kind = "parallel"
        else:
            group.kind, group.map, group.as_name = "map", entry.map, entry.as_
            group.collect, group.max_concurrency = entry.collect, entry.max_concurrency
        planned.append(group)
    return planned


def execution_input(event_id: str, plan: Plan | None, wake: dict[str, Any] | None = None) -> str:
    """The state machine's input: the event, so that the worker need not read it its plan,
    and what started it (`wake`: a timer, with its kind and when it was set for; else null).

    `plan` is null (the worker then reads the stored one) when it is larger than
    PLAN_INPUT_LIMIT, or when it holds secret headers: an execution's input shows in its
    history, where a secret must not; a timer's input never carries it (a schedule's input
    is at most 8 KB).
    """
    carried: dict[str, object] | None = None
    if plan is not None and not plan.holds_secrets:
        carried = plan.model_dump(mode="json", exclude_defaults=True)
        if len(json.dumps(carried, separators=(",", ":"))) > PLAN_INPUT_LIMIT:
            carried = None
    # `route`: what the Route state reads, none yet (the Run after a Wait sees the BACKOFF)
    body = {"event_id": event_id, "plan": carried, "wake": wake, "route": None}
    return json.dumps(body, separators=(",", ":"))


def _start(
    deps: Dependencies, event: Event, plan: Plan, withdraw: Callable[[], None] | None = None
) -> None:
    """Start the event's execution.

    Throttled, a new event is withdrawn (`withdraw`): it was never acknowledged, and the
    client, told to try again later, finds nothing in its way, its Idempotency-Key included.
    Any other failure, or a withdrawal that fails, marks the stored event FAILED.
    """
    try:
        deps.executions.start(event.execution_name, execution_input(event.event_id, plan))
    except Throttled as error:
        if withdraw is not None and _withdrawn(withdraw, event):
            raise
        _fail_to_start(deps, event, error)
        raise
    except (ClientError, BotoCoreError) as error:
        _fail_to_start(deps, event, error)
        raise DispatchFailed(
            "the event was stored but could not be started; it is marked FAILED"
        ) from error


def _withdrawn(withdraw: Callable[[], None], event: Event) -> bool:
    try:
        withdraw()
    except MachineryError:
        logger.exception("could not withdraw the event", event_id=event.event_id)
        return False
    logger.warning(
        "execution start throttled: the event is withdrawn",
        event_id=event.event_id,
        workflow_id=event.workflow_id,
    )
    return True


def _fail_to_start(deps: Dependencies, event: Event, error: Exception) -> None:
    logger.exception(
        "could not start the execution", event_id=event.event_id, workflow_id=event.workflow_id
    )
    failure = ErrorInfo(
        type="DispatchFailed", message=f"the execution could not be started: {error}"
    )
    deps.store.save_event(engine.abort(event, failure, deps.clock()))


def cancel_event(deps: Dependencies, event_id: str) -> EventView:
    """Stop the event: CANCELLED first (so late answers are refused), then the execution."""
    for _ in range(3):
        event = deps.store.get_event(event_id)
        if event.status.terminal:
            raise Conflict(f"the event already ended {event.status.value}")
        try:
            event = deps.store.save_event(engine.cancel(event, deps.clock()))
            break
        except StaleVersion:
            continue  # it moved on meanwhile: look again
    else:
        raise Conflict("the event keeps changing; try again")
    observe.event_ended(event)
    # Already ended or never started, the event is CANCELLED either way: its next step, if
    # any, finds it ended. Only an unexpected error (throttled, denied) raises, after the
    # event is on record as CANCELLED.
    # the execution that last took the event up (a resumed segment's, if any), and the
    # timer of its wait: neither has anything left to do
    stopped = deps.executions.stop(
        event.execution or event.execution_name,
        error="Cancelled",
        cause="cancelled through POST /events/{event_id}/cancel",
    )
    if event.waiting is not None and deps.timers is not None:
        deps.timers.cancel(event.timer_name)
    logger.info(
        "event cancelled", event_id=event_id, workflow_id=event.workflow_id, execution=stopped
    )
    if event.notification is not None:
        # The stopped execution never reaches its Notify state: one attempt from here.
        try:
            notifications.notify(deps, event_id)
        except NotificationFailed:
            logger.warning("the cancellation notice was not accepted", event_id=event_id)
    return get_event(deps, event_id)


def redrive_event(deps: Dependencies, event_id: str) -> EventAccepted:
    """Run a FAILED event again from its failed step (POST /events/{event_id}/retry)."""
    event, plan = deps.store.load_with_plan(event_id)
    if event.status is not EventStatus.FAILED:
        raise Conflict(f"only a FAILED event can be retried; this one is {event.status.value}")
    if event.step_index >= len(plan.steps):
        raise Conflict("every step succeeded; the workflow outputs failed, so a retry would too")
    # named as the execution it starts, so that the failed run's late end aborts nothing
    redriven = engine.redrive(event, deps.clock())
    name = redriven.execution_name
    event = deps.store.save_event(
        redriven.model_copy(update={"execution": deps.executions.execution_arn(name)})
    )
    _start(deps, event, plan)
    logger.info("event retried", event_id=event_id, workflow_id=event.workflow_id, run=event.run)
    return EventAccepted.of(event)


def _replay(deps: Dependencies, claim: IdempotencyClaim) -> EventAccepted:
    recorded = deps.store.get_idempotency(claim)
    if recorded is None:  # expired between the write and this read: ask for a retry
        raise Conflict("the Idempotency-Key is being reused; send the request again")
    event_id, request_hash = recorded
    if request_hash != claim.request_hash:
        raise Conflict("this Idempotency-Key was used with a different request")
    original = deps.store.get_event(event_id, inline_bytes=0)
    return EventAccepted.of(original, replayed=True)


def get_event(deps: Dependencies, event_id: str) -> EventView:
    """The event, its stored payloads inline up to EVENT_INLINE_BYTES, links past it."""
    return EventView.of(deps.store.get_event(event_id, inline_bytes=EVENT_INLINE_BYTES))


_STEP_PATH = re.compile(r"^(\d+(?:\.\d+)*)(?::(\d+(?:\.\d+)*))?$")


def get_event_step(deps: Dependencies, event_id: str, step: str) -> StepView:
    """One step of the event's current run, named by its path (`3`, `3.1.0`, `4.0:7`), its
    id, or (at the top level) its service: its payloads inline up to STEP_INLINE_BYTES."""
    event = deps.store.get_event(event_id, inline_bytes=0)
    pointer, path = _step_place(event, step)
    event = deps.store.get_event(event_id, inline_bytes=STEP_INLINE_BYTES, under=pointer)
    document = event.model_dump(mode="json")
    answer = {**_at(document, pointer), "event_id": event_id, "path": path}
    links = link_payloads(answer, event, under=pointer)
    return StepView.model_validate({**answer, "linked_payloads": links})


def _at(document: dict[str, Any], pointer: str) -> dict[str, Any]:
    found: Any = document
    for token in pointer.split("/")[1:]:
        found = found[int(token)] if isinstance(found, list) else found[token]
    return dict(found)


def _step_place(event: Event, step: str) -> tuple[str, str]:
    """The JSON pointer of the step's record in the event, and its path."""
    places = list(_step_places(event.steps, "/steps", None))
    match = _STEP_PATH.match(step)
    if match is not None:
        found = [place for place in places if place[1] == step]
    else:
        found = [place for place in places if place[2].id == step]
        if not found:
            found = [
                place
                for place in places
                if place[2].service == step and "." not in place[1] and ":" not in place[1]
            ]
    if not found:
        raise NotFound(f"event {event.event_id!r} has no step {step!r} in its current run")
    if len(found) > 1:
        examples = ", ".join(place[1] for place in found[:3])
        raise BadRequest(
            f"{step!r} names {len(found)} steps of this run: name one by its path ({examples})"
        )
    return found[0][0], found[0][1]


def _step_places(
    records: list[StepRecord], pointer: str, parent: tuple[StepRecord, str, str] | None
) -> Iterator[tuple[str, str, StepRecord]]:
    """Each record (nested ones too) as (JSON pointer, path, record)."""
    for position, record in enumerate(records):
        here = f"{pointer}/{position}"
        if parent is None:
            steps, iterations = str(record.index), ""
        else:
            group, steps, iterations = parent
            if group.kind == "map":
                steps = f"{steps}.{record.index}"
                iterations = f"{iterations}.{record.iteration}".lstrip(".")
            else:
                steps = f"{steps}.{record.branch}.{record.index}"
        yield here, f"{steps}:{iterations}" if iterations else steps, record
        yield from _step_places(record.steps, f"{here}/steps", (record, steps, iterations))


def get_payload(deps: Dependencies, event_id: str, ref: str) -> bytes:
    """One payload the event stored apart, as its JSON (a link of GET /events/{id})."""
    return deps.store.get_payload(event_id, ref)


def event_diagram(deps: Dependencies, event_id: str, form: diagram.DiagramFormat) -> str:
    """The event's run drawn over its workflow as it was when the event was accepted."""
    event, plan = deps.store.load_with_plan(event_id)
    try:
        current: WorkflowRecord | None = deps.store.get_workflow(event.workflow_id)
    except NotFound:
        current = None  # deleted since: the plan still tells what ran
    workflow, services = workflow_as_run(event, plan, current)
    return diagram.render(diagram.event_graph(workflow, services, EventView.of(event)), form)


_FIELD_NAME = TypeAdapter(FieldName)


def workflow_as_run(
    event: Event, plan: Plan, current: WorkflowRecord | None
) -> tuple[Workflow, dict[str, Service]]:
    """The workflow and services an event ran with, from the plan pinned when it was accepted.

    The plan keeps each step's service, operation and error policy, and the outputs; the
    inputs are the current definition's while it is still the version the event ran, else
    the fields the event's data gave (typed by their values).
    """
    services: dict[str, Service] = {}
    operations: dict[str, StepOperation] = {}
    on_error: dict[str, OnError] = {}

    def entries(nodes: list[PlannedNode], path: str) -> list[Entry]:
        rebuilt: list[Entry] = []
        for index, node in enumerate(nodes):
            # a nested step's operation or policy is keyed by its id, made up if it has none
            key = node.id or (str(index) if not path else f"step{path}-{index}")
            if isinstance(node, PlannedGroup):
                if node.on_error == "continue":
                    on_error[key] = "continue"
                rebuilt.append(group(node, key, f"{path}-{index}"))
                continue
            services.setdefault(node.service.name, node.service)
            if node.operation is not None:
                operations[key] = node.operation
            if node.on_error == "fallback" and node.fallback is not None:
                services.setdefault(node.fallback.name, node.fallback)
                on_error[key] = Fallback(fallback=node.fallback.name)
            elif node.on_error == "continue":
                on_error[key] = "continue"
            keyed = operations.keys() | on_error.keys()
            if node.when is None and node.id is None and (not path or key not in keyed):
                rebuilt.append(node.service.name)
            else:
                identity = node.id or (key if key in keyed and key != str(index) else None)
                rebuilt.append(StepEntry(service=node.service.name, when=node.when, id=identity))
        return rebuilt

    def group(node: PlannedGroup, key: str, path: str) -> Entry:
        # an id of its own, or the made-up one its policy is keyed by
        identity = node.id or (key if key in on_error and not key.isdigit() else None)
        branches = [entries(branch, f"{path}-{b}") for b, branch in enumerate(node.branches)]
        if node.kind == "parallel":
            return ParallelEntry(parallel=branches, id=identity)
        if node.kind == "map":
            assert node.map is not None and node.collect is not None
            return MapEntry.model_validate(
                {
                    "map": node.map,
                    "as": node.as_name,
                    "steps": branches[0],
                    "collect": node.collect,
                    "max_concurrency": node.max_concurrency,
                    "id": identity,
                }
            )
        assert node.when is not None
        return ConditionEntry(when=node.when, steps=branches[0], otherwise=branches[1], id=identity)

    steps = entries(plan.steps, "")
    if current is not None and current.version == plan.workflow_version:
        inputs = current.definition.spec.inputs
    else:
        inputs = {
            name: FieldSpec(type=_field_type(value))
            for name, value in event.data.items()
            if _is_field_name(name)
        }
    workflow = Workflow(
        name=event.workflow_id,
        description=current.definition.description if current is not None else None,
        spec=WorkflowSpec(
            services=steps,
            inputs=inputs,
            outputs=plan.outputs,
            operations=operations,
            on_error=on_error,
        ),
    )
    return workflow, services


def _field_type(value: object) -> FieldType:
    observed = type_of(value)
    return observed if observed in get_args(FieldType) else "any"  # type: ignore[return-value]


def _is_field_name(name: str) -> bool:
    try:
        _FIELD_NAME.validate_python(name)
    except ValidationError:
        return False
    return True


def list_events(
    deps: Dependencies, workflow_id: str, limit: int, cursor: str | None, status: EventStatus | None
) -> Page[EventSummary]:
    deps.store.get_workflow(workflow_id)
    items, next_cursor = deps.store.list_events(workflow_id, limit, cursor, status)
    return Page[EventSummary](items=items, next_cursor=next_cursor)


def wait_for_end(
    deps: Dependencies, event_id: str, seconds: float, sleep: Callable[[float], None] = time.sleep
) -> EventView | None:
    """The event once it has ended, or None if it is still going after `seconds`."""
    deadline = time.monotonic() + seconds
    pause = 0.05
    while True:
        event = deps.store.get_event(event_id, inline_bytes=0)
        if event.status.terminal:
            return get_event(deps, event_id) if event.payloads else EventView.of(event)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sleep(min(pause, remaining))
        pause = min(pause * 2, 0.5)
