"""The approver's part: the page's read and the vote, one conditional update each."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from approvals.models import Approval, Outcome, Status, Vote
from approvals.store.items import (
    SHORT_LINKS,
    Item,
    Table,
    approval_from_item,
    epoch,
    failed_condition_item,
    vote_item,
    write_id,
)


class VoteRejected(Exception):
    """The table refused the vote; ``reason`` says why and ``approval`` is its state then."""

    def __init__(self, reason: VoteRefusal, approval: Approval | None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.approval = approval


class VoteRefusal(Enum):
    UNKNOWN = "unknown approval"
    NOT_ASKED = "this address was not asked"
    REASSIGNED = "this approver's place was handed to someone else"
    EXCLUDED = "the requester may not decide on their own request"
    ALREADY_VOTED = "this approver has already decided"
    SETTLED = "the request is already settled"
    EXPIRED = "the request has expired"
    CANCELLED = "the request was cancelled"
    UNANSWERED = "the request asks for answers the vote did not carry"
    OTHER_APPROVER = "the short link was issued to another approver"
    NOT_YOUR_TURN = "an approver listed earlier has not yet approved"
    NOT_SIGNED_IN = "the request must be decided signed in, and this vote is proven by the link alone"


VIEWED = f"{SHORT_LINKS}.#link.viewed"  # a short link's first view


class VoteStore(Table):
    def view(self, approval_id: str, approver: str, now: datetime) -> Approval | None:
        """The approval, for its page; the same call notes the approver's first view.

        The note is audit only: nothing about the approval's outcome depends on it, so a
        mail scanner opening the link changes nothing that matters.
        """
        try:
            result = self._db.update_item(
                TableName=self._table,
                Key=self._key(approval_id),
                UpdateExpression="SET viewed.#approver = if_not_exists(viewed.#approver, :now)",
                ConditionExpression="attribute_exists(approval_id)",
                ExpressionAttributeNames={"#approver": approver},
                ExpressionAttributeValues={":now": {"N": epoch(now)}},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            failed_condition_item(error)
            return None
        return approval_from_item(result["Attributes"])

    def view_by_link(self, approval_id: str, token_hash: str, now: datetime) -> tuple[Approval, str] | None:
        """The approval and the approver a short link is bound to, for its page; None if no
        approval holds that link. The same call notes the link's first view (audit only),
        unless the approval has expired: that approval is returned as it is.

        The link is found by its hash, as a key of the item's map, in the condition: no
        read before, and no comparison of secrets in this process.
        """
        try:
            result = self._db.update_item(
                TableName=self._table,
                Key=self._key(approval_id),
                UpdateExpression=f"SET {VIEWED} = if_not_exists({VIEWED}, :now)",
                ConditionExpression=f"attribute_exists({SHORT_LINKS}.#link) AND expires_at > :now",
                ExpressionAttributeNames={"#link": token_hash},
                ExpressionAttributeValues={":now": {"N": epoch(now)}},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            item = result["Attributes"]
        except ClientError as error:
            item = failed_condition_item(error)
        approval = approval_from_item(item) if item else None
        if approval is None or token_hash not in approval.short_links:
            return None
        return approval, approval.short_links[token_hash]

    def record_vote(
        self, approval_id: str, vote: Vote, *, answers_checked: bool = True, token_hash: str = ""
    ) -> Approval:
        """Record one approver's vote; the returned approval's ``decided_by`` tells whether
        this vote settled it. A vote whose answers were not checked against the request's
        fields (its form carried none) is taken only if the request has none. A vote by
        short link (``token_hash``) is taken only if that link is bound to the voter.

        One conditional update does it, with no read first: the vote that brings its
        side's count to the threshold stored with the approval also writes the outcome,
        and every later vote fails the condition. The settling form is tried first (it is
        the only one for a single approver or a first-response policy); a refusal returns
        the item, which tells which form applies.
        """
        approve = vote.outcome is Outcome.APPROVED
        counter, last_open = ("approvals", "approve_last") if approve else ("rejections", "reject_last")
        settling = True
        write = write_id()
        for _ in range(4):  # each retry follows a concurrent vote; counts only grow
            try:
                result = self._db.update_item(
                    **self._vote_update(
                        approval_id, vote, write, counter, last_open, settling, answers_checked, token_hash
                    )
                )
                return approval_from_item(result["Attributes"])
            except ClientError as error:
                old = failed_condition_item(error)
            if not old:
                raise VoteRejected(VoteRefusal.UNKNOWN, None)
            stored_vote = old.get("votes", {}).get("M", {}).get(vote.approver, {})
            if stored_vote.get("M", {}).get("write") == write:
                return approval_from_item(old)  # this vote, sent again by the SDK: it is in
            current = approval_from_item(old)
            refusal = _link_refusal(current, vote, token_hash) or vote_refusal(current, vote)
            if not refusal and not answers_checked and current.request.fields:
                refusal = VoteRefusal.UNANSWERED
            if not refusal and _by_link_alone(vote) and current.request.identity == "sign-in":
                refusal = VoteRefusal.NOT_SIGNED_IN
            if refusal:
                raise VoteRejected(refusal, current)
            settling = old[counter]["N"] == old[last_open]["N"]
        raise RuntimeError(f"vote on {approval_id} kept racing other votes")

    def _vote_update(
        self,
        approval_id: str,
        vote: Vote,
        write: Item,
        counter: str,
        last_open: str,
        settling: bool,
        answers_checked: bool,
        token_hash: str,
    ) -> dict[str, Any]:
        values: Item = {
            ":vote": vote_item(vote, write),
            ":pending": {"S": Status.PENDING.value},
            ":now": {"N": epoch(vote.at)},
            ":one": {"N": "1"},
            ":approver": {"S": vote.approver},
        }
        update = f"SET votes.#approver = :vote, {counter} = {counter} + :one"
        if settling:
            # It stays in the sweep's index until a sweep confirms the workflow has it: the
            # happy path spends no write on that, and a crash before SendTaskSuccess is caught.
            update += ", #status = :outcome, decided_at = :now, decided_by = :approver"
            values[":outcome"] = {"S": vote.outcome.value}
        return {
            "TableName": self._table,
            "Key": self._key(approval_id),
            "UpdateExpression": update,
            "ConditionExpression": (
                # An approval stored before voters were kept (in flight across an upgrade)
                # has only the link's signature to go by, as then.
                "(contains(voters, :approver) OR attribute_not_exists(voters))"
                " AND attribute_not_exists(votes.#approver) AND #status = :pending"
                f" AND expires_at > :now AND {counter} {'=' if settling else '<'} {last_open}"
                # A sequence's voter's place is the count of approvals before them.
                " AND (attribute_not_exists(turns) OR turns.#approver = approvals)"
                + ("" if answers_checked else " AND attribute_not_exists(has_fields)")
                + (" AND attribute_not_exists(needs_sign_in)" if _by_link_alone(vote) else "")
                + (f" AND {SHORT_LINKS}.#link.approver = :approver" if token_hash else "")
            ),
            "ExpressionAttributeNames": {
                "#approver": vote.approver,
                "#status": "status",
                **({"#link": token_hash} if token_hash else {}),
            },
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }


def _by_link_alone(vote: Vote) -> bool:
    """Proven by the link alone: not signed in, nor recorded by an operator (whose own AWS
    identity the CLI's call carries)."""
    return vote.proof == "link" and not vote.on_behalf_by


def _link_refusal(current: Approval, vote: Vote, token_hash: str) -> VoteRefusal | None:
    """Checked first: a short link that does not hold tells nothing of the approval's state."""
    if not token_hash:
        return None
    if token_hash not in current.short_links:
        return VoteRefusal.UNKNOWN
    if current.short_links[token_hash] != vote.approver:
        return VoteRefusal.OTHER_APPROVER
    return None


def vote_refusal(current: Approval, vote: Vote) -> VoteRefusal | None:
    """Why the table would refuse this vote on the approval as it stands, if it would."""
    if current.reassigned_away(vote.approver):
        return VoteRefusal.REASSIGNED
    if vote.approver not in current.asked:
        return VoteRefusal.NOT_ASKED
    if vote.approver in current.excluded:
        return VoteRefusal.EXCLUDED
    if vote.approver in current.votes:
        return VoteRefusal.ALREADY_VOTED
    if current.status is Status.CANCELLED:
        return VoteRefusal.CANCELLED
    if current.is_expired(vote.at):
        return VoteRefusal.EXPIRED
    if current.status is not Status.PENDING:
        return VoteRefusal.SETTLED
    if vote.approver not in current.waiting_on(vote.at):
        return VoteRefusal.NOT_YOUR_TURN
    return None
