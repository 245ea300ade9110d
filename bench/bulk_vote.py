"""A bulk vote: one approver decides N waiting approvals from their inbox link, 100 a POST.

Everything runs in this process on moto (``mock_aws``, as bench.calls does): N executions of
the approval state machine, all asking one approver, the worker draining the queue; then the
approver's "select all N matching", its confirmation, and the confirmed POSTs (one per 100,
each results page's "next" button), through the approval API's handler. It reports the HTTP
requests that takes, the product's AWS calls per item (confirmation and votes), and the time
from the first confirmed POST to every execution ended (moto's, on this machine: a figure to
compare runs by, not AWS's).

    .venv/bin/python -m bench.bulk_vote --requests 100
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from datetime import timedelta
from html import unescape
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext

import approval_api.handler
import worker.handler
from approvals import executions, inboxlinks
from approvals.local.approver import form_headers
from approvals.local.http import proxy_event
from approvals.local.outbox import Outbox
from approvals.local.poller import QueuePoller
from approvals.models import ApprovalRequest, utcnow
from bench.calls import API_URL, CallCounter, Context, on_moto, until, warm_stack
from bench.results import record

APPROVER = "bench@example.com"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


def post(link: str, fields: list[tuple[str, str]]) -> str:
    """POST a form to the inbox link as the approver's browser does; the page answered."""
    path = urlsplit(link).path.removeprefix(urlsplit(API_URL).path)
    headers = {"Host": urlsplit(API_URL).netloc, **form_headers(link)}
    response = approval_api.handler.lambda_handler(
        proxy_event("POST", path, headers, urlencode(fields).encode(), "198.51.100.7"),
        cast(LambdaContext, Context()),
    )
    if response["statusCode"] != 200:
        raise RuntimeError(f"POST refused: {response['statusCode']} {response['body'][:300]}")
    body: str = response["body"]
    return body


def hidden(page: str) -> list[tuple[str, str]]:
    return [(unescape(name), unescape(value)) for name, value in HIDDEN.findall(page)]


def measure(requests: int) -> dict[str, Any]:
    resources, services = warm_stack(APPROVER)
    sqs, sfn = boto3.client("sqs"), boto3.client("stepfunctions")
    link = inboxlinks.inbox_link(API_URL, services.keys.signing(), APPROVER, utcnow() + timedelta(days=1))
    # Each on its own (digest: false), so that every request's email can be waited for;
    # bench.digest measures the digests.
    request = ApprovalRequest(title="Bulk bench", approvers=[APPROVER], requester="bench", digest=False)
    arns = [executions.start(sfn, resources.state_machine_arn, request) for _ in range(requests)]
    outbox = Outbox(sqs, resources.outbox_queue_url)
    poller = QueuePoller(sqs, resources.queue_url, worker.handler.lambda_handler, "worker")
    until(lambda: poller.poll_once() == 0 and len(outbox.emails()) >= requests, "every email", 600)
    counter = CallCounter(services.store._db, services.sns, services.sfn)

    page = post(link, [("all", "1"), ("decision", "approve")])
    confirmation = counter.take()
    started = time.monotonic()
    posts = 0
    form = hidden(page)
    votes: Counter[str] = Counter()
    while form:
        page = post(link, form)
        posts += 1
        votes += counter.take()
        form = hidden(page)  # the results page's "next" form, while more match

    def ended() -> bool:
        return all(sfn.describe_execution(executionArn=arn)["status"] != "RUNNING" for arn in arns)

    until(ended, "every execution to end", 600)
    answered = time.monotonic() - started
    return {
        "requests": requests,
        "http_requests": 1 + posts,  # the confirmation, then one POST per 100
        "calls_per_item": {
            "confirmation": round(sum(confirmation.values()) / requests, 3),
            "votes": round(sum(votes.values()) / requests, 3),
        },
        "by_operation": {
            "confirmation": dict(sorted(confirmation.items())),
            "votes": dict(sorted(votes.items())),
        },
        "seconds_to_every_task_answered": round(answered, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with on_moto():
        figures = measure(args.requests)
    calls = figures["calls_per_item"]
    print(f"{args.requests} approvals waiting on one approver, decided from the inbox link")
    print(f"HTTP requests (POSTs)      {figures['http_requests']}")
    print(f"AWS calls per item         {calls['confirmation']} confirming + {calls['votes']} voting")
    print(f"  by operation             {figures['by_operation']}")
    print(f"to every task answered     {figures['seconds_to_every_task_answered']} s (moto, this machine)")
    record("bulk_vote", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
