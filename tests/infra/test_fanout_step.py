"""`ApprovalService.fanout_step` in someone else's state machine, synthesized in process: a
Distributed Map whose results go to the service's bucket and whose items come from the state
or from that bucket, with exactly the grants that takes."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import Duration
from aws_cdk import aws_stepfunctions as sfn

from approvals_cdk import ApprovalService, ApprovalServiceProps
from approvals_cdk.packaging import build
from tests.cdk_templates import role_statements, state_machine_definition, synthesize

pytestmark = pytest.mark.xdist_group("infra")

ALICE = "alice@example.com"


def _batch(stack: cdk.Stack, service: ApprovalService, name: str, **source: Any) -> None:
    each = service.fanout_step(
        stack, f"{name}Each", item_selector={"refund.$": "$$.Map.Item.Value"}, **source
    )
    each.item_processor(
        service.approval_step(
            stack,
            f"{name}Approval",
            approvers=[ALICE],
            title=sfn.JsonPath.string_at("$.refund.id"),
            requester="refunds",
            timeout=Duration.days(2),
        )
    )
    sfn.StateMachine(stack, name, definition_body=sfn.DefinitionBody.from_chainable(each))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    app = cdk.App()
    stack = cdk.Stack(app, "Theirs")
    service = ApprovalService(stack, "Approvals", ApprovalServiceProps(approvers=[ALICE], asset=build()))
    _batch(stack, service, "FromState", items_path="$.refunds")
    _batch(stack, service, "FromS3", items_key="requests/refunds.json")
    return synthesize(stack)


def _map(template: dict[str, Any], machine: str) -> dict[str, Any]:
    definition = state_machine_definition(
        template, machine, {"ApprovalsFanoutBucket": "BUCKET", "ApprovalsRequestQueue": "QUEUE"}
    )
    state: dict[str, Any] = definition["States"][f"{machine}Each"]
    return state


def _bucket_arn(template: dict[str, Any]) -> dict[str, Any]:
    (bucket,) = (lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::S3::Bucket")
    return {"Fn::GetAtt": [bucket, "Arn"]}


def test_results_go_to_the_services_bucket(template: dict[str, Any]) -> None:
    for machine in ("FromState", "FromS3"):
        each = _map(template, machine)
        assert each["ItemProcessor"]["ProcessorConfig"] == {
            "Mode": "DISTRIBUTED",
            "ExecutionType": "STANDARD",
        }
        assert each["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
        assert each["ResultWriter"]["Parameters"]["Prefix"] == f"fanout-{machine}Each"
        assert "ResultPath" not in each  # the small summary replaces the state
    assert _map(template, "FromState")["ItemsPath"] == "$.refunds"
    reader = _map(template, "FromS3")["ItemReader"]
    assert reader == {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket": "BUCKET", "Key": "requests/refunds.json"},
    }
    assert "ItemsPath" not in _map(template, "FromS3")


def test_the_grants_are_the_prefix_the_key_and_the_children(template: dict[str, Any]) -> None:
    bucket = _bucket_arn(template)
    for machine in ("FromState", "FromS3"):
        statements = role_statements(template, machine)  # its role's, and CDK's for the children
        by_action = {action: statement for statement in statements for action in _list(statement["Action"])}
        put = by_action["s3:PutObject"]
        assert put["Resource"] == {"Fn::Join": ["", [bucket, f"/fanout-{machine}Each/*"]]}
        assert "s3:DeleteObject" not in by_action
        assert {"states:StartExecution", "states:DescribeExecution", "states:StopExecution"} <= set(by_action)
        assert "sqs:SendMessage" in by_action
    reads = [s for s in role_statements(template, "FromS3Role") if "s3:GetObject" in _list(s["Action"])]
    assert reads
    assert all(s["Resource"] == {"Fn::Join": ["", [bucket, "/requests/refunds.json"]]} for s in reads), reads


def test_items_come_from_one_place_under_requests() -> None:
    stack = cdk.Stack(cdk.App(), "Wrong")
    service = ApprovalService(stack, "Approvals", ApprovalServiceProps(approvers=[ALICE], asset=build()))
    with pytest.raises(ValueError, match="either"):
        service.fanout_step(stack, "Neither")
    with pytest.raises(ValueError, match="requests/"):
        service.fanout_step(stack, "Elsewhere", items_key="secrets/all.json")


def _list(actions: Any) -> list[str]:
    return actions if isinstance(actions, list) else [actions]
