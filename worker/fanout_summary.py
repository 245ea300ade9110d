"""Fan-out summary Lambda (a task of the product's fan-out, after its Distributed Map): the
execution's output says how many items ended in each outcome, as well as where the
decisions are. The Map wrote them to S3, so no state ever held them all."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from approvals import fanout, runtime

logger = Logger(service="approval-fanout-summary")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = fanout.summary(runtime.function_client("s3"), event)
    logger.info("fan-out summarised", map_run=summary["map_run"], counts=summary["counts"])
    return summary
