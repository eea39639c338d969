"""The IAM evaluator of tests/iam_policy.py, on small handcrafted templates."""

from __future__ import annotations

import json
from typing import Any

import pytest
from iam_policy import (
    MANAGED_NOTE,
    Needed,
    Stack,
    Unresolvable,
    Unsupported,
    allows,
    check,
    configured_calls,
    needs,
    report,
    resolve,
    roles,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/machinery-table"
MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:machinery-StateMachine"
EXECUTION_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:machinery-StateMachine:run-1"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:signing-AbCdEf"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:machinery-StepFunction"
LAMBDA_MANAGED = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
XRAY_MANAGED = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"

STACK = Stack(
    region=REGION,
    account=ACCOUNT,
    resources={
        "Table": {"Ref": "machinery-table", "Arn": TABLE_ARN},
        "StateMachine": {
            "Ref": MACHINE_ARN,
            "Arn": MACHINE_ARN,
            "Name": "machinery-StateMachine",
        },
        "NotificationSigningSecret": {"Ref": SECRET_ARN},
        "StepFunction": {"Ref": "machinery-StepFunction", "Arn": FUNCTION_ARN},
    },
    conditions={"IsProduction": False},
)


def statement(action: Any, resource: Any, effect: str = "Allow", **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": resource, **extra}


def template(
    *statements: dict[str, Any],
    managed: list[str] | None = None,
    principal: str = "ApiFunction",
    principal_type: str = "AWS::Lambda::Function",
) -> dict[str, Any]:
    """One principal with one role holding one inline policy."""
    role_key = "RoleArn" if principal_type == "AWS::StepFunctions::StateMachine" else "Role"
    return {
        f"{principal}Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "ManagedPolicyArns": managed or [],
                "Policies": [
                    {
                        "PolicyName": f"{principal}RolePolicy0",
                        "PolicyDocument": {"Statement": list(statements)},
                    }
                ],
            },
        },
        principal: {
            "Type": principal_type,
            "Properties": {role_key: {"Fn::GetAtt": [f"{principal}Role", "Arn"]}},
        },
    }


def call(
    operation: str,
    params: dict[str, Any],
    service: str = "dynamodb",
    principal: str = "ApiFunction",
) -> dict[str, Any]:
    return {"principal": principal, "service": service, "operation": operation, "params": params}


def missing(resources: dict[str, Any], calls: list[dict[str, Any]]) -> list[str]:
    return [str(f) for f in check(resources, STACK, calls) if f.kind == "missing"]


QUERY_GSI1 = call("Query", {"TableName": "machinery-table", "IndexName": "GSI1"})
SEND_TASK_SUCCESS = call("SendTaskSuccess", {}, service="stepfunctions")


# --- needs --------------------------------------------------------------------------------


def test_transact_write_items_needs_each_items_action_on_its_table() -> None:
    # Given a transaction putting, updating, deleting and condition-checking items
    items = [
        {"Put": {"TableName": "machinery-table"}},
        {"Update": {"TableName": "machinery-table"}},
        {"Delete": {"TableName": TABLE_ARN}},
        {"ConditionCheck": {"TableName": "other"}},
    ]
    # When its authorisations are listed
    needed = needs(call("TransactWriteItems", {"TransactItems": items}), STACK)
    # Then each item needs its own single-item action; a name becomes the table's ARN
    assert [(n.action, n.resource) for n in needed] == [
        ("dynamodb:PutItem", TABLE_ARN),
        ("dynamodb:UpdateItem", TABLE_ARN),
        ("dynamodb:DeleteItem", TABLE_ARN),
        ("dynamodb:ConditionCheckItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/other"),
    ]
    assert all("transaction-apis-iam.html" in n.rule for n in needed)


def test_transact_get_items_needs_get_item() -> None:
    # Given a TransactGetItems call
    params = {"TransactItems": [{"Get": {"TableName": "machinery-table"}}]}
    # When / Then it needs dynamodb:GetItem on the table
    assert [(n.action, n.resource) for n in needs(call("TransactGetItems", params), STACK)] == [
        ("dynamodb:GetItem", TABLE_ARN)
    ]


def test_batch_operations_need_their_own_action_on_each_table() -> None:
    # Given a BatchGetItem on two tables
    params: dict[str, Any] = {"RequestItems": {"machinery-table": {}, "other": {}}}
    # When its authorisations are listed
    needed = needs(call("BatchGetItem", params), STACK)
    # Then dynamodb:BatchGetItem is needed on each table
    assert {(n.action, n.resource) for n in needed} == {
        ("dynamodb:BatchGetItem", TABLE_ARN),
        ("dynamodb:BatchGetItem", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/other"),
    }


def test_query_on_an_index_needs_the_index_arn() -> None:
    # Given / When a Query on GSI1 and one on the table
    on_index = needs(QUERY_GSI1, STACK)
    on_table = needs(call("Query", {"TableName": "machinery-table"}), STACK)
    # Then the index query names the index's ARN, the other the table's
    assert [n.resource for n in on_index] == [f"{TABLE_ARN}/index/GSI1"]
    assert [n.resource for n in on_table] == [TABLE_ARN]


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"),
    [
        ("stepfunctions", "StartExecution", {"stateMachineArn": MACHINE_ARN}, MACHINE_ARN),
        ("stepfunctions", "StopExecution", {"executionArn": EXECUTION_ARN}, EXECUTION_ARN),
        ("stepfunctions", "DescribeExecution", {"executionArn": EXECUTION_ARN}, EXECUTION_ARN),
        ("stepfunctions", "SendTaskFailure", {}, "*"),
        ("stepfunctions", "SendTaskHeartbeat", {}, "*"),
        ("secretsmanager", "GetSecretValue", {"SecretId": SECRET_ARN}, SECRET_ARN),
    ],
)
def test_step_functions_and_secrets_resources(
    service: str, operation: str, params: dict[str, Any], expected: str
) -> None:
    # Given / When a call naming its resource
    needed = needs(call(operation, params, service=service), STACK)
    # Then the action is the service prefix plus the operation, on that resource
    prefix = "states" if service == "stepfunctions" else service
    assert needed == [Needed(f"{prefix}:{operation}", expected, needed[0].rule)]


@pytest.mark.parametrize(
    "name", ["machinery-StepFunction", FUNCTION_ARN, f"{ACCOUNT}:function:machinery-StepFunction"]
)
def test_lambda_invoke_needs_invoke_function_on_the_function_arn(name: str) -> None:
    # Given an Invoke naming the function by name, ARN or partial ARN
    needed = needs(call("Invoke", {"FunctionName": name}, service="lambda"), STACK)
    # Then it needs lambda:InvokeFunction on the function's ARN
    assert [(n.action, n.resource) for n in needed] == [("lambda:InvokeFunction", FUNCTION_ARN)]


@pytest.mark.parametrize(
    ("operation", "action"),
    [("PutObject", "s3:PutObject"), ("GetObject", "s3:GetObject"), ("HeadObject", "s3:GetObject")],
)
def test_an_object_call_needs_its_action_on_the_object_arn(operation: str, action: str) -> None:
    # Given an object operation on a bucket
    params = {"Bucket": "payloads", "Key": "events/e1/abc"}
    needed = needs(call(operation, params, service="s3"), STACK)
    # Then it needs its action on the object's ARN, which names no region nor account
    assert [(n.action, n.resource) for n in needed] == [
        (action, "arn:aws:s3:::payloads/events/e1/abc")
    ]


SCHEDULER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/machinery-SchedulerRole"
SCHEDULE_TARGET = {"Arn": MACHINE_ARN, "RoleArn": SCHEDULER_ROLE_ARN}


def test_a_schedule_is_authorised_on_its_arn_and_creating_one_passes_its_role() -> None:
    # Given a schedule created, then deleted, in a group
    named = {"Name": "evt-1-callback-1", "GroupName": "timers"}
    create = call("CreateSchedule", {**named, "Target": SCHEDULE_TARGET}, service="scheduler")
    delete = call("DeleteSchedule", named, service="scheduler")
    schedule = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/timers/evt-1-callback-1"

    # Then each needs its action on the schedule's ARN (its group in it), and creating one
    # also needs iam:PassRole on the role its target runs as
    assert [(n.action, n.resource) for n in needs(create, STACK)] == [
        ("scheduler:CreateSchedule", schedule),
        ("iam:PassRole", SCHEDULER_ROLE_ARN),
    ]
    assert [(n.action, n.resource) for n in needs(delete, STACK)] == [
        ("scheduler:DeleteSchedule", schedule)
    ]
    assert "setting-up.html" in needs(create, STACK)[1].rule


def test_a_schedule_without_a_group_is_in_the_default_group() -> None:
    bare = call("DeleteSchedule", {"Name": "t"}, service="scheduler")
    assert [n.resource for n in needs(bare, STACK)] == [
        f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/t"
    ]


def test_creating_a_schedule_without_its_target_role_is_malformed() -> None:
    create = call("CreateSchedule", {"Name": "t", "Target": {"Arn": MACHINE_ARN}}, "scheduler")
    with pytest.raises(ValueError, match="RoleArn"):
        needs(create, STACK)


def test_a_role_that_may_create_schedules_but_not_pass_the_role_is_missing_pass_role() -> None:
    # Given a function allowed to create schedules in the group, without iam:PassRole
    resources = template(
        statement(
            "scheduler:CreateSchedule",
            f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/timers/*",
        )
    )
    create = call(
        "CreateSchedule",
        {"Name": "t", "GroupName": "timers", "Target": SCHEDULE_TARGET},
        service="scheduler",
    )
    # When it creates one, then what it lacks is passing the target's role
    assert missing(resources, [create]) == [
        "ApiFunction: scheduler CreateSchedule needs iam:PassRole on "
        f"{SCHEDULER_ROLE_ARN}, which its role ApiFunctionRole does not allow; rule: "
        + needs(create, STACK)[1].rule
    ]


@pytest.mark.parametrize(
    ("service", "operation"),
    [("dynamodb", "ExecuteStatement"), ("s3", "ListBuckets"), ("stepfunctions", "DeleteActivity")],
)
def test_an_unknown_call_raises(service: str, operation: str) -> None:
    # Given a call this evaluator does not know
    unknown = call(operation, {}, service=service)
    # When / Then it is refused rather than silently allowed, by needs and by check
    with pytest.raises(Unsupported, match=operation):
        needs(unknown, STACK)
    with pytest.raises(Unsupported, match=operation):
        check(template(statement("*", "*")), STACK, [unknown])


def test_a_secret_name_cannot_become_its_arn() -> None:
    # Given a GetSecretValue naming the secret rather than its ARN
    by_name = call("GetSecretValue", {"SecretId": "signing"}, service="secretsmanager")
    # When / Then it raises: the ARN's random suffix cannot be guessed
    with pytest.raises(ValueError, match="ARN"):
        needs(by_name, STACK)


# --- allows -------------------------------------------------------------------------------


def test_transaction_with_an_update_fails_without_update_item() -> None:
    # Given a role that may put items but not update them
    resources = template(statement(["dynamodb:PutItem"], {"Fn::GetAtt": ["Table", "Arn"]}))
    items = [
        {"Put": {"TableName": "machinery-table"}},
        {"Update": {"TableName": "machinery-table"}},
    ]
    # When a transaction with a Put and an Update is checked
    found = missing(resources, [call("TransactWriteItems", {"TransactItems": items})])
    # Then only the Update's dynamodb:UpdateItem is reported missing
    assert len(found) == 1
    assert "ApiFunction: dynamodb TransactWriteItems needs dynamodb:UpdateItem" in found[0]
    assert f"on {TABLE_ARN}, which its role ApiFunctionRole does not allow" in found[0]


@pytest.mark.parametrize(
    ("granted", "passes"),
    [
        ([{"Fn::GetAtt": ["Table", "Arn"]}], False),
        ([{"Fn::GetAtt": ["Table", "Arn"]}, {"Fn::Sub": "${Table.Arn}/index/*"}], True),
        (["${Table.Arn}/index/GSI1"], True),
        (["${Table.Arn}/index/GSI2"], False),
    ],
)
def test_query_on_an_index_is_allowed_only_on_the_index_arn(
    granted: list[Any], passes: bool
) -> None:
    # Given a role allowing dynamodb:Query on some resources
    resources = template(statement("dynamodb:Query", granted))
    # When a Query on GSI1 is checked
    found = missing(resources, [QUERY_GSI1])
    # Then it passes only if the index's ARN is granted
    assert (found == []) is passes
    if not passes:
        assert f"needs dynamodb:Query on {TABLE_ARN}/index/GSI1" in found[0]


@pytest.mark.parametrize(
    ("resource", "passes"), [("*", True), (MACHINE_ARN, False), ("arn:aws:states:*", False)]
)
def test_send_task_success_needs_resource_star(resource: str, passes: bool) -> None:
    # Given a role granting states:SendTaskSuccess on some resource
    resources = template(statement("states:SendTaskSuccess", resource))
    # When / Then only Resource "*" grants it
    assert (missing(resources, [SEND_TASK_SUCCESS]) == []) is passes


def test_deny_beats_allow() -> None:
    # Given a role allowing all of DynamoDB but denying DeleteItem on the table
    resources = template(
        statement("dynamodb:*", "*"),
        statement("dynamodb:DeleteItem", {"Fn::GetAtt": ["Table", "Arn"]}, "Deny", Sid="NoDelete"),
    )
    role = roles(resources, STACK)["ApiFunction"]
    # When / Then DeleteItem is not allowed, and the finding names the Deny
    assert allows(role, "dynamodb:DeleteItem", TABLE_ARN) is None
    assert allows(role, "dynamodb:PutItem", TABLE_ARN) is not None
    found = missing(resources, [call("DeleteItem", {"TableName": "machinery-table"})])
    assert "explicitly denied by statement NoDelete" in found[0]


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("dynamodb:*", "dynamodb:Query", True),
        ("dynamodb:Get*", "dynamodb:GetItem", True),
        ("dynamodb:Get*", "dynamodb:PutItem", False),
        ("DynamoDB:getitem", "dynamodb:GetItem", True),
        ("dynamo*:GetItem", "dynamodb:GetItem", True),
        ("dynamodb:?etItem", "dynamodb:GetItem", True),
        ("dynamodb:?etItem", "dynamodb:BatchGetItem", False),
        ("*", "states:StartExecution", True),
        ("dynamodb:Query", "dynamodb:QueryX", False),
    ],
)
def test_action_wildcards_and_case(pattern: str, action: str, expected: bool) -> None:
    # Given a role allowing one action pattern on everything
    role = roles(template(statement(pattern, "*")), STACK)["ApiFunction"]
    # When / Then the action matches case-insensitively, with * and ?
    assert (allows(role, action, TABLE_ARN) is not None) is expected


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        ("arn:aws:dynamodb:*:*:table/machinery-*", TABLE_ARN, True),
        ("arn:aws:dynamodb:*:*:table/machinery-*", f"{TABLE_ARN}/index/GSI1", True),
        ("arn:aws:dynamodb:*:*:table/Machinery-*", TABLE_ARN, False),
        ("arn:aws:dynamodb:us-east-?:*:table/machinery-table", TABLE_ARN, True),
        ("arn:aws:dynamodb:*:*:table/machinery-table", f"{TABLE_ARN}/index/GSI1", False),
        ("arn:aws:dynamodb:*:*:table/[m]achinery-table", TABLE_ARN, False),
    ],
)
def test_resource_wildcards_are_case_sensitive(pattern: str, resource: str, expected: bool) -> None:
    # Given a role allowing Query on a resource pattern
    role = roles(template(statement("dynamodb:Query", pattern)), STACK)["ApiFunction"]
    # When / Then the resource matches case-sensitively, * and ? only
    assert (allows(role, "dynamodb:Query", resource) is not None) is expected


@pytest.mark.parametrize("key", ["Condition", "NotAction", "NotResource"])
def test_unimplemented_policy_elements_raise(key: str) -> None:
    # Given a statement using an element this evaluator does not implement
    extra: dict[str, Any] = {
        key: {"StringEquals": {"aws:RequestedRegion": REGION}} if key == "Condition" else "*"
    }
    resources = template(statement("dynamodb:Query", "*", **extra))
    # When / Then building the role raises rather than approving anything by it
    with pytest.raises(Unsupported, match=key):
        check(resources, STACK, [QUERY_GSI1])


def test_a_policy_variable_in_a_resource_raises() -> None:
    # Given a resource scoped by an IAM policy variable
    resources = template(statement("dynamodb:Query", "${Table.Arn}/${aws:username}"))
    # When / Then it is refused, and the logical id around it was still resolved
    with pytest.raises(Unsupported, match=r"table/machinery-table/\$\{aws:username\}"):
        roles(resources, STACK)


def test_a_permissions_boundary_raises() -> None:
    # Given a role with a permissions boundary, which would narrow its grants
    resources = template(statement("dynamodb:Query", "*"))
    resources["ApiFunctionRole"]["Properties"]["PermissionsBoundary"] = "arn:aws:iam::1:policy/b"
    # When / Then it is refused
    with pytest.raises(Unsupported, match="PermissionsBoundary"):
        roles(resources, STACK)


# --- resolution ---------------------------------------------------------------------------


def test_resolve_intrinsics() -> None:
    # Given values using each supported intrinsic function
    values = {
        "ref": {"Ref": "Table"},
        "pseudo": {"Fn::Join": [":", [{"Ref": "AWS::Partition"}, {"Ref": "AWS::URLSuffix"}]]},
        "getatt_list": {"Fn::GetAtt": ["StateMachine", "Name"]},
        "getatt_string": {"Fn::GetAtt": "Table.Arn"},
        "sub": {"Fn::Sub": "arn:${AWS::Partition}:x:${AWS::Region}:${AWS::AccountId}:${Table}"},
        "sub_vars": {"Fn::Sub": ["${n}-${AWS::StackName}", {"n": {"Ref": "StepFunction"}}]},
        "sub_literal": {"Fn::Sub": "${!aws:username}/${Table.Arn}"},
        "if": {"Fn::If": ["IsProduction", {"Ref": "Nowhere"}, "dev"]},
        "select": {"Fn::Select": ["1", ["a", {"Ref": "Table"}]]},
        "no_value": [
            {"Ref": "AWS::NoValue"},
            "kept",
            {"Fn::If": ["IsProduction", "p", {"Ref": "AWS::NoValue"}]},
        ],
        "dropped": {"Ref": "AWS::NoValue"},
    }
    # When they are resolved against the stack
    resolved = resolve(values, STACK)
    # Then each gives the physical value; NoValue drops list items and keys
    assert resolved == {
        "ref": "machinery-table",
        "pseudo": "aws:amazonaws.com",
        "getatt_list": "machinery-StateMachine",
        "getatt_string": TABLE_ARN,
        "sub": f"arn:aws:x:{REGION}:{ACCOUNT}:machinery-table",
        "sub_vars": "machinery-StepFunction-machinery",
        "sub_literal": "${aws:username}/" + TABLE_ARN,
        "if": "dev",
        "select": "machinery-table",
        "no_value": ["kept"],
    }


def test_resolve_bare_strings_left_by_the_sam_cli() -> None:
    # Given Fn::Sub bodies that the SAM CLI left bare, with a policy variable beside them
    bare = [
        f"arn:aws:states:{REGION}:{ACCOUNT}:execution:${{StateMachine.Name}}:*",
        "${Table.Arn}/index/GSI1",
        "${AWS::Region}/${Unknown}/${aws:username}",
    ]
    # When they are resolved
    resolved = resolve(bare, STACK)
    # Then placeholders naming the stack map or pseudo parameters are filled, others kept
    assert resolved == [
        f"arn:aws:states:{REGION}:{ACCOUNT}:execution:machinery-StateMachine:*",
        f"{TABLE_ARN}/index/GSI1",
        f"{REGION}/${{Unknown}}/${{aws:username}}",
    ]


def test_stop_execution_allowed_through_a_bare_state_machine_name() -> None:
    # Given the SAM CLI's bare-string StopExecution grant
    resource = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:${{StateMachine.Name}}:*"
    resources = template(statement("states:StopExecution", resource))
    # When a StopExecution on an execution of that machine is checked
    stop = call("StopExecution", {"executionArn": EXECUTION_ARN}, service="stepfunctions")
    # Then it is allowed and the grant is used
    assert check(resources, STACK, [stop]) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"Ref": "Missing"}, "Ref Missing: Missing is not in the stack map"),
        ({"Fn::GetAtt": ["Table", "StreamArn"]}, "no 'StreamArn' for Table"),
        ({"Fn::Sub": "${Missing.Arn}"}, "Missing.Arn"),
        ({"Fn::If": ["Unknown", "a", "b"]}, "condition Unknown"),
        ({"Fn::ImportValue": "x"}, "Fn::ImportValue is not supported"),
        ({"Fn::Select": [3, ["a"]]}, "out of range"),
        ({"Ref": "AWS::StackId"}, "AWS::StackId"),
    ],
)
def test_unresolvable_values_name_what_failed(value: Any, message: str) -> None:
    # Given / When / Then an unresolvable value raises, naming it
    with pytest.raises(Unresolvable, match=message.replace("(", r"\(")):
        resolve(value, STACK)


def test_conditional_role_policy_and_resource() -> None:
    # Given a policy included only in production and a function that exists only there
    resources = template(
        statement("dynamodb:Query", {"Fn::If": ["IsProduction", "*", f"{TABLE_ARN}/index/*"]})
    )
    policies = resources["ApiFunctionRole"]["Properties"]["Policies"]
    policies.append({"Fn::If": ["IsProduction", {"PolicyName": "Prod"}, {"Ref": "AWS::NoValue"}]})
    resources["ProdFunction"] = {
        "Type": "AWS::Lambda::Function",
        "Condition": "IsProduction",
        "Properties": {"Role": {"Fn::GetAtt": ["ApiFunctionRole", "Arn"]}},
    }
    # When the roles are built outside production
    built = roles(resources, STACK)
    # Then the production policy and function are absent and the If picked the index grant
    assert list(built) == ["ApiFunction"]
    assert [s.resources for s in built["ApiFunction"].statements] == [(f"{TABLE_ARN}/index/*",)]


# --- roles --------------------------------------------------------------------------------


def test_roles_of_functions_and_state_machines() -> None:
    # Given a function and a state machine, each with its role
    resources = {
        **template(statement("dynamodb:Query", "*"), managed=[LAMBDA_MANAGED]),
        **template(
            statement(["lambda:InvokeFunction"], {"Fn::Sub": "${StepFunction.Arn}*"}),
            principal="StateMachine",
            principal_type="AWS::StepFunctions::StateMachine",
        ),
    }
    # When the roles are built
    built = roles(resources, STACK)
    # Then each principal maps to its role, statements remember their policy and index
    assert {p: r.logical_id for p, r in built.items()} == {
        "ApiFunction": "ApiFunctionRole",
        "StateMachine": "StateMachineRole",
    }
    machine = built["StateMachine"].statements[0]
    assert (machine.policy, machine.index, machine.resources) == (
        "StateMachineRolePolicy0",
        0,
        (f"{FUNCTION_ARN}*",),
    )
    assert built["ApiFunction"].managed_policy_arns == (LAMBDA_MANAGED,)


def test_a_role_no_function_nor_state_machine_has_is_the_principal_of_its_own_calls() -> None:
    # Given a role a service assumes (the timers' role: EventBridge Scheduler starts the
    # state machine as it), beside a function's role
    resources = {
        **template(statement("dynamodb:Query", "*")),
        "SchedulerRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "scheduler.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
                        }
                    ]
                },
                "Policies": [
                    {
                        "PolicyName": "StartTheStateMachine",
                        "PolicyDocument": {
                            "Statement": [statement("states:StartExecution", MACHINE_ARN)]
                        },
                    }
                ],
            },
        },
    }
    # When the roles are built, then it is a principal of its own (its trust policy, with
    # its Principal and Condition, is not what authorises its calls)
    built = roles(resources, STACK)
    assert {p: r.logical_id for p, r in built.items()} == {
        "ApiFunction": "ApiFunctionRole",
        "SchedulerRole": "SchedulerRole",
    }
    # And what it does is judged against its own policy, its grant used or unused
    start = call(
        "StartExecution", {"stateMachineArn": MACHINE_ARN}, "stepfunctions", "SchedulerRole"
    )
    assert [f for f in check(resources, STACK, [start]) if f.subject == "SchedulerRole"] == []
    unused = [f.message for f in check(resources, STACK, []) if f.subject == "SchedulerRole"]
    assert unused == [
        "SchedulerRole: statement 0 of policy StartTheStateMachine (states:StartExecution on "
        f"{MACHINE_ARN}) grants states:StartExecution on {MACHINE_ARN}, which no recorded call "
        "of SchedulerRole uses: a grant nobody uses"
    ]


def test_a_policy_attached_from_outside_the_role_raises() -> None:
    # Given an AWS::IAM::Policy attached to a principal's role
    resources = template(statement("dynamodb:Query", "*"))
    resources["Extra"] = {
        "Type": "AWS::IAM::Policy",
        "Properties": {"Roles": [{"Ref": "ApiFunctionRole"}], "PolicyDocument": {}},
    }
    # When / Then it is refused: its grants would go unseen
    with pytest.raises(Unsupported, match="Extra"):
        roles(resources, STACK)


# --- check --------------------------------------------------------------------------------


def test_an_unused_action_is_reported_with_its_statement() -> None:
    # Given a statement granting Query and DeleteItem, of which only Query is used
    resources = template(
        statement(["dynamodb:Query", "dynamodb:DeleteItem"], "${Table.Arn}/index/GSI1")
    )
    # When the calls are checked
    findings = check(resources, STACK, [QUERY_GSI1])
    # Then DeleteItem is reported unused, naming the role, the statement and its actions
    assert [(f.kind, f.subject, f.action) for f in findings] == [
        ("unused", "ApiFunctionRole", "dynamodb:DeleteItem")
    ]
    text = str(findings[0])
    assert "statement 0 of policy ApiFunctionRolePolicy0" in text
    assert "dynamodb:Query, dynamodb:DeleteItem" in text
    assert "grants dynamodb:DeleteItem" in text and "a grant nobody uses" in text


def test_a_grant_used_only_on_another_resource_is_unused() -> None:
    # Given Query granted on the table only, and on the index by another statement
    resources = template(
        statement("dynamodb:Query", {"Fn::GetAtt": ["Table", "Arn"]}, Sid="TableQuery"),
        statement("dynamodb:Query", "${Table.Arn}/index/*", Sid="IndexQuery"),
    )
    # When only index queries are made
    findings = check(resources, STACK, [QUERY_GSI1])
    # Then the table statement's Query is the unused one
    assert [f.message.split(" (")[0] for f in findings] == ["ApiFunctionRole: statement TableQuery"]


def test_one_statement_granting_an_action_on_two_resources_reports_the_unused_one() -> None:
    # Given Query granted on the table and on its index in one statement
    resources = template(
        statement("dynamodb:Query", [{"Fn::GetAtt": ["Table", "Arn"]}, "${Table.Arn}/index/GSI1"])
    )
    # When only the index is queried
    findings = check(resources, STACK, [QUERY_GSI1])
    # Then Query on the table is a grant nobody uses, named with its resource
    assert [(f.kind, f.action, f.resource) for f in findings] == [
        ("unused", "dynamodb:Query", TABLE_ARN)
    ]
    assert f"grants dynamodb:Query on {TABLE_ARN}" in str(findings[0])


def test_a_logging_state_machine_needs_the_log_delivery_actions() -> None:
    # Given a state machine that logs, whose role lacks one of the delivery actions
    delivery = [
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
    ]
    resources = template(
        statement(delivery, "*"),
        principal="StateMachine",
        principal_type="AWS::StepFunctions::StateMachine",
    )
    resources["StateMachine"]["Properties"]["LoggingConfiguration"] = {
        "Level": {"Fn::If": ["IsProduction", "ALL", "ERROR"]},
        "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": "arn:aws:logs:x"}}],
    }
    # When the calls its configuration implies are checked
    calls = configured_calls(resources, STACK)
    findings = check(resources, STACK, calls)
    # Then the missing one is named, with the rule's documentation
    assert len(calls) == 8 and {c["principal"] for c in calls} == {"StateMachine"}
    assert [(f.kind, f.action) for f in findings] == [("missing", "logs:DescribeLogGroups")]
    assert "cw-logs.html" in str(findings[0])


def test_a_state_machine_without_logging_needs_no_log_delivery() -> None:
    # Given a state machine whose logging is OFF
    resources = template(
        principal="StateMachine", principal_type="AWS::StepFunctions::StateMachine"
    )
    resources["StateMachine"]["Properties"]["LoggingConfiguration"] = {"Level": "OFF"}
    # Then its configuration implies no call
    assert configured_calls(resources, STACK) == []


def test_a_wildcard_action_counts_as_used_when_anything_it_covers_is() -> None:
    # Given dynamodb:* as written
    resources = template(statement("dynamodb:*", "*"), statement("states:*", "*"))
    # When only a Query is made
    findings = check(resources, STACK, [QUERY_GSI1])
    # Then dynamodb:* is used and states:* is reported unused, as written
    assert [f.action for f in findings] == ["states:*"]


def test_a_kept_sid_is_never_reported_unused() -> None:
    # Given an unused grant whose Sid starts with Kept
    resources = template(
        statement("states:SendTaskSuccess", "*", Sid="KeptForCallbackTest"),
        statement("dynamodb:Query", "*", Sid="Used"),
    )
    # When the calls are checked
    findings = check(resources, STACK, [QUERY_GSI1])
    # Then nothing is reported
    assert findings == []


def test_managed_policies_are_neither_evaluated_nor_reported_unused() -> None:
    # Given a role whose only grants are the AWS managed policies
    resources = template(managed=[LAMBDA_MANAGED, XRAY_MANAGED])
    # When a call is checked
    findings = check(resources, STACK, [SEND_TASK_SUCCESS])
    # Then the call is missing (the managed policies grant the code nothing) and no unused
    assert [f.kind for f in findings] == ["missing"]
    assert "states:SendTaskSuccess on *" in str(findings[0])


def test_a_call_with_no_role_is_a_finding() -> None:
    # Given a function whose role is not in the template
    resources = {
        "Loner": {"Type": "AWS::Lambda::Function", "Properties": {"Role": "arn:aws:iam::1:role/x"}}
    }
    # When it makes calls
    findings = check(resources, STACK, [call("Query", {"TableName": "t"}, principal="Loner")] * 2)
    # Then one finding says it has no role
    assert [str(f) for f in findings] == [
        "Loner: makes dynamodb Query calls, but no IAM role for it is in the template"
    ]


def test_a_role_found_by_its_deployed_arn() -> None:
    # Given a function naming its role by literal ARN, and the stack map knowing that ARN
    resources = template(statement("dynamodb:Query", "*"))
    resources["ApiFunction"]["Properties"]["Role"] = "arn:aws:iam::1:role/api"
    stack = Stack(
        REGION, ACCOUNT, resources={"ApiFunctionRole": {"Arn": "arn:aws:iam::1:role/api"}}
    )
    # When / Then the role is found
    assert roles(resources, stack)["ApiFunction"].logical_id == "ApiFunctionRole"


def test_findings_are_deduplicated_and_sorted() -> None:
    # Given a role allowing nothing the calls need, and repeated calls
    resources = template(statement("dynamodb:GetItem", "*", Sid="Reads"))
    calls = [QUERY_GSI1, SEND_TASK_SUCCESS, QUERY_GSI1]
    # When they are checked twice
    first = check(resources, STACK, calls)
    # Then each problem appears once, in a stable order
    assert first == check(resources, STACK, list(reversed(calls)))
    assert [(f.kind, f.action) for f in first] == [
        ("missing", "dynamodb:Query"),
        ("missing", "states:SendTaskSuccess"),
        ("unused", "dynamodb:GetItem"),
    ]


# --- report -------------------------------------------------------------------------------


def test_report_lists_each_role_what_it_may_do_and_what_was_done() -> None:
    # Given a function and a state machine with roles, and recorded calls
    resources = {
        **template(
            statement(["dynamodb:Query", "dynamodb:PutItem"], "${Table.Arn}*"),
            managed=[LAMBDA_MANAGED, XRAY_MANAGED],
        ),
        **template(
            statement("lambda:InvokeFunction", {"Fn::Sub": "${StepFunction.Arn}*"}),
            principal="StateMachine",
            principal_type="AWS::StepFunctions::StateMachine",
        ),
    }
    put = {"TransactItems": [{"Put": {"TableName": "machinery-table"}}] * 2}
    invoke = call("Invoke", {"FunctionName": FUNCTION_ARN}, "lambda", "StateMachine")
    calls = [QUERY_GSI1, QUERY_GSI1, QUERY_GSI1, call("TransactWriteItems", put), invoke]
    calls.append(call("PutItem", {"TableName": "machinery-table"}))
    calls.append(call("GetItem", {"TableName": "t"}, principal="Loner"))
    # When the report is made
    markdown, data = report(resources, STACK, calls)
    # Then it lists both roles, their managed policies and counts, and is JSON-able
    json.dumps(data)
    assert [r["role"] for r in data["roles"]] == ["ApiFunctionRole", "StateMachineRole"]
    api = data["roles"][0]
    assert api["managed_policies"] == [
        {"arn": LAMBDA_MANAGED, "note": MANAGED_NOTE},
        {"arn": XRAY_MANAGED, "note": MANAGED_NOTE},
    ]
    did = {(u["action"], u["resource"]): (u["calls"], u["operations"]) for u in api["did"]}
    assert did == {
        ("dynamodb:Query", f"{TABLE_ARN}/index/GSI1"): (3, ["dynamodb Query"]),
        ("dynamodb:PutItem", TABLE_ARN): (2, ["dynamodb PutItem", "dynamodb TransactWriteItems"]),
    }
    assert data["roles"][1]["did"][0]["calls"] == 1
    assert data["principals_without_role"] == [{"principal": "Loner", "calls": 1}]
    assert data["findings"] == [
        "Loner: makes dynamodb GetItem calls, but no IAM role for it is in the template"
    ]
    for text in ("## ApiFunctionRole", "## StateMachineRole", MANAGED_NOTE, "| 3 |", "Loner"):
        assert text in markdown


def test_report_says_none_without_findings() -> None:
    # Given a role that allows exactly what was done
    resources = template(statement("states:SendTaskSuccess", "*"))
    # When the report is made
    markdown, data = report(resources, STACK, [SEND_TASK_SUCCESS])
    # Then the findings section says none
    assert markdown.rstrip().endswith("## Findings\n\nnone")
    assert data["findings"] == []


def test_stack_json_round_trip() -> None:
    # Given / When a stack goes to JSON and back
    again = Stack.from_json(json.loads(json.dumps(STACK.to_json())))
    # Then it is unchanged, and unknown keys are refused
    assert again == STACK
    with pytest.raises(ValueError, match="unknown"):
        Stack.from_json({**STACK.to_json(), "extra": 1})
