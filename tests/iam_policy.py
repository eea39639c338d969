"""Check recorded AWS calls against the IAM roles that template.yaml gives their callers.

Reads the inline policies of each role (after the SAM transform, intrinsics unresolved),
resolves them against the physical names of a deployed stack, and reports every call that its
role does not allow and every granted action that no call used.

Only what this module implements can approve a call: Allow/Deny statements with Action and
Resource. NotAction, NotResource, Condition, Principal, permissions boundaries and policies
attached to a role from outside it raise Unsupported instead of being guessed at. Managed
policy ARNs are listed but never evaluated: they serve Lambda's and X-Ray's own calls.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

TRANSACTIONS_URL: Final = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html"
)
DYNAMODB_CONDITIONS_URL: Final = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/specifying-conditions.html"
)
DYNAMODB_ACTIONS_URL: Final = (
    "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html"
)
STATES_ACTIONS_URL: Final = (
    "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsstepfunctions.html"
)
LAMBDA_ACTIONS_URL: Final = (
    "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awslambda.html"
)
S3_ACTIONS_URL: Final = (
    "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html"
)
SCHEDULER_ACTIONS_URL: Final = (
    "https://docs.aws.amazon.com/service-authorization/latest/reference/"
    "list_amazoneventbridgescheduler.html"
)
SCHEDULER_SETUP_URL: Final = (
    "https://docs.aws.amazon.com/scheduler/latest/UserGuide/setting-up.html"
)
STATES_LOGGING_URL: Final = (
    "https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html#cloudwatch-iam-policy"
)
EVALUATION_URL: Final = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html"
)

MANAGED_NOTE: Final = "AWS managed, for Lambda's/X-Ray's own use, not evaluated"
CUSTOMER_MANAGED_NOTE: Final = "customer managed, not evaluated"
DIRECT_RULE: Final = "the operation's own IAM action on the resource the call names"


class Unsupported(Exception):
    """A policy feature or an AWS call this evaluator does not implement."""


class Unresolvable(ValueError):
    """A template value that cannot be resolved against the stack map."""


# --- the deployed stack -------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """Physical values of a deployed stack: resources[logical_id] maps "Ref"/attributes."""

    region: str
    account: str
    partition: str = "aws"
    stack_name: str = "machinery"
    resources: dict[str, dict[str, str]] = field(default_factory=dict)
    conditions: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Stack:
        unknown = set(d) - {
            "region",
            "account",
            "partition",
            "stack_name",
            "resources",
            "conditions",
        }
        if unknown:
            raise ValueError(f"Stack.from_json: unknown keys {sorted(unknown)}")
        return cls(
            region=str(d["region"]),
            account=str(d["account"]),
            partition=str(d.get("partition", "aws")),
            stack_name=str(d.get("stack_name", "machinery")),
            resources={k: dict(v) for k, v in (d.get("resources") or {}).items()},
            conditions={k: bool(v) for k, v in (d.get("conditions") or {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "account": self.account,
            "partition": self.partition,
            "stack_name": self.stack_name,
            "resources": {k: dict(v) for k, v in self.resources.items()},
            "conditions": dict(self.conditions),
        }

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"


# --- resolving intrinsic functions --------------------------------------------------------


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Final = _NoValue()
_PLACEHOLDER: Final = re.compile(r"\$\{([^}]*)\}")


def resolve(value: Any, stack: Stack, where: str = "template") -> Any:
    """Resolve the intrinsic functions in `value`; AWS::NoValue at the top gives None."""
    out = _resolve(value, stack, where)
    return None if out is NO_VALUE else out


def _pseudo(name: str, stack: Stack, where: str) -> str:
    values = {
        "AWS::Region": stack.region,
        "AWS::AccountId": stack.account,
        "AWS::Partition": stack.partition,
        "AWS::StackName": stack.stack_name,
        "AWS::URLSuffix": "amazonaws.com",
    }
    if name not in values:
        raise Unresolvable(f"{where}: pseudo parameter {name} is not supported here")
    return values[name]


def _lookup(stack: Stack, logical: str, attr: str, where: str) -> str:
    physical = stack.resources.get(logical)
    what = "Ref " + logical if attr == "Ref" else f"Fn::GetAtt {logical}.{attr}"
    if physical is None:
        raise Unresolvable(f"{where}: {what}: {logical} is not in the stack map")
    if attr not in physical:
        raise Unresolvable(f"{where}: {what}: the stack map has no {attr!r} for {logical}")
    return physical[attr]


def _substitute_bare(text: str, stack: Stack, where: str) -> str:
    # The SAM CLI's local language-extensions pass substitutes the pseudo parameters of an
    # Fn::Sub and then drops the Fn::Sub wrapper, leaving e.g. "${Table.Arn}/index/GSI1" as a
    # bare string (CloudFormation would keep the Fn::Sub). Those placeholders are resolved when
    # they name a pseudo parameter or a logical id of the stack map; anything else, such as an
    # IAM policy variable ${aws:username}, is left as written.
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("AWS::"):
            return _pseudo(name, stack, where)
        logical, _, attr = name.partition(".")
        if logical in stack.resources:
            return _lookup(stack, logical, attr or "Ref", where)
        return match.group(0)

    return _PLACEHOLDER.sub(one, text)


def _resolve(value: Any, stack: Stack, where: str) -> Any:
    if isinstance(value, str):
        return _substitute_bare(value, stack, where)
    if isinstance(value, list):
        items = [_resolve(v, stack, f"{where}[{i}]") for i, v in enumerate(value)]
        return [v for v in items if v is not NO_VALUE]
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" or key.startswith("Fn::"):
                return _intrinsic(key, arg, stack, f"{where}.{key}")
        out = {}
        for k, v in value.items():
            r = _resolve(v, stack, f"{where}.{k}")
            if r is not NO_VALUE:
                out[k] = r
        return out
    return value


def _as_string(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Unresolvable(f"{where}: expected a string, got {value!r}")
    return str(value)


def _intrinsic(key: str, arg: Any, stack: Stack, where: str) -> Any:
    if key == "Ref":
        name = _as_string(arg, where)
        if name == "AWS::NoValue":
            return NO_VALUE
        if name.startswith("AWS::"):
            return _pseudo(name, stack, where)
        return _lookup(stack, name, "Ref", where)
    if key == "Fn::GetAtt":
        if isinstance(arg, str):
            logical, _, attr = arg.partition(".")
        elif isinstance(arg, list) and len(arg) == 2:
            logical = _as_string(arg[0], where)
            attr = _as_string(_resolve(arg[1], stack, where), where)
        else:
            raise Unresolvable(f"{where}: malformed Fn::GetAtt {arg!r}")
        return _lookup(stack, logical, attr, where)
    if key == "Fn::Sub":
        return _sub(arg, stack, where)
    if key == "Fn::Join":
        if not (isinstance(arg, list) and len(arg) == 2):
            raise Unresolvable(f"{where}: malformed Fn::Join {arg!r}")
        delimiter = _as_string(arg[0], where)
        parts = _resolve(arg[1], stack, where)
        if not isinstance(parts, list):
            raise Unresolvable(f"{where}: Fn::Join needs a list, got {parts!r}")
        return delimiter.join(_as_string(p, where) for p in parts)
    if key == "Fn::If":
        if not (isinstance(arg, list) and len(arg) == 3 and isinstance(arg[0], str)):
            raise Unresolvable(f"{where}: malformed Fn::If {arg!r}")
        if arg[0] not in stack.conditions:
            raise Unresolvable(f"{where}: condition {arg[0]} is not in the stack's conditions")
        # Only the chosen branch is resolved: the other may name resources never created.
        return _resolve(arg[1] if stack.conditions[arg[0]] else arg[2], stack, where)
    if key == "Fn::Select":
        if not (isinstance(arg, list) and len(arg) == 2):
            raise Unresolvable(f"{where}: malformed Fn::Select {arg!r}")
        index_text = _as_string(_resolve(arg[0], stack, where), where)
        items = _resolve(arg[1], stack, where)
        if not index_text.isdigit() or not isinstance(items, list):
            raise Unresolvable(f"{where}: malformed Fn::Select {arg!r}")
        if int(index_text) >= len(items):
            raise Unresolvable(f"{where}: Fn::Select index {index_text} out of range")
        return items[int(index_text)]
    raise Unresolvable(f"{where}: {key} is not supported by this resolver")


def _sub(arg: Any, stack: Stack, where: str) -> str:
    if isinstance(arg, str):
        template, variables = arg, {}
    elif (
        isinstance(arg, list)
        and len(arg) == 2
        and isinstance(arg[0], str)
        and isinstance(arg[1], dict)
    ):
        template = arg[0]
        variables = {k: _resolve(v, stack, f"{where}.{k}") for k, v in arg[1].items()}
    else:
        raise Unresolvable(f"{where}: malformed Fn::Sub {arg!r}")

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name in variables:
            return _as_string(variables[name], f"{where} ${{{name}}}")
        if name.startswith("AWS::"):
            return _pseudo(name, stack, where)
        logical, _, attr = name.partition(".")
        return _lookup(stack, logical, attr or "Ref", where)

    return _PLACEHOLDER.sub(one, template)


# --- roles and statements -----------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    # IAM wildcards: * is any run of characters (":" and "/" included), ? is one character;
    # nothing else is special, unlike fnmatch's [...] classes.
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def action_matches(pattern: str, action: str) -> bool:
    """IAM action names are case-insensitive, wildcards allowed anywhere (prefix too)."""
    return _glob(pattern, True).fullmatch(action) is not None


def resource_matches(pattern: str, resource: str) -> bool:
    """IAM resource ARNs are case-sensitive, with * and ? wildcards."""
    return _glob(pattern, False).fullmatch(resource) is not None


@dataclass(frozen=True)
class Statement:
    sid: str | None
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    policy: str
    index: int

    @property
    def label(self) -> str:
        if self.sid:
            return f"statement {self.sid}"
        return f"statement {self.index} of policy {self.policy}"

    def matches(self, action: str, resource: str) -> bool:
        return any(action_matches(a, action) for a in self.actions) and any(
            resource_matches(r, resource) for r in self.resources
        )


@dataclass(frozen=True)
class Role:
    logical_id: str
    statements: tuple[Statement, ...]
    managed_policy_arns: tuple[str, ...]


_UNSUPPORTED_KEYS: Final = ("NotAction", "NotResource", "Condition", "Principal", "NotPrincipal")
_DETACHED_POLICY_TYPES: Final = (
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::RolePolicy",
)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) and i for i in items):
        raise ValueError(f"{where}: expected a string or a list of strings, got {value!r}")
    return tuple(items)


def _statement(raw: Any, policy: str, index: int, where: str) -> Statement:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a statement must be an object, got {raw!r}")
    for key in _UNSUPPORTED_KEYS:
        if key in raw:
            raise Unsupported(
                f"{where}: {key} is not implemented by this evaluator, so nothing is approved by it"
            )
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise ValueError(f"{where}: Effect must be Allow or Deny, got {effect!r}")
    if "Action" not in raw or "Resource" not in raw:
        raise ValueError(f"{where}: a statement needs Action and Resource")
    resources = _strings(raw["Resource"], f"{where}.Resource")
    for resource in resources:
        if "${" in resource:
            raise Unsupported(
                f"{where}: Resource {resource!r} holds an IAM policy variable (or a logical id "
                "missing from the stack map); policy variables are not implemented"
            )
    sid = raw.get("Sid")
    return Statement(
        sid=str(sid) if sid else None,
        effect=effect,
        actions=_strings(raw["Action"], f"{where}.Action"),
        resources=resources,
        policy=policy,
        index=index,
    )


def _build_role(logical_id: str, resource: Mapping[str, Any], stack: Stack) -> Role:
    props = resource.get("Properties") or {}
    if "PermissionsBoundary" in props:
        # A boundary narrows what the inline policies grant; ignoring it could approve a call.
        raise Unsupported(f"{logical_id}: PermissionsBoundary is not implemented")
    policies = _resolve(props.get("Policies") or [], stack, f"{logical_id}.Policies")
    statements: list[Statement] = []
    for p, policy in enumerate(policies):
        name = str(policy.get("PolicyName") or f"Policies[{p}]")
        raw = (policy.get("PolicyDocument") or {}).get("Statement") or []
        for i, s in enumerate(raw if isinstance(raw, list) else [raw]):
            statements.append(_statement(s, name, i, f"{logical_id} {name} statement {i}"))
    managed = _resolve(
        props.get("ManagedPolicyArns") or [], stack, f"{logical_id}.ManagedPolicyArns"
    )
    return Role(
        logical_id=logical_id,
        statements=tuple(statements),
        managed_policy_arns=_strings(managed, f"{logical_id}.ManagedPolicyArns") if managed else (),
    )


def managed_policy(resources: Mapping[str, Any], logical_id: str, stack: Stack) -> Role:
    """An AWS::IAM::ManagedPolicy of the template, as a Role holding its statements alone."""
    resource = resources[logical_id]
    if resource.get("Type") != "AWS::IAM::ManagedPolicy":
        raise ValueError(f"{logical_id} is a {resource.get('Type')}, not a managed policy")
    document = resolve((resource.get("Properties") or {}).get("PolicyDocument"), stack, logical_id)
    raw = (document or {}).get("Statement") or []
    statements = tuple(
        _statement(s, logical_id, i, f"{logical_id} statement {i}")
        for i, s in enumerate(raw if isinstance(raw, list) else [raw])
    )
    return Role(logical_id=logical_id, statements=statements, managed_policy_arns=())


def _exists(resource: Mapping[str, Any], stack: Stack, logical_id: str) -> bool:
    condition = resource.get("Condition")
    if condition is None:
        return True
    if condition not in stack.conditions:
        raise Unresolvable(f"{logical_id}: condition {condition} is not in the stack's conditions")
    return stack.conditions[condition]


def _role_logical_id(value: Any, active: Mapping[str, Any], stack: Stack) -> str | None:
    def is_role(lid: str) -> bool:
        return lid in active and active[lid].get("Type") == "AWS::IAM::Role"

    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        logical = target.partition(".")[0] if isinstance(target, str) else target[0]
        return logical if is_role(logical) else None
    if isinstance(value, dict) and "Fn::If" in value:
        cond, then, otherwise = value["Fn::If"]
        if cond not in stack.conditions:
            raise Unresolvable(f"Role: condition {cond} is not in the stack's conditions")
        return _role_logical_id(then if stack.conditions[cond] else otherwise, active, stack)
    # A literal ARN (or one built otherwise) is matched against the roles' deployed ARNs.
    try:
        arn = resolve(value, stack)
    except Unresolvable:
        return None
    for lid in active:
        if is_role(lid) and arn and stack.resources.get(lid, {}).get("Arn") == arn:
            return lid
    return None


def _refs_to(value: Any) -> set[str]:
    if isinstance(value, dict):
        if set(value) == {"Ref"} and isinstance(value["Ref"], str):
            return {value["Ref"]}
        return set().union(*(_refs_to(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_refs_to(v) for v in value)) if value else set()
    return set()


def roles(resources: Mapping[str, Any], stack: Stack) -> dict[str, Role]:
    """The role of each Lambda function and state machine, keyed by its logical id; and each
    other role of the template, keyed by its own logical id: a role a service assumes (such as
    the one EventBridge Scheduler starts the state machine as), whose calls are recorded as
    made by that role."""
    active = {lid: r for lid, r in resources.items() if _exists(r, stack, lid)}
    built: dict[str, Role] = {}
    out: dict[str, Role] = {}
    for lid, res in sorted(active.items()):
        kind = res.get("Type")
        if kind == "AWS::Lambda::Function":
            key = "Role"
        elif kind == "AWS::StepFunctions::StateMachine":
            key = "RoleArn"
        else:
            continue
        role_id = _role_logical_id((res.get("Properties") or {}).get(key), active, stack)
        if role_id is None:
            continue
        if role_id not in built:
            built[role_id] = _build_role(role_id, active[role_id], stack)
        out[lid] = built[role_id]
    for lid, res in sorted(active.items()):
        if res.get("Type") == "AWS::IAM::Role" and lid not in built:
            built[lid] = out[lid] = _build_role(lid, res, stack)
    for lid, res in active.items():
        # Grants attached from outside a role would go unseen (and unused grants unreported).
        props = res.get("Properties") or {}
        targets = _refs_to([props.get("Roles"), props.get("RoleName")])
        if res.get("Type") in _DETACHED_POLICY_TYPES and targets & set(built):
            raise Unsupported(f"{lid}: a {res['Type']} attached to a role is not implemented")
    return out


def denied_by(role: Role, action: str, resource: str) -> Statement | None:
    """The first Deny statement of `role` matching the request, if any."""
    return next(
        (s for s in role.statements if s.effect == "Deny" and s.matches(action, resource)), None
    )


def allows(role: Role, action: str, resource: str) -> Statement | None:
    """The Allow statement granting the request, or None; an explicit Deny wins.

    IAM's rules (EVALUATION_URL) restricted to identity-based inline policies: NotAction,
    NotResource and Condition raise Unsupported when the role is built, so nothing is ever
    approved by a rule this evaluator does not implement.
    """
    if denied_by(role, action, resource) is not None:
        return None
    return next(
        (s for s in role.statements if s.effect == "Allow" and s.matches(action, resource)), None
    )


# --- what a call needs --------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Needed:
    action: str
    resource: str
    rule: str


def _param(params: Mapping[str, Any], name: str, where: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: params.{name} must be a non-empty string, got {value!r}")
    return value


def _table_arn(name: str, stack: Stack) -> str:
    return name if name.startswith("arn:") else stack.arn("dynamodb", f"table/{name}")


def _function_arn(name: str, stack: Stack) -> str:
    if name.startswith("arn:"):
        return name
    parts = name.split(":")
    if len(parts) >= 3 and parts[1] == "function":  # the partial ARN account:function:name
        return f"arn:{stack.partition}:lambda:{stack.region}:{name}"
    return stack.arn("lambda", f"function:{name}")  # name, or name:qualifier


_DYNAMODB_SINGLE: Final = frozenset(
    {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "DescribeTable"}
)
_TRANSACT_WRITE: Final = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
_TRANSACT_GET: Final = {"Get": "GetItem"}
_STATE_MACHINE_OPS: Final = frozenset(
    {"StartExecution", "StartSyncExecution", "DescribeStateMachine", "ListExecutions"}
)
_EXECUTION_OPS: Final = frozenset({"StopExecution", "DescribeExecution", "GetExecutionHistory"})
_TASK_TOKEN_OPS: Final = frozenset({"SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"})
_SECRET_OPS: Final = frozenset({"GetSecretValue", "DescribeSecret"})
_SCHEDULE_OPS: Final = frozenset({"CreateSchedule", "DeleteSchedule", "GetSchedule"})
_S3_OBJECT_OPS: Final = {
    "PutObject": "s3:PutObject",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "DeleteObject": "s3:DeleteObject",
}
# What Step Functions does with its role to deliver a state machine's logs (STATES_LOGGING_URL).
LOG_DELIVERY_OPS: Final = (
    "CreateLogDelivery",
    "GetLogDelivery",
    "UpdateLogDelivery",
    "DeleteLogDelivery",
    "ListLogDeliveries",
    "PutResourcePolicy",
    "DescribeResourcePolicies",
    "DescribeLogGroups",
)


def _dynamodb(op: str, params: Mapping[str, Any], stack: Stack, where: str) -> list[Needed]:
    if op in _DYNAMODB_SINGLE:
        table = _table_arn(_param(params, "TableName", where), stack)
        index = params.get("IndexName")
        if index is None:
            return [Needed(f"dynamodb:{op}", table, DIRECT_RULE)]
        if op not in ("Query", "Scan"):
            raise ValueError(f"{where}: IndexName is only valid for Query and Scan")
        # Reading an index is authorised on the index's own ARN, not the table's.
        # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/specifying-conditions.html
        # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html
        return [
            Needed(
                f"dynamodb:{op}",
                f"{table}/index/{_param(params, 'IndexName', where)}",
                f"a {op} on an index is authorised on the index ARN, not the table's "
                f"({DYNAMODB_CONDITIONS_URL}; {DYNAMODB_ACTIONS_URL})",
            )
        ]
    if op in ("TransactWriteItems", "TransactGetItems"):
        # There is no IAM action for the transaction itself: each item is authorised by the
        # action of its underlying single-item operation, on its own table.
        # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html
        kinds = _TRANSACT_WRITE if op == "TransactWriteItems" else _TRANSACT_GET
        items = params.get("TransactItems")
        if not isinstance(items, list) or not items:
            raise ValueError(f"{where}: params.TransactItems must be a non-empty list")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or len(item) != 1:
                raise ValueError(f"{where}: TransactItems[{i}] must hold exactly one action")
            ((kind, body),) = item.items()
            if kind not in kinds:
                raise ValueError(f"{where}: TransactItems[{i}]: {kind} is not valid in {op}")
            table = _table_arn(_param(body, "TableName", f"{where} TransactItems[{i}]"), stack)
            rule = (
                f"{op} is authorised per item: {kind} needs dynamodb:{kinds[kind]} on the "
                f"item's table ({TRANSACTIONS_URL})"
            )
            out.append(Needed(f"dynamodb:{kinds[kind]}", table, rule))
        return out
    if op in ("BatchGetItem", "BatchWriteItem"):
        tables = params.get("RequestItems")
        if not isinstance(tables, dict) or not tables:
            raise ValueError(f"{where}: params.RequestItems must be a non-empty object")
        # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html
        rule = f"dynamodb:{op} on each table the request names ({DYNAMODB_ACTIONS_URL})"
        return [Needed(f"dynamodb:{op}", _table_arn(t, stack), rule) for t in tables]
    raise Unsupported(f"{where}: dynamodb {op} is not known to this evaluator")


def _stepfunctions(op: str, params: Mapping[str, Any], where: str) -> list[Needed]:
    if op in _TASK_TOKEN_OPS:
        # The task-token actions support no resource type, so only Resource "*" grants them.
        # https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsstepfunctions.html
        rule = (
            f"states:{op} is not resource-scoped: only Resource '*' grants it "
            f"({STATES_ACTIONS_URL})"
        )
        return [Needed(f"states:{op}", "*", rule)]
    if op in _STATE_MACHINE_OPS:
        return [Needed(f"states:{op}", _param(params, "stateMachineArn", where), DIRECT_RULE)]
    if op in _EXECUTION_OPS:
        # https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsstepfunctions.html
        rule = f"states:{op} is authorised on the execution ARN ({STATES_ACTIONS_URL})"
        return [Needed(f"states:{op}", _param(params, "executionArn", where), rule)]
    raise Unsupported(f"{where}: stepfunctions {op} is not known to this evaluator")


def _scheduler(op: str, params: Mapping[str, Any], stack: Stack, where: str) -> list[Needed]:
    # A schedule's actions are authorised on the schedule's ARN, which names its group (the
    # account's "default" group when the request names none); CreateSchedule has the
    # dependent action iam:PassRole on the role the schedule's target runs as.
    # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoneventbridgescheduler.html
    # https://docs.aws.amazon.com/scheduler/latest/UserGuide/setting-up.html
    group = params.get("GroupName") or "default"
    if not isinstance(group, str):
        raise ValueError(f"{where}: params.GroupName must be a string, got {group!r}")
    schedule = stack.arn("scheduler", f"schedule/{group}/{_param(params, 'Name', where)}")
    rule = (
        f"scheduler:{op} is authorised on the schedule's ARN, schedule/{{group}}/{{name}} "
        f"({SCHEDULER_ACTIONS_URL})"
    )
    out = [Needed(f"scheduler:{op}", schedule, rule)]
    if op == "CreateSchedule":
        target = params.get("Target")
        if not isinstance(target, dict):
            raise ValueError(f"{where}: params.Target must be an object, got {target!r}")
        role = _param(target, "RoleArn", f"{where} Target")
        rule = (
            "CreateSchedule passes its target's role to Scheduler: iam:PassRole on that role "
            f"({SCHEDULER_SETUP_URL}; {SCHEDULER_ACTIONS_URL})"
        )
        out.append(Needed("iam:PassRole", role, rule))
    return out


def needs(call: Mapping[str, Any], stack: Stack) -> list[Needed]:
    """The IAM authorisations one recorded call requires; an unknown call raises Unsupported."""
    service, op = call.get("service"), call.get("operation")
    params = call.get("params") or {}
    where = f"{call.get('principal')}: {service} {op}"
    if not isinstance(op, str) or not isinstance(params, dict):
        raise ValueError(f"{where}: malformed call {call!r}")
    if service == "dynamodb":
        return _dynamodb(op, params, stack, where)
    if service == "stepfunctions":
        return _stepfunctions(op, params, where)
    if service == "secretsmanager" and op in _SECRET_OPS:
        secret = _param(params, "SecretId", where)
        if not secret.startswith("arn:"):
            # A secret's ARN ends in a random suffix, so a name cannot be turned into it.
            raise ValueError(f"{where}: SecretId must be the secret's ARN, got {secret!r}")
        return [Needed(f"secretsmanager:{op}", secret, DIRECT_RULE)]
    if service == "logs" and op in LOG_DELIVERY_OPS:
        # Log delivery actions support no resource type: only Resource "*" grants them.
        # https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html#cloudwatch-iam-policy
        rule = (
            f"logs:{op} is not resource-scoped: only Resource '*' grants it ({STATES_LOGGING_URL})"
        )
        return [Needed(f"logs:{op}", "*", rule)]
    if service == "s3" and op in _S3_OBJECT_OPS:
        # An object operation is authorised on the object's ARN (no region, no account);
        # HeadObject has no action of its own: s3:GetObject grants it.
        # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
        bucket, key = _param(params, "Bucket", where), _param(params, "Key", where)
        rule = (
            f"s3:{op} is authorised by {_S3_OBJECT_OPS[op]} on the object's ARN ({S3_ACTIONS_URL})"
        )
        return [Needed(_S3_OBJECT_OPS[op], f"arn:{stack.partition}:s3:::{bucket}/{key}", rule)]
    if service == "scheduler" and op in _SCHEDULE_OPS:
        return _scheduler(op, params, stack, where)
    if service == "lambda" and op == "Invoke":
        # The API operation Invoke is authorised by the IAM action lambda:InvokeFunction.
        # https://docs.aws.amazon.com/service-authorization/latest/reference/list_awslambda.html
        arn = _function_arn(_param(params, "FunctionName", where), stack)
        rule = (
            "Invoke is authorised by lambda:InvokeFunction on the function ARN "
            f"({LAMBDA_ACTIONS_URL})"
        )
        return [Needed("lambda:InvokeFunction", arn, rule)]
    raise Unsupported(f"{where}: {service} {op} is not known to this evaluator")


def configured_calls(resources: Mapping[str, Any], stack: Stack) -> list[dict[str, Any]]:
    """Calls the template's configuration makes AWS perform with a role, which no recording
    can see: a state machine that logs has Step Functions deliver its logs with its role."""
    calls: list[dict[str, Any]] = []
    for lid, res in sorted(resources.items()):
        if res.get("Type") != "AWS::StepFunctions::StateMachine" or not _exists(res, stack, lid):
            continue
        logging = (res.get("Properties") or {}).get("LoggingConfiguration") or {}
        level = resolve(logging.get("Level", "OFF"), stack, f"{lid}.LoggingConfiguration.Level")
        if level != "OFF" and logging.get("Destinations"):
            calls += [
                {"principal": lid, "service": "logs", "operation": op, "params": {}}
                for op in LOG_DELIVERY_OPS
            ]
    return calls


# --- findings and the report --------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Finding:
    kind: str  # "missing", "no-role" or "unused"
    subject: str  # the principal for "missing" and "no-role", the role for "unused"
    action: str
    resource: str
    message: str

    def __str__(self) -> str:
        return self.message


def _describe(s: Statement) -> str:
    return f"{s.label} ({', '.join(s.actions)} on {', '.join(s.resources)})"


def _missing(principal: str, call: Mapping[str, Any], role: Role, n: Needed) -> Finding:
    message = (
        f"{principal}: {call.get('service')} {call.get('operation')} needs {n.action} on "
        f"{n.resource}, which its role {role.logical_id} does not allow"
    )
    deny = denied_by(role, n.action, n.resource)
    if deny is not None:
        message += f" (explicitly denied by {_describe(deny)})"
    message += f"; rule: {n.rule}"
    return Finding("missing", principal, n.action, n.resource, message)


def _principals_of(role: Role, role_map: Mapping[str, Role]) -> list[str]:
    return sorted(p for p, r in role_map.items() if r.logical_id == role.logical_id)


def _unique_roles(role_map: Mapping[str, Role]) -> list[Role]:
    return sorted({r.logical_id: r for r in role_map.values()}.values(), key=lambda r: r.logical_id)


def _is_used(action: str, resource: str, used: Iterable[Needed]) -> bool:
    return any(
        action_matches(action, n.action) and resource_matches(resource, n.resource) for n in used
    )


def check(
    resources: Mapping[str, Any], stack: Stack, calls: Iterable[Mapping[str, Any]]
) -> list[Finding]:
    """Missing permissions, callers without a role and unused grants, sorted and deduplicated."""
    role_map = roles(resources, stack)
    findings: set[Finding] = set()
    used: dict[str, set[Needed]] = defaultdict(set)
    for call in calls:
        principal = str(call.get("principal"))
        wanted = needs(call, stack)  # first, so an unknown call raises even without a role
        role = role_map.get(principal)
        if role is None:
            what = f"{call.get('service')} {call.get('operation')}"
            message = f"{principal}: makes {what} calls, but no IAM role for it is in the template"
            findings.add(Finding("no-role", principal, what, "", message))
            continue
        for n in wanted:
            used[role.logical_id].add(n)
            if allows(role, n.action, n.resource) is None:
                findings.add(_missing(principal, call, role, n))
    for role in _unique_roles(role_map):
        principals = ", ".join(_principals_of(role, role_map))
        for s in role.statements:
            # A Kept… Sid marks a grant the template justifies beside it (reached by a test
            # this recording does not cover), so it is never reported unused.
            if s.effect != "Allow" or (s.sid or "").startswith("Kept"):
                continue
            # Each action on each resource is a grant of its own: Query on the table and
            # Query on its index are two, and either can be the one nobody needs.
            for action in s.actions:
                for resource in s.resources:
                    if _is_used(action, resource, used[role.logical_id]):
                        continue
                    message = (
                        f"{role.logical_id}: {_describe(s)} grants {action} on {resource}, "
                        f"which no recorded call of {principals} uses: a grant nobody uses"
                    )
                    findings.add(Finding("unused", role.logical_id, action, resource, message))
    return sorted(findings)


def _managed_note(arn: str) -> str:
    return MANAGED_NOTE if ":iam::aws:policy/" in arn else CUSTOMER_MANAGED_NOTE


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def report(
    resources: Mapping[str, Any], stack: Stack, calls: Iterable[Mapping[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """A least-privilege report as Markdown and as a JSON-able dict."""
    calls = list(calls)
    role_map = roles(resources, stack)
    findings = check(resources, stack, calls)
    # (principal, action, resource) -> [calls, operations]
    did: dict[tuple[str, str, str], tuple[list[int], set[str]]] = {}
    roleless: dict[str, int] = defaultdict(int)
    for call in calls:
        principal = str(call.get("principal"))
        if principal not in role_map:
            roleless[principal] += 1
            continue
        operation = f"{call.get('service')} {call.get('operation')}"
        for n in set(needs(call, stack)):
            count, ops = did.setdefault((principal, n.action, n.resource), ([0], set()))
            count[0] += 1
            ops.add(operation)

    data: dict[str, Any] = {"roles": [], "principals_without_role": [], "findings": []}
    lines = ["# IAM least-privilege report", ""]
    for role in _unique_roles(role_map):
        principals = _principals_of(role, role_map)
        statements: list[dict[str, Any]] = [
            {
                "label": s.label,
                "sid": s.sid,
                "policy": s.policy,
                "index": s.index,
                "effect": s.effect,
                "actions": list(s.actions),
                "resources": list(s.resources),
            }
            for s in role.statements
        ]
        managed = [{"arn": a, "note": _managed_note(a)} for a in role.managed_policy_arns]
        used: list[dict[str, Any]] = []
        for (principal, action, resource), (count, ops) in sorted(did.items()):
            if principal not in principals:
                continue
            grant = allows(role, action, resource)
            used.append(
                {
                    "principal": principal,
                    "action": action,
                    "resource": resource,
                    "calls": count[0],
                    "operations": sorted(ops),
                    "allowed_by": grant.label if grant else None,
                }
            )
        data["roles"].append(
            {
                "role": role.logical_id,
                "principals": principals,
                "statements": statements,
                "managed_policies": managed,
                "did": used,
            }
        )
        lines += [f"## {role.logical_id} (role of {', '.join(principals)})", "", "May do:", ""]
        lines += ["| Statement | Effect | Actions | Resources |", "|---|---|---|---|"]
        lines += [
            f"| {_cell(s['label'])} | {s['effect']} | {_cell(', '.join(s['actions']))} "
            f"| {_cell(', '.join(s['resources']))} |"
            for s in statements
        ]
        lines.append("")
        if managed:
            lines += ["Managed policies:", ""]
            lines += [f"- {m['arn']}: {m['note']}" for m in managed]
            lines.append("")
        lines += ["Did:", ""]
        if used:
            lines += [
                "| Principal | Action | Resource | Distinct requests | Operations | Allowed by |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {u['principal']} | {u['action']} | {_cell(u['resource'])} | {u['calls']} "
                f"| {_cell(', '.join(u['operations']))} "
                f"| {_cell(u['allowed_by'] or 'NOT ALLOWED')} |"
                for u in used
            ]
        else:
            lines.append("no recorded calls")
        lines.append("")
    if roleless:
        lines += ["## Principals without a role", ""]
        for principal, total in sorted(roleless.items()):
            data["principals_without_role"].append({"principal": principal, "calls": total})
            lines.append(f"- {principal}: {total} calls")
        lines.append("")
    data["findings"] = [str(f) for f in findings]
    lines += ["## Findings", ""]
    lines += [f"- {f}" for f in findings] if findings else ["none"]
    return "\n".join(lines) + "\n", data
