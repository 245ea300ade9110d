"""A deploy pipeline's production gate: both release managers must approve.

The title and the release details come from the execution's input, e.g.
``{"title": "Deploy checkout 2.4 to production", "release": {"service": "checkout",
"version": "2.4.0"}}``. Approved: the deploy runs. Rejected: the execution fails with
``Deploy.Rejected``. Nobody decides within four hours: ``Deploy.NotApproved``.

Run it: ``cdk synth`` (or ``cdk deploy``) in this directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from approvals_cdk import ApprovalErrors, ApprovalService, ApprovalServiceProps

RELEASE_MANAGERS = ("alice@example.com", "bob@example.com")


class DeployGateStack(cdk.Stack):
    def __init__(
        self, scope: Construct, construct_id: str, approvers: Sequence[str] = RELEASE_MANAGERS, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        service = ApprovalService(self, "Approvals", ApprovalServiceProps(approvers=approvers))

        gate = service.approval_step(
            self,
            "ReleaseApproval",
            approvers=list(approvers),
            policy="all",
            title=sfn.JsonPath.string_at("$.title"),
            details=sfn.JsonPath.object_at("$.release"),
            requester="deploy-pipeline",
            timeout=Duration.hours(4),
            result_path="$.approval",
        )
        # Stands in for the real deploy (a CodeBuild or ECS task of your own).
        deploy = sfn.Pass(self, "Deploy", parameters={"deployed.$": "$.release"})
        rejected = sfn.Fail(self, "Rejected", error="Deploy.Rejected", cause="A release manager rejected it")
        gate.add_catch(
            sfn.Fail(self, "NotApproved", error="Deploy.NotApproved", cause="Nobody decided in time"),
            errors=list(ApprovalErrors.EXPIRY),
        )
        gate.add_catch(
            sfn.Fail(
                self, "CouldNotAsk", error="Deploy.CouldNotAsk", cause="The approval could not be asked"
            ),
            errors=[ApprovalErrors.INVALID_REQUEST, ApprovalErrors.DELIVERY_FAILED],
        )
        approved = sfn.Condition.string_equals("$.approval.outcome", "approved")
        self.state_machine = sfn.StateMachine(
            self,
            "Pipeline",
            definition_body=sfn.DefinitionBody.from_chainable(
                gate.next(
                    # Tells the service the workflow has the decision: saves the sweep two calls.
                    service.confirmation_step(self, "ConfirmApproval", decision_path="$.approval")
                ).next(sfn.Choice(self, "Approved?").when(approved, deploy).otherwise(rejected))
            ),
        )


if __name__ == "__main__":
    app = cdk.App()
    DeployGateStack(app, "DeployGate")
    app.synth()
