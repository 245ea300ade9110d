"""The product's AWS resources, created through the real APIs (against moto here).

The integration tests and the local stack create the same set, with the very state
machine definitions the CDK stack deploys.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import boto3

from approvals import statemachine
from approvals.store.table import table_definition

ACCOUNT = "123456789012"  # moto's default account
LOCAL_ROLE = f"arn:aws:iam::{ACCOUNT}:role/approvals-local"
# How the local SNS (approvals.local.moto_fixes) treats the email topic, set as its tags:
# where it mails, whether it confirms subscriptions at once, where confirmation links point.
MAILBOX_TAG = "approvals-local:mailbox-queue"
CONFIRM_AT_ONCE_TAG = "approvals-local:confirm-at-once"
SNS_PAGES_TAG = "approvals-local:sns-pages"  # base URL of the confirm and unsubscribe pages


def mailbox(
    sqs: Any, sns: Any, topic_arns: Iterable[str], queue_name: str, confirm_subscriptions: bool
) -> str:
    """The local "mailbox" of the topics that send email: a queue where each email that a
    confirmed, filtered subscription takes lands (moto_fixes), addressed to that
    subscription's endpoint, as a mail server would receive it."""
    queue_url: str = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    tags = [{"Key": MAILBOX_TAG, "Value": queue_name}]
    if confirm_subscriptions:
        tags.append({"Key": CONFIRM_AT_ONCE_TAG, "Value": "true"})
    for topic_arn in topic_arns:
        sns.tag_resource(ResourceArn=topic_arn, Tags=tags)
    return queue_url


def only_senders(queue_arn: str, roles: list[str]) -> dict[str, Any]:
    """The request queue's policy as the product writes it (approvals_cdk.shared.deny_all_but):
    ``sqs:SendMessage`` denied to every principal but ``roles``."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OnlySendMessageByTheseRoles",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": roles}},
            }
        ],
    }


@dataclass(frozen=True)
class Resources:
    region: str
    queue_url: str
    dlq_url: str
    outbox_queue_url: str
    table_name: str
    topic_arn: str
    signing_secret_arn: str
    state_machine_arn: str
    fanout_state_machine_arn: str
    fanout_bucket: str  # where the fan-out writes its decisions, and reads requests from
    fanout_summary_function: str  # the ARN the fan-out invokes; the local stack serves it

    def environment(self, api_url: str, digest_seconds: int = 0) -> dict[str, str]:
        """What the functions' environment holds in AWS, for the same handlers here. Each
        worker batch is one email per approver; a digest window (``digest_seconds``, as
        deployed) is asked for, so that a test or a demo sees each request's email at once."""
        return {
            "APPROVALS_DIGEST_SECONDS": str(digest_seconds),
            "APPROVALS_TABLE": self.table_name,
            "APPROVALS_TOPIC_ARN": self.topic_arn,
            "APPROVALS_API_URL": api_url,
            "APPROVALS_SIGNING_SECRET": self.signing_secret_arn,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def provision(
    session: boto3.Session,
    endpoint_url: str | None = None,
    *,
    visibility_timeout: int,
    max_receives: int = 3,
    name: str = "approvals",
    confirm_subscriptions: bool = True,
    restrict_senders: bool = False,
) -> Resources:
    """Create the resources; ``confirm_subscriptions`` confirms approvers' email
    subscriptions as they are added (otherwise each stays pending, and its confirmation
    email is in the outbox). ``restrict_senders`` gives the queue the product's policy: only
    the state machines' role (:data:`LOCAL_ROLE`) sends to it."""
    extra: dict[str, Any] = {"endpoint_url": endpoint_url} if endpoint_url else {}
    sqs = session.client("sqs", **extra)
    sns = session.client("sns", **extra)
    dynamodb = session.client("dynamodb", **extra)
    secretsmanager = session.client("secretsmanager", **extra)
    sfn = session.client("stepfunctions", **extra)
    s3 = session.client("s3", **extra)

    dlq_url = sqs.create_queue(
        QueueName=f"{name}-dead-letters", Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=f"{name}-requests",
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}),
        },
    )["QueueUrl"]
    if restrict_senders:
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sqs.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"Policy": json.dumps(only_senders(queue_arn, [LOCAL_ROLE]))}
        )

    topic_arn = sns.create_topic(Name=f"{name}-emails")["TopicArn"]
    outbox_queue_url = mailbox(sqs, sns, [topic_arn], f"{name}-outbox", confirm_subscriptions)

    table_name = f"{name}-table"
    dynamodb.create_table(**table_definition(table_name))
    secret_arn = secretsmanager.create_secret(
        Name=f"{name}-signing-key", SecretString=secrets.token_urlsafe(48)
    )["ARN"]

    fanout_bucket = f"{name}-fanout"
    region = session.region_name or "us-east-1"
    where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=fanout_bucket, **where)

    # No Lambda function is made in moto (it would run it in Docker): the local stack
    # answers Invoke for this name itself (approvals.local.template.serve_invocations).
    summary_function = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}-fanout-summary"

    def state_machine(suffix: str, definition: dict[str, Any]) -> str:
        return sfn.create_state_machine(
            name=f"{name}-{suffix}",
            definition=statemachine.render(
                definition, queue_url, table_name, fanout_bucket, summary_function
            ),
            roleArn=LOCAL_ROLE,
        )["stateMachineArn"]

    return Resources(
        region=region,
        queue_url=queue_url,
        dlq_url=dlq_url,
        outbox_queue_url=outbox_queue_url,
        table_name=table_name,
        topic_arn=topic_arn,
        signing_secret_arn=secret_arn,
        state_machine_arn=state_machine("approval", statemachine.approval_definition()),
        fanout_state_machine_arn=state_machine("fanout", statemachine.fanout_definition()),
        fanout_bucket=fanout_bucket,
        fanout_summary_function=summary_function,
    )
