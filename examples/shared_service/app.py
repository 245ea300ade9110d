"""One approval service, deployed once, shared by a stack of its account and by another account.

- ``SharedApprovals`` (the service's account): the service, exporting the ARNs of its queue,
  table and execution events bus. Its queue lets the Payments workflow's role send (named by
  its ``role_name``: no reference between the stacks, so no cycle) and the principals of the
  partner account (as far as that account's own IAM policies allow).
- ``Payments`` (the same account, another stack: it could as well be another CDK app): uses
  the service by its exports (``cdk.Fn.import_value``), confirms each decision.
- ``PartnerRefunds`` (another account): uses the service by its ARNs, copied from the service
  stack's outputs (CloudFormation exports do not cross accounts: pass them with ``-c``), and
  forwards its executions' ends to the service's bus, so that a stopped execution's approvals
  are cancelled. It goes without the confirmation step (the table is not shared across
  accounts; the service's sweep confirms instead).

Run it: ``cdk synth`` in this directory; deploy ``SharedApprovals`` first, then the others
(``cdk deploy PartnerRefunds -c approvalsQueueArn=... -c approvalsTableArn=...
-c approvalsEventBusArn=...`` with the partner account's credentials).
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from approvals_cdk import (
    ApprovalErrors,
    ApprovalService,
    ApprovalServiceProps,
    ForwardExecutionEnds,
    IApprovalService,
    WatchExecutions,
)
from approvals_cdk.outputs import QUEUE_ARN, TABLE_ARN, add_sharing_outputs, export_name

SERVICE_ACCOUNT = "111111111111"
PARTNER_ACCOUNT = "222222222222"
REGION = "eu-west-1"
SERVICE_STACK = "SharedApprovals"
PAYMENTS_ROLE_NAME = "payments-approval-workflow"
APPROVERS = ("alice@example.com", "bob@example.com")
# What the service stack's outputs say once it is deployed (these stand in for them).
EXAMPLE_QUEUE_ARN = f"arn:aws:sqs:{REGION}:{SERVICE_ACCOUNT}:SharedApprovals-ApprovalsRequestQueue-EXAMPLE"
EXAMPLE_TABLE_ARN = (
    f"arn:aws:dynamodb:{REGION}:{SERVICE_ACCOUNT}:table/SharedApprovals-ApprovalsTable-EXAMPLE"
)
EXAMPLE_EVENT_BUS_ARN = (
    f"arn:aws:events:{REGION}:{SERVICE_ACCOUNT}:event-bus/SharedApprovalsExecutionEventsBus"
)


def gated(scope: Construct, service: IApprovalService, *, confirm: bool) -> sfn.IChainable:
    """A payment that runs once one of the approvers approves it."""
    approval = service.approval_step(
        scope,
        "PaymentApproval",
        approvers=list(APPROVERS),
        title=sfn.JsonPath.string_at("$.title"),
        requester=cdk.Stack.of(scope).stack_name,
        timeout=Duration.hours(8),
        result_path="$.approval",
    )
    approval.add_catch(
        sfn.Fail(scope, "NotApproved", error="Payment.NotApproved"), errors=list(ApprovalErrors.EXPIRY)
    )
    approval.add_catch(
        sfn.Fail(scope, "CouldNotAsk", error="Payment.CouldNotAsk"),
        errors=[ApprovalErrors.INVALID_REQUEST, ApprovalErrors.DELIVERY_FAILED],
    )
    approved = sfn.Condition.string_equals("$.approval.outcome", "approved")
    decide = (
        sfn.Choice(scope, "Approved?")
        .when(approved, sfn.Pass(scope, "Pay"))  # stands in for the real payment
        .otherwise(sfn.Fail(scope, "Rejected", error="Payment.Rejected"))
    )
    if confirm:
        return approval.next(
            service.confirmation_step(scope, "ConfirmApproval", decision_path="$.approval")
        ).next(decide)
    return approval.next(decide)


class PaymentsStack(cdk.Stack):
    """A workflow of the service's own account, in a stack of its own."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        service = ApprovalService.from_attributes(
            self,
            "Approvals",
            queue_arn=cdk.Fn.import_value(export_name(SERVICE_STACK, QUEUE_ARN)),
            table_arn=cdk.Fn.import_value(export_name(SERVICE_STACK, TABLE_ARN)),
        )
        # Named, so that the service's stack can let it send without a reference to this stack.
        self.workflow_role = iam.Role(
            self,
            "WorkflowRole",
            role_name=PAYMENTS_ROLE_NAME,
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
        )
        self.state_machine = sfn.StateMachine(
            self,
            "Payments",
            role=self.workflow_role,
            definition_body=sfn.DefinitionBody.from_chainable(gated(self, service, confirm=True)),
        )


class SharedApprovalsStack(cdk.Stack):
    """The service, deployed once for the account and shared."""

    def __init__(self, scope: Construct, construct_id: str, senders: list[iam.IRole], **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.service = ApprovalService(
            self,
            "Approvals",
            ApprovalServiceProps(
                approvers=APPROVERS,
                sender_roles=senders,
                allowed_accounts=[PARTNER_ACCOUNT],
                # The account's one service: every state machine of the account may ask it,
                # and it sets the account's API Gateway CloudWatch role.
                watch_executions=WatchExecutions.ACCOUNT,
                api_gateway_cloud_watch_role=True,
            ),
        )
        add_sharing_outputs(self, self.service, export_prefix=SERVICE_STACK)


class PartnerRefundsStack(cdk.Stack):
    """A workflow of another account."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        context = self.node.try_get_context
        event_bus_arn = context("approvalsEventBusArn") or EXAMPLE_EVENT_BUS_ARN
        service = ApprovalService.from_attributes(
            self,
            "Approvals",
            queue_arn=context("approvalsQueueArn") or EXAMPLE_QUEUE_ARN,
            table_arn=context("approvalsTableArn") or EXAMPLE_TABLE_ARN,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "Refunds",
            definition_body=sfn.DefinitionBody.from_chainable(gated(self, service, confirm=False)),
        )
        ForwardExecutionEnds(
            self, "ForwardToApprovals", event_bus_arn=event_bus_arn, state_machines=[self.state_machine]
        )


def build(app: cdk.App) -> dict[str, cdk.Stack]:
    """The three stacks: the consumers first, whose roles the service names."""
    service_account = cdk.Environment(account=SERVICE_ACCOUNT, region=REGION)
    payments = PaymentsStack(app, "Payments", env=service_account)
    service = SharedApprovalsStack(app, SERVICE_STACK, senders=[payments.workflow_role], env=service_account)
    payments.add_stack_dependency(service)  # it imports the service's exports: deploy the service first
    partner = PartnerRefundsStack(
        app, "PartnerRefunds", env=cdk.Environment(account=PARTNER_ACCOUNT, region=REGION)
    )
    return {"service": service, "payments": payments, "partner": partner}


if __name__ == "__main__":
    app = cdk.App()
    build(app)
    app.synth()
