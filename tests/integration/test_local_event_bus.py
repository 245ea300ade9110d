"""A template with an event bus of its own (a service shared with other accounts:
``allowed_accounts``) deploys on the local stack's CloudFormation: moto resolves a ``Ref`` to
an event bus to the bus object, which a rule on that bus cannot take; CloudFormation's
``Ref`` is the bus's name."""

from __future__ import annotations

import json

import boto3
import moto

from approvals.local import cloudformation

TEMPLATE = {
    "Resources": {
        "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "execution-events"}},
        "Ended": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "EventBusName": {"Ref": "Bus"},
                "EventPattern": {"source": ["aws.states"], "account": ["222222222222"]},
                "State": "ENABLED",
            },
        },
    },
    "Outputs": {"BusName": {"Value": {"Ref": "Bus"}}},
}


def test_a_rule_on_the_templates_own_event_bus_is_created_on_that_bus() -> None:
    cloudformation.apply()
    with moto.mock_aws():
        region = "us-east-1"
        stacks = boto3.client("cloudformation", region_name=region)
        stacks.create_stack(StackName="shared", TemplateBody=json.dumps(TEMPLATE))
        (stack,) = stacks.describe_stacks(StackName="shared")["Stacks"]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        assert stack["Outputs"][0]["OutputValue"] == "execution-events"
        rules = boto3.client("events", region_name=region).list_rules(EventBusName="execution-events")[
            "Rules"
        ]
        assert [json.loads(rule["EventPattern"])["account"] for rule in rules] == [["222222222222"]]
