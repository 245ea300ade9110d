"""Each approver's inbox: one small item per (approver, approval) while it may wait on them.

An entry is written when an approver is asked (the worker's email, a sequence's turn, a
backup joining, a reassignment) and found through the sparse ``inbox`` index, newest
first, so the batch page is one query of the approver's own entries rather than a scan.
An entry leaves when the request stops waiting on the approver: their vote (every
approver's once it settles), a reassignment of their place, a cancellation; an expired one
is not counted by the inbox and goes with its approval (TTL). An entry still only says
"this may wait on you": the approval itself decides (its votes, its turn, its expiry), so
one left behind (a removal that failed) is skipped when read, never trusted. Entries carry
none of ``sweep``, ``execution`` or ``tell``: the sweep, the canceller and the requester's
index never see them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from approvals.inboxlinks import approver_id
from approvals.models import Approval, Reassignment, Status
from approvals.store.items import (
    INBOX_ATTRIBUTE,
    INBOX_INDEX,
    INBOX_KEY_PREFIX,
    INBOX_ORDER,
    Item,
    Table,
    epoch,
)

log = logging.getLogger(__name__)

WRITE_BATCH = 25  # BatchWriteItem's limit
READ_BATCH = 100  # BatchGetItem's limit
# What a batch call leaves unprocessed (throttled) is sent again after a short pause.
RETRY_PAUSE = 0.05


def entry_key(owner: str, approval_id: str) -> str:
    return f"{INBOX_KEY_PREFIX}{owner}#{approval_id}"


def inbox_order(approval: Approval) -> str:
    """Newest first when read backwards; the id breaks ties within a second."""
    return f"{int(approval.created_at.timestamp()):010d}#{approval.approval_id}"


Entry = tuple[str, str]  # an inbox entry's owner (the approver's id) and approval id


def every_entry(approval: Approval) -> list[Entry]:
    """Every inbox entry the approval may have: one per address it ever asked (a place
    handed over included)."""
    asked = [*approval.asked, *(change.from_ for change in approval.reassigned)]
    return [(approver_id(who), approval.approval_id) for who in dict.fromkeys(asked)]


def ended_by_vote(approval: Approval, voter: str) -> list[Entry]:
    """The entries a recorded vote ends (``approval``: as the vote left it): the voter's;
    once the vote settled it, every one."""
    if approval.status is Status.PENDING:
        return [(approver_id(voter), approval.approval_id)]
    return every_entry(approval)


@dataclass(frozen=True)
class InboxEntry:
    """What the index holds of one entry: enough to filter and to count without the approval."""

    approval_id: str
    order: str  # the index's sort key: the paging cursor
    workflow: str
    expires: int  # epoch seconds
    approver: str  # the address it was asked at
    sign_in: bool  # the request asks by itself to be decided signed in


class InboxStore(Table):
    def add_to_inbox(self, approval: Approval, approvers: Iterable[str]) -> None:
        """Put an entry in each approver's inbox (idempotent: the same key, the same item)."""
        items = [self._entry(approval, approver) for approver in dict.fromkeys(approvers)]
        self._write_batches([{"PutRequest": {"Item": item}} for item in items])

    def inbox_put(self, approval: Approval, approver: str) -> dict[str, Any]:
        """The approver's entry as one write of a transaction (TransactWriteItems' ``Put``),
        for the worker to write with its marks."""
        return {"Put": {"TableName": self._table, "Item": self._entry(approval, approver)}}

    def hand_over_entry(self, approval: Approval, change: Reassignment) -> None:
        """The place handed over moves from one inbox to the other (one BatchWriteItem)."""
        put = {"PutRequest": {"Item": self._entry(approval, change.to)}}
        self._write_batches([put, self._delete((approver_id(change.from_), approval.approval_id))])

    def remove_entries(self, entries: Iterable[Entry]) -> None:
        """Take these entries out of their inboxes, 25 to a BatchWriteItem."""
        self._write_batches([self._delete(entry) for entry in dict.fromkeys(entries)])

    def leave_inboxes(self, entries: Iterable[Entry]) -> None:
        """As :meth:`remove_entries`, where the request has already been answered: a failure
        leaves only stale entries, which the inbox skips (and the TTL removes), so it is
        logged rather than raised."""
        try:
            self.remove_entries(entries)
        except Exception:
            log.warning("inbox entries not removed: the inbox skips them", exc_info=True)

    def _delete(self, entry: Entry) -> dict[str, Any]:
        owner, approval_id = entry
        return {"DeleteRequest": {"Key": self._key(entry_key(owner, approval_id))}}

    def inbox_entries(self, owner: str) -> Iterator[InboxEntry]:
        """An approver's entries, newest first (the index may lag a write by a moment)."""
        pages = self._db.get_paginator("query").paginate(
            TableName=self._table,
            IndexName=INBOX_INDEX,
            KeyConditionExpression=f"{INBOX_ATTRIBUTE} = :owner",
            ExpressionAttributeValues={":owner": {"S": owner}},
            # Named, not written: some attribute names are DynamoDB's reserved words.
            ProjectionExpression="#approval, #order, #workflow, #expires, #approver, #sign_in",
            ExpressionAttributeNames={
                "#approval": "approval",
                "#order": INBOX_ORDER,
                "#workflow": "workflow",
                "#expires": "expires",
                "#approver": "approver",
                "#sign_in": "sign_in",
            },
            ScanIndexForward=False,
        )
        for page in pages:
            for item in page["Items"]:
                yield InboxEntry(
                    approval_id=item["approval"]["S"],
                    order=item[INBOX_ORDER]["S"],
                    workflow=item["workflow"]["S"],
                    expires=int(item["expires"]["N"]),
                    approver=item["approver"]["S"],
                    sign_in=item.get("sign_in", {}).get("BOOL", False),
                )

    def get_many(self, approval_ids: list[str]) -> dict[str, Item]:
        """The stored items of these approvals, by id (BatchGetItem, 100 at a time); an id
        with no item is left out. Items, not approvals: the caller reads each, so one that
        no longer reads costs only itself."""
        found: dict[str, Item] = {}
        unique = list(dict.fromkeys(approval_ids))
        for start in range(0, len(unique), READ_BATCH):
            keys = [self._key(approval_id) for approval_id in unique[start : start + READ_BATCH]]
            request = {self._table: {"Keys": keys, "ConsistentRead": True}}
            for response in _until_processed(self._db.batch_get_item, request, "UnprocessedKeys"):
                for item in response["Responses"].get(self._table, []):
                    found[item["approval_id"]["S"]] = item
        return found

    def _entry(self, approval: Approval, approver: str) -> Item:
        owner = approver_id(approver)
        return {
            **self._key(entry_key(owner, approval.approval_id)),
            INBOX_ATTRIBUTE: {"S": owner},
            INBOX_ORDER: {"S": inbox_order(approval)},
            "approver": {"S": approver},
            "approval": {"S": approval.approval_id},
            "workflow": {"S": approval.workflow},
            "title": {"S": approval.request.title},
            "requester": {"S": approval.request.requester},
            "expires": {"N": epoch(approval.expires_at)},
            "sign_in": {"BOOL": approval.request.identity == "sign-in"},
            # Gone with the approval it names: DynamoDB deletes both after the retention.
            "ttl": {"N": epoch(approval.expires_at + self._retention)},
        }

    def _write_batches(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), WRITE_BATCH):
            pending = {self._table: requests[start : start + WRITE_BATCH]}
            _until_processed(self._db.batch_write_item, pending, "UnprocessedItems")


def _until_processed(call: Callable[..., Any], request: dict[str, Any], leftover: str) -> list[Any]:
    """The responses of a batch call sent again with what it left unprocessed until none is
    left, pausing a little longer each time (a throttled table leaves some)."""
    responses: list[Any] = []
    while request:
        if responses:
            time.sleep(RETRY_PAUSE * min(len(responses), 20))
        responses.append(call(RequestItems=request))
        request = dict(responses[-1].get(leftover) or {})
    return responses
