"""A fan-out on the local stack (`approvals local`, server mode, the worker in its own
processes) with the deployed digest window: N requests to the same two approvers.

Measured from the fan-out's start: the time until each approver has an email in the
outbox, and until the worker has taken every request (every child's message sent and the
queue empty); the emails each approver had by then; the AWS calls the local endpoint
served per item, by operation (Step Functions' own, the event source mapping's polls and
the functions' calls alike: the count of one run, not the product's budget, which
bench/digest.py and bench/calls.py measure).

    .venv/bin/python -m bench.fanout_local --items 1000
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from typing import Any

from moto.core.responses import BaseResponse

from approvals import directory, executions
from approvals.local import approver
from approvals.local.stack import LocalStack
from approvals.models import ApprovalRequest
from approvals.target import for_local
from bench.results import add_concurrency_option, name, record

APPROVERS = ["first@example.com", "second@example.com"]
WINDOW_SECONDS = 60  # the deployed default (approvals_cdk.config.DEFAULT_DIGEST_SECONDS)
TIMEOUT_SECONDS = 1800


def count_calls() -> Counter[str]:
    """Every call the local endpoint serves from now on, by service and operation."""
    served: Counter[str] = Counter()
    lock = threading.Lock()
    call_action = BaseResponse.call_action

    def counted(self: BaseResponse) -> Any:
        with lock:
            service = type(self).__name__.removesuffix("Response").removesuffix("Handler")
            served[f"{service}:{self._get_action()}"] += 1
        return call_action(self)

    BaseResponse.call_action = counted  # type: ignore[method-assign]
    return served


def measure(items: int, concurrency: int) -> dict[str, Any]:
    stack = LocalStack(
        moto_port=0, api_port=0, visibility_timeout=30, digest_seconds=WINDOW_SECONDS, concurrency=concurrency
    )
    info = stack.start()
    try:
        target = for_local(info)
        for address in APPROVERS:
            directory.add(target.sns, target.topic_arn, address)
        sqs = target.client("sqs")
        requests = [
            ApprovalRequest(title=f"Refund {n}", approvers=APPROVERS, requester="bench") for n in range(items)
        ]
        served = count_calls()
        begin = time.monotonic()
        executions.start_fanout(target.sfn, info.fanout_state_machine_arn, requests)
        emailed: dict[str, float] = {}
        taken = 0.0
        while not taken or len(emailed) < len(APPROVERS):
            if time.monotonic() - begin > TIMEOUT_SECONDS:
                raise TimeoutError(
                    f"after {TIMEOUT_SECONDS} s: emailed {emailed}, every request taken: {taken}"
                )
            time.sleep(0.5)
            at = time.monotonic() - begin
            emails = approver.request(info.outbox_url, headers={"Accept": "application/json"}).json()
            for email in emails:
                emailed.setdefault(email["to"], at)
            attributes = sqs.get_queue_attributes(QueueUrl=info.queue_url, AttributeNames=["All"])[
                "Attributes"
            ]
            waiting = int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"]
            )
            if not taken and served["SQS:SendMessage"] >= items and not waiting:
                taken = at
        calls = dict(served)
        per_approver = Counter(email["to"] for email in emails)
    finally:
        stack.stop()
    return {
        "items": items,
        "approvers": len(APPROVERS),
        "digest_seconds": WINDOW_SECONDS,
        "seconds_to_every_approver_emailed": round(max(emailed.values()), 1),
        "seconds_to_every_request_taken_by_the_worker": round(taken, 1),
        "emails_per_approver_by_then": dict(sorted(per_approver.items())),
        "calls_per_item": round(sum(calls.values()) / items, 2),
        "calls_by_operation": dict(sorted(calls.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    add_concurrency_option(parser)
    args = parser.parse_args()
    figures = measure(args.items, args.concurrency)
    print(json.dumps(figures, indent=2))
    record(name(f"fanout_local_{args.items}", args.concurrency), figures)


if __name__ == "__main__":
    main()
