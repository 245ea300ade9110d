"""An operator hands an approver's place to someone else: one conditional update."""

from __future__ import annotations

from enum import Enum

from botocore.exceptions import ClientError

from approvals.models import Approval, Reassignment, Status
from approvals.store.items import (
    SHORT_LINKS,
    Item,
    Table,
    approval_from_item,
    epoch,
    failed_condition_item,
    reassignment_item,
    short_links_item,
    write_id,
)


class ReassignRefusal(Enum):
    UNKNOWN = "unknown approval"
    SETTLED = "the request is already settled"
    EXPIRED = "the request has expired"
    CANCELLED = "the request was cancelled"
    NOT_ASKED = "not an approver of this request"
    REQUESTER = "the requester may not decide on their own request"
    ALREADY_VOTED = "has already decided"
    ALREADY_ASKED = "is already an approver of this request"
    BACKUP = "is a backup of this request"


class ReassignRejected(Exception):
    """The table refused the reassignment; ``reason`` says why and ``approval`` is its state then."""

    def __init__(self, reason: ReassignRefusal, approval: Approval | None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.approval = approval


def reassign_refusal(current: Approval, change: Reassignment) -> ReassignRefusal | None:
    """Why ``change`` cannot be made to the approval as it stands, or None."""
    if current.status is Status.CANCELLED:
        return ReassignRefusal.CANCELLED
    if current.is_expired(change.at):
        return ReassignRefusal.EXPIRED
    if current.status is not Status.PENDING:
        return ReassignRefusal.SETTLED
    if change.from_ not in current.request.approvers:
        return ReassignRefusal.NOT_ASKED
    if change.from_ in current.excluded:
        return ReassignRefusal.REQUESTER  # the requester's own place: they never had a vote to hand
    if change.from_ in current.votes:
        return ReassignRefusal.ALREADY_VOTED
    # Whoever may vote or has voted already, a backup who joined included: one person
    # holding two places would count twice, and the item's request would no longer read.
    if change.to in current.asked or change.to in current.votes:
        return ReassignRefusal.ALREADY_ASKED
    if change.to in current.request.backups:  # to be asked later: the same, once their step comes
        return ReassignRefusal.BACKUP
    if change.to == current.request.requester.strip().lower():
        return ReassignRefusal.REQUESTER
    return None


class ReassignStore(Table):
    def reassign(self, approval_id: str, change: Reassignment, link_hash: str | None = None) -> Approval:
        """Hand ``change.from_``'s place to ``change.to``; the approval as stored after.

        The update replaces the one in ``voters`` (what the vote's condition checks, so the
        old link stops working at once) and appends the change to ``reassigned`` (from which
        the page, the policy's waiting list and the decision read the approvers). Its
        condition requires ``voters`` as read, so it cannot interleave with a vote by the
        one handed over, nor with another change to who may vote: a lost race is read again
        and judged again. ``link_hash`` binds the new approver's short link in the same write.
        """
        write = write_id()
        for _ in range(4):
            item = self._db.get_item(
                TableName=self._table, Key=self._key(approval_id), ConsistentRead=True
            ).get("Item")
            if not item:
                raise ReassignRejected(ReassignRefusal.UNKNOWN, None)
            current = approval_from_item(item)
            if any(done["M"]["write"] == write for done in item.get("reassigned", {}).get("L", [])):
                return current  # this change, sent again by the SDK after a lost reply: it is in
            if refusal := reassign_refusal(current, change):
                raise ReassignRejected(refusal, current)
            voters = item.get("voters")
            # An approval stored before voters were kept (in flight across an upgrade) gets them now.
            before = voters["SS"] if voters else current.waiting_on(change.at)
            values: Item = {
                ":voters": {"SS": [*(v for v in before if v != change.from_), change.to]},
                ":change": {"L": [reassignment_item(change, write)]},
                ":none": {"L": []},
                ":pending": {"S": Status.PENDING.value},
                ":now": {"N": epoch(change.at)},
            }
            if voters:
                values[":before"] = voters
            sets = ["voters = :voters", "reassigned = list_append(if_not_exists(reassigned, :none), :change)"]
            removes = []
            names = {"#from": change.from_, "#status": "status"}
            condition = ("voters = :before" if voters else "attribute_not_exists(voters)") + (
                " AND attribute_not_exists(votes.#from) AND #status = :pending AND expires_at > :now"
            )
            if change.from_ in item.get("turns", {}).get("M", {}):
                # A sequence: the place keeps its turn, for the vote's condition to find it
                # under the new approver (the condition on voters keeps the two together).
                sets.append("turns.#to = turns.#from")
                removes.append("turns.#from")
                names["#to"] = change.to
                if change.from_ in current.waiting_on(change.at):
                    # Their turn now: the email handing the place over is their turn's email,
                    # as long as no vote has moved the turn on meanwhile.
                    sets.append("notified.#to = :now")
                    condition += " AND approvals = :approvals"
                    values[":approvals"] = item["approvals"]
            if link_hash:
                binding = short_links_item({link_hash: change.to})
                if SHORT_LINKS in item:  # a path into the map: the others' first views stay as they are
                    sets.append(f"{SHORT_LINKS}.#link = :link")
                    names["#link"] = link_hash
                    values[":link"] = binding["M"][link_hash]
                else:
                    sets.append(f"{SHORT_LINKS} = :links")
                    values[":links"] = binding
            update = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
            try:
                result = self._db.update_item(
                    TableName=self._table,
                    Key=self._key(approval_id),
                    UpdateExpression=update,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except ClientError as error:
                failed_condition_item(error)
                continue  # something changed in between: judge it again as it is now
            return approval_from_item(result["Attributes"])
        raise RuntimeError(f"reassignment on {approval_id} kept racing other changes")
