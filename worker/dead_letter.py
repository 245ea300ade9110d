"""Dead-letter Lambda: a request that could not be delivered fails its execution by name.

Without this, an execution whose message exhausted its retries would wait until its
timeout (up to a year) for an email that was never sent.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from approvals import metrics as names
from approvals import request, runtime

logger = Logger(service="approval-dead-letter")
# The domain's records (approvals.*) as JSON through this logger: Lambda's default format
# would drop their fields, the approval id among them.
copy_config_to_registered_loggers(source_logger=logger, include={"approvals"})
metrics = Metrics(namespace=names.NAMESPACE, service=os.environ.get("APPROVALS_TABLE", "approvals"))
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    result = request.fail_undeliverable(runtime.from_environment().sfn, record.body)
    logger.warning("dead letter handled", message_id=record.message_id, result=result)
    if result == request.FAILED_EXECUTION:
        metrics.add_metric(name=names.DELIVERIES_FAILED, unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    try:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()
