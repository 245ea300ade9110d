"""The outputs by which other stacks, apps and accounts use a deployed service
(``ApprovalService.from_attributes``): ARNs, each exported under ``<export_prefix>-<id>`` for
``cdk.Fn.import_value`` in the same account and region (another account copies the values)."""

from __future__ import annotations

import aws_cdk as cdk

from approvals_cdk.approval_service import ApprovalService
from approvals_cdk.sharing import WatchExecutions

QUEUE_ARN = "QueueArn"
TABLE_ARN = "TableArn"
EXECUTION_EVENTS_BUS_ARN = "ExecutionEventsBusArn"


def export_name(export_prefix: str, output_id: str) -> str:
    """The name under which ``output_id`` is exported: ``Fn.import_value`` takes it."""
    return f"{export_prefix}-{output_id}"


def add_sharing_outputs(stack: cdk.Stack, service: ApprovalService, export_prefix: str) -> None:
    """The ARNs ``from_attributes`` takes, as outputs of ``stack`` (their ids are the output
    keys), exported. An exported value cannot change while another stack imports it; these
    are the ARNs of resources a deploy never replaces."""
    if service.watch_executions is WatchExecutions.STACK:
        cdk.Annotations.of(service).add_warning_v2(
            "stepfunctions-approvals:sharedButWatchesItsStack",
            "This service is shared with other stacks, but cancels the approvals of its own"
            " stack's executions only: give it watch_executions=WatchExecutions.ACCOUNT, or the"
            " approvals of other stacks' stopped executions stay pending until they expire.",
        )
    outputs = {
        QUEUE_ARN: (service.queue.queue_arn, "The request queue's ARN: from_attributes(queue_arn=...)"),
        TABLE_ARN: (service.table.table_arn, "The approvals table's ARN: from_attributes(table_arn=...)"),
    }
    if service.execution_events_bus is not None:
        outputs[EXECUTION_EVENTS_BUS_ARN] = (
            service.execution_events_bus.event_bus_arn,
            "Where allowed accounts forward their executions' ends (ForwardExecutionEnds)",
        )
    for output_id, (value, description) in outputs.items():
        cdk.CfnOutput(
            stack,
            output_id,
            value=value,
            description=description,
            export_name=export_name(export_prefix, output_id),
        )
