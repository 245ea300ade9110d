"""A bulk vote: one approver decides N waiting approvals from their inbox link.

Everything runs in this process on moto (``mock_aws``, as bench.calls does): N executions of
the approval state machine, all asking one approver, the worker draining the queue; then,
through the approval API's handler, the approver's inbox, "select all N matching" (its
confirmation) and the confirmed POST, which decides the first 100 and leaves the rest to a
job the sweep runs (approvals.bulkjob); then sweeps, back to back, until every execution has
ended. It reports the HTTP requests that takes, the product's AWS calls per item (the
confirmation; the votes, the POST's and the sweeps' together, everything the sweeps did
included; the workflows' own, from their histories; and a last sweep's once the redelivery
grace is over, which finds nothing left to confirm), the sweeps it took, and the time from
the confirmed POST to every execution ended (moto's, on this machine, with no wait between
sweeps: in AWS add up to one sweep interval, 5 minutes by default, for each sweep after the
first).

    .venv/bin/python -m bench.bulk_vote --requests 1000
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
from approvals import bulkjob, executions, inboxlinks
from approvals.local.approver import form_headers
from approvals.local.http import proxy_event
from approvals.local.outbox import Outbox
from approvals.local.poller import QueuePoller
from approvals.models import REDELIVERY_GRACE, ApprovalRequest, utcnow
from approvals.sweep import sweep
from bench.calls import API_URL, CallCounter, Context, on_moto, until, warm_stack, workflow_calls
from bench.results import record

APPROVER = "bench@example.com"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


def call(method: str, link: str, fields: list[tuple[str, str]] | None = None) -> str:
    """GET the inbox link, or POST a form to it, as the approver's browser does; the page answered."""
    path = urlsplit(link).path.removeprefix(urlsplit(API_URL).path)
    headers = {"Host": urlsplit(API_URL).netloc, **(form_headers(link) if fields is not None else {})}
    body = urlencode(fields).encode() if fields is not None else b""
    response = approval_api.handler.lambda_handler(
        proxy_event(method, path, headers, body, "198.51.100.7"), cast(LambdaContext, Context())
    )
    if response["statusCode"] != 200:
        raise RuntimeError(f"{method} refused: {response['statusCode']} {response['body'][:300]}")
    page: str = response["body"]
    return page


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

    call("GET", link)
    page = call("POST", link, [("all", "1"), ("decision", "approve")])
    confirmation = counter.take()  # the inbox and the confirmation
    started = time.monotonic()
    page = call("POST", link, hidden(page))
    http_requests = 3  # the inbox, the confirmation, the confirmed POST
    if hidden(page):
        raise RuntimeError("the results page asks for another POST")
    votes = counter.take()
    alice = inboxlinks.approver_id(APPROVER)
    sweeps = 0
    while any(job.remaining for job in bulkjob.progress(services.store, alice, utcnow())):
        counter.take()  # the benchmark's own read
        sweep(services, utcnow())  # what the schedule fires
        votes += counter.take()
        sweeps += 1

    def ended() -> bool:
        return all(sfn.describe_execution(executionArn=arn)["status"] != "RUNNING" for arn in arns)

    until(ended, "every execution to end", 600)
    answered = time.monotonic() - started
    workflows = sum((workflow_calls(sfn, arn) for arn in arns), Counter())
    counter.take()
    sweep(services, utcnow() + REDELIVERY_GRACE)
    last_sweep = counter.take()
    return {
        "requests": requests,
        "http_requests": http_requests,
        "sweeps": sweeps,
        "calls_per_item": {
            "confirmation": round(sum(confirmation.values()) / requests, 3),
            "votes": round(sum(votes.values()) / requests, 3),
            "workflows": round(sum(workflows.values()) / requests, 3),
            "last_sweep": round(sum(last_sweep.values()) / requests, 3),
        },
        "by_operation": {
            "confirmation": dict(sorted(confirmation.items())),
            "votes": dict(sorted(votes.items())),
            "workflows": dict(sorted(workflows.items())),
            "last_sweep": dict(sorted(last_sweep.items())),
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
    print(f"HTTP requests              {figures['http_requests']} (then {figures['sweeps']} sweeps)")
    print(
        f"AWS calls per item         {calls['confirmation']} confirming + {calls['votes']} voting"
        f" + {calls['workflows']} the workflows' + {calls['last_sweep']} a last sweep"
    )
    print(f"  by operation             {figures['by_operation']}")
    print(f"to every task answered     {figures['seconds_to_every_task_answered']} s (moto, this machine)")
    record("bulk_vote", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
