"""AWS calls per one-approver approval, page views aside, sweep included, over N approvals.

Everything runs in this process on moto (``mock_aws``, as tests/integration do): N executions
of the approval state machine, the worker draining the queue in batches of up to 10 as the
event source mapping does, each approver's decision POSTed to the approval API, then one
sweep after the redelivery grace. Every call the functions make is counted by botocore's
``before-call`` event on their clients; the calls the workflow itself makes (its service
integrations, the queue message aside) come from each execution's history. The event source
mapping's own SQS calls are Lambda's, not the product's, and are not counted.

    .venv/bin/python -m bench.calls --requests 100
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

import boto3
import moto
from aws_lambda_powertools.utilities.typing import LambdaContext

import approval_api.handler
import worker.handler
from approvals import directory, executions, runtime
from approvals.local import moto_fixes
from approvals.local.approver import form_headers, replayed_form
from approvals.local.http import proxy_event
from approvals.local.outbox import Outbox
from approvals.local.poller import QueuePoller
from approvals.local.resources import Resources, provision
from approvals.models import REDELIVERY_GRACE, ApprovalRequest, utcnow
from approvals.runtime import Services
from approvals.sweep import sweep
from bench.results import record

API_URL = "https://approvals.example.test/prod"
APPROVER = "bench@example.com"
# The waitForTaskToken task's own message: the request itself, not a call per approval.
QUEUE_MESSAGE = "sqs:sendMessage.waitForTaskToken"


class Context:
    """The Lambda context the handlers' loggers read."""

    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"


class CallCounter:
    """Every API call made through the given clients, by operation."""

    def __init__(self, *clients: Any) -> None:
        self.calls: Counter[str] = Counter()
        for client in clients:
            client.meta.events.register("before-call", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def take(self) -> Counter[str]:
        calls, self.calls = self.calls, Counter()
        return calls


def decide(link: str, approver: str) -> int:
    """POST the decision with the fields the link's page puts in its form (a short link's:
    the approver it was emailed to), as the approver's browser does."""
    address = link.partition("?")[0]
    path = urlsplit(address).path.removeprefix(urlsplit(API_URL).path)
    body = urlencode({**replayed_form(link, approver), "decision": "approve", "comment": ""}).encode()
    headers = {"Host": urlsplit(API_URL).netloc, **form_headers(address, accept_json=True)}
    response = approval_api.handler.lambda_handler(
        proxy_event("POST", path, headers, body, "198.51.100.7"), cast(LambdaContext, Context())
    )
    status: int = response["statusCode"]
    return status


def workflow_calls(sfn: Any, execution_arn: str) -> Counter[str]:
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    scheduled = (event["taskScheduledEventDetails"] for event in events if event["type"] == "TaskScheduled")
    calls = Counter(f"{task['resourceType']}:{task['resource']}" for task in scheduled)
    del calls[QUEUE_MESSAGE]
    return calls


@contextmanager
def dynamodb_task_calls() -> Iterator[CallCounter]:
    """The calls the state machines' DynamoDB tasks make (a ConfirmDelivery), counted on the
    clients moto's engine makes for them: moto runs a Distributed Map's items as threads of
    the parent, whose history does not show their tasks (on AWS each child's would)."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_dynamodb as dynamodb_tasks,
    )

    counter = CallCounter()
    make = dynamodb_tasks.boto_client_for  # type: ignore[attr-defined]
    handler = f"dynamodb-task-calls-{id(counter)}"  # once per client: the local engine reuses them
    clients: dict[int, Any] = {}

    def counted(*args: Any, **kwargs: Any) -> Any:
        client = make(*args, **kwargs)
        client.meta.events.register("before-call", counter._count, unique_id=handler)
        clients[id(client)] = client
        return client

    dynamodb_tasks.boto_client_for = counted  # type: ignore[attr-defined]
    try:
        yield counter
    finally:
        dynamodb_tasks.boto_client_for = make  # type: ignore[attr-defined]
        for client in clients.values():
            client.meta.events.unregister("before-call", unique_id=handler)


def until(done: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def warm_stack(approver: str) -> tuple[Resources, Services]:
    """The product's resources, the functions' environment set to them, ``approver`` in the
    directory, and the functions' services as a warm container holds them: the approver
    directory and the signing key are read once per container."""
    resources = provision(boto3.Session(region_name="us-east-1"), visibility_timeout=30)
    os.environ.update(resources.environment(API_URL))
    runtime.reset()
    services = runtime.from_environment()
    directory.add(services.sns, resources.topic_arn, approver)
    services.directory.unreachable([approver], utcnow())
    services.keys.signing()
    return resources, services


def measure(requests: int) -> dict[str, Counter[str]]:
    """Each stage's calls, in all, for ``requests`` approvals."""
    resources, services = warm_stack(APPROVER)
    sqs, sfn = boto3.client("sqs"), boto3.client("stepfunctions")
    counter = CallCounter(services.store._db, services.sns, services.sfn, services.secrets)

    # Each request on its own (digest: false): each email carries its own link to click,
    # whatever else the batch holds. bench.digest measures the digests.
    request = ApprovalRequest(title="Calls bench", approvers=[APPROVER], requester="bench", digest=False)
    arns = [executions.start(sfn, resources.state_machine_arn, request) for _ in range(requests)]
    outbox = Outbox(sqs, resources.outbox_queue_url)
    poller = QueuePoller(sqs, resources.queue_url, worker.handler.lambda_handler, "worker")
    until(lambda: poller.poll_once() == 0 and len(outbox.emails()) >= requests, "every email")
    stages = {"worker": counter.take()}

    refused = [status for email in outbox.emails() if (status := decide(email.links[0], email.to)) != 200]
    if refused:
        raise RuntimeError(f"decisions refused: {Counter(refused)}")
    stages["vote"] = counter.take()

    def ended() -> bool:
        return all(sfn.describe_execution(executionArn=arn)["status"] != "RUNNING" for arn in arns)

    until(ended, "every execution to end")
    stages["workflow"] = sum((workflow_calls(sfn, arn) for arn in arns), Counter())
    sweep(services, utcnow() + REDELIVERY_GRACE)
    stages["sweep"] = counter.take()
    return stages


@contextmanager
def on_moto() -> Iterator[None]:
    """This process's AWS calls answered by moto, which runs the executions too."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
    )
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "MOTO_PORT"):
        os.environ.pop(name, None)
    with moto.mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        moto_fixes.apply()
        yield


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    begin = datetime.now()
    with on_moto():
        stages = measure(args.requests)
    per_approval = {stage: sum(calls.values()) / args.requests for stage, calls in stages.items()}
    total = sum(per_approval.values())
    print(f"{args.requests} one-approver approvals, page views aside ({datetime.now() - begin} in all)")
    for stage, calls in stages.items():
        listed = ", ".join(f"{name} {count}" for name, count in sorted(calls.items())) or "none"
        print(f"{stage:<9} {per_approval[stage]:5.2f} per approval  ({listed})")
    print(f"total     {total:5.2f} per approval; the click's own path {per_approval['vote']:.2f}")
    record(
        "calls",
        {
            "requests": args.requests,
            "per_approval": {stage: round(calls, 2) for stage, calls in per_approval.items()},
            "total_per_approval": round(total, 2),
            "by_operation": {stage: dict(sorted(calls.items())) for stage, calls in stages.items()},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
