"""The worker's part: store a new approval once, whoever delivers its message. What was
emailed is noted with the batch's other marks (approvals.store.digest)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from botocore.exceptions import ClientError

from approvals.models import Approval, Policy, Status
from approvals.policy import approval_thresholds
from approvals.store.items import (
    OPEN,
    OPEN_ATTRIBUTE,
    SHORT_LINKS,
    TELL,
    TELL_ATTRIBUTE,
    Item,
    Table,
    approval_from_item,
    epoch,
    failed_condition_item,
    short_links_item,
    write_id,
)


class Claim(Enum):
    """What the worker may do with a message after trying to store its approval."""

    NEW = "new"  # first sight: send every email
    RETRY = "retry"  # an earlier attempt stopped before finishing: send what is missing
    BUSY = "busy"  # another worker holds it right now: try again later
    DONE = "done"  # emails already went out: nothing to do


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    sent_to: frozenset[str] = frozenset()
    stored: Approval | None = None  # on a retry: the approval as first stored


class ClaimStore(Table):
    def claim(self, approval: Approval, now: datetime, claim_seconds: int) -> ClaimResult:
        """Store a new approval, or tell what an earlier delivery of it left behind."""
        limits = approval_thresholds(approval)
        write = write_id()
        item: Item = {
            **self._key(approval.approval_id),
            "task_token": {"S": approval.task_token},
            "execution": {"S": approval.execution},
            "state": {"S": approval.state},
            "request": {"S": approval.request.model_dump_json()},
            "created_at": {"N": epoch(approval.created_at)},
            "expires_at": {"N": epoch(approval.expires_at)},
            "status": {"S": Status.PENDING.value},
            "votes": {"M": {}},
            "viewed": {"M": {}},
            SHORT_LINKS: short_links_item(approval.short_links),
            "reminded": {"M": {}},
            "excluded": {"L": [{"S": who} for who in approval.excluded]},
            # Who may vote, for the vote's condition: a link's signature is not trusted alone.
            "voters": {"SS": approval.voters},
            "escalated": {"M": {}},
            "notified": {"M": {}},
            OPEN_ATTRIBUTE: OPEN,
            **({TELL_ATTRIBUTE: TELL} if approval.request.requester_address else {}),
            # Lets a vote whose form carried no answers be refused without reading the request.
            **({"has_fields": {"BOOL": True}} if approval.request.fields else {}),
            # Lets a vote proven by the link alone be refused without reading the request.
            **({"needs_sign_in": {"BOOL": True}} if approval.request.identity == "sign-in" else {}),
            # A sequence's turn order, for the vote's condition: each voter's place equals the
            # approvals in before them (any rejection settles it).
            **(
                {"turns": {"M": {who: {"N": str(place)} for place, who in enumerate(approval.voters)}}}
                if approval.request.policy is Policy.SEQUENCE
                else {}
            ),
            **({"link_base": {"S": approval.link_base}} if approval.link_base else {}),
            "approvals": {"N": "0"},
            "rejections": {"N": "0"},
            # The count at which the next vote of each kind settles the request.
            "approve_last": {"N": str(limits.approve_at - 1)},
            "reject_last": {"N": str(limits.reject_at - 1)},
            "claim_until": {"N": epoch(now + timedelta(seconds=claim_seconds))},
            "claim_write": write,
            "ttl": {"N": epoch(approval.expires_at + self._retention)},
        }
        try:
            self._db.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(approval_id)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return ClaimResult(Claim.NEW)
        except ClientError as error:
            existing = failed_condition_item(error)
        if existing.get("claim_write") == write:
            return ClaimResult(Claim.NEW)
        if "emailed_at" in existing:
            return ClaimResult(Claim.DONE)
        sent_to = frozenset(existing.get("sent_to", {}).get("SS", []))
        stored = approval_from_item(existing)
        held_until = existing["claim_until"]["N"]
        if int(held_until) > now.timestamp():
            return ClaimResult(Claim.BUSY, sent_to, stored)
        try:  # the earlier claim lapsed: take it over, unless someone else just did
            self._db.update_item(
                TableName=self._table,
                Key=self._key(approval.approval_id),
                UpdateExpression="SET claim_until = :until, claim_write = :write",
                ConditionExpression="claim_until = :held AND attribute_not_exists(emailed_at)",
                ExpressionAttributeValues={
                    ":until": {"N": epoch(now + timedelta(seconds=claim_seconds))},
                    ":held": {"N": held_until},
                    ":write": write,
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if failed_condition_item(error).get("claim_write") != write:
                return ClaimResult(Claim.BUSY, sent_to, stored)
        return ClaimResult(Claim.RETRY, sent_to, stored)
