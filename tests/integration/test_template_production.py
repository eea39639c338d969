"""template.yaml is production-ready: cfn-lint's serverless rules find nothing, the API logs who
called what and is throttled, every log group has a retention, the state machine logs, and the
stateful resources outlive the stack."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from integration_kit import ROOT, TEMPLATE
from sam_kit import deployed, sam

from machinery_core.local.template import Template

# The values CloudFormation accepts for AWS::Logs::LogGroup RetentionInDays.
CLOUDWATCH_RETENTIONS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731]
CLOUDWATCH_RETENTIONS += [1096, 1827, 2192, 2557, 2922, 3288, 3653]
# What Step Functions needs to deliver its logs to CloudWatch Logs, as AWS documents it.
LOG_DELIVERY_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def _cfn_lint(template: Path) -> subprocess.CompletedProcess[str]:
    """cfn-lint with the serverless rules, from the SAM CLI's venv (as `make cfn-lint` runs it)."""
    cfn_lint = sam().parent / "cfn-lint"
    if not cfn_lint.exists():
        pytest.fail(f"cfn-lint is missing at {cfn_lint}: run `make sam-install` (make test does)")
    return subprocess.run(
        # the template first: --append-rules takes every argument after it as a rules module
        [str(cfn_lint), str(template), "--append-rules", "cfn_lint_serverless.rules"],
        cwd=ROOT,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(TEMPLATE)


def _resolve(value: Any, parameters: dict[str, str], conditions: dict[str, Any]) -> Any:
    """The few intrinsics the template's settings use (Ref, Fn::If, Fn::Equals), resolved."""
    if isinstance(value, dict) and len(value) == 1:
        [(key, argument)] = value.items()
        if key == "Ref" and argument in parameters:
            return parameters[argument]
        if key == "Fn::Equals":
            left, right = (_resolve(side, parameters, conditions) for side in argument)
            return left == right
        if key == "Fn::If":
            name, when_true, when_false = argument
            chosen = _resolve(conditions[name], parameters, conditions)
            return _resolve(when_true if chosen else when_false, parameters, conditions)
    return value


def _log_group(template: Template, arn: Any) -> dict[str, Any]:
    """The template's AWS::Logs::LogGroup that `arn` (a `!GetAtt Name.Arn`) points at."""
    assert isinstance(arn, dict) and "Fn::GetAtt" in arn, arn
    name, attribute = arn["Fn::GetAtt"]
    assert attribute == "Arn"
    resource = template.resources[name]
    assert resource["Type"] == "AWS::Logs::LogGroup"
    properties: dict[str, Any] = resource["Properties"]
    return properties


@pytest.mark.sam
def test_cfn_lint_with_the_serverless_rules_finds_nothing() -> None:
    # When cfn-lint checks the template with AWS's serverless rules
    result = _cfn_lint(TEMPLATE)

    # Then it finds nothing (a rule that does not apply is suppressed in the template)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.sam
def test_cfn_lint_runs_the_serverless_rules(tmp_path: Path) -> None:
    # Given the template without the API's access logs and throttling (as JSON, tags expanded)
    document = Template.load(TEMPLATE).document
    del document["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]
    del document["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"]
    copy = tmp_path / "template.json"
    copy.write_text(json.dumps(document))

    # When cfn-lint checks it as `make cfn-lint` does
    result = _cfn_lint(copy)

    # Then the serverless rules were loaded and report both (so the clean run above means it)
    assert result.returncode != 0
    assert "ES2000" in result.stdout and "ES2003" in result.stdout, result.stdout + result.stderr


def test_the_api_access_log_is_a_json_line_with_the_callers_identity(template: Template) -> None:
    # Given the HTTP API's access log settings
    settings = template.resources["HttpApi"]["Properties"]["AccessLogSettings"]

    # Then each request is one JSON line (every $context variable is a quoted string)
    fields = json.loads(settings["Format"])
    assert "\n" not in settings["Format"]
    # naming who called (the SigV4 caller and the user's ARN), from where, what and how it ended
    assert fields["caller"] == "$context.identity.caller"
    assert fields["userArn"] == "$context.identity.userArn"
    assert fields["ip"] == "$context.identity.sourceIp"
    assert fields["requestId"] == "$context.requestId"
    assert fields["httpMethod"] == "$context.httpMethod"
    assert fields["routeKey"] == "$context.routeKey"
    assert fields["status"] == "$context.status"
    assert fields["responseLength"] == "$context.responseLength"
    assert fields["integrationErrorMessage"] == "$context.integrationErrorMessage"
    # and never the path: a callback's path carries its single-use token
    assert "$context.path" not in settings["Format"]
    # into a log group of its own that keeps them LogRetentionDays
    group = _log_group(template, settings["DestinationArn"])
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_api_is_throttled_by_parameters_with_sensible_defaults(template: Template) -> None:
    # Given the HTTP API's default route settings and the stack's parameters
    settings = template.resources["HttpApi"]["Properties"]["DefaultRouteSettings"]
    parameters = template.document["Parameters"]

    # Then every route is throttled by the parameters
    assert settings == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
    }
    # whose defaults are a ceiling well under the account's (10,000 requests/s)
    assert parameters["ApiThrottlingRateLimit"]["Type"] == "Number"
    assert parameters["ApiThrottlingRateLimit"]["Default"] == 100
    assert parameters["ApiThrottlingBurstLimit"]["Type"] == "Number"
    assert parameters["ApiThrottlingBurstLimit"]["Default"] == 200
    assert parameters["ApiThrottlingRateLimit"]["MinValue"] >= 1
    assert parameters["ApiThrottlingBurstLimit"]["MinValue"] >= 1


def test_every_function_has_a_log_group_with_the_retention_parameter(template: Template) -> None:
    # Given the template's functions and log groups
    functions = set(template.functions())
    groups = [
        resource["Properties"]
        for resource in template.resources.values()
        if resource["Type"] == "AWS::Logs::LogGroup"
    ]

    # Then each function's own log group (the one Lambda writes to) is declared with a retention
    named = {
        group["LogGroupName"]["Fn::Sub"]: group["RetentionInDays"]
        for group in groups
        if isinstance(group["LogGroupName"], dict) and "Fn::Sub" in group["LogGroupName"]
    }
    assert functions == {"ApiFunction", "StepFunction"}
    for function in functions:
        assert named.get(f"/aws/lambda/${{{function}}}") == {"Ref": "LogRetentionDays"}, function
    # as is every other log group of the stack
    assert all(group["RetentionInDays"] == {"Ref": "LogRetentionDays"} for group in groups)
    # and the parameter takes exactly the values CloudWatch Logs accepts, a month by default
    parameter = template.document["Parameters"]["LogRetentionDays"]
    assert parameter["AllowedValues"] == CLOUDWATCH_RETENTIONS
    assert parameter["Default"] == 30
    assert "log" in parameter["Description"]


@pytest.mark.parametrize(("kind", "level"), [("STANDARD", "ERROR"), ("EXPRESS", "ALL")])
def test_the_state_machine_logs_at_the_level_its_type_needs(
    template: Template, kind: str, level: str
) -> None:
    # Given the state machine's logging, for one StateMachineType
    _, properties = template.state_machine()
    logging = properties["Logging"]
    conditions = template.document["Conditions"]

    # Then STANDARD logs its errors and EXPRESS, whose history exists only there, everything
    assert kind in template.document["Parameters"]["StateMachineType"]["AllowedValues"]
    assert _resolve(logging["Level"], {"StateMachineType": kind}, conditions) == level
    # but never the execution data (the states pass each event's plan on: addresses, headers)
    assert logging["IncludeExecutionData"] is False
    # into a log group under the prefix AWS recommends for Step Functions, with the retention
    [destination] = logging["Destinations"]
    group = _log_group(template, destination["CloudWatchLogsLogGroup"]["LogGroupArn"])
    assert group["LogGroupName"]["Fn::Sub"].startswith("/aws/vendedlogs/states/")
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # and its role may set up that delivery
    statements = [
        statement
        for policy in properties["Policies"]
        for statement in policy.get("Statement", [])
        if statement["Resource"] == "*"
    ]
    assert any(set(statement["Action"]) == LOG_DELIVERY_ACTIONS for statement in statements)


@pytest.mark.parametrize("name", ["Table", "NotificationSigningSecret"])
def test_the_stateful_resources_outlive_the_stack_and_replacements(
    template: Template, name: str
) -> None:
    # Given a resource that holds what cannot be made again (definitions and events; the key
    # every receiver verifies notifications with)
    resource = template.resources[name]

    # Then neither deleting the stack nor a change that replaces it deletes it
    assert resource["DeletionPolicy"] == "Retain"
    assert resource["UpdateReplacePolicy"] == "Retain"


def test_the_state_machine_type_description_is_current(template: Template) -> None:
    # Given the StateMachineType parameter's description
    description = template.document["Parameters"]["StateMachineType"]["Description"]

    # Then it says what each type does today: both run everything, EXPRESS at least once
    assert "later" not in description
    assert "Both run every workflow, callbacks and long waits included" in description
    assert "at least once" in description


@pytest.mark.sam
def test_a_deploy_applies_the_logging_and_throttling_settings() -> None:
    # Given the template transformed as CloudFormation would, once per StateMachineType, with
    # throttling parameters of 7 requests at once and 3 a second
    throttling = {"ApiThrottlingBurstLimit": "7", "ApiThrottlingRateLimit": "3"}
    stacks = deployed(
        {
            kind: {"StateMachineType": kind, "ApiAuthorization": "AWS_IAM", **throttling}
            for kind in ("STANDARD", "EXPRESS")
        }
    )

    for kind, level in (("STANDARD", "ERROR"), ("EXPRESS", "ALL")):
        stack = _production_settings(stacks[kind])
        # Then the state machine logs at its type's level, without execution data
        assert stack["logging"]["Level"] == level, kind
        assert stack["logging"]["IncludeExecutionData"] is False
        # and its role carries the log delivery permissions
        assert any(
            set(statement["Action"]) == LOG_DELIVERY_ACTIONS and statement["Resource"] == "*"
            for statement in stack["role_statements"]
        )
        # and the API's stage is throttled by the parameters given and writes access logs
        assert stack["default_route_settings"] == {
            "ThrottlingBurstLimit": "7",
            "ThrottlingRateLimit": "3",
        }
        assert stack["access_log_settings"]["DestinationArn"] == {
            "Fn::GetAtt": ["HttpApiAccessLogGroup", "Arn"]
        }
        assert "$context.identity.userArn" in stack["access_log_settings"]["Format"]
        # and every log group of the stack keeps its logs 30 days by default
        groups = stack["log_groups"]
        assert set(groups) == {
            "ApiFunctionLogGroup",
            "StepFunctionLogGroup",
            "HttpApiAccessLogGroup",
            "StateMachineLogGroup",
        }
        assert all(group["RetentionInDays"] == 30 for group in groups.values())


def _production_settings(resources: dict[str, Any]) -> dict[str, Any]:
    """What a deployed stack makes of the production settings: the state machine's logging
    and its role's statements, the API stage's access logs and throttling, the log groups."""
    [machine] = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    role = resources[machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]]
    [stage] = [r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    return {
        "logging": machine["Properties"].get("LoggingConfiguration"),
        "role_statements": [
            statement
            for policy in role["Properties"].get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]
        ],
        "access_log_settings": stage["Properties"].get("AccessLogSettings"),
        "default_route_settings": stage["Properties"].get("DefaultRouteSettings"),
        "log_groups": {
            name: resource["Properties"]
            for name, resource in resources.items()
            if resource["Type"] == "AWS::Logs::LogGroup"
        },
    }


def test_the_scale_parameters_reach_every_function_with_the_codes_defaults(
    template: Template,
) -> None:
    # Given the stack's parameters and the functions' environment
    from machinery_core.contract import EVENT_INDEX_SHARDS
    from machinery_core.runtime.settings import Settings

    parameters = template.document["Parameters"]
    environment = template.document["Globals"]["Function"]["Environment"]["Variables"]

    # Then the listing's shard count and the definitions' window are parameters, passed on
    assert environment["EVENT_INDEX_SHARDS"] == {"Ref": "EventIndexShards"}
    assert environment["DEFINITION_CACHE_SECONDS"] == {"Ref": "DefinitionCacheSeconds"}
    # with the defaults the code assumes when they are not set
    settings = Settings.model_validate({"TABLE_NAME": "machinery"})
    assert parameters["EventIndexShards"]["Default"] == EVENT_INDEX_SHARDS
    assert parameters["EventIndexShards"]["Default"] == settings.event_index_shards
    assert parameters["DefinitionCacheSeconds"]["Default"] == settings.definition_cache_seconds
    # and bounds the settings accept
    low = {"EVENT_INDEX_SHARDS": str(parameters["EventIndexShards"]["MinValue"])}
    high = {"EVENT_INDEX_SHARDS": str(parameters["EventIndexShards"]["MaxValue"])}
    for bound in (low, high):
        Settings.model_validate({"TABLE_NAME": "machinery", **bound})
