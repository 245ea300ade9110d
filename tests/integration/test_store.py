"""The store's conditional updates settle exactly as the policy says, in DynamoDB (moto)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approvals import runtime
from approvals.links import approval_id_for
from approvals.models import Approval, ApprovalRequest, Outcome, Policy, Status, Vote, utcnow
from approvals.policy import settle
from approvals.store import Claim, VoteRefusal, VoteRejected
from tests.integration.conftest import Stack


@st.composite
def votings(draw: st.DrawFn) -> tuple[ApprovalRequest, list[tuple[str, Outcome]]]:
    size = draw(st.integers(min_value=1, max_value=5))
    approvers = [f"v{i}@example.com" for i in range(size)]
    policy = draw(st.sampled_from(Policy))
    quorum = draw(st.integers(min_value=1, max_value=size)) if policy is Policy.QUORUM else None
    request = ApprovalRequest(title="t", approvers=approvers, policy=policy, quorum=quorum, requester="r")
    # A sequence's order is the listed one (votes out of turn: tests/integration/test_sequence.py).
    order = approvers if policy is Policy.SEQUENCE else draw(st.permutations(approvers))
    voters = order[: draw(st.integers(min_value=0, max_value=size))]
    return request, [(who, draw(st.sampled_from(Outcome))) for who in voters]


def stored(request: ApprovalRequest) -> Approval:
    token = str(uuid.uuid4())
    now = utcnow()
    approval = Approval(
        approval_id=approval_id_for(token),
        task_token=token,
        execution="arn:aws:states:us-east-1:123456789012:execution:m:e",
        state="RequestApproval",
        request=request,
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )
    assert runtime.from_environment().store.claim(approval, now, 60).claim is Claim.NEW
    return approval


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(votings())
def test_conditional_updates_settle_as_the_policy_does(
    stack: Stack, case: tuple[ApprovalRequest, list[tuple[str, Outcome]]]
) -> None:
    request, votes = case
    store = runtime.from_environment().store
    approval = stored(request)
    expected = settle(request, [outcome for _, outcome in votes])
    # The votes recorded: up to and including the one that settles it.
    settling_at = next(
        (i for i in range(1, len(votes) + 1) if settle(request, [o for _, o in votes[:i]]) is not None),
        None,
    )
    for index, (who, outcome) in enumerate(votes, start=1):
        vote = Vote(approver=who, outcome=outcome, at=utcnow())
        if settling_at is not None and index > settling_at:
            with pytest.raises(VoteRejected) as refused:
                store.record_vote(approval.approval_id, vote)
            assert refused.value.reason is VoteRefusal.SETTLED
        else:
            store.record_vote(approval.approval_id, vote)
    final = stack.approval(approval.approval_id)
    assert final.status.value == (expected.value if expected else Status.PENDING.value)
    assert len(final.votes) == (settling_at or len(votes))
    decision = final.decision()
    assert (decision.outcome if decision else None) == expected


def test_one_vote_per_approver(stack: Stack) -> None:
    store = runtime.from_environment().store
    request = ApprovalRequest(
        title="t", approvers=["a@example.com", "b@example.com"], policy=Policy.ALL, requester="r"
    )
    approval = stored(request)
    store.record_vote(
        approval.approval_id, Vote(approver="a@example.com", outcome=Outcome.APPROVED, at=utcnow())
    )
    with pytest.raises(VoteRejected) as refused:
        store.record_vote(
            approval.approval_id, Vote(approver="a@example.com", outcome=Outcome.REJECTED, at=utcnow())
        )
    assert refused.value.reason is VoteRefusal.ALREADY_VOTED
    assert stack.approval(approval.approval_id).votes["a@example.com"].outcome is Outcome.APPROVED


def test_votes_after_expiry_and_on_unknown_approvals_are_refused(stack: Stack) -> None:
    store = runtime.from_environment().store
    approval = stored(ApprovalRequest(title="t", approvers=["a@example.com"], requester="r"))
    late = Vote(approver="a@example.com", outcome=Outcome.APPROVED, at=approval.expires_at)
    with pytest.raises(VoteRejected) as refused:
        store.record_vote(approval.approval_id, late)
    assert refused.value.reason is VoteRefusal.EXPIRED
    with pytest.raises(VoteRejected) as unknown:
        store.record_vote("f" * 32, late)
    assert unknown.value.reason is VoteRefusal.UNKNOWN
    assert stack.approval(approval.approval_id).votes == {}


def test_a_second_claim_of_the_same_approval(stack: Stack) -> None:
    store = runtime.from_environment().store
    approval = stored(ApprovalRequest(title="t", approvers=["a@example.com"], requester="r"))
    now = utcnow()
    # Another delivery while the first holds its claim: busy, try later.
    assert store.claim(approval, now, 60).claim is Claim.BUSY
    # After the claim lapsed without the emails going out: a retry, keeping the first expiry.
    retry = store.claim(
        approval.model_copy(update={"expires_at": now + timedelta(days=9)}), now + timedelta(seconds=61), 60
    )
    assert retry.claim is Claim.RETRY
    assert retry.stored is not None
    assert retry.stored.expires_at == approval.expires_at
    store.write_together([store.emailed_write(approval.approval_id, now, deferred=[])])
    assert store.claim(approval, now + timedelta(seconds=200), 60).claim is Claim.DONE
