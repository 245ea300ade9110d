"""A batch of refunds, each approved on its own by two of the three finance approvers.

Input: ``{"refunds": [{"id": "R-1", "amount": 120, "customer": "ana@example.org"}, ...]}``.
Every refund's approval is asked at once (a Distributed Map of standard child executions:
an inline Map would email 40 and hold the rest back). Each refund's result (approved
refunds are issued, the others say why not) goes to the service's fan-out bucket, and the
output says where: ``{"results": {"bucket": ..., "manifest": ...}}``, read back in the
order of the batch with ``approvals.fanout.results(s3, **output["results"])``. One refund's
failure never fails the batch.

Each approver gets one email for the batch, not one per refund: a digest (the service's
60-second ``digest_window``) with a link to their inbox, one page listing every refund that
waits on them, where "Select all N matching" and "Approve selected" decide the batch.

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

FINANCE = ("carol@example.com", "dan@example.com", "erin@example.com")


class RefundBatchStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        approvers: Sequence[str] = FINANCE,
        max_concurrency: int = 1_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        service = ApprovalService(self, "Approvals", ApprovalServiceProps(approvers=approvers))

        approval = service.approval_step(
            self,
            "RefundApproval",
            approvers=list(approvers),
            policy="quorum",
            quorum=2,
            title=sfn.JsonPath.format(
                "Refund {} of {} USD",
                sfn.JsonPath.string_at("$.refund.id"),
                sfn.JsonPath.string_at("$.refund.amount"),
            ),
            details=sfn.JsonPath.object_at("$.refund"),
            requester="refund-batch",
            timeout=Duration.days(2),
            result_path="$.approval",
        )

        def result(construct_id: str, status: str, **more: str) -> sfn.Pass:
            return sfn.Pass(self, construct_id, parameters={"id.$": "$.refund.id", "status": status, **more})

        # Stands in for the real refund (a Lambda function or a payments API call of your own).
        issue = result("IssueRefund", "refunded")
        # The catches keep the refund beside the error, so each result can name it.
        approval.add_catch(
            result("Undecided", "expired"), errors=list(ApprovalErrors.EXPIRY), result_path="$.error"
        )
        approval.add_catch(
            result("NotAsked", "not asked", **{"error.$": "$.error.Cause"}),
            errors=[ApprovalErrors.INVALID_REQUEST, ApprovalErrors.DELIVERY_FAILED],
            result_path="$.error",
        )
        approved = sfn.Condition.string_equals("$.approval.outcome", "approved")
        # Results go to the service's fan-out bucket and the state stays small, however many
        # refunds: a Map that added every result to the state would fail past 256 KiB.
        each = service.fanout_step(
            self,
            "EachRefund",
            items_path="$.refunds",
            # The index puts the results back in the order of the batch.
            item_selector={"refund.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
            max_concurrency=max_concurrency,  # up to 10,000 approvals in flight at once
        )
        each.item_processor(
            approval.next(
                sfn.Choice(self, "Approved?").when(approved, issue).otherwise(result("Declined", "declined"))
            )
        )
        report = sfn.Pass(
            self,
            "Report",
            parameters={
                "results": {
                    "bucket.$": "$.ResultWriterDetails.Bucket",
                    "manifest.$": "$.ResultWriterDetails.Key",
                }
            },
        )
        self.state_machine = sfn.StateMachine(
            self, "Refunds", definition_body=sfn.DefinitionBody.from_chainable(each.next(report))
        )


if __name__ == "__main__":
    app = cdk.App()
    RefundBatchStack(app, "RefundBatch")
    app.synth()
