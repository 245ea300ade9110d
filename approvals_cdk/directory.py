"""`ApproverDirectory`: the email topic, one filtered subscription per approver, and who may
publish to it or subscribe to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

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


def _execution_role(stack: cdk.Stack) -> str:
    """The ARN of the role CloudFormation deploys ``stack`` with (DefaultStackSynthesizer)."""
    try:
        # Its ARN holds ${AWS::AccountId}-style placeholders, for Fn::Sub to fill in.
        return cdk.Fn.sub(
            cast(cdk.DefaultStackSynthesizer, stack.synthesizer).cloud_formation_execution_role_arn
        )
    except RuntimeError:
        # A synthesizer passed to the stack is bound as a copy that jsii hands Python as the
        # unbound original, whose getter refuses: name the bootstrap's execution roles of
        # any qualifier instead (IAM's ARN conditions take wildcards).
        return stack.format_arn(
            service="iam",
            region="",
            resource="role",
            resource_name=f"cdk-*-cfn-exec-role-{stack.account}-{stack.region}",
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
        roles = [function.role.role_arn for function in publishers if function.role is not None]
        shared.deny_all_but(self.topic, "sns:Publish", [*roles, *operator_roles])
        stack = cdk.Stack.of(self.topic)
        deployment = stack.synthesizer
        if isinstance(deployment, cdk.DefaultStackSynthesizer):
            # CloudFormation creates the approvers' subscriptions with the synthesizer's
            # execution role.
            shared.deny_all_but(self.topic, "sns:Subscribe", [_execution_role(stack), *operator_roles])
        else:
            # A synthesizer without an execution role (CLI credentials, legacy): CloudFormation
            # subscribes as whoever deploys, unknown here, so what it calls is let through.
            shared.deny_all_but(
                self.topic, "sns:Subscribe", operator_roles, called_via="cloudformation.amazonaws.com"
            )
