"""Registry rules that span several items: a service change must not break its workflows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from machinery_core.adapters.addresses import LOOPBACK_HOSTS, AddressPolicy
from machinery_core.adapters.executions import Executions, StateMachineType
from machinery_core.adapters.invoker import ServiceInvoker
from machinery_core.adapters.store import Store
from machinery_core.domain.errors import Conflict, InvalidDefinition
from machinery_core.domain.models import REDACTED, Service, Workflow
from machinery_core.runtime.dependencies import Dependencies
from machinery_core.service import registry

DEFINITIONS = Path(__file__).resolve().parents[2] / "examples" / "definitions"


@pytest.fixture
def deps(store: Store) -> Dependencies:
    # The registry never starts executions: no Step Functions client is needed here.
    # The example services listen on loopback: the address guard allows it, as locally.
    policy = AddressPolicy.parse(LOOPBACK_HOSTS)
    return Dependencies(
        store=store,
        executions=Executions(None, ""),  # type: ignore[arg-type]
        invoker=ServiceInvoker(requests.Session(), address_policy=policy),
        address_policy=policy,
    )


@pytest.fixture
def example(deps: Dependencies) -> Dependencies:
    for name in ("upper", "reverse", "space-counter"):
        service = Service.model_validate(
            json.loads((DEFINITIONS / f"service-{name}.json").read_text())
        )
        registry.save_service(deps, service, create_only=True)
    workflow = Workflow.model_validate(
        json.loads((DEFINITIONS / "workflow-process-text.json").read_text())
    )
    registry.save_workflow(deps, workflow, create_only=True)
    return deps


def test_a_service_update_that_breaks_a_workflow_is_refused(example: Dependencies) -> None:
    # Given space-counter now answering a string instead of the integer the workflow outputs
    changed = example.store.get_service("space-counter").definition.model_copy(deep=True)
    changed.spec.outputs["space_count"].type = "string"

    # When it is PUT, then it is refused naming the workflow and the field
    with pytest.raises(Conflict) as refusal:
        registry.save_service(example, changed, create_only=False)
    assert "process-text" in refusal.value.message
    assert refusal.value.details[0]["path"] == "spec.outputs.space_count"
    # and the stored service is unchanged
    stored = example.store.get_service("space-counter")
    assert stored.definition.spec.outputs["space_count"].type == "integer"
    assert stored.version == 1


def test_a_compatible_service_update_is_saved_with_a_new_version(example: Dependencies) -> None:
    # Given a change that keeps the data flow whole (a longer timeout)
    changed = example.store.get_service("upper").definition.model_copy(
        update={"timeout_seconds": 30.0}
    )

    # When it is PUT, then it is saved and the workflow that uses it is listed
    accepted, created = registry.save_service(example, changed, create_only=False)
    assert (accepted.version, created) == (2, False)
    stored = example.store.get_service("upper")
    assert stored.definition.timeout_seconds == 30.0
    assert stored.used_by == ["process-text"]


def test_an_express_deployment_takes_workflows_with_callback_services(deps: Dependencies) -> None:
    # Given a deployment whose state machine is EXPRESS, and a callback service that may
    # take an hour to answer (its wait is no call: no execution lasts it)
    deps.executions.kind = StateMachineType.EXPRESS
    slow = Service.model_validate(
        {
            "name": "slow",
            "address": "http://127.0.0.1:9/",
            "mode": "callback",
            "timeout_seconds": 900,
            "spec": {"inputs": {"message": {"type": "string"}}, "outputs": {}},
        }
    )
    registry.save_service(deps, slow, create_only=True)
    workflow = Workflow.model_validate(
        {"name": "waits", "spec": {"services": ["slow"], "inputs": {"message": {"type": "string"}}}}
    )

    # When a workflow uses it, then it is stored
    registry.save_workflow(deps, workflow, create_only=True)
    assert deps.store.get_service("slow").used_by == ["waits"]


def test_an_express_deployment_refuses_a_sync_call_longer_than_an_execution(
    deps: Dependencies,
) -> None:
    # Given an EXPRESS deployment and a sync service allowed 5 minutes per call
    deps.executions.kind = StateMachineType.EXPRESS
    slow = Service.model_validate(
        {
            "name": "slow",
            "address": "http://127.0.0.1:9/",
            "timeout_seconds": 300,
            "spec": {"inputs": {"message": {"type": "string"}}, "outputs": {}},
        }
    )
    registry.save_service(deps, slow, create_only=True)
    workflow = Workflow.model_validate(
        {"name": "waits", "spec": {"services": ["slow"], "inputs": {"message": {"type": "string"}}}}
    )

    # When a workflow uses it, then it is refused naming the step, and nothing is stored
    with pytest.raises(InvalidDefinition) as refusal:
        registry.save_workflow(deps, workflow, create_only=True)
    assert "240 s" in refusal.value.message
    assert refusal.value.details == [{"path": "spec.services[0]", "message": "slow: 300 s"}]
    assert deps.store.get_service("slow").used_by == []


def test_secret_headers_are_write_only(deps: Dependencies) -> None:
    # Given a service registered with a secret header
    service = Service.model_validate(
        {
            "name": "billing",
            "address": "http://127.0.0.1:9/",
            "headers": {"X-Tenant": "acme"},
            "secret_headers": {"Authorization": "Bearer s3cr3t"},
        }
    )
    registry.save_service(deps, service, create_only=True)

    # When it is read through the API's registry calls, then the secret is redacted
    shown = registry.get_service(deps, "billing").definition
    assert shown.secret_headers == {"Authorization": REDACTED}
    assert shown.headers == {"X-Tenant": "acme"}
    listed = registry.list_services(deps, 10, None).items[0].definition
    assert "s3cr3t" not in listed.model_dump_json()

    # and a PUT of what was read back (a longer timeout) keeps the stored secret
    registry.save_service(
        deps, shown.model_copy(update={"timeout_seconds": 20.0}), create_only=False
    )
    stored = deps.store.get_service("billing").definition
    assert stored.secret_headers == {"Authorization": "Bearer s3cr3t"}
    assert stored.timeout_seconds == 20.0
