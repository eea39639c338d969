"""The consumer and management policies follow the API's routes, judged with IAM's rules.

Every route of template.yaml has its decision in machinery_core/contract.py's
ROUTE_POLICIES; the template's two managed policies, as a deploy makes them, must grant
each route to exactly the policies the decision names, and the README's table must say so.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from iam_policy import Stack, allows, managed_policy
from sam_kit import ROOT, TEMPLATE, deployed

from machinery_core.contract import CONSUMER_POLICY, MANAGEMENT_POLICY, ROUTE_POLICIES
from machinery_core.local.template import Template

pytestmark = pytest.mark.sam

API_ID = "a1b2c3d4e5"
STACK = Stack(
    region="us-east-1",
    account="123456789012",
    stack_name="machinery",
    resources={"HttpApi": {"Ref": API_ID}},
)
POLICIES = (CONSUMER_POLICY, MANAGEMENT_POLICY)


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return deployed({"defaults": {}})["defaults"]


def _template_routes() -> set[str]:
    return {
        route.route_key
        for function in Template.load(TEMPLATE).functions().values()
        for route in function.routes
    }


def _request_arn(route: str) -> str:
    """The resource API Gateway authorises a call of `route` on (path parameters filled)."""
    method, _, path = route.partition(" ")
    concrete = re.sub(r"\{[^}]+\}", "example-1", path)
    return (
        f"arn:aws:execute-api:{STACK.region}:{STACK.account}:{API_ID}/$default/{method}{concrete}"
    )


def _granted(resources: dict[str, Any], route: str) -> tuple[str, ...]:
    policies = [managed_policy(resources, name, STACK) for name in POLICIES]
    return tuple(
        policy.logical_id
        for policy in policies
        if allows(policy, "execute-api:Invoke", _request_arn(route))
    )


def _disagreements(resources: dict[str, Any]) -> list[str]:
    return [
        f"{route}: granted by {_granted(resources, route) or 'no policy'}, decided "
        f"{ROUTE_POLICIES[route] or 'no policy'}"
        for route in sorted(ROUTE_POLICIES)
        if _granted(resources, route) != ROUTE_POLICIES[route]
    ]


def test_every_route_has_a_decision_and_every_decision_a_route() -> None:
    # Given the routes of the template and the decisions of contract.ROUTE_POLICIES
    routes = _template_routes()
    # Then a route added without a decision (or a decision left for a removed route) fails
    assert routes - set(ROUTE_POLICIES) == set(), "routes without a decision"
    assert set(ROUTE_POLICIES) - routes == set(), "decisions for routes that do not exist"


def test_each_policy_grants_exactly_the_routes_decided(resources: dict[str, Any]) -> None:
    # When every route is evaluated against both deployed policies
    # Then each is granted by exactly the policies its decision names
    assert _disagreements(resources) == []
    # (the issue's own examples, spelled out)
    assert _granted(resources, "POST /e/{workflow_id}") == POLICIES
    assert _granted(resources, "PUT /services/{name}") == (MANAGEMENT_POLICY,)
    assert _granted(resources, "POST /callbacks/{token}") == ()
    everything_but_callbacks = [r for r in ROUTE_POLICIES if not r.startswith("POST /callbacks")]
    assert all(MANAGEMENT_POLICY in _granted(resources, r) for r in everything_but_callbacks)


def test_a_consumer_grant_made_by_accident_is_caught(resources: dict[str, Any]) -> None:
    # Given a consumer policy that also grants changing a service
    widened = copy.deepcopy(resources)
    statement = widened[CONSUMER_POLICY]["Properties"]["PolicyDocument"]["Statement"][0]
    statement["Resource"].append(
        f"arn:aws:execute-api:us-east-1:123456789012:{API_ID}/$default/PUT/services/*"
    )
    # Then the check names the route and both the grant and the decision
    assert _disagreements(widened) == [
        f"PUT /services/{{name}}: granted by {POLICIES}, decided {(MANAGEMENT_POLICY,)}"
    ]


def test_the_policies_are_exported_as_outputs() -> None:
    outputs = Template.load(TEMPLATE).document["Outputs"]
    for name in POLICIES:
        assert outputs[name]["Value"] == {"Ref": name}
        assert outputs[name]["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{name}"}


def _readme_table(resources: dict[str, Any]) -> str:
    lines = [
        f"| route | `{CONSUMER_POLICY}` | `{MANAGEMENT_POLICY}` |",
        "| --- | --- | --- |",
    ]
    for route in ROUTE_POLICIES:
        granted = _granted(resources, route)
        cells = ["yes" if name in granted else "no" for name in POLICIES]
        note = " (its token is the credential)" if not granted else ""
        lines.append(f"| `{route}`{note} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def test_the_readme_table_says_what_the_policies_grant(resources: dict[str, Any]) -> None:
    expected = _readme_table(resources)
    readme = (ROOT / "README.md").read_text()
    assert expected in readme, "README's route table is out of date; it should read:\n" + expected


def test_the_callback_route_is_outside_both_because_it_needs_no_signature() -> None:
    # The route the policies leave out is the one the template opens to unsigned callers
    events = Template.load(TEMPLATE).resources["ApiFunction"]["Properties"]["Events"]
    callback = next(e for e in events.values() if e["Properties"]["Path"] == "/callbacks/{token}")
    assert callback["Properties"]["Auth"]["Fn::If"][1] == {"Authorizer": "NONE"}
