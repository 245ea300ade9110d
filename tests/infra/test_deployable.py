"""What only AWS would refuse at run time, read from a service synthesized in process: policies
that let the services call each other, limits that keep bursts from dead-lettering good
requests, and names that let a stack be deployed again after it was destroyed."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest

from approvals_cdk import ApprovalService, ApprovalServiceProps
from approvals_cdk.packaging import build
from tests.cdk_templates import synthesize

pytestmark = pytest.mark.xdist_group("infra")

ALICE = "alice@example.com"


def _service(props: ApprovalServiceProps, synthesizer: cdk.IStackSynthesizer | None = None) -> dict[str, Any]:
    app = cdk.App()
    stack = cdk.Stack(app, "Service", synthesizer=synthesizer)
    ApprovalService(stack, "Approvals", props)
    return synthesize(stack)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return _service(ApprovalServiceProps(approvers=[ALICE], alarm_email="oncall@example.com", asset=build()))


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


def _topic_policy(template: dict[str, Any], topic_prefix: str) -> list[dict[str, Any]]:
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in _resources(template, "AWS::SNS::TopicPolicy").values()
        if any(t["Ref"].startswith(topic_prefix) for t in p["Properties"]["Topics"])
    ]
    return list(policy)


def test_cloudwatch_of_this_account_may_publish_to_the_alarm_topic(template: dict[str, Any]) -> None:
    """The topic's policy replaces SNS's default one: without this Allow, every alarm action
    fails (seen only in the alarm's history), whatever the key policy allows."""
    (topic,) = (lid for lid in _resources(template, "AWS::SNS::Topic") if "AlarmTopic" in lid)
    allowed = [s for s in _topic_policy(template, topic) if s["Effect"] == "Allow"]
    assert allowed == [
        {
            "Sid": "CloudWatchAlarmsOfThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": {"Ref": topic},
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        }
    ]
