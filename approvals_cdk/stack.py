"""The product's stack: one ApprovalService and the outputs the `approvals` CLI reads."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from approvals import stack_outputs
from approvals_cdk.approval_service import ApprovalService, ApprovalServiceProps
from approvals_cdk.config import LOG_RETENTION, DeployConfig
from approvals_cdk.outputs import add_sharing_outputs
from approvals_cdk.sharing import WatchExecutions


class ApprovalsStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, config: DeployConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            stack_name=config.stack_name,
            description="Human approval gates for AWS Step Functions (stepfunctions-approvals)",
            **kwargs,
        )
        self.service = ApprovalService(
            self,
            "Service",
            ApprovalServiceProps(
                approvers=config.approvers,
                default_timeout=Duration.seconds(config.default_timeout_seconds),
                approval_retention=Duration.days(config.retention_days),
                log_retention=LOG_RETENTION[config.log_retention_days],
                removal_policy=RemovalPolicy.DESTROY
                if config.removal_policy == "destroy"
                else RemovalPolicy.RETAIN,
                reminders=config.reminders,
                alarm_email=config.alarm_email,
                allow_self_approval=config.allow_self_approval,
                sender_roles=config.sender_roles,
                operator_roles=config.operator_roles,
                allowed_accounts=config.allowed_accounts,
                rate_limit_per_ip=config.rate_limit_per_ip,
                snap_start=config.snap_start,
                worker_max_concurrency=config.worker_max_concurrency,
                sweep_interval=Duration.minutes(config.sweep_minutes),
                digest_window=Duration.seconds(config.digest_seconds),
                identity="sign-in" if config.identity == "sign-in" else "link",
                oidc_issuer=config.oidc_issuer,
                oidc_client_id=config.oidc_client_id,
                oidc_email_claim=config.oidc_email_claim,
                oidc_client_secret=secretsmanager.Secret.from_secret_complete_arn(
                    self, "OidcClientSecret", config.oidc_client_secret_arn
                )
                if config.oidc_client_secret_arn
                else None,
                # The product's deploy is the account's one shared service, in a fresh account
                # as well: it watches every state machine, and sets the account's API Gateway
                # CloudWatch role (which cdk.json's feature flag would leave unset).
                watch_executions=WatchExecutions.ACCOUNT,
                api_gateway_cloud_watch_role=True,
            ),
        )
        service = self.service
        # The CLI (approvals.target) finds a deployed stack's parts by these outputs.
        outputs = {
            stack_outputs.OUTPUT_API_URL: (service.api.url, "Base URL of the approval API (the links' host)"),
            stack_outputs.OUTPUT_STATE_MACHINE: (
                service.state_machine.state_machine_arn,
                'One approval: start an execution with {"request": {...}}',
            ),
            stack_outputs.OUTPUT_FANOUT_STATE_MACHINE: (
                service.fanout_state_machine.state_machine_arn,
                'Many approvals at once: {"requests": [...]} or {"requests_from": {"bucket", "key"}}',
            ),
            stack_outputs.OUTPUT_FANOUT_BUCKET: (
                service.fanout_bucket.bucket_name,
                "The fan-outs' decisions (under fanout/), and requests a fan-out reads (under requests/)",
            ),
            stack_outputs.OUTPUT_QUEUE_URL: (
                service.queue.queue_url,
                "The request queue an approval Task sends to (sqs:sendMessage.waitForTaskToken)",
            ),
            stack_outputs.OUTPUT_TABLE: (
                service.table.table_name,
                "The approvals table (state and audit trail)",
            ),
            stack_outputs.OUTPUT_SIGNING_KEY: (
                service.signing_key.secret_arn,
                "The link signing key's secret (its ARN, not the key): `approvals rotate-key` rotates it",
            ),
            stack_outputs.OUTPUT_DEAD_LETTER_QUEUE: (
                service.dead_letter_queue.queue_url,
                "Requests that could not be delivered (their executions are failed)",
            ),
            stack_outputs.OUTPUT_TOPIC: (
                service.topic.topic_arn,
                "The email topic; one filtered subscription per approver",
            ),
        }
        if service.oidc_client_secret is not None:
            outputs["OidcClientSecretArn"] = (
                service.oidc_client_secret.secret_arn,
                "The OpenID Connect client secret's secret: put the value your identity provider issued",
            )
        if service.alarm_topic is not None:
            outputs["AlarmTopicArn"] = (
                service.alarm_topic.topic_arn,
                "Every alarm notifies here: subscribe a pager",
            )
        for output_id, (value, description) in outputs.items():
            cdk.CfnOutput(self, output_id, value=value, description=description)
        # What other stacks and accounts name the service by (ApprovalService.from_attributes).
        add_sharing_outputs(self, service, export_prefix=self.stack_name)
