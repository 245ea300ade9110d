"""The cost budget: the AWS calls made for one request with one approver, sweep included.

The design's budget is one conditional write and one publish in the worker, one read for the
page, one conditional update and one SendTaskSuccess for the vote. Pinned here, per stage:

- worker, 3: the claim (PutItem), the emails (PublishBatch), and the "emailed" mark written
  with the approvers' inbox entries in one TransactWriteItems (a batch's marks and entries
  all go in one: a fraction of a call each). The mark is a deliberate deviation: it is what
  tells a redelivery after a crash between claim and publish (send the emails) from a
  duplicate after a publish (send nothing); nothing else written after the publish could
  tell them apart;
- page, 1: an UpdateItem instead of a GetItem: the same single call returns the approval and
  notes the approver's first view for the audit trail (page views are aside from the total);
- vote, 3: one conditional update that records the vote and settles the policy, one
  SendTaskSuccess, and one BatchWriteItem that takes the request out of the approvers'
  inboxes (the voter's; everyone's once settled), so that an inbox page counts its entries
  rather than reading every approval behind them (a deviation, for the inbox: issue 18);
- the workflow, 1: its confirmation state (approvals.statemachine) removes the approval
  from the sweep's index, conditional on it being settled, as soon as it takes the decision;
- the sweep, 0 per approval: it finds nothing left to confirm. (Without the workflow's write
  it would repeat SendTaskSuccess, refused, and write the removal itself: 2 calls, which is
  what a hand-written Task without the state still costs, tests/integration/test_hand_written_tasks.py.)

In all 7, of which 6 by the product's functions, and 1 answer to the token (the sweep's
repeat, which doubled the answers against the account's Step Functions quota, is gone).

With a digest window (approvals.digest; 60 s deployed, 0 here as in the local stack) the
worker reads the batch's approvers' digests first: one BatchGetItem per batch, then one
conditional UpdateItem per approver whose window is closed, which claims it (so that two
workers, or a worker and the sweep, never both email them). A lone request's approver is
claimed at once, without the read: one call either way. In a batch of ten to one approver
the claims, the one read or claim, the one publish and the one write of the marks come to
1.3 calls per request.

The worker's read of the approver directory (the topic's subscriptions) is kept for the
container: a warm worker makes no SNS call but the publish (tests/integration/test_directory.py
counts the cold read and the refreshes).
"""

from __future__ import annotations

import pytest

from approvals import runtime
from approvals.models import REDELIVERY_GRACE, ApprovalRequest, utcnow
from approvals.sweep import sweep
from bench.calls import CallCounter, dynamodb_task_calls, workflow_calls
from tests.integration.conftest import Stack, eventually
from tests.integration.test_bulk_api import hidden, inbox, post


def test_calls_for_one_request_with_one_approver(stack: Stack) -> None:
    services = runtime.from_environment()  # built once per container; its clients are the ones used
    stack.add_approvers(["alice@example.com"])
    services.directory.unreachable(["alice@example.com"], utcnow())  # a warm worker
    counter = CallCounter(services.store._db, services.sns, services.sfn)

    arn = stack.start(ApprovalRequest(title="Budget", approvers=["alice@example.com"], requester="ci"))
    link = stack.email("alice@example.com", "Budget").links[0]
    assert counter.take() == {"PutItem": 1, "PublishBatch": 1, "TransactWriteItems": 1}

    page = stack.get(link)
    assert page.status == 200
    assert counter.take() == {"UpdateItem": 1}

    assert stack.submit(page, "approve").status == 200
    assert counter.take() == {"UpdateItem": 1, "SendTaskSuccess": 1, "BatchWriteItem": 1}

    assert stack.finish(arn).output["outcome"] == "approved"
    assert counter.take() == {}
    assert workflow_calls(stack.sfn, arn) == {"dynamodb:updateItem": 1}  # the queue message aside

    # The sweep's queries serve every approval at once (the open index, the tell index of
    # requesters to tell of an outcome, the open index again for bulk jobs and for digests
    # due); this one is in none.
    assert sweep(services, utcnow() + REDELIVERY_GRACE) == {}
    assert counter.take() == {"Query": 4}
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
    # second (counting) form needs no read. Alice's inbox entry goes.
    assert counter.take() == {"UpdateItem": 2, "BatchWriteItem": 1}


def test_an_approving_click_in_a_sequence_also_claims_and_emails_the_next_approver(stack: Stack) -> None:
    """The one deviation of policy sequence: the click that passes the turn on claims the
    next approver's link, puts it in their inbox and publishes it (the sweep's fallback costs
    the click nothing). The vote itself is two tries, as any vote that does not settle: the
    settling form first."""
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
    # The BatchWriteItems: Bob's inbox entry in, Alice's out.
    assert counter.take() == {"UpdateItem": 2 + 1, "BatchWriteItem": 2, "PublishBatch": 1}
    assert stack.email("bob@example.com", "In turn")


def test_a_lone_request_with_a_digest_window_adds_one_claim(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPROVALS_DIGEST_SECONDS", "60")
    runtime.reset()
    services = runtime.from_environment()
    stack.add_approvers(["alice@example.com"])
    services.directory.unreachable(["alice@example.com"], utcnow())  # a warm worker
    counter = CallCounter(services.store._db, services.sns, services.sfn)

    stack.start(ApprovalRequest(title="Windowed", approvers=["alice@example.com"], requester="ci"))
    stack.email("alice@example.com", "Windowed")
    # The claim of the approver's window (a conditional update that returns their digest).
    assert counter.take() == {"PutItem": 1, "UpdateItem": 1, "PublishBatch": 1, "TransactWriteItems": 1}


FANOUT_ITEMS = 20  # two of the worker's batches of ten


def test_an_item_of_a_fanout_decided_in_a_bulk_vote_costs_at_most_four_calls(stack: Stack) -> None:
    """Issue 18's budget for a batch, the click included: each item of a fan-out asked of one
    approver, emailed by the worker in batches, approved from the approver's inbox in one
    confirmed bulk vote, the workflow's own calls and the sweep's counted too.

    Per batch of ten the worker makes ten claims, one publish and one write of the marks; the
    bulk vote reads its items (once for the confirmation, once for the vote), then per item
    one conditional update and one SendTaskSuccess, and takes the items out of the inbox in
    one BatchWriteItem (25 a call) and writes their delivered marks in one
    TransactWriteItems (100 a call), so that no child execution writes its own."""
    services = runtime.from_environment()
    alice = "alice@example.com"
    stack.add_approvers([alice])
    services.directory.unreachable([alice], utcnow())  # a warm worker
    counter = CallCounter(services.store._db, services.sns, services.sfn)
    request = ApprovalRequest(title="Refund", approvers=[alice], requester="ci").model_dump(
        mode="json", exclude_none=True
    )

    with dynamodb_task_calls() as tasks:
        arn = stack.start_fanout([request] * FANOUT_ITEMS)
        # Every item's message queued before the worker polls: full batches, as at scale.
        queued = lambda: stack.queue_counts(stack.resources.queue_url)[0] == FANOUT_ITEMS  # noqa: E731
        eventually(queued, what="every item's message")
        stack.drain()
        worker = counter.take()
        assert worker == {"PutItem": 20, "PublishBatch": 2, "TransactWriteItems": 2}

        link = inbox(stack, alice)
        page = post(stack, link, [("all", "1"), ("decision", "approve")])  # "select all N matching"
        assert page.status == 200, page.body
        confirmation = counter.take()
        # What waits on the approver (the inbox index), and the approvals behind it.
        assert confirmation == {"Query": 1, "BatchGetItem": 2}
        assert post(stack, link, hidden(page)).status == 200  # "Approve 20 requests?": yes
        votes = counter.take()
        assert votes == {
            "Query": 1,
            "BatchGetItem": 2,
            "UpdateItem": 20,
            "SendTaskSuccess": 20,
            "BatchWriteItem": 1,
            "TransactWriteItems": 1,
        }

        report = stack.finish(arn, timeout=30)
    assert report.output["counts"]["approved"] == FANOUT_ITEMS
    # The summary's function, and no item's own confirmation: the bulk vote wrote them all.
    workflow = workflow_calls(stack.sfn, arn)
    assert workflow == {"lambda:invoke": 1}
    assert tasks.take() == {}

    assert sweep(services, utcnow() + REDELIVERY_GRACE) == {}  # nothing left to confirm
    swept = counter.take()
    assert swept == {"Query": 4}

    calls = sum(sum(stage.values()) for stage in [worker, confirmation, votes, workflow, swept])
    assert calls / FANOUT_ITEMS <= 4  # 3.6 at 20 items; about 3.4 at 1,000 (bench.bulk_vote)
