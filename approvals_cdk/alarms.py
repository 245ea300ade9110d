"""`Alarms`: what should wake someone, all notifying one topic (output AlarmTopicArn)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from approvals import metrics
from approvals_cdk.interface import service_metric
from approvals_cdk.queue_worker import QueueAndWorker

FIVE_MINUTES = Duration.minutes(5)


class Alarms:
    """``topic``, where every alarm notifies (``topic`` if given, else a topic of its own),
    and the ``alarms``."""

    def __init__(
        self,
        scope: Construct,
        *,
        table_name: str,
        queue_and_worker: QueueAndWorker,
        email_topic: sns.Topic,
        approval: sfn.StateMachine,
        fanout: sfn.StateMachine,
        alarm_email: str | None,
        removal_policy: RemovalPolicy,
        topic: sns.ITopic | None,
    ) -> None:
        self._scope = scope
        # A team's own topic (its pager or chat already on it), else one of the service's.
        self.topic = topic or self._alarm_topic(alarm_email, removal_policy)
        self._notify = cloudwatch_actions.SnsAction(self.topic)

        def counted(name: str) -> cloudwatch.Metric:
            """A count the functions write for the requests of every workflow using the service."""
            return service_metric(table_name, name, period=FIVE_MINUTES)

        alarm = self._alarm
        self.alarms = [
            alarm(
                "InvalidRequestsAlarm",
                counted(metrics.INVALID_REQUESTS),
                "A workflow's approval request was refused as invalid (Approval.InvalidRequest):"
                " the worker's logs name the cause",
            ),
            alarm(
                "DeliveriesFailedAlarm",
                counted(metrics.DELIVERIES_FAILED),
                "An approval request could not be emailed and its execution was failed"
                " (Approval.DeliveryFailed): see the worker's logs",
            ),
            alarm(
                "DeadLetterQueueDepthAlarm",
                queue_and_worker.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=FIVE_MINUTES, statistic="Maximum"
                ),
                "Approval requests are in the dead-letter queue: its handler could not fail their"
                " executions (see the DeadLetterFunction logs)",
            ),
            alarm(
                "WorkerErrorsAlarm",
                queue_and_worker.worker.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                "The approval worker failed invocations (requests are retried, then dead-lettered)",
            ),
            alarm(
                "DeadLetterHandlerErrorsAlarm",
                queue_and_worker.dead_letter_function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                "The dead-letter handler failed: executions may be left waiting",
            ),
            alarm(
                "ApprovalExecutionsFailedAlarm",
                approval.metric_failed(period=FIVE_MINUTES, statistic="Sum"),
                "Approval executions failed (invalid or undeliverable requests)",
            ),
            alarm(
                "EmailsNobodyTookAlarm",
                # Each email names one approver, whose subscription alone takes it: a message
                # published and neither delivered nor failed was filtered out by every one.
                cloudwatch.MathExpression(
                    expression="FILL(published, 0) - FILL(delivered, 0) - FILL(failed, 0)",
                    using_metrics={
                        "published": email_topic.metric_number_of_messages_published(
                            period=FIVE_MINUTES, statistic="Sum"
                        ),
                        "delivered": email_topic.metric_number_of_notifications_delivered(
                            period=FIVE_MINUTES, statistic="Sum"
                        ),
                        "failed": email_topic.metric_number_of_notifications_failed(
                            period=FIVE_MINUTES, statistic="Sum"
                        ),
                    },
                    label="Emails no subscription took",
                    period=FIVE_MINUTES,
                ),
                "Approval emails went to nobody: an approver's subscription was removed or unconfirmed"
                " after the worker last read the directory (see `approvals approvers list`)",
            ),
            alarm(
                "FanoutExecutionsFailedAlarm",
                fanout.metric_failed(period=FIVE_MINUTES, statistic="Sum"),
                "Fan-out approval executions failed",
            ),
        ]

    def _alarm_topic(self, alarm_email: str | None, removal_policy: RemovalPolicy) -> sns.Topic:
        """Email if ``alarm_email`` is given; teams may subscribe their own pager or chat to it."""
        # CloudWatch cannot publish to a topic under the AWS managed key: this key lets it.
        key = kms.Key(
            self._scope,
            "AlarmTopicKey",
            description="Encrypts the approval gate's alarm notifications",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        topic = sns.Topic(
            self._scope, "AlarmTopic", display_name="Approvals alarms", enforce_ssl=True, master_key=key
        )
        # The topic's policy (enforce_ssl makes one) replaces SNS's default: CloudWatch needs
        # its own Allow, limited to this account's alarms (confused deputy).
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": cdk.Stack.of(self._scope).account}},
            )
        )
        if alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        return topic

    def _alarm(
        self, construct_id: str, metric: cloudwatch.IMetric, description: str, threshold: float = 1
    ) -> cloudwatch.Alarm:
        created = cloudwatch.Alarm(
            self._scope,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        created.add_alarm_action(self._notify)
        return created
