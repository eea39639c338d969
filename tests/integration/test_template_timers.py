"""template.yaml's timers (a schedule group, and the role its schedules start the state
machine as) and what the functions need of them, as a deploy makes the template: no
resource depending on itself, which neither `sam validate --lint` nor cfn-lint on the
template before its transform sees (the state machine invokes StepFunction, so StepFunction
and what it refers to cannot refer to the state machine)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sam_kit import TEMPLATE, deployed

from machinery_core.local.template import Template

pytestmark = pytest.mark.sam

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


def _references(value: Any, names: set[str]) -> set[str]:
    """The logical ids among `names` that `value` refers to (Ref, GetAtt, Sub, and the bare
    `${...}` strings the SAM CLI's language extensions leave)."""
    if isinstance(value, str):
        return {name for name in _PLACEHOLDER.findall(value) if name in names}
    if isinstance(value, list):
        return set().union(*(_references(item, names) for item in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    found: set[str] = set()
    for key, argument in value.items():
        if key == "Ref" and argument in names:
            found.add(argument)
        elif key == "Fn::GetAtt":
            logical = argument.split(".")[0] if isinstance(argument, str) else argument[0]
            found |= {logical} & names
        else:
            found |= _references(argument, names)
    return found


def _cycle(resources: dict[str, Any]) -> list[str] | None:
    names = set(resources)
    edges = {}
    for name, resource in resources.items():
        depends = resource.get("DependsOn") or []
        edges[name] = _references(resource.get("Properties") or {}, names) | (
            {depends} if isinstance(depends, str) else set(depends)
        )
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for following in sorted(edges[name]):
            if state.get(following) == "open":
                return [*path[path.index(following) :], following] if following in path else path
            if following not in state:
                found = visit(following, [*path, following])
                if found:
                    return found
        state[name] = "done"
        return None

    for name in sorted(names):
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None


@pytest.fixture(scope="module")
def stacks() -> dict[str, dict[str, Any]]:
    return deployed({kind: {"StateMachineType": kind} for kind in ("STANDARD", "EXPRESS")})


@pytest.mark.parametrize("kind", ["STANDARD", "EXPRESS"])
def test_no_resource_depends_on_itself_as_deployed(
    stacks: dict[str, dict[str, Any]], kind: str
) -> None:
    assert _cycle(stacks[kind]) is None


def test_the_cycle_check_finds_one() -> None:
    # Given the dependency the template avoids: the state machine invokes the function, and
    # the function's environment names the state machine
    resources = {
        "StateMachine": {"Properties": {"Definition": {"Fn::GetAtt": ["StepFunction", "Arn"]}}},
        "StepFunction": {"Properties": {"Environment": {"ARN": {"Ref": "StateMachine"}}}},
        "Table": {"Properties": {}},
    }
    assert _cycle(resources) == ["StateMachine", "StepFunction", "StateMachine"]


def test_the_timers_role_may_only_start_the_state_machine_and_only_for_scheduler(
    stacks: dict[str, dict[str, Any]],
) -> None:
    role = stacks["STANDARD"]["SchedulerRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert list(trust["Condition"]["StringEquals"]) == ["aws:SourceAccount"]
    [policy] = role["Policies"]
    [grant] = policy["PolicyDocument"]["Statement"]
    assert (grant["Effect"], grant["Action"]) == ("Allow", "states:StartExecution")
    # the state machine's ARN, built from the name the state machine is given
    name = stacks["STANDARD"]["StateMachine"]["Properties"]["StateMachineName"]
    assert grant["Resource"].endswith(f":stateMachine:{name}")
    assert "ManagedPolicyArns" not in role


def test_both_functions_know_the_timers_and_the_state_machine() -> None:
    document = Template.load(TEMPLATE).document
    variables = document["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["SCHEDULE_GROUP"] == {"Ref": "TimerGroup"}
    assert variables["SCHEDULER_ROLE_ARN"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert variables["STATE_MACHINE_TYPE"] == {"Ref": "StateMachineType"}
    name = document["Resources"]["StateMachine"]["Properties"]["Name"]["Fn::Sub"]
    assert variables["STATE_MACHINE_ARN"]["Fn::Sub"].endswith(f":stateMachine:{name}")
    for function in Template.load(TEMPLATE).functions().values():
        assert function.environment["SCHEDULE_GROUP"] == {"Ref": "TimerGroup"}
        assert "STATE_MACHINE_ARN" in function.environment


def test_the_worker_sets_timers_passing_their_role_and_the_api_deletes_them(
    stacks: dict[str, dict[str, Any]],
) -> None:
    def statements(function: str) -> list[dict[str, Any]]:
        [policy] = stacks["STANDARD"][f"{function}Role"]["Properties"]["Policies"]
        found: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
        return found

    # the step function sets them (each deletes itself once it has fired)
    [sets] = [s for s in statements("StepFunction") if "scheduler:" in str(s["Action"])]
    assert sets["Action"] == "scheduler:CreateSchedule"
    assert str(sets["Resource"]).endswith(":schedule/${TimerGroup}/*")
    [passing] = [s for s in statements("StepFunction") if s["Action"] == "iam:PassRole"]
    assert passing["Resource"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    # the API deletes one a callback or a cancel made useless, and passes no role
    [deletes] = [s for s in statements("ApiFunction") if "scheduler:" in str(s["Action"])]
    assert deletes["Action"] == "scheduler:DeleteSchedule"
    assert str(deletes["Resource"]).endswith(":schedule/${TimerGroup}/*")
    assert not [s for s in statements("ApiFunction") if s["Action"] == "iam:PassRole"]
    assert "Condition" not in passing  # tests/iam_policy.py evaluates no Condition
