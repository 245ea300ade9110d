"""examples/shared_service, synthesized: one service shared by a stack of its account (by its
exports) and by a workflow of another account (by its ARNs), with every policy that lets them
send and cancel pinned."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest

from approvals_cdk.packaging import build
from examples.shared_service.app import (
    EXAMPLE_EVENT_BUS_ARN,
    EXAMPLE_QUEUE_ARN,
    PARTNER_ACCOUNT,
    PAYMENTS_ROLE_NAME,
    SERVICE_ACCOUNT,
    SERVICE_STACK,
)
from examples.shared_service.app import build as build_app
from tests.cdk_templates import request_queue, role_statements, state_machine_definition, synthesize
from tests.infra.lookup import CONFIRMATION_CONDITIONS

pytestmark = pytest.mark.xdist_group("infra")


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    build()
    return {name: synthesize(stack) for name, stack in build_app(cdk.App()).items()}


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


def root(account: str) -> dict[str, Any]:
    return {"AWS": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":iam::{account}:root"]]}}


def request_queue_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    queue = request_queue(template)
    (policy,) = (
        r
        for r in of_type(template, "AWS::SQS::QueuePolicy").values()
        if r["Properties"]["Queues"] == [{"Ref": queue}]
    )
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_the_service_lets_the_payments_role_by_name_and_the_partner_account_send(
    templates: dict[str, dict[str, Any]],
) -> None:
    service = templates["service"]
    queue_arn = {"Fn::GetAtt": [request_queue(service), "Arn"]}
    machine_roles = sorted(
        lid for lid, r in of_type(service, "AWS::IAM::Role").items() if "StateMachineRole" in lid
    )
    tls, deny, allow = request_queue_statements(service)
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny == {
        "Sid": "OnlySendMessageByTheseRoles",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {
            "ArnNotEquals": {
                "aws:PrincipalArn": [
                    *({"Fn::GetAtt": [role, "Arn"]} for role in machine_roles),
                    # By name: the service's stack refers to nothing of the Payments stack.
                    {
                        "Fn::Join": [
                            "",
                            [
                                "arn:",
                                {"Ref": "AWS::Partition"},
                                f":iam::{SERVICE_ACCOUNT}:role/{PAYMENTS_ROLE_NAME}",
                            ],
                        ]
                    },
                ]
            },
            # The partner account's principals, as far as their own account's policies allow.
            "StringNotEquals": {"aws:PrincipalAccount": [PARTNER_ACCOUNT]},
        },
    }
    assert allow == {
        "Sid": "SendMessageFromAllowedAccounts",
        "Effect": "Allow",
        "Principal": root(PARTNER_ACCOUNT),
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
    }
    assert "Fn::ImportValue" not in str(service)  # no reference to a consumer: no cycle


def test_the_service_queue_has_no_kms_key_to_share(templates: dict[str, dict[str, Any]]) -> None:
    """SSE-SQS: another account sends without any grant on a key (no key policy to keep)."""
    queue = of_type(templates["service"], "AWS::SQS::Queue")[request_queue(templates["service"])]
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert "KmsMasterKeyId" not in queue["Properties"]


def test_only_the_partner_account_puts_events_on_the_bus_whose_rule_cancels_its_executions(
    templates: dict[str, dict[str, Any]],
) -> None:
    service = templates["service"]
    ((bus, _),) = of_type(service, "AWS::Events::EventBus").items()
    ((_, policy),) = of_type(service, "AWS::Events::EventBusPolicy").items()
    assert policy["Properties"]["EventBusName"] == {"Ref": bus}
    assert policy["Properties"]["Statement"] == {
        "Sid": "cdk-PutEventsFromAllowedAccounts",
        "Effect": "Allow",
        "Principal": root(PARTNER_ACCOUNT),
        "Action": "events:PutEvents",
        "Resource": {"Fn::GetAtt": [bus, "Arn"]},
    }
    rules = [r["Properties"] for r in of_type(service, "AWS::Events::Rule").values()]
    (on_bus,) = (rule for rule in rules if rule.get("EventBusName") == {"Ref": bus})
    (on_default,) = (rule for rule in rules if "EventBusName" not in rule)
    assert on_bus["EventPattern"]["account"] == [PARTNER_ACCOUNT]
    assert on_bus["EventPattern"]["source"] == ["aws.states"]
    assert on_bus["Targets"][0]["Arn"] == on_default["Targets"][0]["Arn"]  # the one execution-ended function
    # The account's own executions: every state machine of the account (the shared service).
    assert set(on_default["EventPattern"]["detail"]) == {"status"}
    outputs = service["Outputs"]
    assert {
        name: outputs[name]["Export"]["Name"] for name in ("QueueArn", "TableArn", "ExecutionEventsBusArn")
    } == {name: f"{SERVICE_STACK}-{name}" for name in ("QueueArn", "TableArn", "ExecutionEventsBusArn")}
    assert outputs["ExecutionEventsBusArn"]["Value"] == {"Fn::GetAtt": [bus, "Arn"]}


def test_payments_sends_by_the_exports_and_confirms(templates: dict[str, dict[str, Any]]) -> None:
    payments = templates["payments"]
    (role,) = of_type(payments, "AWS::IAM::Role").values()
    assert role["Properties"]["RoleName"] == PAYMENTS_ROLE_NAME
    queue_arn = {"Fn::ImportValue": f"{SERVICE_STACK}-QueueArn"}
    send, confirm = role_statements(payments, "WorkflowRole")
    assert send == {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": queue_arn}
    assert confirm["Action"] == "dynamodb:UpdateItem"
    assert confirm["Condition"] == CONFIRMATION_CONDITIONS
    assert json.dumps({"Fn::ImportValue": f"{SERVICE_STACK}-TableArn"}) in json.dumps(confirm["Resource"])


def test_the_partner_sends_by_the_arn_and_forwards_its_executions_ends(
    templates: dict[str, dict[str, Any]],
) -> None:
    partner = templates["partner"]
    (machine,) = of_type(partner, "AWS::StepFunctions::StateMachine")
    assert role_statements(partner, "RefundsRole") == [
        {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": EXAMPLE_QUEUE_ARN}
    ]
    states = state_machine_definition(partner, "Refunds", {"AWS::URLSuffix": "amazonaws.com"})["States"]
    assert "ConfirmApproval" not in states  # the table is not shared across accounts
    queue_url = states["PaymentApproval"]["Parameters"]["QueueUrl"]
    assert (
        queue_url
        == f"https://sqs.eu-west-1.amazonaws.com/{SERVICE_ACCOUNT}/{EXAMPLE_QUEUE_ARN.split(':')[-1]}"
    )
    ((_, rule),) = of_type(partner, "AWS::Events::Rule").items()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail"] == {
        "status": ["FAILED", "TIMED_OUT", "ABORTED"],
        "stateMachineArn": [{"Ref": machine}],
    }
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == EXAMPLE_EVENT_BUS_ARN
    assert target["RoleArn"]["Fn::GetAtt"][0].startswith("ForwardToApprovalsRuleEventsRole")
    assert role_statements(partner, "ForwardToApprovalsRuleEventsRole") == [
        {"Action": "events:PutEvents", "Effect": "Allow", "Resource": EXAMPLE_EVENT_BUS_ARN}
    ]
