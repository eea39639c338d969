"""Registering services and workflows."""

from __future__ import annotations

from machinery_core.adapters.executions import StateMachineType
from machinery_core.contract import EXPRESS_MAX_CALL_SECONDS
from machinery_core.domain import diagram
from machinery_core.domain.errors import Conflict, InvalidDefinition, InvalidInput, NotFound
from machinery_core.domain.models import (
    REDACTED,
    Fallback,
    LiveRequest,
    Page,
    Service,
    ServiceAccepted,
    ServiceRecord,
    ServiceVersion,
    Workflow,
    WorkflowAccepted,
    WorkflowLive,
    WorkflowRecord,
    WorkflowVersion,
    definition_hash,
    redact,
)
from machinery_core.domain.validation import check_workflow
from machinery_core.runtime.dependencies import Dependencies
from machinery_core.runtime.observability import logger


def save_service(
    deps: Dependencies, service: Service, *, create_only: bool
) -> tuple[ServiceAccepted, bool]:
    deps.address_policy.check_registration(service.address, "address")
    current: ServiceRecord | None = None
    if not create_only:
        try:
            current = deps.store.get_service(service.name)
        except NotFound:
            current = None
        service = _keep_secrets(current, service)
        if current is not None:
            if definition_hash(service) == definition_hash(current.definition):
                # unchanged: no new version (apply reports it `unchanged`)
                return _accepted_service(current), False
            _check_dependents(deps, current, service)
    record, created = deps.store.save_service(
        service, deps.clock(), current, create_only=create_only
    )
    logger.info("service saved", service_id=record.service_id, version=record.version, new=created)
    return _accepted_service(record), created


def _accepted_service(record: ServiceRecord) -> ServiceAccepted:
    return ServiceAccepted(
        service_id=record.service_id, acknowledged_at=record.updated_at, version=record.version
    )


def _keep_secrets(current: ServiceRecord | None, service: Service) -> Service:
    """A secret header sent back as REDACTED (from a GET) keeps its stored value."""
    if REDACTED not in service.secret_headers.values():
        return service
    stored = current.definition.secret_headers if current is not None else {}
    kept = {
        name: stored.get(name, "") if value == REDACTED else value
        for name, value in service.secret_headers.items()
    }
    return service.model_copy(update={"secret_headers": kept})


def _check_dependents(deps: Dependencies, current: ServiceRecord, service: Service) -> None:
    """Refuse a service change that would break the data flow of a workflow using it."""
    for workflow_id in current.used_by:
        workflow = deps.store.get_workflow(workflow_id).definition
        services = deps.store.get_services(workflow.spec.all_services() - {service.name})
        services[service.name] = service
        try:
            check_workflow(workflow, services)
            _check_runnable(deps, workflow, services)
        except InvalidDefinition as broken:
            raise Conflict(
                f"the change would break workflow {workflow_id!r}: {broken.message}",
                broken.details,
            ) from broken


def get_service(deps: Dependencies, name: str) -> ServiceRecord:
    return redact(deps.store.get_service(name))


def list_services(deps: Dependencies, limit: int, cursor: str | None) -> Page[ServiceRecord]:
    items, next_cursor = deps.store.list_services(limit, cursor)
    return Page[ServiceRecord](items=[redact(item) for item in items], next_cursor=next_cursor)


def save_workflow(
    deps: Dependencies, workflow: Workflow, *, create_only: bool, activate: bool = True
) -> tuple[WorkflowAccepted, bool]:
    """Create or update a workflow: a new version, live unless `activate` is False; a
    definition that changes nothing stores nothing and answers the current version."""
    if workflow.spec.notify is not None:
        deps.address_policy.check_registration(workflow.spec.notify.url, "spec.notify.url")
    previous: WorkflowRecord | None = None
    if not create_only:
        try:
            previous = deps.store.get_workflow(workflow.name)
        except NotFound:
            previous = None
    if previous is not None and definition_hash(workflow) == definition_hash(previous.definition):
        return _accepted_workflow(previous), False
    services = deps.store.get_services(workflow.spec.all_services())
    check_workflow(workflow, services)
    _check_runnable(deps, workflow, services)
    record = deps.store.save_workflow(workflow, deps.clock(), previous, activate)
    logger.info(
        "workflow saved",
        workflow_id=record.workflow_id,
        version=record.version,
        live_version=record.live,
    )
    return _accepted_workflow(record), previous is None


def _accepted_workflow(record: WorkflowRecord) -> WorkflowAccepted:
    return WorkflowAccepted(
        workflow_id=record.workflow_id,
        acknowledged_at=record.updated_at,
        version=record.version,
        live_version=record.live,
    )


def workflow_versions(
    deps: Dependencies, workflow_id: str, limit: int, cursor: str | None
) -> Page[WorkflowVersion]:
    deps.store.get_workflow(workflow_id)  # 404 for a workflow that does not exist
    items, next_cursor = deps.store.list_workflow_versions(workflow_id, limit, cursor)
    return Page[WorkflowVersion](items=items, next_cursor=next_cursor)


def workflow_version(deps: Dependencies, workflow_id: str, version: int) -> WorkflowVersion:
    return deps.store.get_workflow_version(workflow_id, version)


def service_versions(
    deps: Dependencies, name: str, limit: int, cursor: str | None
) -> Page[ServiceVersion]:
    deps.store.get_service(name)
    items, next_cursor = deps.store.list_service_versions(name, limit, cursor)
    return Page[ServiceVersion](items=[_redacted(item) for item in items], next_cursor=next_cursor)


def service_version(deps: Dependencies, name: str, version: int) -> ServiceVersion:
    return _redacted(deps.store.get_service_version(name, version))


def _redacted(version: ServiceVersion) -> ServiceVersion:
    return version.model_copy(update={"definition": version.definition.redacted()})


def set_live(deps: Dependencies, workflow_id: str, request: LiveRequest) -> WorkflowLive:
    """Make a version live (a rollback is this), optionally with a canary share; each
    version named must exist and be runnable with the services as they are now."""
    record = deps.store.get_workflow(workflow_id)
    named = [request.version] + ([request.canary.version] if request.canary else [])
    if request.canary is not None and request.canary.version == request.version:
        raise InvalidInput(
            "the canary must name another version than the live one",
            [{"path": "canary.version", "message": "the same as version"}],
        )
    for version in named:
        deps.store.get_workflow_version(workflow_id, version)  # 404 for one that does not exist
    record = deps.store.set_live(record, request.version, request.canary)
    logger.info(
        "live version set",
        workflow_id=workflow_id,
        live_version=request.version,
        canary=request.canary.version if request.canary else None,
    )
    return WorkflowLive(workflow_id=workflow_id, live_version=record.live, canary=record.canary)


def _check_runnable(deps: Dependencies, workflow: Workflow, services: dict[str, Service]) -> None:
    """What this deployment cannot run: on EXPRESS, a sync call longer than an execution
    leaves room for (a callback service's wait is no call: any timeout goes)."""
    if deps.executions.kind is not StateMachineType.EXPRESS:
        return
    named = [(place.path, place.service) for place in workflow.spec.located() if place.service]
    named += [
        (f"spec.on_error.{key}.fallback", policy.fallback)
        for key, policy in workflow.spec.on_error.items()
        if isinstance(policy, Fallback)
    ]
    too_long = [
        (path, name)
        for path, name in named
        if services[name].mode == "sync"
        and services[name].timeout_seconds > EXPRESS_MAX_CALL_SECONDS
    ]
    if too_long:
        raise InvalidDefinition(
            f"on an EXPRESS state machine a sync call may take at most "
            f"{EXPRESS_MAX_CALL_SECONDS} s (timeout_seconds): an execution lasts five minutes",
            [
                {"path": path, "message": f"{name}: {services[name].timeout_seconds:g} s"}
                for path, name in too_long
            ],
        )


def list_workflows(deps: Dependencies, limit: int, cursor: str | None) -> Page[WorkflowRecord]:
    items, next_cursor = deps.store.list_workflows(limit, cursor)
    return Page[WorkflowRecord](items=items, next_cursor=next_cursor)


def workflow_diagram(deps: Dependencies, workflow_id: str, form: diagram.DiagramFormat) -> str:
    """The workflow as its current definition and services draw it, in `form`."""
    workflow = deps.store.get_workflow(workflow_id).definition
    services = deps.store.get_services(workflow.spec.all_services())
    return diagram.render(diagram.workflow_graph(workflow, services), form)


def delete_workflow(deps: Dependencies, workflow_id: str) -> None:
    deps.store.delete_workflow(deps.store.get_workflow(workflow_id))
    logger.info("workflow deleted", workflow_id=workflow_id)
