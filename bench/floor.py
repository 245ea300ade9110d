"""The product against the engine's own floor, on one local stack in one run.

The floor: N executions of a bare state machine whose one Task sends its token to a queue
(``sqs:sendMessage.waitForTaskToken``) and a consumer that answers each token at once. The
product: N one-approver requests through the real worker, emails and approval API, each
clicked over HTTP as soon as its email appears. Both run against the same moto server, so
the ratio says what the product adds to what Step Functions and SQS cost anyway.

    .venv/bin/python -m bench.floor --requests 100
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import boto3

from approvals import directory, executions
from approvals.local import approver
from approvals.local.environments import DEFAULT_CONCURRENCY
from approvals.local.info import LocalInfo
from approvals.local.outbox import Outbox
from approvals.local.stack import LocalStack
from approvals.models import ApprovalRequest
from approvals.target import for_local
from bench.results import add_concurrency_option, name, record

STARTERS = 8  # threads starting executions, on both sides alike
CLICKERS = 8  # approvers clicking at once


@dataclass(frozen=True)
class FloorReport:
    requests: int
    floor_seconds: float
    product_seconds: float

    @property
    def ratio(self) -> float:
        return self.product_seconds / self.floor_seconds


def _start_all(start: Callable[[int], str], total: int) -> list[str]:
    with ThreadPoolExecutor(STARTERS) as pool:
        return list(pool.map(start, range(total)))


def _wait_all_ended(sfn, state_machine_arn: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while sfn.list_executions(stateMachineArn=state_machine_arn, statusFilter="RUNNING", maxResults=1)[
        "executions"
    ]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"executions of {state_machine_arn} still running after {timeout:.0f} s")
        time.sleep(0.1)


def floor(info: LocalInfo, total: int) -> float:
    """Seconds for ``total`` bare waitForTaskToken executions, each answered at once."""
    session = boto3.Session(region_name=info.region)
    sqs, sfn = session.client("sqs"), session.client("stepfunctions")
    queue_url = sqs.create_queue(QueueName="bench-floor")["QueueUrl"]
    definition = {
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue_url, "MessageBody": {"token.$": "$$.Task.Token"}},
                "End": True,
            }
        },
    }
    arn = sfn.create_state_machine(
        name="bench-floor",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/bench-floor",
    )["stateMachineArn"]
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in messages.get("Messages", []):
                token = json.loads(message["Body"])["token"]
                sfn.send_task_success(taskToken=token, output="{}")
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    consumer = threading.Thread(target=consume, name="floor-consumer", daemon=True)
    consumer.start()
    begin = time.monotonic()
    _start_all(
        lambda i: sfn.start_execution(stateMachineArn=arn, name=f"floor-{i}", input="{}")["executionArn"],
        total,
    )
    _wait_all_ended(sfn, arn, timeout=max(120, total))
    seconds = time.monotonic() - begin
    stop.set()
    consumer.join(timeout=10)
    return seconds


def add_approvers(info: LocalInfo, total: int) -> None:
    """The product's directory, as an operator fills it before any request."""
    target = for_local(info)
    for i in range(total):
        directory.add(target.sns, target.topic_arn, f"floor{i}@bench.example")


def product(info: LocalInfo, outbox: Outbox, total: int) -> float:
    """Seconds for ``total`` one-approver requests, each clicked as soon as its email appears,
    once ``add_approvers`` has added their approvers.
    The outbox is read here rather than over HTTP: its JSON, re-sent whole 20 times a second,
    grew with every email and slowed the stack under test more than the product did."""
    sfn = for_local(info).sfn
    clicked: set[str] = set()
    problems: list[str] = []
    stop = threading.Event()

    def click(link: str, to: str) -> None:
        answer = approver.post_from_link(link, "approve", "bench", approver=to)
        if answer.status != 200:
            problems.append(f"{link}: {answer.status}")

    def clicker() -> None:
        with ThreadPoolExecutor(CLICKERS) as pool:
            while not stop.wait(0.05):
                for email in outbox.emails():
                    if email.to.startswith("floor") and email.to not in clicked:
                        clicked.add(email.to)
                        pool.submit(click, email.links[0], email.to)

    watcher = threading.Thread(target=clicker, name="clicker", daemon=True)
    watcher.start()
    begin = time.monotonic()
    _start_all(
        lambda i: executions.start(
            sfn,
            info.state_machine_arn,
            ApprovalRequest(title=f"floor {i}", approvers=[f"floor{i}@bench.example"], requester="bench"),
        ),
        total,
    )
    _wait_all_ended(sfn, info.state_machine_arn, timeout=max(120, total * 2))
    seconds = time.monotonic() - begin
    stop.set()
    watcher.join(timeout=30)
    if problems or len(clicked) != total:
        raise RuntimeError(f"{len(clicked)} of {total} clicked; refused: {problems[:5]}")
    return seconds


@contextmanager
def local_stack(concurrency: int) -> Iterator[tuple[LocalInfo, Outbox]]:
    """The local stack both sides run on, on free ports, stopped afterwards."""
    stack = LocalStack(
        moto_port=0, api_port=0, visibility_timeout=30, sweep_interval=60, concurrency=concurrency
    )
    info = stack.start()
    try:
        assert stack.outbox is not None
        yield info, stack.outbox
    finally:
        stack.stop()


def run(total: int, concurrency: int = DEFAULT_CONCURRENCY) -> FloorReport:
    with local_stack(concurrency) as (info, outbox):
        floor_seconds = floor(info, total)
        add_approvers(info, total)
        return FloorReport(total, floor_seconds, product(info, outbox, total))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100)
    add_concurrency_option(parser)
    args = parser.parse_args()
    report = run(args.requests, args.concurrency)
    print(f"requests         {report.requests}")
    print(f"engine floor     {report.floor_seconds:.1f} s")
    print(f"product          {report.product_seconds:.1f} s")
    print(f"ratio            {report.ratio:.2f}x the floor")
    record(
        name(f"floor_{report.requests}", args.concurrency),
        {
            "requests": report.requests,
            "concurrency": args.concurrency,
            "floor_seconds": round(report.floor_seconds, 2),
            "product_seconds": round(report.product_seconds, 2),
            "ratio": round(report.ratio, 2),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
