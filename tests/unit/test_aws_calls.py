"""What the local runtime's call recording keeps of a request: the resources it names."""

from __future__ import annotations

from machinery_core.local.aws_calls import acting, acting_as, naming_params


def test_only_the_parameters_that_name_resources_are_kept() -> None:
    # Given a transaction carrying item data besides its tables
    params = {
        "TransactItems": [
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "secret data"}}}},
            {"ConditionCheck": {"TableName": "u", "Key": {}, "ConditionExpression": "x"}},
        ],
        "ClientRequestToken": "abc",
    }
    # Then each item keeps its kind and table, nothing else
    assert naming_params(params) == {
        "TransactItems": [{"Put": {"TableName": "t"}}, {"ConditionCheck": {"TableName": "u"}}]
    }


def test_a_query_keeps_its_table_and_index_and_a_batch_its_tables() -> None:
    query = {"TableName": "t", "IndexName": "GSI1", "KeyConditionExpression": "#p = :p"}
    batch = {"RequestItems": {"t": {"Keys": [{"pk": {"S": "a"}}]}, "u": {"Keys": []}}}
    assert naming_params(query) == {"TableName": "t", "IndexName": "GSI1"}
    assert naming_params(batch) == {"RequestItems": {"t": {}, "u": {}}}


def test_acting_as_names_the_principal_only_inside() -> None:
    assert acting() is None
    with acting_as("StepFunction"):
        assert acting() == "StepFunction"
        with acting_as("ApiFunction"):
            assert acting() == "ApiFunction"
        assert acting() == "StepFunction"
    assert acting() is None


def test_a_schedule_keeps_its_name_group_and_what_its_target_starts_as_whom() -> None:
    # Given a CreateSchedule carrying the execution input (an event's plan) in its target
    params = {
        "Name": "evt-1-callback-1",
        "GroupName": "machinery-timers",
        "ScheduleExpression": "at(2026-12-04T11:00:00)",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": "arn:aws:states:us-east-1:1:stateMachine:m",
            "RoleArn": "arn:aws:iam::1:role/r",
            "Input": '{"event_id": "evt-1", "plan": {"secret": "headers"}}',
            "RetryPolicy": {"MaximumRetryAttempts": 185},
        },
    }
    # Then the name, the group, and the target's state machine and role are kept, not its input
    assert naming_params(params) == {
        "Name": "evt-1-callback-1",
        "GroupName": "machinery-timers",
        "Target": {
            "Arn": "arn:aws:states:us-east-1:1:stateMachine:m",
            "RoleArn": "arn:aws:iam::1:role/r",
        },
    }
