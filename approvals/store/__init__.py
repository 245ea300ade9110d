"""The approvals table (DynamoDB), behind a small interface, split along the approval's life:
``claim`` (the worker stores it), ``vote`` (the page and the vote), ``reminders`` and
``escalation`` (while it waits: reminding, asking more people), ``close`` (delivery, expiry,
cancellation). ``items`` says how an approval is stored.

Every write that matters is conditional, so a redelivered message or a double click is
answered from the table's own state rather than from a read taken a moment earlier.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from approvals.models import Approval
from approvals.store.claim import Claim, ClaimResult, ClaimStore
from approvals.store.close import CloseStore
from approvals.store.escalation import EscalationStore
from approvals.store.items import (
    EXECUTION_INDEX,
    OPEN,
    OPEN_ATTRIBUTE,
    OPEN_INDEX,
    approval_from_item,
)
from approvals.store.reminders import ReminderStore
from approvals.store.vote import VoteRefusal, VoteRejected, VoteStore

__all__ = [
    "EXECUTION_INDEX",
    "OPEN_ATTRIBUTE",
    "OPEN_INDEX",
    "ApprovalStore",
    "Claim",
    "ClaimResult",
    "VoteRefusal",
    "VoteRejected",
    "approval_from_item",
]


class ApprovalStore(ClaimStore, VoteStore, ReminderStore, EscalationStore, CloseStore):
    """Every operation on the table; the queries the sweep and operators read through."""

    def get(self, approval_id: str) -> Approval | None:
        item = self._db.get_item(TableName=self._table, Key=self._key(approval_id), ConsistentRead=True).get(
            "Item"
        )
        return approval_from_item(item) if item else None

    def open_approvals(self) -> Iterator[Approval]:
        """Pending approvals and undelivered decisions: what the sweep looks after."""
        yield from self._query(
            IndexName=OPEN_INDEX,
            KeyConditionExpression=f"{OPEN_ATTRIBUTE} = :open",
            ExpressionAttributeValues={":open": OPEN},
        )

    def for_execution(self, execution_arn: str) -> Iterator[Approval]:
        yield from self._query(
            IndexName=EXECUTION_INDEX,
            KeyConditionExpression="execution = :arn",
            ExpressionAttributeValues={":arn": {"S": execution_arn}},
        )

    def all(self) -> Iterator[Approval]:
        """Every approval kept (for operators; a scan, fine at the scale of human approvals)."""
        for page in self._db.get_paginator("scan").paginate(TableName=self._table):
            for item in page["Items"]:
                yield approval_from_item(item)

    def _query(self, **query: Any) -> Iterator[Approval]:
        # Index reads may lag a moment; every action taken on them is a conditional write.
        for page in self._db.get_paginator("query").paginate(TableName=self._table, **query):
            for item in page["Items"]:
                yield approval_from_item(item)
