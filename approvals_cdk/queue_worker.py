"""`QueueAndWorker`: the request queue the approval step sends to, the worker that emails the
approvers, and the dead-letter queue whose handler fails what could not be delivered."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from approvals_cdk import shared
from approvals_cdk.directory import DIRECTORY_READ_REASON, ApproverDirectory
from approvals_cdk.sharing import allow_accounts

DEAD_LETTER_TIMEOUT = Duration.seconds(30)
# Receives of a request before it is dead-lettered: AWS's guidance for an SQS event source
# is 5 or more, so that throttling and slow downstream calls do not fail good requests.
MAX_RECEIVE_COUNT = 5


class QueueAndWorker:
    """``queue`` and its ``worker``; ``dead_letter_queue`` and its ``dead_letter_function``."""

    def __init__(
        self,
        scope: Construct,
        factory: shared.Factory,
        table: dynamodb.Table,
        directory: ApproverDirectory,
        *,
        api_url: str,
        worker_timeout: Duration,
        max_receive_count: int,
        max_concurrency: int,
        allow_self_approval: bool,
        sweep_seconds: int,
        digest_seconds: int,
    ) -> None:
        # Six times the worker's timeout (AWS's advice for an event source mapping); the
        # worker's claim on a request lasts exactly this long (APPROVALS_CLAIM_SECONDS).
        claim_seconds = int(worker_timeout.to_seconds() * 6)
        self.dead_letter_queue = sqs.Queue(
            scope,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),  # the longest SQS keeps a message
            visibility_timeout=Duration.seconds(DEAD_LETTER_TIMEOUT.to_seconds() * 6),  # as below
        )
        self.queue = sqs.Queue(
            scope,
            "RequestQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(claim_seconds),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=max_receive_count, queue=self.dead_letter_queue
            ),
        )

        self.worker = factory.function(
            "WorkerFunction",
            "worker.handler.lambda_handler",
            "Validates queued approval requests, stores them, emails the approvers",
            timeout=worker_timeout,
            environment={
                "APPROVALS_TOPIC_ARN": directory.topic.topic_arn,
                "APPROVALS_API_URL": api_url,
                "APPROVALS_CLAIM_SECONDS": str(claim_seconds),
                "APPROVALS_ALLOW_SELF_APPROVAL": str(allow_self_approval).lower(),
                # A request's recurring reminders may come no oftener than the sweep runs.
                "APPROVALS_SWEEP_SECONDS": str(sweep_seconds),
                "APPROVALS_DIGEST_SECONDS": str(digest_seconds),
            },
        )
        self.worker.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=10,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
                # Without a cap the mapping scales past the account's quota, and each throttled
                # batch goes back to the queue: a receive used up.
                max_concurrency=max_concurrency,
            )
        )
        # Store the approval (conditional put, then updates), email, and answer an invalid
        # request at once with SendTaskFailure. The SQS event source adds the receive side.
        # Its marks and its approvers' inbox entries go together (TransactWriteItems needs
        # each write's own action), and it reads the approvers' digests and what waits in
        # them (BatchGetItem).
        shared.allow(
            self.worker,
            ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchGetItem"],
            [table.table_arn],
        )
        shared.allow(self.worker, ["sns:Publish"], [directory.topic.topic_arn])  # PublishBatch too
        shared.allow(self.worker, ["states:SendTaskFailure"], [shared.TASK_RESPONSE_RESOURCE])
        directory.grant_read(self.worker)  # who can be emailed
        shared.acknowledge(
            self.worker.role,
            "AwsSolutions-IAM5[Resource::*]",
            f"{shared.TASK_RESPONSE_REASON} {DIRECTORY_READ_REASON}",
        )

        self.dead_letter_function = factory.function(
            "DeadLetterFunction",
            "worker.dead_letter.lambda_handler",
            "Fails the execution behind each dead-lettered request with Approval.DeliveryFailed",
            timeout=DEAD_LETTER_TIMEOUT,
        )
        self.dead_letter_function.add_event_source(
            event_sources.SqsEventSource(
                self.dead_letter_queue, batch_size=10, report_batch_item_failures=True
            )
        )
        # Fail the execution by name. The SQS event source adds the receive side.
        shared.allow(self.dead_letter_function, ["states:SendTaskFailure"], [shared.TASK_RESPONSE_RESOURCE])
        shared.acknowledge(
            self.dead_letter_function.role, "AwsSolutions-IAM5[Resource::*]", shared.TASK_RESPONSE_REASON
        )

    def restrict_senders(self, roles: Sequence[str], accounts: Sequence[str]) -> None:
        """Only these roles send requests, and the principals of these other accounts: a
        wildcard ``sqs:SendMessage`` elsewhere in the account would otherwise let a principal
        make the genuine sender email real approvers with its own text."""
        shared.deny_all_but(self.queue, "sqs:SendMessage", roles, accounts)
        if accounts:
            allow_accounts(self.queue, accounts)
