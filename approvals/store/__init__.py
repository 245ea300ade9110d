"""The approvals table (DynamoDB), behind a small interface, split along the approval's life:
``claim`` (the worker stores it), ``vote`` (the page and the vote), ``reassign`` (an operator
hands a place over), ``reminders`` and ``escalation`` (while it waits: reminding, asking more
people), ``close`` (delivery, expiry, cancellation), ``tell`` (the requester told the
outcome). ``inbox`` keeps each approver's inbox beside them, ``bulkjob`` their "all matching"
votes that the sweep finishes. ``items`` says how an approval is stored.

Every write that matters is conditional, so a redelivered message or a double click is
answered from the table's own state rather than from a read taken a moment earlier.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from approvals.models import Approval
from approvals.store.bulkjob import BulkJob, BulkJobStore, is_job
from approvals.store.claim import Claim, ClaimResult, ClaimStore
from approvals.store.close import CloseStore
from approvals.store.digest import DigestState, DigestStore
from approvals.store.escalation import EscalationStore
from approvals.store.inbox import InboxStore
from approvals.store.items import (
    DIGEST_INDEX,
    EXECUTION_INDEX,
    OPEN,
    OPEN_ATTRIBUTE,
    OPEN_INDEX,
    TELL,
    TELL_ATTRIBUTE,
    TELL_INDEX,
    UnreadableItem,
    approval_from_item,
    is_digest,
    is_inbox_entry,
)
from approvals.store.reassign import ReassignRefusal, ReassignRejected, ReassignStore
from approvals.store.reminders import ReminderStore
from approvals.store.tell import TellStore
from approvals.store.vote import VoteRefusal, VoteRejected, VoteStore, vote_refusal

__all__ = [
    "DIGEST_INDEX",
    "EXECUTION_INDEX",
    "OPEN_ATTRIBUTE",
    "OPEN_INDEX",
    "TELL_ATTRIBUTE",
    "TELL_INDEX",
    "ApprovalStore",
    "BulkJob",
    "Claim",
    "ClaimResult",
    "DigestState",
    "ReassignRefusal",
    "ReassignRejected",
    "UnreadableItem",
    "VoteRefusal",
    "VoteRejected",
    "approval_from_item",
    "beside_approvals",
    "is_digest",
    "is_inbox_entry",
    "is_job",
    "vote_refusal",
]


class ApprovalStore(
    ClaimStore,
    VoteStore,
    ReassignStore,
    ReminderStore,
    EscalationStore,
    CloseStore,
    TellStore,
    InboxStore,
    DigestStore,
    BulkJobStore,
):
    """Every operation on the table; the queries the sweep and operators read through.

    The queries yield an item that no longer reads as an approval as an UnreadableItem, in
    its place: one bad item must not stop a sweep or a listing of all the others.
    """

    def get(self, approval_id: str) -> Approval | None:
        item = self._db.get_item(TableName=self._table, Key=self._key(approval_id), ConsistentRead=True).get(
            "Item"
        )
        return approval_from_item(item) if item else None

    def open_approvals(self) -> Iterator[Approval | UnreadableItem]:
        """Pending approvals and undelivered decisions: what the sweep looks after."""
        yield from self._query(
            IndexName=OPEN_INDEX,
            KeyConditionExpression=f"{OPEN_ATTRIBUTE} = :open",
            ExpressionAttributeValues={":open": OPEN},
        )

    def to_tell(self) -> Iterator[Approval | UnreadableItem]:
        """Approvals whose requester is still to be told the outcome (pending ones too: not yet)."""
        yield from self._query(
            IndexName=TELL_INDEX,
            KeyConditionExpression=f"{TELL_ATTRIBUTE} = :tell",
            ExpressionAttributeValues={":tell": TELL},
        )

    def for_execution(self, execution_arn: str) -> Iterator[Approval | UnreadableItem]:
        yield from self._query(
            IndexName=EXECUTION_INDEX,
            KeyConditionExpression="execution = :arn",
            ExpressionAttributeValues={":arn": {"S": execution_arn}},
        )

    def every_item(self) -> Iterator[Approval | UnreadableItem]:
        """Every approval kept (for operators; a scan, fine at the scale of human approvals),
        not the approvers' inbox entries and digests beside them."""
        for page in self._db.get_paginator("scan").paginate(TableName=self._table):
            yield from _read([item for item in page["Items"] if not beside_approvals(item)])

    def all(self) -> Iterator[Approval]:
        """Every approval kept that reads (for pages that show approvals: the local outbox)."""
        for read in self.every_item():
            if isinstance(read, Approval):
                yield read

    def _query(self, **query: Any) -> Iterator[Approval | UnreadableItem]:
        # Index reads may lag a moment; every action taken on them is a conditional write.
        for page in self._db.get_paginator("query").paginate(TableName=self._table, **query):
            yield from _read(page["Items"])


def beside_approvals(item: dict[str, Any]) -> bool:
    """An approver's inbox entry or digest, kept beside the approvals in their table."""
    return is_inbox_entry(item) or is_digest(item)


def _read(items: list[dict[str, Any]]) -> Iterator[Approval | UnreadableItem]:
    for item in items:
        try:
            yield approval_from_item(item)
        except UnreadableItem as unreadable:
            yield unreadable
