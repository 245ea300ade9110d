"""Execution-ended Lambda (EventBridge rule on Step Functions status changes): an
execution that stopped, failed or timed out leaves no approval pending behind it."""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from approvals import runtime, sweep
from approvals.models import utcnow

logger = Logger(service="approval-execution-ended")
# The domain's records (approvals.*) as JSON through this logger: Lambda's default format
# would drop their fields, the approval id among them.
copy_config_to_registered_loggers(source_logger=logger, include={"approvals"})


@event_source(data_class=EventBridgeEvent)
@logger.inject_lambda_context
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, int]:
    execution_arn = event.detail["executionArn"]
    closed = sweep.close_for_execution(runtime.from_environment().store, execution_arn, utcnow())
    logger.info(
        "execution ended", execution_arn=execution_arn, status=event.detail.get("status"), closed=closed
    )
    return dict(closed)
