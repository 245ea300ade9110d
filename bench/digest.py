"""A fan-out's emails: N requests to the same two approvers, through the worker in batches
of 10 (as the event source mapping delivers them) with the deployed digest window, then one
sweep once the window has closed. Reports the emails each approver received and the AWS
calls per item on the worker's side (and the sweep's), counted by botocore's
``before-call`` event on the functions' clients, as bench.calls counts them.

Everything runs in this process on moto (``mock_aws``); the queue messages are made as the
state machine makes them (tokens made up: the worker only stores and emails a valid request).

    .venv/bin/python -m bench.digest --items 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from datetime import timedelta
from typing import Any, cast

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

import worker.handler
from approvals import directory, runtime
from approvals.local.outbox import Outbox
from approvals.local.poller import sqs_event
from approvals.local.resources import provision
from approvals.models import ApprovalRequest, utcnow
from approvals.sweep import sweep
from bench.calls import API_URL, CallCounter, Context, on_moto
from bench.results import record
from bench.worker_batch import QUEUE_ARN, queued

APPROVERS = ["first@example.com", "second@example.com"]
BATCH = 10
WINDOW_SECONDS = 60  # the deployed default (approvals_cdk.config.DEFAULT_DIGEST_SECONDS)


def measure(items: int) -> dict[str, Any]:
    session = boto3.Session(region_name="us-east-1")
    resources = provision(session, visibility_timeout=30)
    os.environ.update(resources.environment(API_URL, WINDOW_SECONDS))
    runtime.reset()
    services = runtime.from_environment()
    for approver in APPROVERS:
        directory.add(session.client("sns"), resources.topic_arn, approver)
    # A warm container: the approver directory and the signing key are read once per container.
    services.directory.unreachable(APPROVERS, utcnow())
    services.keys.signing()
    counter = CallCounter(services.store._db, services.sns, services.sfn, services.secrets)
    outbox = Outbox(session.client("sqs"), resources.outbox_queue_url)

    sent = str(int(time.time() * 1000))
    begin = time.perf_counter()
    for start in range(0, items, BATCH):
        batch = [
            queued(ApprovalRequest(title=f"Refund {n}", approvers=APPROVERS, requester="bench"), sent)
            for n in range(start, min(start + BATCH, items))
        ]
        response = worker.handler.lambda_handler(sqs_event(batch, QUEUE_ARN), cast(LambdaContext, Context()))
        if response["batchItemFailures"]:
            raise RuntimeError(f"the worker failed messages: {response}")
    worker_seconds = time.perf_counter() - begin
    worker_calls = counter.take()
    emails_by_worker = Counter(email.to for email in outbox.emails())
    # The window closes: the sweep sends what waits.
    done = sweep(services, utcnow() + timedelta(seconds=WINDOW_SECONDS + 1))
    sweep_calls = counter.take()
    emails = Counter(email.to for email in outbox.emails())
    return {
        "items": items,
        "approvers": len(APPROVERS),
        "digest_seconds": WINDOW_SECONDS,
        "worker_seconds": round(worker_seconds, 1),
        "emails_per_approver": dict(sorted(emails.items())),
        "emails_per_approver_by_worker": dict(sorted(emails_by_worker.items())),
        "digests_sent_by_sweep": done["digests"],
        "worker_calls_per_item": round(sum(worker_calls.values()) / items, 3),
        "sweep_calls_per_item": round(sum(sweep_calls.values()) / items, 3),
        "by_operation": {
            "worker": dict(sorted(worker_calls.items())),
            "sweep": dict(sorted(sweep_calls.items())),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    args = parser.parse_args()
    with on_moto():
        figures = measure(args.items)
    print(f"{figures['items']} items to {figures['approvers']} approvers, window {WINDOW_SECONDS} s")
    by_worker = figures["emails_per_approver_by_worker"]
    print(f"emails per approver: {figures['emails_per_approver']} (by the worker: {by_worker})")
    print(
        f"worker: {figures['worker_calls_per_item']} AWS calls per item ({figures['by_operation']['worker']})"
    )
    print(
        f"sweep:  {figures['sweep_calls_per_item']} AWS calls per item ({figures['by_operation']['sweep']})"
    )
    print(f"worker time: {figures['worker_seconds']} s")
    record("digest", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
