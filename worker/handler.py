"""Worker Lambda: SQS batches of approval requests in, partial batch response out.

Each message claims its own approval, so the claims are made at once, each in a thread of
its own: boto3 clients are thread-safe, and a batch of ten takes about as long as its
slowest message rather than the sum of all ten. Powertools' async processor gathers them and
keeps the partial batch response; the logging and metrics stay on its event loop's thread.
Then the batch is emailed together, one email per approver (approvals.digest), and the
messages whose emails failed join the response's failures.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from approvals import digest, request, runtime
from approvals import metrics as names
from approvals.digest import ToEmail
from approvals.models import utcnow

logger = Logger(service="approval-worker")
# The domain's records (approvals.*) as JSON through this logger: Lambda's default format
# would drop their fields, the approval id among them.
copy_config_to_registered_loggers(source_logger=logger, include={"approvals"})
metrics = Metrics(namespace=names.NAMESPACE, service=os.environ.get("APPROVALS_TABLE", "approvals"))
processor = AsyncBatchProcessor(event_type=EventType.SQS)
BATCH_SIZE = 10  # the event source mapping's (approvals_cdk), and SQS's most
# Threads kept for the container's life; asyncio's default pool would have fewer than ten
# on Lambda's few vCPUs.
threads = ThreadPoolExecutor(max_workers=BATCH_SIZE, thread_name_prefix="message")


def sent_at(record: SQSRecord) -> datetime:
    """When the state machine queued the message: the start of its timeout."""
    return datetime.fromtimestamp(int(record.attributes.sent_timestamp) / 1000, UTC).replace(microsecond=0)


def claim(record: SQSRecord) -> request.Handled | ToEmail:
    return request.claim_message(runtime.from_environment(), record.body, sent_at(record), utcnow())


async def record_handler(record: SQSRecord) -> tuple[str, ToEmail | None]:
    # The context goes along: the local stack names the function's environment in it.
    in_context = contextvars.copy_context().run
    claimed = await asyncio.get_running_loop().run_in_executor(threads, in_context, claim, record)
    if isinstance(claimed, ToEmail):
        return record.message_id, claimed
    logger.info("message handled", message_id=record.message_id, result=claimed.value)
    if claimed is request.Handled.INVALID:
        metrics.add_metric(name=names.INVALID_REQUESTS, unit=MetricUnit.Count, value=1)
    return record.message_id, None


def email_claimed(claimed: dict[str, ToEmail]) -> list[str]:
    """Email the batch's claimed approvals together; the message ids to retry."""
    if not claimed:
        return []
    try:
        retry = digest.email_batch(runtime.from_environment(), list(claimed.values()), utcnow())
    except Exception:
        # Whatever stopped it (a write still failing after the SDK's retries), each claimed
        # message is retried: its claim says what went out.
        logger.exception("batch not emailed; its messages are retried")
        return list(claimed)
    for message_id, item in claimed.items():
        result = "retried" if item.approval.approval_id in retry else request.Handled.EMAILED.value
        logger.info("message handled", message_id=message_id, result=result)
    return [message_id for message_id, item in claimed.items() if item.approval.approval_id in retry]


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    try:
        with processor(event["Records"], record_handler, context):
            results = processor.async_process()
        handled = [result for status, result, _ in results if status == "success"]
        claimed = {message_id: item for message_id, item in handled if item}
        response = processor.response()
        response["batchItemFailures"] += [{"itemIdentifier": i} for i in email_claimed(claimed)]
        return response
    finally:
        if metrics.metric_set:  # most batches count nothing: no empty metric lines
            metrics.flush_metrics()
