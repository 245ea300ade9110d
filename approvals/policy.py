"""How votes settle a request.

Each policy reduces to two thresholds: the request is approved once ``approve_at``
approvals are in, rejected once ``reject_at`` rejections are in, whichever comes first.
The store enforces the same thresholds in its conditional update, so a vote can never be
recorded after the outcome is settled.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from approvals.models import Approval, ApprovalRequest, Outcome, Policy


@dataclass(frozen=True)
class Thresholds:
    approve_at: int
    reject_at: int

    def outcome(self, approvals: int, rejections: int) -> Outcome | None:
        if approvals >= self.approve_at:
            return Outcome.APPROVED
        if rejections >= self.reject_at:
            return Outcome.REJECTED
        return None

    def needed(self, outcome: Outcome) -> int:
        return self.approve_at if outcome is Outcome.APPROVED else self.reject_at


def thresholds(request: ApprovalRequest, excluded: Collection[str] = (), backups: int = 0) -> Thresholds:
    """The thresholds over those who may vote: the approvers less ``excluded``, and the
    ``backups`` that escalation steps have added so far. Counting over who may vote now
    keeps a quorum reachable and makes "all" mean everyone asked."""
    approvers = len(request.approvers) + backups - len(excluded)
    match request.policy:
        case Policy.FIRST_RESPONSE:
            return Thresholds(approve_at=1, reject_at=1)
        case Policy.ALL | Policy.SEQUENCE:
            return Thresholds(approve_at=approvers, reject_at=1)
        case Policy.QUORUM:
            assert request.quorum is not None  # the model requires it for this policy
            # Rejected as soon as the quorum can no longer be reached.
            return Thresholds(approve_at=request.quorum, reject_at=approvers - request.quorum + 1)


def excluded_voters(request: ApprovalRequest, allow_self_approval: bool) -> list[str]:
    """Approvers who may not vote: the requester, unless self-approval is allowed
    (as GitHub's protected environments prevent self-review)."""
    requester = request.requester.strip().lower()
    return [] if allow_self_approval or requester not in request.approvers else [requester]


def unreachable(request: ApprovalRequest, excluded: Collection[str]) -> str | None:
    """Why the policy can never be met when ``excluded`` may not vote, or None."""
    if not excluded:
        return None
    why = "the requester cannot approve their own request"
    voters = len(request.approvers) - len(excluded)
    if voters == 0:
        return f"request.approvers: {why}, and nobody else is asked"
    if request.policy in (Policy.ALL, Policy.SEQUENCE):
        return f"request.approvers: policy '{request.policy.value}' needs every approver, but {why}"
    if request.policy is Policy.QUORUM and request.quorum is not None and request.quorum > voters:
        return f"request.quorum: {request.quorum} approvals cannot be reached: {why}"
    return None


def approval_thresholds(approval: Approval) -> Thresholds:
    """The thresholds of a stored approval, over everyone who may vote on it now."""
    return thresholds(
        approval.request, approval.excluded, len(approval.asked) - len(approval.request.approvers)
    )


def can_still_be_approved(approval: Approval, now: datetime) -> bool:
    """Whether enough approvers can still approve: those who did, and those undecided who
    can still be emailed. An escalation step still to come may bring more: it waits for them."""
    if len(approval.escalated) < len(approval.request.escalation):
        return True
    approved = sum(1 for vote in approval.votes.values() if vote.outcome is Outcome.APPROVED)
    reachable = [a for a in approval.undecided(now) if a not in approval.unreachable]
    return approved + len(reachable) >= approval_thresholds(approval).approve_at


def settle(request: ApprovalRequest, outcomes: Iterable[Outcome]) -> Outcome | None:
    """The outcome after these votes, in order, or None while it is still open."""
    limits = thresholds(request)
    approvals = rejections = 0
    for outcome in outcomes:
        if outcome is Outcome.APPROVED:
            approvals += 1
        else:
            rejections += 1
        if (settled := limits.outcome(approvals, rejections)) is not None:
            return settled
    return None
