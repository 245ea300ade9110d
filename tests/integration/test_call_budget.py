"""The cost budget: the AWS calls the functions make for one request with one approver.

The design's budget is one conditional write and one publish in the worker, one read for the
page, one conditional update and one SendTaskSuccess for the vote. Two deliberate deviations
are pinned here, so that any further one is a decision rather than an accident:

- the worker also marks the approval as emailed (one UpdateItem), so that a redelivery can
  tell "stored" from "emailed" and never loses an email after a crash between the two;
- the page read is one UpdateItem instead of a GetItem: the same single call returns the
  approval and notes the approver's first view for the audit trail.

The worker's read of the approver directory (the topic's subscriptions) is kept for the
container: a warm worker makes no SNS call but the publish (tests/integration/test_directory.py
counts the cold read and the refreshes).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from botocore.client import BaseClient

from approvals import runtime
from approvals.models import ApprovalRequest, utcnow
from tests.integration.conftest import Stack


class CallCounter:
    """Counts every API call made through the given clients (botocore ``before-call``)."""

    def __init__(self, *clients: BaseClient) -> None:
        self.calls: Counter[str] = Counter()
        for client in clients:
            client.meta.events.register("before-call", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def take(self) -> dict[str, int]:
        calls, self.calls = dict(self.calls), Counter()
        return calls


def test_calls_for_one_request_with_one_approver(stack: Stack) -> None:
    services = runtime.from_environment()  # built once per container; its clients are the ones used
    stack.add_approvers(["alice@example.com"])
    services.directory.unreachable(["alice@example.com"], utcnow())  # a warm worker
    counter = CallCounter(services.store._db, services.sns, services.sfn)

    arn = stack.start(ApprovalRequest(title="Budget", approvers=["alice@example.com"], requester="ci"))
    link = stack.email("alice@example.com", "Budget").links[0]
    assert counter.take() == {"PutItem": 1, "PublishBatch": 1, "UpdateItem": 1}

    page = stack.get(link)
    assert page.status == 200
    assert counter.take() == {"UpdateItem": 1}

    assert stack.submit(page, "approve").status == 200
    assert counter.take() == {"UpdateItem": 1, "SendTaskSuccess": 1}

    assert stack.finish(arn).output["outcome"] == "approved"
    assert counter.take() == {}
    assert runtime.from_environment() is services  # nothing was rebuilt along the way


def test_a_duplicate_delivery_costs_one_conditional_write(stack: Stack) -> None:
    services = runtime.from_environment()
    stack.add_approvers(["alice@example.com"])
    services.directory.unreachable(["alice@example.com"], utcnow())
    counter = CallCounter(services.store._db, services.sns, services.sfn)
    stack.start(ApprovalRequest(title="Dup", approvers=["alice@example.com"], requester="ci"))
    message = stack.queued_message()
    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=message["Body"])
    stack.drain()
    counter.take()
    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=message["Body"])
    stack.drain()
    assert counter.take() == {"PutItem": 1}


def test_a_vote_that_does_not_settle_costs_one_update(stack: Stack) -> None:
    services = runtime.from_environment()
    counter = CallCounter(services.store._db, services.sns, services.sfn)
    stack.start(
        ApprovalRequest(
            title="Two", approvers=["alice@example.com", "bob@example.com"], policy="all", requester="ci"
        )
    )
    link = stack.email("alice@example.com", "Two").links[0]
    stack.email("bob@example.com", "Two")
    counter.take()
    assert stack.post_link(link, "approve").status == 200
    # The settling form is tried first and refused; the refusal returns the item, so the
    # second (counting) form needs no read.
    assert counter.take() == {"UpdateItem": 2}


def test_an_approving_click_in_a_sequence_also_claims_and_emails_the_next_approver(stack: Stack) -> None:
    """The one deviation of policy sequence: the click that passes the turn on claims the
    next approver's link and publishes it (the sweep's fallback costs the click nothing).
    The vote itself is two tries, as any vote that does not settle: the settling form first."""
    services = runtime.from_environment()
    approvers = ["alice@example.com", "bob@example.com"]
    stack.add_approvers(approvers)
    services.directory.unreachable(approvers, utcnow())
    counter = CallCounter(services.store._db, services.sns, services.sfn)
    request = ApprovalRequest(title="In turn", approvers=approvers, policy="sequence", requester="ci")
    stack.start(request)
    link = stack.email("alice@example.com", "In turn").links[0]
    page = stack.get(link)
    counter.take()

    assert stack.submit(page, "approve").status == 200
    assert counter.take() == {"UpdateItem": 2 + 1, "PublishBatch": 1}
    assert stack.email("bob@example.com", "In turn")
