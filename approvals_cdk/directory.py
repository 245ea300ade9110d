"""`ApproverDirectory`: the email topic, one filtered subscription per approver, and who may
publish to it or subscribe to it."""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from approvals.notify import APPROVER_ATTRIBUTE
from approvals_cdk import shared

# The approver directory (approvals.directory) lists the topic's subscriptions and reads a
# confirmed one's filter policy and protection. GetSubscriptionAttributes is granted on "*":
# the Service Authorization Reference lists no resource type for it (subscriptions are no
# IAM resource), and the call only reads subscription settings.
DIRECTORY_READ_REASON = (
    "sns:GetSubscriptionAttributes supports no resource-level permissions (subscriptions are"
    " not an IAM resource type), so IAM requires Resource '*'; it reads a subscription's filter"
    " policy and protection, which the approver directory needs."
)


class ApproverDirectory:
    """The email topic: each approver's subscription takes only the emails published with their
    address (the ``approver`` attribute), so each receives only their own links. Its confirmed
    subscriptions are the directory of who can be asked."""

    def __init__(self, scope: Construct, approvers: Sequence[str]) -> None:
        self.topic = sns.Topic(
            scope,
            "EmailTopic",
            display_name="Approvals",  # the sender name approvers see
            enforce_ssl=True,
            # The AWS managed key: its key policy lets this account's principals publish
            # through SNS, so no function needs a KMS grant.
            master_key=kms.Alias.from_alias_name(scope, "SnsManagedKey", "alias/aws/sns"),
        )
        for approver in approvers:
            self.topic.add_subscription(
                subscriptions.EmailSubscription(
                    approver,
                    filter_policy={
                        APPROVER_ATTRIBUTE: sns.SubscriptionFilter.string_filter(allowlist=[approver])
                    },
                )
            )

    def grant_read(self, function: lambda_.Function) -> None:
        """Read the directory: who can be emailed."""
        shared.allow(function, ["sns:ListSubscriptionsByTopic"], [self.topic.topic_arn])
        shared.allow(function, ["sns:GetSubscriptionAttributes"], ["*"])

    def restrict(self, publishers: Sequence[lambda_.Function], operator_roles: Sequence[str]) -> None:
        """Only these functions and the operators publish, and only the deployment and the
        operators subscribe: a wildcard ``sns:Subscribe`` elsewhere in the account would
        otherwise let a principal add an unfiltered subscription and receive every approver's
        link, and a wildcard ``sns:Publish`` let it email approvers text of its choosing."""
        deployment = cdk.Stack.of(self.topic).synthesizer
        # CloudFormation creates the approvers' subscriptions with the bootstrap's execution
        # role; its ARN holds ${AWS::AccountId}-style placeholders, for Fn::Sub to fill in.
        deployer = (
            [cdk.Fn.sub(deployment.cloud_formation_execution_role_arn)]
            if isinstance(deployment, cdk.DefaultStackSynthesizer)
            else []
        )
        roles = [function.role.role_arn for function in publishers if function.role is not None]
        shared.deny_all_but(self.topic, "sns:Publish", [*roles, *operator_roles])
        shared.deny_all_but(self.topic, "sns:Subscribe", [*deployer, *operator_roles])
