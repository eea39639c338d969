"""Every AWS call the functions made in the e2e suite is allowed by the role template.yaml
gives them, and every grant in those roles is used (docs/architecture.md, "Permissions").

Each local runtime of the run records the calls its functions and its state machine make
(MACHINERY_AWS_CALLS, machinery_core/local/aws_calls.py); this module runs last, takes the
roles from template.yaml as a deploy makes them (the SAM CLI's own transform) and judges each
call with IAM's rules (tests/iam_policy.py). Run alone, it first runs the e2e suite itself.

moto's own IAM enforcement (INITIAL_NO_AUTH_ACTION_COUNT) is not used: it judges a request
by the action alone against the policies of the access key that signed it, never by the
resource or a Condition. The local runtime runs every function in one process with one
credential, so it would need a moto IAM user per function holding the transformed policies,
and then would catch a forgotten action (DeleteItem on the step function) but neither a
wrong resource (StopExecution outside the state machine's executions, a Query without the
index ARN) nor a grant nobody uses, all of which this check catches.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from iam_policy import Stack, action_matches, check, configured_calls, report
from sam_kit import ROOT, TEMPLATE, deployed

from machinery_core.local.aws_calls import ENVIRONMENT_VARIABLE as AWS_CALLS
from machinery_core.local.template import Template

pytestmark = [pytest.mark.e2e, pytest.mark.sam, pytest.mark.permissions]

E2E = Path(__file__).parent
REPORT = "MACHINERY_IAM_REPORT"  # a path without suffix: the report is written as .md and .json


def _whole_suite_ran(session: pytest.Session) -> bool:
    config = session.config
    files = {path.name for path in E2E.glob("test_*.py")} - {Path(__file__).name}
    collected = {item.path.name for item in session.items if item.path.parent == E2E}
    return files <= collected and not config.option.keyword and not config.option.markexpr


def _record_the_suite(directory: Path) -> None:
    """This module run on its own: run the rest of the e2e suite, recording into `directory`."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(E2E),
            "-m",
            "not permissions",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env={**os.environ, AWS_CALLS: str(directory)},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert run.returncode == 0, (
        "the e2e suite failed, so its recording is partial:\n" + run.stdout[-4000:]
    )


def _load(directory: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The physical names of the first runtime, and every runtime's calls renamed to them."""
    physical: dict[str, Any] | None = None
    calls: list[dict[str, Any]] = []
    for path in sorted(directory.glob("aws-calls-*.jsonl")):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not lines or "stack" not in lines[0]:
            continue
        own = lines[0]["stack"]["resources"]
        physical = physical or lines[0]["stack"]
        # Runtimes name their resources alike but for generated parts (a secret's ARN suffix).
        canonical = physical["resources"]
        renames = {
            value: canonical[logical_id][attribute]
            for logical_id, attributes in own.items()
            for attribute, value in attributes.items()
            if canonical.get(logical_id, {}).get(attribute, value) != value
        }
        for line in lines[1:]:
            text = json.dumps(line)
            for old, new in renames.items():
                text = text.replace(old, new)
            calls.append(json.loads(text))
    assert physical is not None, f"no local runtime recorded anything in {directory}"
    return physical, calls


def _condition(expression: Any, parameters: dict[str, str]) -> bool:
    ((function, arguments),) = expression.items()
    if function == "Fn::Not":
        return not _condition(arguments[0], parameters)
    values = [parameters[a["Ref"]] if isinstance(a, dict) else a for a in arguments]
    if function == "Fn::Equals":
        return bool(values[0] == values[1])
    raise NotImplementedError(f"template condition {function}")


@pytest.fixture(scope="module")
def recorded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Stack, list[dict[str, Any]]]:
    """The stack as the local runtimes deployed it (template defaults), and the calls made."""
    if _whole_suite_ran(request.session):
        directory = Path(os.environ[AWS_CALLS])
    else:
        directory = tmp_path_factory.mktemp("aws-calls")
        _record_the_suite(directory)
    physical, calls = _load(directory)
    document = Template.load(TEMPLATE).document
    parameters = {name: str(p.get("Default", "")) for name, p in document["Parameters"].items()}
    stack = Stack.from_json(
        {
            **physical,
            # Template parameters resolve like resources: Ref gives the value.
            "resources": {
                **{name: {"Ref": value} for name, value in parameters.items()},
                **physical["resources"],
            },
            "conditions": {
                name: _condition(expression, parameters)
                for name, expression in document.get("Conditions", {}).items()
            },
        }
    )
    return stack, calls


@pytest.fixture(scope="module")
def roles_as_deployed() -> dict[str, Any]:
    return deployed({"defaults": {}})["defaults"]


def test_every_call_is_allowed_and_every_grant_is_used(
    request: pytest.FixtureRequest,
    recorded: tuple[Stack, list[dict[str, Any]]],
    roles_as_deployed: dict[str, Any],
) -> None:
    # Given the calls the e2e suite made, and those the template's configuration implies
    stack, calls = recorded
    calls = calls + configured_calls(roles_as_deployed, stack)

    # When they are judged against the deployed roles
    findings = check(roles_as_deployed, stack, calls)
    if os.environ.get(REPORT):
        markdown, data = report(roles_as_deployed, stack, calls)
        target = Path(os.environ[REPORT])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.with_suffix(".md").write_text(markdown)
        target.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")

    # Then every function and the state machine were seen at work, and nothing is wrong
    principals = {call["principal"] for call in calls}
    assert {"ApiFunction", "StepFunction", "StateMachine"} <= principals, principals
    failed = request.session.testsfailed
    partial = (
        f" ({failed} tests failed before this one: the recording may be partial)" if failed else ""
    )
    assert not findings, f"{len(findings)} permission findings{partial}:\n" + "\n".join(
        f"- {finding}" for finding in findings
    )


def _without_each_statement(
    document: dict[str, Any],
) -> list[tuple[str, str, list[str], dict[str, Any]]]:
    """(name, principal, actions, template) for each statement removed in turn (a SAM policy
    template, such as LambdaInvokePolicy, is removed whole; its actions are SAM's to say).

    A `Kept…` statement is left in: the suite does not use it by design, and the test its
    comment names reaches the path it is kept for."""
    mutants = []
    for logical_id, resource in document["Resources"].items():
        for p, policy in enumerate(resource.get("Properties", {}).get("Policies") or []):
            statements = policy.get("Statement") if isinstance(policy, dict) else None
            removals: list[tuple[str, list[str], list[Any]]] = (
                [
                    (f"{logical_id}-{p}-{s}", _actions(statement), ["Statement", s])
                    for s, statement in enumerate(statements)
                    if not str(statement.get("Sid", "")).startswith("Kept")
                ]
                if statements
                else [(f"{logical_id}-{p}", [], [])]
            )
            for name, actions, path in removals:
                mutant = copy.deepcopy(document)
                parent: Any = mutant["Resources"][logical_id]["Properties"]["Policies"]
                key: Any = p
                for step in path:
                    parent, key = parent[key], step
                del parent[key]
                mutants.append((name, logical_id, actions, mutant))
    return mutants


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_removing_any_statement_fails_the_check_naming_what_broke(
    recorded: tuple[Stack, list[dict[str, Any]]],
    roles_as_deployed: dict[str, Any],
    tmp_path: Path,
) -> None:
    # Given copies of template.yaml, each without one statement of one role
    stack, calls = recorded
    mutants = _without_each_statement(Template.load(TEMPLATE).document)
    templates = {}
    for name, _, _, mutant in mutants:
        templates[name] = tmp_path / f"{name}.json"
        templates[name].write_text(json.dumps(mutant))
    assert len(mutants) >= 11, [name for name, *_ in mutants]

    # When each is deployed as a deploy would and the recorded calls are judged against it
    stacks = deployed({name: {} for name in templates}, templates)

    # Then each fails, with a finding that names the function, the call, the resource and
    # every permission the removed statement gave
    for name, principal, actions, _ in mutants:
        resources = stacks[name]
        findings = check(resources, stack, calls + configured_calls(resources, stack))
        missing = [f for f in findings if f.kind == "missing" and f.subject == principal]
        assert missing, f"without {name}, nothing says what {principal} lacks: {findings}"
        for action in actions:
            named = [f for f in missing if action_matches(action, f.action)]
            assert named, f"without {name}, nothing says {principal} lacks {action}: {findings}"
            assert all(f.resource and f.resource in f.message for f in named)
