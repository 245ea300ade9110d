"""Sweeper Lambda, run on a schedule (EventBridge Scheduler): expiry, reminders, redelivery."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from approvals import runtime, sweep
from approvals.models import utcnow

logger = Logger(service="approval-sweeper")
# The domain's records (approvals.*) as JSON through this logger: Lambda's default format
# would drop their fields, the approval id among them.
copy_config_to_registered_loggers(source_logger=logger, include={"approvals"})


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    return dict(sweep.sweep(runtime.from_environment(), utcnow()))
