"""Calls the service applied but whose reply was lost, so that the SDK sent them again,
against moto. The copy fails the condition the first one passed; each write carries an id
that tells it is in after all. Without that, the approver whose vote was recorded would be
told "already decided" and the workflow would wait for the sweep; the worker would give its
own claim back to the queue; the sweep would skip a reminder it had claimed; and an answer
the workflow took would be recorded as too late."""

from __future__ import annotations

from typing import Any

from approvals import decision, sweep
from approvals.decision import Delivery
from approvals.models import ApprovalRequest, Outcome, Policy, Status, Vote, utcnow
from approvals.runtime import Services
from tests.conftest import Stack, approval_id_of
from tests.reliability.faults import Hooks, LostReplies, task_succeeded_events

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def request(title: str, approvers: list[str], **fields: Any) -> ApprovalRequest:
    return ApprovalRequest(title=title, approvers=approvers, requester="ci@example.com", **fields)


def is_vote(body: dict[str, Any]) -> bool:
    return "votes.#approver" in body.get("UpdateExpression", "")


def test_a_settling_vote_sent_twice_is_recorded_once_and_delivered_at_once(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    lost = LostReplies(hooks, services.store._db, "UpdateItem", is_vote)
    arn = stack.start(request("Lost reply", [ALICE]))
    link = stack.email(ALICE, "Lost reply").links[0]

    answer = stack.click(link, "approve", "yes", accept_json=True)
    assert lost.lost == 1
    assert answer.status == 200, answer.body
    assert (answer.json()["status"], answer.json()["delivery"]) == ("approved", "delivered")
    # The workflow has it now, not at the next sweep.
    report = stack.finish(arn, timeout=5)
    assert report.output["outcome"] == "approved"
    assert [(v["approver"], v["comment"]) for v in report.output["votes"]] == [(ALICE, "yes")]
    assert task_succeeded_events(stack.sfn, arn) == 1
    approval = stack.approval(approval_id_of(link))
    assert (approval.decided_by, approval.votes[ALICE].comment) == (ALICE, "yes")
    # Sent twice, counted once: a second approval from Alice is still refused.
    assert stack.post_link(link, "approve").status == 409


def test_a_vote_sent_twice_that_does_not_settle_counts_once(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    lost = LostReplies(hooks, services.store._db, "UpdateItem", is_vote)
    arn = stack.start(
        request("Lost reply, two of three", [ALICE, BOB, CAROL], policy=Policy.QUORUM, quorum=2)
    )
    links = {who: stack.email(who, "Lost reply, two of three").links[0] for who in (ALICE, BOB)}

    first = stack.click(links[ALICE], "approve", accept_json=True)
    assert lost.lost == 1
    assert (first.status, first.json()["delivery"]) == (200, "not_settled")
    approval = stack.approval(approval_id_of(links[ALICE]))
    assert (approval.status, list(approval.votes)) == (Status.PENDING, [ALICE])
    stack.assert_running(arn)

    # Alice's vote counted once: Bob's is the second of two, and settles it.
    second = stack.click(links[BOB], "approve", accept_json=True)
    assert (second.status, second.json()["delivery"]) == (200, "delivered")
    assert stack.finish(arn).output["outcome"] == "approved"


def test_a_vote_sent_twice_after_another_vote_settled_leaves_delivery_to_that_vote(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    arn = stack.start(request("Lost reply, then Bob", [ALICE, BOB], policy=Policy.ALL))
    links = {who: stack.email(who, "Lost reply, then Bob").links[0] for who in (ALICE, BOB)}
    bob: list[Delivery] = []

    def alice_then_bob(body: dict[str, Any]) -> bool:
        """Alice's vote is in; Bob's settles the request before her vote is sent again.
        (Bob's goes straight to the domain: the in-process API serves one request at a time.)"""
        if is_vote(body) and body["ExpressionAttributeNames"]["#approver"] == ALICE:
            vote = Vote(approver=BOB, outcome=Outcome.APPROVED, at=utcnow())
            bob.append(
                decision.record(services.store, services.sfn, approval_id_of(links[BOB]), vote).delivery
            )
            return True
        return False

    LostReplies(hooks, services.store._db, "UpdateItem", alice_then_bob)
    alice = stack.click(links[ALICE], "approve", accept_json=True)
    assert bob == [Delivery.DELIVERED]
    # Recorded, not refused; Bob's request delivered the decision, so Alice's does not.
    assert (alice.status, alice.json()["status"], alice.json()["delivery"]) == (202, "approved", "pending")
    report = stack.finish(arn)
    assert sorted(v["approver"] for v in report.output["votes"]) == [ALICE, BOB]
    assert task_succeeded_events(stack.sfn, arn) == 1
    assert stack.approval(approval_id_of(links[ALICE])).decided_by == BOB


def test_a_claim_sent_twice_is_the_workers_own(stack: Stack, services: Services, hooks: Hooks) -> None:
    lost = LostReplies(
        hooks, services.store._db, "PutItem", lambda body: "claim_until" in body.get("Item", {})
    )
    stack.start(request("Lost claim reply", [ALICE, BOB]))

    assert stack.worker.poll_once(wait_seconds=5) == 1
    assert lost.lost == 1
    # Handled in the one delivery: emailed, and the message deleted rather than retried.
    assert sorted(e.to for e in stack.emails()) == [ALICE, BOB]
    assert stack.queue_counts(stack.resources.queue_url) == (0, 0)
    assert all(a.emailed for a in stack.approvals())


def test_a_reminder_claim_sent_twice_still_sends_the_reminder(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    stack.start(request("Lost reminder reply", [ALICE], timeout_seconds=3600))
    approval_id = approval_id_of(stack.email(ALICE, "Lost reminder reply").links[0])
    approval = stack.approval(approval_id)
    lost = LostReplies(
        hooks, services.store._db, "UpdateItem", lambda body: "reminded." in body.get("UpdateExpression", "")
    )

    half_time = approval.created_at + (approval.expires_at - approval.created_at) / 2
    assert sweep.sweep(services, half_time)["reminded"] == 1
    assert lost.lost == 1
    assert [e.to for e in stack.emails() if e.subject.startswith("[Reminder]")] == [ALICE]
    assert set(stack.approval(approval_id).reminded) == {"50%"}
    assert utcnow() < approval.expires_at


def test_an_answer_to_the_workflow_sent_twice_is_not_taken_for_a_timeout(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """SendTaskSuccess is taken, its reply lost; the service refuses the copy as it refuses
    any answer to a closed task. The workflow has the decision: the record must say so,
    not that the workflow stopped waiting."""
    lost = LostReplies(hooks, services.sfn, "SendTaskSuccess", lambda _: True)
    arn = stack.start(request("Lost answer", [ALICE]))
    link = stack.email(ALICE, "Lost answer").links[0]

    answer = stack.click(link, "approve", accept_json=True)
    assert lost.lost == 1
    assert (answer.status, answer.json()["status"], answer.json()["delivery"]) == (
        200,
        "approved",
        "delivered",
    )
    assert stack.finish(arn).output["outcome"] == "approved"
    assert stack.approval(approval_id_of(link)).status is Status.APPROVED
    assert task_succeeded_events(stack.sfn, arn) == 1
