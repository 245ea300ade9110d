"""Policies, checked over every order of votes against a plain statement of each rule.

A vote sequence is what approvers do: each approver votes at most once, in some order,
and not everyone has to have voted yet.
"""

from __future__ import annotations

from random import Random

from hypothesis import given
from hypothesis import strategies as st

from approvals.models import ApprovalRequest, Outcome, Policy
from approvals.policy import Thresholds, settle, thresholds

A, R = Outcome.APPROVED, Outcome.REJECTED


@st.composite
def requests(draw: st.DrawFn, policy: Policy | None = None) -> ApprovalRequest:
    size = draw(st.integers(min_value=1, max_value=8))
    chosen = policy or draw(st.sampled_from(Policy))
    quorum = draw(st.integers(min_value=1, max_value=size)) if chosen is Policy.QUORUM else None
    return ApprovalRequest(
        title="t",
        approvers=[f"approver{i}@example.com" for i in range(size)],
        policy=chosen,
        quorum=quorum,
        requester="r",
    )


@st.composite
def voting(
    draw: st.DrawFn, policy: Policy | None = None, everyone: bool = False
) -> tuple[ApprovalRequest, list[Outcome]]:
    """A request and the outcomes of the votes cast so far, in the order they were cast."""
    request = draw(requests(policy))
    size = len(request.approvers)
    count = size if everyone else draw(st.integers(min_value=0, max_value=size))
    votes = draw(st.lists(st.sampled_from(Outcome), min_size=count, max_size=count))
    return request, votes


# The rules, stated plainly and independently of the implementation ---------------------------


def first_response_rule(votes: list[Outcome]) -> Outcome | None:
    """The first vote settles it."""
    return votes[0] if votes else None


def all_rule(approvers: int, votes: list[Outcome]) -> Outcome | None:
    """Approved iff every approver approved before any rejection; any rejection rejects."""
    if R in votes:
        first_rejection = votes.index(R)
        return A if votes[:first_rejection].count(A) == approvers else R
    return A if votes.count(A) == approvers else None


def quorum_rule(approvers: int, quorum: int, votes: list[Outcome]) -> Outcome | None:
    """Approved at ``quorum`` approvals; rejected as soon as so many approvers have rejected
    that even if all the rest approved, the quorum could not be met."""
    for cast in range(1, len(votes) + 1):
        so_far = votes[:cast]
        if so_far.count(A) >= quorum:
            return A
        still_possible = so_far.count(A) + (approvers - len(so_far))
        if still_possible < quorum:
            return R
    return None


def rule(request: ApprovalRequest, votes: list[Outcome]) -> Outcome | None:
    match request.policy:
        case Policy.FIRST_RESPONSE:
            return first_response_rule(votes)
        case Policy.ALL | Policy.SEQUENCE:  # the store keeps a sequence's order
            return all_rule(len(request.approvers), votes)
        case Policy.QUORUM:
            assert request.quorum is not None
            return quorum_rule(len(request.approvers), request.quorum, votes)


# Properties ------------------------------------------------------------------------------------


@given(voting(Policy.FIRST_RESPONSE))
def test_first_response(case: tuple[ApprovalRequest, list[Outcome]]) -> None:
    request, votes = case
    assert settle(request, votes) == first_response_rule(votes)


@given(voting(Policy.ALL))
def test_all(case: tuple[ApprovalRequest, list[Outcome]]) -> None:
    request, votes = case
    assert settle(request, votes) == all_rule(len(request.approvers), votes)


@given(voting(Policy.QUORUM))
def test_quorum(case: tuple[ApprovalRequest, list[Outcome]]) -> None:
    request, votes = case
    assert request.quorum is not None
    assert settle(request, votes) == quorum_rule(len(request.approvers), request.quorum, votes)


@given(voting(everyone=True))
def test_once_everyone_has_voted_the_request_is_settled(case: tuple[ApprovalRequest, list[Outcome]]) -> None:
    request, votes = case
    assert settle(request, votes) is not None


@given(voting(), st.data())
def test_a_settled_outcome_is_final(case: tuple[ApprovalRequest, list[Outcome]], data: st.DataObject) -> None:
    """Votes after the settling one change nothing: the store refuses them anyway."""
    request, votes = case
    settled = settle(request, votes)
    remaining = len(request.approvers) - len(votes)
    more = data.draw(st.lists(st.sampled_from(Outcome), max_size=remaining))
    if settled is not None:
        assert settle(request, votes + more) == settled


@given(voting(Policy.QUORUM, everyone=True), st.randoms(use_true_random=False))
def test_quorum_with_every_vote_in_does_not_depend_on_order(
    case: tuple[ApprovalRequest, list[Outcome]], rng: Random
) -> None:
    request, votes = case
    assert request.quorum is not None
    shuffled = list(votes)
    rng.shuffle(shuffled)
    expected = A if votes.count(A) >= request.quorum else R
    assert settle(request, votes) == settle(request, shuffled) == expected


@given(voting())
def test_thresholds_on_counts_agree_with_settle(case: tuple[ApprovalRequest, list[Outcome]]) -> None:
    """The store settles from counts alone (its conditional update compares counters with the
    stored thresholds); that must give the outcome ``settle`` gives from the sequence."""
    request, votes = case
    limits = thresholds(request)
    counts = [(votes[:cast].count(A), votes[:cast].count(R)) for cast in range(len(votes) + 1)]
    by_counts = next((o for a, r in counts if (o := limits.outcome(a, r)) is not None), None)
    assert by_counts == settle(request, votes)


@given(voting())
def test_thresholds_are_reachable_and_exclusive(case: tuple[ApprovalRequest, list[Outcome]]) -> None:
    request, _ = case
    limits = thresholds(request)
    size = len(request.approvers)
    assert 1 <= limits.approve_at <= size
    assert 1 <= limits.reject_at <= size
    # Both cannot be reached by the same set of approvers: one outcome only.
    assert limits.approve_at + limits.reject_at == size + 1 or request.policy is Policy.FIRST_RESPONSE


@given(st.integers(min_value=1, max_value=8), st.integers(min_value=1, max_value=8), st.data())
def test_thresholds_outcome(approve_at: int, reject_at: int, data: st.DataObject) -> None:
    limits = Thresholds(approve_at=approve_at, reject_at=reject_at)
    approvals = data.draw(st.integers(min_value=0, max_value=10))
    rejections = data.draw(st.integers(min_value=0, max_value=10))
    outcome = limits.outcome(approvals, rejections)
    if approvals >= approve_at:
        assert outcome is A
    elif rejections >= reject_at:
        assert outcome is R
    else:
        assert outcome is None
    assert limits.needed(A) == approve_at
    assert limits.needed(R) == reject_at


def test_thresholds_per_policy() -> None:
    five = [f"p{i}@example.com" for i in range(5)]

    def of(policy: Policy, quorum: int | None = None) -> Thresholds:
        return thresholds(
            ApprovalRequest(title="t", approvers=five, policy=policy, quorum=quorum, requester="r")
        )

    assert of(Policy.FIRST_RESPONSE) == Thresholds(approve_at=1, reject_at=1)
    assert of(Policy.ALL) == Thresholds(approve_at=5, reject_at=1)
    assert of(Policy.QUORUM, 3) == Thresholds(approve_at=3, reject_at=3)
    assert of(Policy.QUORUM, 1) == Thresholds(approve_at=1, reject_at=5)
    assert of(Policy.QUORUM, 5) == Thresholds(approve_at=5, reject_at=1)


def test_examples() -> None:
    three = ["a@example.com", "b@example.com", "c@example.com"]
    all_ = ApprovalRequest(title="t", approvers=three, policy=Policy.ALL, requester="r")
    two_of_three = ApprovalRequest(title="t", approvers=three, policy=Policy.QUORUM, quorum=2, requester="r")
    assert settle(all_, [A, A]) is None
    assert settle(all_, [A, A, A]) is A
    assert settle(all_, [A, R]) is R
    assert settle(two_of_three, [R]) is None
    assert settle(two_of_three, [R, A]) is None
    assert settle(two_of_three, [R, A, A]) is A
    assert settle(two_of_three, [R, R]) is R
    assert settle(two_of_three, []) is None
