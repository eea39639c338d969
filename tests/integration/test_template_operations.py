"""template.yaml's alarms and dashboard (issue 13): they name the metrics the code publishes
(machinery_core/contract.py's METRICS, each under one of its dimension sets), the stack's own
functions, state machine and API, and notify the AlarmTopicArn parameter's topic if one is
given; the dashboard's body is JSON once CloudFormation has substituted it."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from integration_kit import TEMPLATE
from sam_kit import deployed

from machinery_core.contract import METRICS, METRICS_NAMESPACE, METRICS_SERVICE
from machinery_core.local.template import Template

ALARM = "AWS::CloudWatch::Alarm"
DASHBOARD = "OperationsDashboard"
TOPIC = "arn:aws:sns:us-east-1:123456789012:machinery-ops"
NOTIFY_THE_TOPIC = {
    "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
}
PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::StackName": "ops"}
# The `service` dimension is the stack (POWERTOOLS_SERVICE_NAME): in the template, its Ref; in
# the dashboard's body once substituted, the stack's name.
STACK = {"Ref": "AWS::StackName"}
DEPLOYMENT = PSEUDO["AWS::StackName"]
# What each AWS metric the alarms and the dashboard use is measured on: the dimension and the
# template resource (its type) whose Ref is that dimension's value.
AWS_DIMENSIONS = {
    "AWS/Lambda": ("FunctionName", "AWS::Serverless::Function"),
    "AWS/States": ("StateMachineArn", "AWS::Serverless::StateMachine"),
    "AWS/ApiGateway": ("ApiId", "AWS::Serverless::HttpApi"),
}
PERCENTILE = re.compile(r"p\d{1,2}(\.\d+)?")
SEARCH = re.compile(
    r"SEARCH\('\s*\{(?P<schema>[^}]*)\}(?P<terms>[^']*)',\s*'(?P<stat>[^']+)'(?:,\s*\d+)?\)"
)


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(TEMPLATE)


def _alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template.resources.items()
        if resource["Type"] == ALARM
    }


def _statistic_fits(unit: str, stat: str) -> bool:
    """A count is added up; a duration is averaged, bounded or taken at a percentile."""
    if unit == "Count":
        return stat == "Sum"
    return stat in {"Average", "Minimum", "Maximum"} or PERCENTILE.fullmatch(stat) is not None


def _contract_problems(metric: str, dimensions: dict[str, str | None], stat: str) -> list[str]:
    """What is wrong with a Machinery metric as a graph or an alarm names it (a dimension's
    value None: any, as a SEARCH takes it)."""
    spec = METRICS.get(metric)
    if spec is None:
        return [f"{metric} is not in contract.METRICS"]
    problems = []
    if tuple(sorted(dimensions)) not in {tuple(sorted(s)) for s in spec.dimension_sets}:
        problems.append(f"{metric} is not recorded under {sorted(dimensions)}")
    if dimensions.get("service") not in (STACK, DEPLOYMENT, None):
        problems.append(f"{metric}: service={dimensions.get('service')!r}")
    if not _statistic_fits(spec.unit, stat):
        problems.append(f"{metric} ({spec.unit}) as {stat}")
    return problems


# --- the dashboard's body, as CloudFormation makes it ---------------------------------------


def _sub_variables(text: str) -> set[str]:
    """The ${...} that Fn::Sub replaces (not the ${!...} it leaves as literal ${...})."""
    return {name for name in re.findall(r"\$\{([^}]*)\}", text) if not name.startswith("!")}


def _sample(name: str) -> str:
    """A value a deploy could give ${name}: a pseudo parameter, a Ref or a GetAtt."""
    if name in PSEUDO:
        return PSEUDO[name]
    if name.endswith(".Arn"):
        return f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:ops-{name[:-4]}"
    return {
        "StateMachine": "arn:aws:states:us-east-1:123456789012:stateMachine:ops-StateMachine",
        "HttpApi": "a1b2c3d4e5",
    }.get(name, f"ops-{name}-AbCdEf123456")


def _substituted(text: str) -> str:
    """Fn::Sub's one-string form: ${name} replaced, ${!literal} written ${literal}."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return "${" + name[1:] + "}" if name.startswith("!") else _sample(name)

    return re.sub(r"\$\{([^}]*)\}", replace, text)


def _dashboard_body(template: Template) -> dict[str, Any]:
    body = template.resources[DASHBOARD]["Properties"]["DashboardBody"]
    assert set(body) == {"Fn::Sub"} and isinstance(body["Fn::Sub"], str), body
    document: dict[str, Any] = json.loads(_substituted(body["Fn::Sub"]))
    return document


@dataclass(frozen=True)
class Graphed:
    """One metric a widget graphs, or one SEARCH (its dimensions' values None)."""

    widget: str
    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str | None], ...]
    stat: str

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return tuple(sorted(name for name, _ in self.dimensions))


def _graphed(body: dict[str, Any]) -> Iterator[Graphed]:
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        properties = widget["properties"]
        title = properties.get("title", "?")
        for row in properties["metrics"]:
            yield _graphed_row(title, row, properties.get("stat", "Average"))


def _graphed_row(title: str, row: list[Any], default_stat: str) -> Graphed:
    if isinstance(row[0], dict):
        [expression] = row
        match = SEARCH.fullmatch(expression["expression"])
        assert match, f"{title}: not a SEARCH: {expression['expression']}"
        namespace, *names = [part.strip().strip('"') for part in match["schema"].split(",")]
        terms = dict(re.findall(r'(\w+)="([^"]*)"', match["terms"]))
        dimensions = {name: terms.get(name) for name in names}
        return Graphed(
            title,
            namespace,
            terms["MetricName"],
            tuple(sorted(dimensions.items())),
            match["stat"],
        )
    options = row[-1] if isinstance(row[-1], dict) else {}
    names = row[: -1 if options else None]
    assert "." not in names, f"{title}: spell each metric out: {row}"
    namespace, metric, *pairs = names
    dimensions = dict(zip(pairs[::2], pairs[1::2], strict=True))
    stat = options.get("stat", default_stat)
    return Graphed(title, namespace, metric, tuple(sorted(dimensions.items())), stat)


def _graphs(
    body: dict[str, Any], namespace: str, metric: str, **dimensions: str | None
) -> set[str]:
    """The statistics that some widget graphs `metric` with exactly these dimensions."""
    wanted = tuple(sorted(dimensions.items()))
    return {
        g.stat
        for g in _graphed(body)
        if (g.namespace, g.metric, g.dimensions) == (namespace, metric, wanted)
    }


# --- parameters and conditions ---------------------------------------------------------------


def test_the_alarm_parameters_have_the_documented_defaults(template: Template) -> None:
    # Given the stack's parameters and conditions
    parameters = template.document["Parameters"]
    conditions = template.document["Conditions"]

    # Then the topic is optional: empty by default, which the condition reads as "no topic"
    topic = parameters["AlarmTopicArn"]
    assert (topic["Type"], topic["Default"]) == ("String", "")
    assert conditions["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }
    # and takes nothing but an SNS topic's ARN
    pattern = re.compile(topic["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch(TOPIC)
    assert pattern.fullmatch("arn:aws-us-gov:sns:us-gov-west-1:123456789012:ops_alarms")
    for wrong in ("ops", "arn:aws:sqs:us-east-1:123456789012:ops", f"{TOPIC} "):
        assert not pattern.fullmatch(wrong), wrong
    # the failed-events alarm fires on the first failed event of a period, by default
    threshold = parameters["FailedEventsAlarmThreshold"]
    assert (threshold["Type"], threshold["Default"], threshold["MinValue"]) == ("Number", 1, 1)
    # and the period is one CloudWatch alarms take, five minutes by default
    period = parameters["AlarmPeriodSeconds"]
    assert (period["Type"], period["Default"]) == ("Number", 300)
    assert period["AllowedValues"] == [60, 300, 900, 3600]
    for name in ("AlarmTopicArn", "FailedEventsAlarmThreshold", "AlarmPeriodSeconds"):
        assert parameters[name]["Description"], name


def test_the_functions_publish_the_metrics_the_alarms_and_the_dashboard_read(
    template: Template,
) -> None:
    # Given the functions' environment (powertools' Metrics reads its namespace and service)
    environment = template.document["Globals"]["Function"]["Environment"]["Variables"]

    # Then they publish into the contract's namespace, their service dimension the stack's
    # name (runtime/observability.py reads it; "machinery" only where it is not set)
    assert environment["POWERTOOLS_METRICS_NAMESPACE"] == METRICS_NAMESPACE
    assert environment["POWERTOOLS_SERVICE_NAME"] == STACK
    assert METRICS_SERVICE == "machinery"


# --- the alarms ------------------------------------------------------------------------------


def test_every_alarm_notifies_the_topic_only_when_one_is_given(template: Template) -> None:
    # Given every alarm of the template
    alarms = _alarms(template)
    assert len(alarms) >= 8

    for name, alarm in alarms.items():
        # Then it notifies the AlarmTopicArn topic when it fires and when it is OK again, and
        # has no actions at all when the parameter is empty
        assert alarm["AlarmActions"] == NOTIFY_THE_TOPIC, name
        assert alarm["OKActions"] == NOTIFY_THE_TOPIC, name
        assert "InsufficientDataActions" not in alarm, name
        # over the AlarmPeriodSeconds period, a period without data being "nothing happened"
        assert alarm["Period"] == {"Ref": "AlarmPeriodSeconds"}, name
        assert alarm["TreatMissingData"] == "notBreaching", name
        # and it says what it watches and where to look first, named after its stack
        assert "First look at" in alarm["AlarmDescription"], name
        assert len(alarm["AlarmDescription"]) <= 1024, name
        assert alarm["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), name


def test_every_alarm_on_a_machinery_metric_is_one_the_contract_declares(
    template: Template,
) -> None:
    # Given the alarms on the Machinery metrics
    on_machinery = {
        name: alarm
        for name, alarm in _alarms(template).items()
        if alarm.get("Namespace") == METRICS_NAMESPACE
    }
    assert on_machinery, "no alarm on a Machinery metric"

    for name, alarm in on_machinery.items():
        # Then each names a metric of the contract, under one of its dimension sets with the
        # deployment's service, with a statistic that fits its unit
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert len(dimensions) == len(alarm["Dimensions"]), name
        assert dimensions.get("service") == STACK, name
        assert _contract_problems(alarm["MetricName"], dimensions, alarm["Statistic"]) == []
        assert "Metrics" not in alarm and "ExtendedStatistic" not in alarm, name


def test_the_failed_events_alarm_counts_every_failed_event_against_the_threshold(
    template: Template,
) -> None:
    # Given the failed-events alarm
    alarm = template.resources["FailedEventsAlarm"]["Properties"]

    # Then it adds up the deployment's failed events (all workflows) over one period
    assert (alarm["Namespace"], alarm["MetricName"]) == (METRICS_NAMESPACE, "EventsFailed")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": STACK}]
    assert (alarm["Statistic"], alarm["EvaluationPeriods"]) == ("Sum", 1)
    # and fires when they reach the threshold parameter
    assert alarm["Threshold"] == {"Ref": "FailedEventsAlarmThreshold"}
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_the_alarms_watch_the_stacks_own_functions_state_machine_and_api(
    template: Template,
) -> None:
    # Given what each alarm on an AWS metric watches
    watched: dict[tuple[str, str, str], str] = {}
    for name, alarm in _alarms(template).items():
        namespace = alarm["Namespace"]
        if namespace == METRICS_NAMESPACE:
            continue
        dimension, kind = AWS_DIMENSIONS[namespace]
        [only] = alarm["Dimensions"]
        # Then each names its resource by a Ref to the template's resource of that type
        assert only["Name"] == dimension, name
        target = only["Value"]["Ref"]
        assert template.resources[target]["Type"] == kind, name
        watched[(namespace, alarm["MetricName"], target)] = name

    # and together they watch both functions' errors and throttles, the API's 5xx, and the
    # state machine's failed, timed-out and throttled executions
    expected = {
        ("AWS/Lambda", metric, function)
        for metric in ("Errors", "Throttles")
        for function in ("ApiFunction", "StepFunction")
    }
    expected |= {("AWS/ApiGateway", "5xx", "HttpApi")}
    expected |= {
        ("AWS/States", metric, "StateMachine")
        for metric in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionThrottled")
    }
    assert set(watched) == expected
    # (StateMachine is the SAM state machine; its Ref is the state machine's ARN)
    assert template.resources["StateMachine"]["Properties"]["Name"] == {
        "Fn::Sub": "${AWS::StackName}-StateMachine"
    }


def test_the_execution_failure_alarm_shares_the_failed_events_threshold(
    template: Template,
) -> None:
    # Given the alarm on failed executions: every FAILED event's execution ends in the Fail
    # state, so it counts the failed events too
    alarm = template.resources["StateMachineExecutionsFailedAlarm"]["Properties"]
    states = json.loads(template.asl())["States"]
    assert states["Failed"]["Type"] == "Fail"

    # Then it does not fire on fewer of them than the failed-events alarm does
    assert alarm["Threshold"] == {"Ref": "FailedEventsAlarmThreshold"}
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert "EventFailed" in alarm["AlarmDescription"]


def test_only_lasting_step_function_errors_alarm(template: Template) -> None:
    # Given the step function's errors alarm: the state machine retries the errors it raises
    # by design (a refused notification, contention, throttling)
    alarm = template.resources["StepFunctionErrorsAlarm"]["Properties"]
    retried = {
        error
        for retrier in json.loads(template.asl())["States"]["Notify"]["Retry"]
        for error in retrier["ErrorEquals"]
    }
    assert "NotificationFailed" in retried

    # Then it fires on errors in several periods in a row, where the API's fires on any
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] >= 3
    api = template.resources["ApiFunctionErrorsAlarm"]["Properties"]
    assert api["EvaluationPeriods"] == 1 and "DatapointsToAlarm" not in api
    assert api["Threshold"] == alarm["Threshold"] == 1


# --- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_body_is_json_once_substituted(template: Template) -> None:
    # Given the dashboard's body, a !Sub
    dashboard = template.resources[DASHBOARD]["Properties"]
    text = dashboard["DashboardBody"]["Fn::Sub"]

    # Then each ${name} it substitutes is a pseudo parameter or a resource of the template
    for name in _sub_variables(text):
        resource = name.split(".")[0]
        assert name in PSEUDO or resource in template.resources, name
    # and the rest (the dynamic labels) is escaped: nothing else looks like a substitution
    assert re.findall(r"\$\{!(\w+)", text) and set(re.findall(r"\$\{!(\w+)", text)) == {"PROP"}
    # and, substituted, it is a dashboard body: widgets on the 24-column grid, none overlapping
    body = _dashboard_body(template)
    cells: dict[tuple[int, int], str] = {}
    for widget in body["widgets"]:
        assert widget["type"] in {"metric", "alarm", "text"}
        assert 0 <= widget["x"] and widget["x"] + widget["width"] <= 24
        for column in range(widget["x"], widget["x"] + widget["width"]):
            for row in range(widget["y"], widget["y"] + widget["height"]):
                title = widget["properties"].get("title", "?")
                assert (column, row) not in cells, f"{title} overlaps {cells[column, row]}"
                cells[column, row] = title
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == PSEUDO["AWS::Region"]
    # named after the stack
    assert dashboard["DashboardName"] == {"Fn::Sub": "${AWS::StackName}-machinery"}


def test_the_dashboard_graphs_only_metrics_of_the_contract(template: Template) -> None:
    # Given every metric and SEARCH the dashboard graphs in the Machinery namespace
    graphed = [g for g in _graphed(_dashboard_body(template)) if g.namespace == METRICS_NAMESPACE]
    assert graphed

    # Then each is a metric of the contract, under one of its dimension sets, with the
    # deployment's service and a statistic that fits its unit
    problems = [
        f"{g.widget}: {problem}"
        for g in graphed
        for problem in _contract_problems(g.metric, dict(g.dimensions), g.stat)
    ]
    assert problems == []
    # and each keeps to this deployment's service: a SEARCH too (its terms name the value)
    assert {dict(g.dimensions)["service"] for g in graphed} == {DEPLOYMENT}


def test_the_dashboard_has_each_graph_the_issue_asks_for(template: Template) -> None:
    # Given what the dashboard graphs
    body = _dashboard_body(template)
    per_workflow = {"service": DEPLOYMENT, "workflow": None}
    per_service = {"service": DEPLOYMENT, "service_name": None}
    m = METRICS_NAMESPACE

    # Then events by status per workflow, and the deployment's failed events
    for status in ("EventsAccepted", "EventsSucceeded", "EventsFailed", "EventsCancelled"):
        assert _graphs(body, m, status, **per_workflow) == {"Sum"}, status
    assert _graphs(body, m, "EventsFailed", service=DEPLOYMENT) == {"Sum"}
    # p50 and p99 of each called service's latency, and its failures by error type
    assert {"p50", "p99"} <= _graphs(body, m, "ServiceCallLatency", **per_service)
    by_type = {**per_service, "error_type": None}
    assert _graphs(body, m, "ServiceCallFailures", **by_type) == {"Sum"}
    # p50 and p99 of each workflow's event duration
    assert {"p50", "p99"} <= _graphs(body, m, "EventDuration", **per_workflow)
    # the notifications delivered and failed
    assert _graphs(body, m, "NotificationsDelivered", **per_workflow) == {"Sum"}
    assert _graphs(body, m, "NotificationsFailed", **per_workflow) == {"Sum"}
    # both functions' errors and throttles, and the step function's duration
    for function in ("ApiFunction", "StepFunction"):
        name = _sample(function)
        for metric in ("Errors", "Throttles"):
            assert _graphs(body, "AWS/Lambda", metric, FunctionName=name) == {"Sum"}
    duration = _graphs(body, "AWS/Lambda", "Duration", FunctionName=_sample("StepFunction"))
    assert {"p50", "p99"} <= duration
    # the state machine's executions, as they start and end
    arn = _sample("StateMachine")
    for metric in (
        "ExecutionsStarted",
        "ExecutionsSucceeded",
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "ExecutionThrottled",
    ):
        assert _graphs(body, "AWS/States", metric, StateMachineArn=arn) == {"Sum"}, metric
    # and the API's 5xx, which the back-pressure alarm watches
    assert _graphs(body, "AWS/ApiGateway", "5xx", ApiId=_sample("HttpApi")) == {"Sum"}


@pytest.mark.parametrize("metric", ["EventsFailed", "ServiceCallLatency"])
def test_the_metrics_the_issue_names_are_on_the_dashboard(template: Template, metric: str) -> None:
    # Given a metric of the contract that the issue names
    assert metric in METRICS

    # Then the dashboard graphs it
    graphed = {g.metric for g in _graphed(_dashboard_body(template))}
    assert metric in graphed, f"the dashboard no longer graphs {metric}"


def test_a_dashboard_without_a_metric_is_caught(template: Template) -> None:
    # Given the dashboard without the widgets that graph ServiceCallLatency
    body = _dashboard_body(template)
    trimmed = copy.deepcopy(body)
    trimmed["widgets"] = [
        w for w in body["widgets"] if "ServiceCallLatency" not in json.dumps(w["properties"])
    ]

    # Then the check above would fail (it reads the widgets, not the text at large)
    assert "ServiceCallLatency" in {g.metric for g in _graphed(body)}
    assert "ServiceCallLatency" not in {g.metric for g in _graphed(trimmed)}
    assert len(trimmed["widgets"]) < len(body["widgets"])


def test_the_dashboard_shows_every_alarm_and_its_url_is_an_output(template: Template) -> None:
    # Given the dashboard's alarm widget and the stack's outputs
    body = _dashboard_body(template)
    [widget] = [w for w in body["widgets"] if w["type"] == "alarm"]
    outputs = template.document["Outputs"]

    # Then the widget shows the state of every alarm of the stack
    assert sorted(widget["properties"]["alarms"]) == sorted(
        _sample(f"{name}.Arn") for name in _alarms(template)
    )
    # and the stack's outputs give the dashboard's address in the console
    url = outputs["DashboardUrl"]["Value"]["Fn::Sub"]
    assert url == (
        "https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home?region=${AWS::Region}"
        f"#dashboards:name=${{{DASHBOARD}}}"
    )


def test_the_local_runtime_still_reads_the_template(template: Template) -> None:
    # Given the template with its alarms and dashboard, as the local runtime reads it
    # Then it finds the one table, bucket and state machine, and the two functions
    assert template.resource_of_type("AWS::DynamoDB::Table")[0] == "Table"
    assert template.resource_of_type("AWS::S3::Bucket")[0] == "PayloadBucket"
    assert template.state_machine()[0] == "StateMachine"
    assert set(template.functions()) == {"ApiFunction", "StepFunction"}
    assert template.resource_of_type("AWS::CloudWatch::Dashboard")[0] == DASHBOARD


# --- as a deploy makes it --------------------------------------------------------------------


def _references(value: Any) -> Iterator[str]:
    """The logical IDs a transformed resource's properties refer to."""
    if isinstance(value, dict):
        for key, argument in value.items():
            if key == "Ref" and isinstance(argument, str):
                yield argument
            elif key == "Fn::GetAtt":
                yield argument[0] if isinstance(argument, list) else argument.split(".")[0]
            elif key == "Fn::Sub":
                text = argument[0] if isinstance(argument, list) else argument
                yield from (name.split(".")[0] for name in _sub_variables(text))
                if isinstance(argument, list):
                    yield from _references(argument[1])
            else:
                yield from _references(argument)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, str):  # the local expansion leaves some Fn::Sub as plain strings
        yield from (name.split(".")[0] for name in _sub_variables(value))


def _dependencies(resource: dict[str, Any]) -> set[str]:
    depends_on = resource.get("DependsOn", [])
    explicit = [depends_on] if isinstance(depends_on, str) else depends_on
    return set(_references(resource.get("Properties", {}))) | set(explicit)


@pytest.mark.sam
def test_a_deploy_wires_the_alarms_to_the_stacks_resources_and_the_topic() -> None:
    # Given the template transformed as a deploy would, without and with a topic
    stacks = deployed({"quiet": {}, "notifying": {"AlarmTopicArn": TOPIC}})

    for case, resources in stacks.items():
        alarms = {n: r["Properties"] for n, r in resources.items() if r["Type"] == ALARM}
        assert len(alarms) >= 8
        for name, alarm in alarms.items():
            # Then each alarm on an AWS metric names the resource SAM made of the function,
            # the state machine or the API
            for dimension in alarm["Dimensions"]:
                if isinstance(dimension["Value"], dict):
                    target = resources[dimension["Value"]["Ref"]]["Type"]
                    expected = {
                        "FunctionName": "AWS::Lambda::Function",
                        "StateMachineArn": "AWS::StepFunctions::StateMachine",
                        "ApiId": "AWS::ApiGatewayV2::Api",
                    }[dimension["Name"]]
                    assert target == expected, name
            # and notifies the topic when one is given, no one otherwise
            actions = [TOPIC] if case == "notifying" else None
            assert alarm.get("AlarmActions") == actions, (case, name)
            assert alarm.get("OKActions") == actions, (case, name)

        # and nothing but the dashboard refers to an alarm or to the dashboard: what the
        # functions and the state machine depend on cannot come to depend on them (a cycle)
        watchers = set(alarms) | {DASHBOARD}
        referring = {
            name: sorted(_dependencies(resource) & watchers)
            for name, resource in resources.items()
            if name != DASHBOARD and _dependencies(resource) & watchers
        }
        assert referring == {}, case
        assert resources[DASHBOARD]["Type"] == "AWS::CloudWatch::Dashboard"
