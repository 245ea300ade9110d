"""Several copies of the service in one account (the README's pattern: one per stack) leave each
other alone: each watches only its own stack's executions, and the account's API Gateway
CloudWatch role is made only where asked (or where the CDK's feature flag lets it)."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import Duration
from aws_cdk import aws_stepfunctions as sfn

from approvals_cdk import ApprovalService, ApprovalServiceProps
from approvals_cdk.packaging import build
from tests.cdk_templates import synthesize

pytestmark = pytest.mark.xdist_group("infra")

ALICE = "alice@example.com"
DISABLE_CLOUDWATCH_ROLE = "@aws-cdk/aws-apigateway:disableCloudWatchRole"


class TeamStack(cdk.Stack):
    """The README's app: a service of its own and one state machine asking it."""

    def __init__(self, scope: cdk.App, construct_id: str, **props: Any) -> None:
        super().__init__(scope, construct_id)
        service = ApprovalService(
            self, "Approvals", ApprovalServiceProps(approvers=[ALICE], asset=build(), **props)
        )
        step = service.approval_step(
            self, "Approval", approvers=[ALICE], title="t", requester="r", timeout=Duration.hours(1)
        )
        sfn.StateMachine(self, "Pipeline", definition_body=sfn.DefinitionBody.from_chainable(step))


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    plain = cdk.App()  # the README's cdk.json: no feature flags
    flagged = cdk.App(context={DISABLE_CLOUDWATCH_ROLE: True})  # as `cdk init` writes cdk.json
    stacks = {
        "release": TeamStack(plain, "Release"),
        "billing": TeamStack(plain, "Billing", api_gateway_cloud_watch_role=False),
        "flagged": TeamStack(flagged, "Flagged"),
        "flagged but asked": TeamStack(flagged, "Asked", api_gateway_cloud_watch_role=True),
    }
    return {name: synthesize(stack) for name, stack in stacks.items()}


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


@pytest.mark.parametrize("stack", ["release", "billing"])
def test_each_copy_cancels_for_the_state_machines_of_its_own_stack_only(
    templates: dict[str, dict[str, Any]], stack: str
) -> None:
    template = templates[stack]
    ((_, rule),) = of_type(template, "AWS::Events::Rule").items()
    watched = rule["Properties"]["EventPattern"]["detail"]["stateMachineArn"]
    machines = of_type(template, "AWS::StepFunctions::StateMachine")
    assert len(machines) == 3  # the service's own two and the team's pipeline
    assert sorted(arn["Ref"] for arn in watched) == sorted(machines)


@pytest.mark.parametrize(
    ("stack", "made"),
    [("release", True), ("billing", False), ("flagged", False), ("flagged but asked", True)],
)
def test_the_account_cloudwatch_role_is_made_only_where_asked_or_the_cdk_flag_lets_it(
    templates: dict[str, dict[str, Any]], stack: str, made: bool
) -> None:
    accounts = of_type(templates[stack], "AWS::ApiGateway::Account")
    assert len(accounts) == (1 if made else 0)
