"""`Sweeps`: what runs without an approver: the scheduled sweep (expiry, reminders,
redelivery) and the cancelling of approvals whose execution ended (failed, timed out, stopped)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from constructs import Construct

from approvals.store import EXECUTION_INDEX, OPEN_INDEX, TELL_INDEX
from approvals_cdk import shared
from approvals_cdk.directory import DIRECTORY_READ_REASON, ApproverDirectory
from approvals_cdk.sharing import WatchExecutions, cancel_target, ended_executions, watched_state_machines
from approvals_cdk.table import index_arns


class Sweeps:
    """The ``sweeper`` on its ``sweep_schedule``; the ``execution_ended_function`` on its
    ``execution_ended_rule`` (None with ``WatchExecutions.NONE``)."""

    def __init__(
        self,
        scope: Construct,
        factory: shared.Factory,
        table: dynamodb.Table,
        directory: ApproverDirectory,
        *,
        api_url: str,
        reminders: Sequence[str],
        sweep_minutes: int,
        digest_seconds: int,
        watch_executions: WatchExecutions,
    ) -> None:
        self._scope = scope
        indexes = index_arns(table)
        topic_arn = directory.topic.topic_arn
        self.sweeper = factory.function(
            "SweeperFunction",
            "worker.sweeper.lambda_handler",
            "Scheduled sweep: expiry, reminders, redelivery of decisions",
            timeout=Duration.minutes(2),
            environment={
                "APPROVALS_TOPIC_ARN": topic_arn,
                "APPROVALS_API_URL": api_url,
                "APPROVALS_REMINDERS": ",".join(reminders),  # empty: none
                "APPROVALS_DIGEST_SECONDS": str(digest_seconds),
            },
        )
        directory.grant_read(self.sweeper)  # who can still be emailed
        shared.grant_history(self.sweeper)
        # Walk the open index, close / remind / redeliver, and send the digests whose window
        # closed (kept there under a key of their own); the tell index: requesters to tell.
        shared.allow(self.sweeper, ["dynamodb:Query"], [indexes[OPEN_INDEX], indexes[TELL_INDEX]])
        shared.allow(self.sweeper, ["dynamodb:UpdateItem", "dynamodb:BatchGetItem"], [table.table_arn])
        # A backup who joins, a sequence's next voter: into their inboxes.
        shared.allow(self.sweeper, ["dynamodb:BatchWriteItem"], [table.table_arn])
        shared.allow(self.sweeper, ["sns:Publish"], [topic_arn])
        # Success redelivers a decision; failure answers a task that outlived its links
        # (Approval.Expired) or whose approvers can no longer be emailed (Approval.DeliveryFailed).
        shared.allow(
            self.sweeper,
            ["states:SendTaskSuccess", "states:SendTaskFailure"],
            [shared.TASK_RESPONSE_RESOURCE],
        )
        shared.acknowledge(
            self.sweeper.role,
            "AwsSolutions-IAM5[Resource::*]",
            f"{shared.TASK_RESPONSE_REASON} {DIRECTORY_READ_REASON}",
        )

        self.execution_ended_function = factory.function(
            "ExecutionEndedFunction",
            "worker.execution_ended.lambda_handler",
            "Cancels the pending approvals of an execution that failed, timed out or was stopped",
            timeout=Duration.seconds(30),
        )
        # Find the execution's approvals, close those still pending.
        shared.allow(self.execution_ended_function, ["dynamodb:Query"], [indexes[EXECUTION_INDEX]])
        shared.allow(self.execution_ended_function, ["dynamodb:UpdateItem"], [table.table_arn])

        self.sweep_schedule = self._schedule_sweep(sweep_minutes)
        self.execution_ended_rule = (
            None if watch_executions is WatchExecutions.NONE else self._watch_executions(watch_executions)
        )

    def _schedule_sweep(self, sweep_minutes: int) -> scheduler.Schedule:
        role = iam.Role(
            self._scope,
            "SweepScheduleRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                # Only schedules of this account may use the role (confused deputy).
                conditions={"StringEquals": {"aws:SourceAccount": cdk.Stack.of(self._scope).account}},
            ),
            description="Lets EventBridge Scheduler invoke the sweeper, and nothing else",
        )
        schedule = scheduler.Schedule(
            self._scope,
            "SweepSchedule",
            description="Runs the approvals sweep: expiry, reminders, redelivery",
            schedule=scheduler.ScheduleExpression.rate(Duration.minutes(sweep_minutes)),
            target=scheduler_targets.LambdaInvoke(
                self.sweeper,
                role=role,
                input=scheduler.ScheduleTargetInput.from_object({}),
                # A missed sweep is simply done by the next one.
                retry_attempts=0,
            ),
        )
        sweeper_function = cast(lambda_.CfnFunction, self.sweeper.node.default_child)
        sweeper = cdk.Stack.of(self._scope).resolve(sweeper_function.logical_id)
        shared.acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{sweeper}.Arn>:*]",
            "CDK's Lambda target grants lambda:InvokeFunction on the sweeper and its versions"
            " (<arn>:*); the role can invoke that one function and nothing else.",
        )
        return schedule

    def _watch_executions(self, watch: WatchExecutions) -> events.Rule:
        return events.Rule(
            self._scope,
            "ExecutionEndedRule",
            description="An execution failed, timed out or was stopped: cancel its pending approvals",
            # The state machines of this stack (the step, or a hand-written Task, may be in any
            # of them), or of the whole account and region for a shared service: an execution
            # that asked none costs one query of the execution index.
            event_pattern=ended_executions(watched_state_machines(self._scope, watch)),
            targets=[cancel_target(self.execution_ended_function)],
        )
