"""Integration-tier fixtures: dependencies on moto for the handlers, loopback services."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
import requests
from integration_kit import (
    ACCOUNT,
    REGION,
    Services,
    Wired,
    example_behaviours,
    recorded,
)
from loopback import Call, Loopback, LoopbackServer, Reply, json_reply

from machinery_core.adapters.addresses import LOOPBACK_HOSTS, AddressPolicy
from machinery_core.adapters.executions import Executions
from machinery_core.adapters.invoker import ServiceInvoker
from machinery_core.adapters.store import Store
from machinery_core.runtime.dependencies import Dependencies, configure

PASS_MACHINE = json.dumps(
    {
        "Comment": "A stand-in: the API only starts executions",
        "StartAt": "Done",
        "States": {"Done": {"Type": "Pass", "End": True}},
    }
)


@pytest.fixture
def wired(store: Store) -> Iterator[Wired]:
    """Dependencies on moto (the `store` fixture's mock) installed for every handler."""
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    machine = stepfunctions.create_state_machine(
        name="machinery-test",
        definition=PASS_MACHINE,
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/machinery-state-machine",
    )
    # The services run on loopback, so the address guard allows it here (as `machinery local`)
    policy = AddressPolicy.parse(LOOPBACK_HOSTS)
    with requests.Session() as session:
        deps = Dependencies(
            store=store,
            executions=Executions(stepfunctions, machine["stateMachineArn"]),
            invoker=ServiceInvoker(session, address_policy=policy),
            address_policy=policy,
        )
        configure(deps)
        try:
            yield Wired(deps, store, stepfunctions, machine["stateMachineArn"])
        finally:
            configure(None)


@pytest.fixture
def registered(wired: Wired, request: pytest.FixtureRequest) -> Wired:
    """The `upper` service and the `shout` workflow, registered through the API.

    Each is sent with the requesting test module's own `invoke`, so it is answered and
    checked exactly as that module's tests are.
    """
    invoke = request.module.invoke
    for name in ("create_service", "create_workflow"):
        status, _, body = invoke(recorded(name))
        assert status == 201, body
    return wired


@pytest.fixture
def services() -> Iterator[Services]:
    """The example services' behaviour on a loopback port, recording every call."""
    behaviours = example_behaviours()

    def respond(call: Call, _: int) -> Reply:
        behaviour = behaviours.get(call.path)
        status, answer = behaviour(call.json()) if behaviour else (404, {"error": "no route"})
        return json_reply(status, answer)

    server = LoopbackServer(respond).start()
    yield Services(server=server, behaviours=behaviours)
    server.stop()


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    """A loopback HTTP service whose routes each test scripts."""
    scripted = Loopback(server=LoopbackServer(respond=lambda call, nth: scripted.answer(call, nth)))
    scripted.server.start()
    yield scripted
    scripted.server.stop()
