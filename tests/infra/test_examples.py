"""The two example apps under examples/, synthesized: what each state machine may do, and the
definitions they produce."""

from __future__ import annotations

from typing import Any

import pytest

from examples.deploy_gate.app import RELEASE_MANAGERS
from examples.refund_batch.app import FINANCE
from tests.cdk_templates import (
    examples_templates,
    queue_senders,
    request_queue,
    role_arn,
    role_statements,
    state_machine_definition,
)
from tests.infra.lookup import CONFIRMATION_CONDITIONS

pytestmark = pytest.mark.xdist_group("infra")

REFS = {"ApprovalsRequestQueue": "QUEUE", "ApprovalsTable": "TABLE", "ApprovalsFanoutBucket": "BUCKET"}


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return examples_templates(tmp_path_factory)  # shared with tests/e2e/test_examples.py


def test_deploy_gate_asks_both_release_managers_with_title_and_details_from_the_input(
    templates: dict[str, dict[str, Any]],
) -> None:
    states = state_machine_definition(templates["deploy"], "Pipeline", REFS)["States"]
    task = states["ReleaseApproval"]
    body = task["Parameters"]["MessageBody"]
    assert body["request"] == {
        "approvers": list(RELEASE_MANAGERS),
        "policy": "all",
        "title.$": "$.title",
        "details.$": "$.release",
        "requester": "deploy-pipeline",
    }
    assert task["TimeoutSeconds"] == body["timeout_seconds"] == 4 * 3600
    assert task["ResultPath"] == "$.approval"
    # The workflow tells the service it has the decision (unless the service confirmed it
    # itself, as a bulk vote does), then branches on it.
    assert task["Next"] == "ConfirmApprovalNeeded"
    needed = states["ConfirmApprovalNeeded"]
    assert needed["Choices"][0]["Next"] == "ConfirmApproval"
    assert needed["Default"] == "ConfirmApprovalByService"
    confirm = states["ConfirmApproval"]
    assert confirm["Parameters"]["Key"] == {"approval_id": {"S.$": "$.approval.approval_id"}}
    assert (
        confirm["Next"]
        == states["ConfirmApprovalLeftToSweep"]["Next"]
        == states["ConfirmApprovalByService"]["Next"]
        == "Approved?"
    )
    choice = states["Approved?"]
    assert choice["Choices"] == [
        {"Variable": "$.approval.outcome", "StringEquals": "approved", "Next": "Deploy"}
    ]
    assert states[choice["Default"]] == {
        "Type": "Fail",
        "Error": "Deploy.Rejected",
        "Cause": "A release manager rejected it",
    }
    assert {tuple(c["ErrorEquals"]): c["Next"] for c in task["Catch"]} == {
        ("States.Timeout", "Approval.Expired"): "NotApproved",
        ("Approval.InvalidRequest", "Approval.DeliveryFailed"): "CouldNotAsk",
    }


def test_deploy_gate_may_only_send_to_the_request_queue_and_confirm(
    templates: dict[str, dict[str, Any]],
) -> None:
    template = templates["deploy"]
    (table,) = (lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table")
    assert role_statements(template, "PipelineRole") == [
        {
            "Action": "sqs:SendMessage",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [request_queue(template), "Arn"]},
        },
        {
            "Action": "dynamodb:UpdateItem",
            "Condition": CONFIRMATION_CONDITIONS,
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [table, "Arn"]},
        },
    ]


def test_refund_batch_asks_every_refund_at_once_in_standard_child_executions(
    templates: dict[str, dict[str, Any]],
) -> None:
    definition = state_machine_definition(templates["refunds"], "Refunds", REFS)
    each = definition["States"]["EachRefund"]
    assert each["Type"] == "Map"
    assert each["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert each["MaxConcurrency"] == 1_000
    assert each["ItemsPath"] == "$.refunds"
    assert each["ItemSelector"] == {"refund.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"}
    assert "Catch" not in each  # the items end in results of their own: the batch never fails
    # The results go to S3 and replace the state: nothing in it grows with the refunds.
    assert each["ResultWriter"]["Parameters"]["Prefix"] == "fanout-EachRefund"
    assert "ResultPath" not in each
    assert definition["States"]["Report"]["Parameters"] == {
        "results": {"bucket.$": "$.ResultWriterDetails.Bucket", "manifest.$": "$.ResultWriterDetails.Key"}
    }

    items = each["ItemProcessor"]["States"]
    request = items["RefundApproval"]["Parameters"]["MessageBody"]["request"]
    assert request["approvers"] == list(FINANCE)
    assert (request["policy"], request["quorum"]) == ("quorum", 2)
    assert request["title.$"] == "States.Format('Refund {} of {} USD', $.refund.id, $.refund.amount)"
    assert not [name for name, state in items.items() if state["Type"] == "Fail"]
    assert items["IssueRefund"]["Parameters"] == {"id.$": "$.refund.id", "status": "refunded"}
    assert items["Declined"]["Parameters"] == {"id.$": "$.refund.id", "status": "declined"}
    assert all(c["ResultPath"] == "$.error" for c in items["RefundApproval"]["Catch"])


def test_refund_batch_may_send_to_the_queue_and_run_its_own_children_only(
    templates: dict[str, dict[str, Any]],
) -> None:
    template = templates["refunds"]
    (machine,) = (
        lid
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::StepFunctions::StateMachine" and lid.startswith("Refunds")
    )
    statements = role_statements(template, "Refunds")
    actions = sorted(
        (action, str(statement["Resource"]))
        for statement in statements
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    )
    assert [action for action, _ in actions] == [
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
        "s3:PutObject",
        "sqs:SendMessage",
        "states:DescribeExecution",
        "states:RedriveExecution",
        "states:StartExecution",
        "states:StopExecution",
    ]
    for action, resource in actions:
        if action.startswith("states:"):
            assert machine in resource  # its own executions, nothing else
        if action.startswith("s3:"):
            assert resource.endswith("'/fanout-EachRefund/*']]}"), resource  # its own prefix
        if action == "sqs:SendMessage":
            assert request_queue(template) in resource


@pytest.mark.parametrize(("app", "machine"), [("deploy", "Pipeline"), ("refunds", "Refunds")])
def test_the_apps_state_machine_may_send_through_the_queues_policy(
    templates: dict[str, dict[str, Any]], app: str, machine: str
) -> None:
    """The queue's policy denies sqs:SendMessage to every role it does not name, whatever
    the role's own policy allows (an explicit Deny wins): attaching the step names its role."""
    assert role_arn(templates[app], machine) in queue_senders(templates[app])
