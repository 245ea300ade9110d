"""How an approval is written as a DynamoDB item, and read back: shared by every store module.

Every write that matters is conditional, so a redelivered message or a double click is
answered from the table's own state rather than from a read taken a moment earlier.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from approvals.models import (
    STORED,
    Approval,
    ApprovalRequest,
    Outcome,
    Reassignment,
    Status,
    Unreachable,
    Vote,
    handed_over,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Item = dict[str, Any]

# A sparse index of what the sweep must look at: pending approvals, and settled ones whose
# decision has not yet reached the workflow. Everything else leaves it.
OPEN_INDEX = "open"
OPEN_ATTRIBUTE = "sweep"
OPEN = {"S": "open"}
EXECUTION_INDEX = "execution"
# A sparse index of approvals whose requester is to be told the outcome (an email address):
# set when the approval is stored, removed once told. Apart from the open index, so that
# telling does not hang on how a decision's delivery is confirmed.
TELL_INDEX = "tell"
TELL_ATTRIBUTE = "tell"
TELL = {"S": "requester"}
# Approvers' digests with requests waiting in them (approvals.store.digest) are found in the
# open index under a key of their own ("digest", by when their window closes), so the sweep's
# query for approvals ("open") never meets them. Not an index of their own: CloudFormation
# creates one index per table update, and the inbox's is this release's one.
DIGEST_INDEX = OPEN_INDEX
DIGEST_ATTRIBUTE = OPEN_ATTRIBUTE
DIGEST_AT = "expires_at"
DUE = {"S": "digest"}
# A sparse index of each approver's inbox (approvals.store.inbox): its entries live in the
# same table under keys of their own, and are no approvals.
INBOX_INDEX = "inbox"
INBOX_ATTRIBUTE = "inbox_of"  # the approver's id (approvals.inboxlinks.approver_id)
INBOX_ORDER = "inbox_at"  # "<created, epoch seconds, 10 digits>#<approval id>"
INBOX_KEY_PREFIX = "inbox#"


def is_inbox_entry(item: Item) -> bool:
    """Whether a raw item of the table is an inbox entry (or a bulk job, which the inbox
    index lists too: approvals.store.bulkjob.is_job) rather than an approval."""
    return INBOX_ATTRIBUTE in item


DIGEST_PREFIX = "digest#"  # an approver's digest (approvals.store.digest): no approval either


def is_digest(item: Item) -> bool:
    """Whether a raw item of the table is an approver's digest rather than an approval."""
    return str(item["approval_id"]["S"]).startswith(DIGEST_PREFIX)


def epoch(moment: datetime) -> str:
    return str(int(moment.timestamp()))


def from_epoch(value: str) -> datetime:
    return datetime.fromtimestamp(int(value), UTC)


def write_id() -> Item:
    """A fresh id for one conditional write, stored with it.

    The SDK sends a write again when its reply is lost (a read timeout, a dropped
    connection); the copy then fails the condition the first one passed. Finding the id on
    the item tells that the write is in after all, so it is not taken for someone else's.
    """
    return {"S": uuid.uuid4().hex}


def vote_item(vote: Vote, write: Item) -> Item:
    fields: Item = {
        "outcome": {"S": vote.outcome.value},
        "comment": {"S": vote.comment},
        "at": {"N": epoch(vote.at)},
        "write": write,
    }
    if vote.on_behalf_by:
        fields["on_behalf_by"] = {"S": vote.on_behalf_by}
    if vote.data:
        fields["data"] = {"S": json.dumps(vote.data, ensure_ascii=False)}
    if vote.issuer:  # a vote by link stores nothing more than it did
        fields["issuer"] = {"S": vote.issuer}
    return {"M": fields}


def recurring_item(period: int, at: datetime) -> Item:
    return {"M": {"period": {"N": str(period)}, "at": {"N": epoch(at)}}}


def vote_from(approver: str, item: Item) -> Vote:
    fields = item["M"]
    return Vote(
        approver=approver,
        outcome=Outcome(fields["outcome"]["S"]),
        comment=fields["comment"]["S"],
        at=from_epoch(fields["at"]["N"]),
        on_behalf_by=fields.get("on_behalf_by", {}).get("S"),
        data=json.loads(fields.get("data", {}).get("S", "{}")),
        proof="sign-in" if "issuer" in fields else "link",
        issuer=fields.get("issuer", {}).get("S"),
    )


def epoch_map(item: Item, name: str) -> dict[str, datetime]:
    return {key: from_epoch(value["N"]) for key, value in item.get(name, {}).get("M", {}).items()}


def optional_time(item: Item, name: str) -> datetime | None:
    return from_epoch(item[name]["N"]) if name in item else None


def reassignment_item(change: Reassignment, write: Item) -> Item:
    return {
        "M": {
            "from": {"S": change.from_},
            "to": {"S": change.to},
            "by": {"S": change.by},
            "at": {"N": epoch(change.at)},
            "write": write,
        }
    }


def reassignments(item: Item) -> list[Reassignment]:
    return [
        Reassignment.model_validate(
            {"from": m["from"]["S"], "to": m["to"]["S"], "by": m["by"]["S"], "at": from_epoch(m["at"]["N"])}
        )
        for m in (change["M"] for change in item.get("reassigned", {}).get("L", []))
    ]


SHORT_LINKS = "short_links"  # token hash: {approver, viewed (the link's first view)}


def short_links_item(bindings: dict[str, str]) -> Item:
    return {"M": {token_hash: {"M": {"approver": {"S": who}}} for token_hash, who in bindings.items()}}


def _viewed(item: Item) -> dict[str, datetime]:
    """Each approver's first view, by signed link (``viewed``) or by short link."""
    viewed = epoch_map(item, "viewed")
    for link in item.get(SHORT_LINKS, {}).get("M", {}).values():
        if "viewed" in link["M"]:
            who, at = link["M"]["approver"]["S"], from_epoch(link["M"]["viewed"]["N"])
            viewed[who] = min(viewed.get(who, at), at)
    return viewed


class UnreadableItem(Exception):
    """An item that no longer reads as an approval. What it says names the item and what
    failed, never the request's text nor its token: it goes into logs and onto pages."""

    def __init__(self, approval_id: str, problem: str) -> None:
        super().__init__(f"approval {approval_id} cannot be read: {problem}")
        self.approval_id = approval_id
        self.problem = problem


def approval_from_item(item: Item) -> Approval:
    """The approval an item holds; UnreadableItem if it holds none."""
    try:
        return _approval(item)
    except ValidationError as error:  # its own text would quote the input: the request, the token
        problems = error.errors(include_url=False, include_context=False, include_input=False)
        problem = "; ".join(f"{'.'.join(map(str, p['loc'])) or 'item'}: {p['msg']}" for p in problems)
    except (KeyError, ValueError, TypeError) as error:  # a missing or mistyped attribute
        problem = f"{type(error).__name__} {error}"
    raise UnreadableItem(item.get("approval_id", {}).get("S", "?"), problem) from None


def _approval(item: Item) -> Approval:
    request = ApprovalRequest.model_validate_json(item["request"]["S"], context=STORED)
    reassigned = reassignments(item)
    if reassigned:  # the request as it stands: each place held by whoever holds it now
        request = request.model_copy(update={"approvers": handed_over(request.approvers, reassigned)})
    return Approval(
        approval_id=item["approval_id"]["S"],
        task_token=item["task_token"]["S"],
        execution=item["execution"]["S"],
        state=item["state"]["S"],
        request=request,
        reassigned=reassigned,
        requester_told_at=optional_time(item, "requester_told_at"),
        created_at=from_epoch(item["created_at"]["N"]),
        expires_at=from_epoch(item["expires_at"]["N"]),
        status=Status(item["status"]["S"]),
        votes={a: vote_from(a, v) for a, v in item.get("votes", {}).get("M", {}).items()},
        decided_at=optional_time(item, "decided_at"),
        decided_by=item.get("decided_by", {}).get("S"),
        emailed_at=optional_time(item, "emailed_at"),
        delivery_failed=item.get("delivery_failed", {}).get("BOOL", False),
        unconfirmed=OPEN_ATTRIBUTE in item and item["status"]["S"] in (Status.APPROVED, Status.REJECTED),
        closed_at=optional_time(item, "closed_at"),
        viewed=_viewed(item),
        reminded=epoch_map(item, "reminded"),
        recurring_reminder=int(item.get("recurring", {}).get("M", {}).get("period", {}).get("N", "0")),
        recurring_reminded_at=optional_time(item.get("recurring", {}).get("M", {}), "at"),
        excluded=[who["S"] for who in item.get("excluded", {}).get("L", [])],
        escalated={int(step): at for step, at in epoch_map(item, "escalated").items()},
        notified=epoch_map(item, "notified"),
        awaiting_digest=sorted(item.get("awaiting_digest", {}).get("SS", [])),
        link_base=item.get("link_base", {}).get("S", ""),
        unreachable={
            who: Unreachable(at=from_epoch(lost["M"]["at"]["N"]), why=lost["M"]["why"]["S"])
            for who, lost in item.get("unreachable", {}).get("M", {}).items()
        },
        short_links={
            token_hash: link["M"]["approver"]["S"]
            for token_hash, link in item.get(SHORT_LINKS, {}).get("M", {}).items()
        },
    )


class Table:
    """The table and its client, which every part of the store writes through."""

    def __init__(self, client: DynamoDBClient, table_name: str, retention_days: int = 90) -> None:
        self._db = client
        self._table = table_name
        self._retention = timedelta(days=retention_days)

    def _key(self, approval_id: str) -> Item:
        return {"approval_id": {"S": approval_id}}

    def _due(self, sweep_key: Item, now: datetime) -> Iterator[Item]:
        """The items the sweep finds due by ``now`` under ``sweep_key`` of the open index
        (the digests' and the bulk jobs' own keys, apart from the approvals')."""
        pages = self._db.get_paginator("query").paginate(
            TableName=self._table,
            IndexName=OPEN_INDEX,
            KeyConditionExpression=f"{OPEN_ATTRIBUTE} = :due AND {DIGEST_AT} <= :now",
            ExpressionAttributeValues={":due": sweep_key, ":now": {"N": epoch(now)}},
        )
        for page in pages:
            yield from page["Items"]


def failed_condition_item(error: ClientError) -> Item:
    """The item returned with a failed condition; any other error is raised again."""
    if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
        raise error
    response: dict[str, Any] = dict(error.response)
    item: Item = response.get("Item", {})
    return item
