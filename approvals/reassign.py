"""An operator hands an approver's place to someone else (``approvals reassign``).

The new approver must be in the approver directory, like every approver. The change is one
conditional update (approvals.store.reassign); the old approver's link stops working at
once, and the new one is emailed their own link and finds the request in their inbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from approvals import shortlinks
from approvals.directory import Directory
from approvals.links import SigningKey
from approvals.models import Approval, Reassignment, Status
from approvals.notify import emails_for, handed_over_email, publish
from approvals.store import ApprovalStore, ReassignRefusal, ReassignRejected
from approvals.store.reassign import reassign_refusal

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

UNREACHABLE = "UNREACHABLE"


class ReassignError(Exception):
    """A reassignment refused; ``reason`` names why (a ReassignRefusal's name, or
    UNREACHABLE) and the message says it to the operator."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _refused(refusal: ReassignRefusal, approval: Approval | None, change: Reassignment) -> ReassignError:
    def say(message: str) -> ReassignError:
        return ReassignError(refusal.name, message)

    if approval is None:
        return say("no such approval: `approvals list` shows the ids")
    match refusal:
        case ReassignRefusal.SETTLED | ReassignRefusal.EXPIRED | ReassignRefusal.CANCELLED:
            return say(f"{refusal.value}: nothing is left to reassign")
        case ReassignRefusal.NOT_ASKED:
            return say(
                f"{change.from_} is not an approver of this request ({', '.join(approval.request.approvers)})"
            )
        case ReassignRefusal.REQUESTER:
            who = change.to if change.from_ not in approval.excluded else change.from_
            return say(f"{who} requested this approval and may not decide on it")
        case ReassignRefusal.ALREADY_VOTED:
            outcome = approval.votes[change.from_].outcome.value
            return say(
                f"{change.from_} has already decided ({outcome}): their place can no longer be handed over"
            )
        case ReassignRefusal.BACKUP:
            step = next(i for i, s in enumerate(approval.request.escalation, 1) if change.to in s.approvers)
            return say(f"{change.to} is a backup of this request (escalation step {step})")
        case _:  # ALREADY_ASKED
            return say(f"{change.to} is already an approver of this request")


def _already_made(approval: Approval, change: Reassignment) -> bool:
    """The same change, made before (its email may have failed): only the email is sent again."""
    return (
        any(done.from_ == change.from_ and done.to == change.to for done in approval.reassigned)
        and change.to in approval.request.approvers
        and change.to not in approval.votes
        and approval.status_at(change.at) is Status.PENDING
    )


def reassign(
    store: ApprovalStore, directory: Directory, key: SigningKey, approval_id: str, change: Reassignment
) -> Approval:
    """Hand ``change.from_``'s place to ``change.to``, with a short link of their own (made
    with ``key``); the approval as it stands after."""
    current = store.get(approval_id)
    if current is None:
        raise _refused(ReassignRefusal.UNKNOWN, None, change)
    if _already_made(current, change):
        store.hand_over_entry(current, change)  # it may have been what failed
        return current
    if refusal := reassign_refusal(current, change):
        raise _refused(refusal, current, change)
    if lost := directory.unreachable([change.to], change.at):
        raise ReassignError(
            UNREACHABLE,
            f"{change.to} cannot be emailed ({lost[change.to]}): add them with"
            f" `approvals approvers add {change.to}` first",
        )
    try:
        link = shortlinks.token_for(key, approval_id, change.to)
        changed = store.reassign(approval_id, change, shortlinks.token_hash(link))
    except ReassignRejected as refused:  # changed since it was read: a vote, or another change
        raise _refused(refused.reason, refused.approval, change) from None
    store.hand_over_entry(changed, change)
    return changed


def email_new_approver(
    store: ApprovalStore,
    sns: SNSClient,
    topic_arn: str,
    api_url: str,
    key: SigningKey,
    approval: Approval,
    approver: str,
) -> bool:
    """Email the new approver their own link; False if SNS did not take it.

    A sequence's new approver whose turn it is was noted as emailed by the change itself
    (so the sweep does not send the same link again): a failed email gives that back, and
    the sweep sends their link if the operator does not.
    """
    emails = emails_for(approval, api_url, key, to=[approver], compose=handed_over_email)
    _, failed = publish(sns, topic_arn, emails)
    if failed and approver in approval.notified:
        store.release_notices(approval.approval_id, [approver])
    return not failed
