"""Reassignment and the requester told under races and faults, against moto: a reassignment
racing the vote of the approver it hands over (either wins, never both; the workflow is
answered once), a reassignment's reply lost, and the requester's one email when sweeps race,
a claim's reply is lost or the email fails."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from approvals import decision, reassign, shortlinks
from approvals.local.approver import replayed_form
from approvals.models import ApprovalRequest, Reassignment, utcnow
from approvals.runtime import Services
from approvals.store import ReassignRejected
from approvals.sweep import sweep
from tests.conftest import Stack, approval_id_of
from tests.reliability.faults import Hooks, LostReplies, SnsFaults, task_succeeded_events

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
REQUESTER = "requester@example.com"
THREADS = 16


def change(from_: str, to: str) -> Reassignment:
    return Reassignment.model_validate({"from": from_, "to": to, "by": "oncall", "at": utcnow()})


def email_new_approver(services: Services, approval_id: str, approver: str) -> None:
    approval = services.store.get(approval_id)
    assert approval is not None
    assert reassign.email_new_approver(
        services.store, services.sns, services.settings.topic_arn, services.settings.api_url,
        services.keys.signing(), approval, approver,
    )  # fmt: skip


def alice_approves(services: Services, link: str) -> decision.Recorded:
    """Alice's approval through her emailed short link, as its page's form posts it."""
    token = shortlinks.token_in(link)
    assert token is not None
    form = {**replayed_form(link, ALICE), "decision": "approve"}
    return decision.decide_by_link(services, token, form, utcnow())


def race(services: Services, approval_id: str, link: str) -> tuple[list[str], list[str]]:
    """Alice's vote and the handing of her place to Carol, each in half the threads at once:
    how each attempt of each ended."""
    ready = threading.Barrier(THREADS, timeout=30)

    def act(i: int) -> str:
        ready.wait()
        # Spread over the time a reassignment takes (its read, then its conditional write),
        # so that votes land before, inside and after that window.
        time.sleep(random.uniform(0, 0.05))  # noqa: S311 (a spread, not a secret)
        try:
            if i % 2:
                alice_approves(services, link)
                return "voted"
            services.store.reassign(approval_id, change(ALICE, CAROL))
            return "reassigned"
        except decision.Problem as refused:
            return type(refused).__name__
        except ReassignRejected as refused:
            return refused.reason.name

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(act, range(THREADS)))
    return results[1::2], results[::2]


def test_a_reassignment_racing_the_approvers_own_vote_lets_one_win(stack: Stack, services: Services) -> None:
    """Alice's approval would settle it. Either her vote counts and every reassignment is
    refused, or the place is Carol's and every vote of Alice is refused as reassigned; Carol
    then settles it. Several rounds, each answered once."""
    stack.add_approvers([CAROL])
    for round_ in range(8):
        title = f"Race {round_}"
        arn = stack.start(ApprovalRequest(title=title, approvers=[ALICE, BOB], requester="ci@example.com"))
        link = stack.email(ALICE, title).links[0]
        approval_id = approval_id_of(link)
        votes, changes = race(services, approval_id, link)
        approval = stack.approval(approval_id)
        if ALICE in approval.votes:  # her vote won
            assert approval.reassigned == []
            assert votes.count("voted") == 1
            assert set(votes) - {"voted"} <= {"Conflict"}, votes
            assert set(changes) <= {"ALREADY_VOTED", "SETTLED"}, changes
        else:  # the reassignment won, once; every vote of Alice was refused as reassigned
            assert [(r.from_, r.to) for r in approval.reassigned] == [(ALICE, CAROL)]
            assert set(votes) == {"Reassigned"}, votes
            assert changes.count("reassigned") == 1, changes
            assert set(changes) - {"reassigned"} <= {"NOT_ASKED", "ALREADY_ASKED"}, changes
            email_new_approver(services, approval_id, CAROL)
            assert stack.click(stack.email(CAROL, title).links[0], "approve").status == 200
        assert stack.finish(arn).output["outcome"] == "approved"
        assert task_succeeded_events(stack.sfn, arn) == 1


def test_a_vote_between_the_reassignments_read_and_write_makes_it_refused(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """The window itself, made certain: Alice's vote lands just after the reassignment has
    read the approval. Its conditional write must fail and, read again, be refused."""
    stack.add_approvers([CAROL])
    title = "Vote in the window"
    arn = stack.start(ApprovalRequest(title=title, approvers=[ALICE, BOB], requester="ci@example.com"))
    link = stack.email(ALICE, title).links[0]
    approval_id = approval_id_of(link)
    voted: list[str] = []

    def vote_once(**_: object) -> None:
        if not voted:
            voted.append(alice_approves(services, link).approval.status.value)

    hooks.on(services.store._db, "after-call.dynamodb.GetItem", vote_once)
    with pytest.raises(ReassignRejected) as refused:
        services.store.reassign(approval_id, change(ALICE, CAROL))
    assert refused.value.reason.name == "SETTLED"
    assert voted == ["approved"]
    assert stack.approval(approval_id).reassigned == []
    assert stack.finish(arn).output["votes"][0]["approver"] == ALICE
    assert task_succeeded_events(stack.sfn, arn) == 1


def test_a_reassignment_sent_twice_is_recorded_once(stack: Stack, services: Services, hooks: Hooks) -> None:
    stack.add_approvers([CAROL])
    stack.start(ApprovalRequest(title="Lost reassign", approvers=[ALICE], requester="ci@example.com"))
    approval_id = approval_id_of(stack.email(ALICE, "Lost reassign").links[0])
    lost = LostReplies(
        hooks, services.store._db, "UpdateItem", lambda body: "reassigned" in body.get("UpdateExpression", "")
    )
    approval = reassign.reassign(
        services.store, services.directory, services.keys.signing(), approval_id, change(ALICE, CAROL)
    )
    assert lost.lost == 1
    assert approval.request.approvers == [CAROL]
    assert len(stack.approval(approval_id).reassigned) == 1


def settled_for_the_requester(stack: Stack, title: str) -> datetime:
    """A request by a requester in the directory, approved; when it was decided."""
    stack.add_approvers([REQUESTER])
    stack.start(ApprovalRequest(title=title, approvers=[ALICE], requester=REQUESTER))
    link = stack.email(ALICE, title).links[0]
    assert stack.click(link, "approve").status == 200
    decided = stack.approval(approval_id_of(link)).decided_at
    assert decided is not None
    return decided


def told(stack: Stack) -> list[str]:
    return [e.to for e in stack.emails() if e.to == REQUESTER]


def test_two_sweeps_at_once_tell_the_requester_once(stack: Stack, services: Services) -> None:
    now = settled_for_the_requester(stack, "Sweeps at once")
    with ThreadPoolExecutor(4) as pool:
        sent = sum(done["requester told"] for done in pool.map(lambda _: sweep(services, now), range(4)))
    assert sent == 1
    assert told(stack) == [REQUESTER]


def test_a_telling_claim_sent_twice_still_tells(stack: Stack, services: Services, hooks: Hooks) -> None:
    now = settled_for_the_requester(stack, "Lost telling reply")
    lost = LostReplies(
        hooks,
        services.store._db,
        "UpdateItem",
        lambda body: "requester_told_at" in body.get("UpdateExpression", ""),
    )
    assert sweep(services, now)["requester told"] == 1
    assert lost.lost == 1
    assert told(stack) == [REQUESTER]


def test_an_email_to_the_requester_that_failed_is_sent_by_the_next_sweep(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    now = settled_for_the_requester(stack, "Failed telling")
    sns = SnsFaults(lambda call, _: "InternalError" if call == 0 else {}).install(hooks, services.sns)
    assert "requester told" not in sweep(services, now)
    assert told(stack) == []
    assert sweep(services, now)["requester told"] == 1
    assert sweep(services, now)["requester told"] == 0
    assert told(stack) == [REQUESTER]
    assert len(sns.calls) == 2
