"""The worker's batch of 10, its messages handled at once against one after another.

One local stack; the same worker handler runs batches of ten valid one-approver requests
(each: a conditional PutItem, a PublishBatch, an UpdateItem), once with its thread pool
and once with a pool of one thread, which is the sequential worker it replaced. Rounds
alternate; the figures are medians. moto answers in this very process, so its own work
competes with the worker's threads for the interpreter: on AWS, where each call is a
network round trip, running them at once gains more.

    .venv/bin/python -m bench.worker_batch
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import worker.handler
from approvals import directory
from approvals.local.poller import sqs_event
from approvals.local.stack import LocalStack
from approvals.models import ApprovalRequest, QueueMessage
from approvals.target import for_local
from bench.results import record

APPROVER = "bench@example.com"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:approval-requests"


class Context:
    """The Lambda context the handler's logger reads."""

    function_name = "approval-worker"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:approval-worker"
    aws_request_id = "bench"


def queued(request: ApprovalRequest, sent: str) -> dict[str, Any]:
    """The SQS record of a request as the state machine queues it (its token made up: the
    worker only stores and emails a valid request, it never answers one)."""
    run = uuid.uuid4().hex
    body = QueueMessage(
        task_token=f"bench-token-{run}",
        execution=f"arn:aws:states:us-east-1:123456789012:execution:bench:{run}",
        state="Approve",
        request=request.model_dump(mode="json"),
        timeout_seconds=request.timeout_seconds,
    )
    return {
        "MessageId": run,
        "ReceiptHandle": run,
        "Body": body.model_dump_json(),
        "Attributes": {"SentTimestamp": sent},
    }


def batch_event(size: int) -> dict[str, Any]:
    """A batch of ``size`` requests as the state machine queues them."""
    request = ApprovalRequest(title="Batch bench", approvers=[APPROVER], requester="bench")
    sent = str(int(time.time() * 1000))
    return sqs_event([queued(request, sent) for _ in range(size)], QUEUE_ARN)


def batch_seconds(size: int) -> float:
    event = batch_event(size)
    begin = time.perf_counter()
    response = worker.handler.lambda_handler(event, Context())
    elapsed = time.perf_counter() - begin
    if response["batchItemFailures"]:
        raise RuntimeError(f"the worker failed messages: {json.dumps(response)}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--size", type=int, default=worker.handler.BATCH_SIZE)
    args = parser.parse_args()
    stack = LocalStack(moto_port=0, api_port=0, visibility_timeout=30, sweep_interval=600)
    info = stack.start()
    try:
        target = for_local(info)
        directory.add(target.sns, target.topic_arn, APPROVER)
        batch_seconds(args.size)  # warm: clients, key ring, approver directory
        concurrent = worker.handler.threads
        samples: dict[str, list[float]] = {"concurrent": [], "sequential": []}
        with ThreadPoolExecutor(max_workers=1) as one_thread:
            for _ in range(args.rounds):
                for name, pool in (("sequential", one_thread), ("concurrent", concurrent)):
                    worker.handler.threads = pool
                    samples[name].append(batch_seconds(args.size))
        worker.handler.threads = concurrent
    finally:
        stack.stop()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratio = medians["concurrent"] / medians["sequential"]
    print(f"batch of {args.size}, median of {args.rounds} rounds each")
    for name, seconds in medians.items():
        print(f"{name:<11} {seconds * 1000:7.0f} ms")
    print(f"concurrent / sequential: {ratio:.2f}x")
    record(
        "worker_batch",
        {
            "batch_size": args.size,
            "rounds": args.rounds,
            **{f"{name}_ms": round(seconds * 1000) for name, seconds in medians.items()},
            "concurrent_vs_sequential": round(ratio, 2),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
