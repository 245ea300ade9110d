"""The approvals table (DynamoDB), behind a small interface.

Every write that matters is conditional, so a redelivered message or a double click is
answered from the table's own state rather than from a read taken a moment earlier.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from approvals.models import STORED, Approval, ApprovalRequest, Outcome, Status, Unreachable, Vote
from approvals.policy import thresholds

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Item = dict[str, Any]

# A sparse index of what the sweep must look at: pending approvals, and settled ones whose
# decision has not yet reached the workflow. Everything else leaves it.
OPEN_INDEX = "open"
OPEN_ATTRIBUTE = "sweep"
OPEN = {"S": "open"}
EXECUTION_INDEX = "execution"


class VoteRejected(Exception):
    """The table refused the vote; ``reason`` says why and ``approval`` is its state then."""

    def __init__(self, reason: VoteRefusal, approval: Approval | None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.approval = approval


class VoteRefusal(Enum):
    UNKNOWN = "unknown approval"
    NOT_ASKED = "this address was not asked"
    EXCLUDED = "the requester may not decide on their own request"
    ALREADY_VOTED = "this approver has already decided"
    SETTLED = "the request is already settled"
    EXPIRED = "the request has expired"
    CANCELLED = "the request was cancelled"
    UNANSWERED = "the request asks for answers the vote did not carry"


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


def _epoch(moment: datetime) -> str:
    return str(int(moment.timestamp()))


def _time(value: str) -> datetime:
    return datetime.fromtimestamp(int(value), UTC)


def _write_id() -> Item:
    """A fresh id for one conditional write, stored with it.

    The SDK sends a write again when its reply is lost (a read timeout, a dropped
    connection); the copy then fails the condition the first one passed. Finding the id on
    the item tells that the write is in after all, so it is not taken for someone else's.
    """
    return {"S": uuid.uuid4().hex}


def _vote_item(vote: Vote, write: Item) -> Item:
    fields: Item = {
        "outcome": {"S": vote.outcome.value},
        "comment": {"S": vote.comment},
        "at": {"N": _epoch(vote.at)},
        "write": write,
    }
    if vote.on_behalf_by:
        fields["on_behalf_by"] = {"S": vote.on_behalf_by}
    if vote.data:
        fields["data"] = {"S": json.dumps(vote.data, ensure_ascii=False)}
    return {"M": fields}


def _recurring_item(period: int, at: datetime) -> Item:
    return {"M": {"period": {"N": str(period)}, "at": {"N": _epoch(at)}}}


def _vote_from(approver: str, item: Item) -> Vote:
    fields = item["M"]
    return Vote(
        approver=approver,
        outcome=Outcome(fields["outcome"]["S"]),
        comment=fields["comment"]["S"],
        at=_time(fields["at"]["N"]),
        on_behalf_by=fields.get("on_behalf_by", {}).get("S"),
        data=json.loads(fields.get("data", {}).get("S", "{}")),
    )


def _times(item: Item, name: str) -> dict[str, datetime]:
    return {key: _time(value["N"]) for key, value in item.get(name, {}).get("M", {}).items()}


def _optional_time(item: Item, name: str) -> datetime | None:
    return _time(item[name]["N"]) if name in item else None


def approval_from_item(item: Item) -> Approval:
    return Approval(
        approval_id=item["approval_id"]["S"],
        task_token=item["task_token"]["S"],
        execution=item["execution"]["S"],
        state=item["state"]["S"],
        request=ApprovalRequest.model_validate_json(item["request"]["S"], context=STORED),
        created_at=_time(item["created_at"]["N"]),
        expires_at=_time(item["expires_at"]["N"]),
        status=Status(item["status"]["S"]),
        votes={a: _vote_from(a, v) for a, v in item.get("votes", {}).get("M", {}).items()},
        decided_at=_optional_time(item, "decided_at"),
        decided_by=item.get("decided_by", {}).get("S"),
        emailed_at=_optional_time(item, "emailed_at"),
        delivery_failed=item.get("delivery_failed", {}).get("BOOL", False),
        unconfirmed=OPEN_ATTRIBUTE in item and item["status"]["S"] in (Status.APPROVED, Status.REJECTED),
        closed_at=_optional_time(item, "closed_at"),
        viewed=_times(item, "viewed"),
        reminded=_times(item, "reminded"),
        recurring_reminder=int(item.get("recurring", {}).get("M", {}).get("period", {}).get("N", "0")),
        recurring_reminded_at=_optional_time(item.get("recurring", {}).get("M", {}), "at"),
        excluded=[who["S"] for who in item.get("excluded", {}).get("L", [])],
        unreachable={
            who: Unreachable(at=_time(lost["M"]["at"]["N"]), why=lost["M"]["why"]["S"])
            for who, lost in item.get("unreachable", {}).get("M", {}).items()
        },
    )


class ApprovalStore:
    def __init__(self, client: DynamoDBClient, table_name: str, retention_days: int = 90) -> None:
        self._db = client
        self._table = table_name
        self._retention = timedelta(days=retention_days)

    def _key(self, approval_id: str) -> Item:
        return {"approval_id": {"S": approval_id}}

    def get(self, approval_id: str) -> Approval | None:
        item = self._db.get_item(TableName=self._table, Key=self._key(approval_id), ConsistentRead=True).get(
            "Item"
        )
        return approval_from_item(item) if item else None

    def claim(self, approval: Approval, now: datetime, claim_seconds: int) -> ClaimResult:
        """Store a new approval, or tell what an earlier delivery of it left behind."""
        limits = thresholds(approval.request, approval.excluded)
        write = _write_id()
        item: Item = {
            **self._key(approval.approval_id),
            "task_token": {"S": approval.task_token},
            "execution": {"S": approval.execution},
            "state": {"S": approval.state},
            "request": {"S": approval.request.model_dump_json()},
            "created_at": {"N": _epoch(approval.created_at)},
            "expires_at": {"N": _epoch(approval.expires_at)},
            "status": {"S": Status.PENDING.value},
            "votes": {"M": {}},
            "viewed": {"M": {}},
            "reminded": {"M": {}},
            "excluded": {"L": [{"S": who} for who in approval.excluded]},
            # Who may vote, for the vote's condition: a link's signature is not trusted alone.
            "voters": {"SS": [a for a in approval.request.approvers if a not in approval.excluded]},
            OPEN_ATTRIBUTE: OPEN,
            # Lets a vote whose form carried no answers be refused without reading the request.
            **({"has_fields": {"BOOL": True}} if approval.request.fields else {}),
            "approvals": {"N": "0"},
            "rejections": {"N": "0"},
            # The count at which the next vote of each kind settles the request.
            "approve_last": {"N": str(limits.approve_at - 1)},
            "reject_last": {"N": str(limits.reject_at - 1)},
            "claim_until": {"N": _epoch(now + timedelta(seconds=claim_seconds))},
            "claim_write": write,
            "ttl": {"N": _epoch(approval.expires_at + self._retention)},
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
            existing = _failed_condition_item(error)
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
                    ":until": {"N": _epoch(now + timedelta(seconds=claim_seconds))},
                    ":held": {"N": held_until},
                    ":write": write,
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _failed_condition_item(error).get("claim_write") != write:
                return ClaimResult(Claim.BUSY, sent_to, stored)
        return ClaimResult(Claim.RETRY, sent_to, stored)

    def record_sent(self, approval_id: str, approvers: list[str]) -> None:
        """Remember who has their email when only some went out, so a retry sends the rest."""
        self._db.update_item(
            TableName=self._table,
            Key=self._key(approval_id),
            UpdateExpression="ADD sent_to :approvers",
            ExpressionAttributeValues={":approvers": {"SS": approvers}},
        )

    def mark_emailed(self, approval_id: str, now: datetime) -> None:
        self._db.update_item(
            TableName=self._table,
            Key=self._key(approval_id),
            UpdateExpression="SET emailed_at = :now REMOVE claim_until, claim_write, sent_to",
            ExpressionAttributeValues={":now": {"N": _epoch(now)}},
        )

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
                ExpressionAttributeValues={":now": {"N": _epoch(now)}},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            _failed_condition_item(error)
            return None
        return approval_from_item(result["Attributes"])

    def record_vote(self, approval_id: str, vote: Vote, *, answers_checked: bool = True) -> Approval:
        """Record one approver's vote; the returned approval's ``decided_by`` tells whether
        this vote settled it. A vote whose answers were not checked against the request's
        fields (its form carried none) is taken only if the request has none.

        One conditional update does it, with no read first: the vote that brings its
        side's count to the threshold stored with the approval also writes the outcome,
        and every later vote fails the condition. The settling form is tried first (it is
        the only one for a single approver or a first-response policy); a refusal returns
        the item, which tells which form applies.
        """
        approve = vote.outcome is Outcome.APPROVED
        counter, last_open = ("approvals", "approve_last") if approve else ("rejections", "reject_last")
        settling = True
        write = _write_id()
        for _ in range(4):  # each retry follows a concurrent vote; counts only grow
            try:
                result = self._db.update_item(
                    **self._vote_update(
                        approval_id, vote, write, counter, last_open, settling, answers_checked
                    )
                )
                return approval_from_item(result["Attributes"])
            except ClientError as error:
                old = _failed_condition_item(error)
            if not old:
                raise VoteRejected(VoteRefusal.UNKNOWN, None)
            stored_vote = old.get("votes", {}).get("M", {}).get(vote.approver, {})
            if stored_vote.get("M", {}).get("write") == write:
                return approval_from_item(old)  # this vote, sent again by the SDK: it is in
            current = approval_from_item(old)
            refusal = _refusal(current, vote)
            if not refusal and not answers_checked and current.request.fields:
                refusal = VoteRefusal.UNANSWERED
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
    ) -> dict[str, Any]:
        values: Item = {
            ":vote": _vote_item(vote, write),
            ":pending": {"S": Status.PENDING.value},
            ":now": {"N": _epoch(vote.at)},
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
                + ("" if answers_checked else " AND attribute_not_exists(has_fields)")
            ),
            "ExpressionAttributeNames": {"#approver": vote.approver, "#status": "status"},
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def mark_delivery_failed(self, approval_id: str) -> None:
        """The workflow did not take the decision (a transient fault): retry without waiting."""
        self._db.update_item(
            TableName=self._table,
            Key=self._key(approval_id),
            UpdateExpression="SET delivery_failed = :true",
            ExpressionAttributeValues={":true": {"BOOL": True}},
        )

    def confirm_delivery(self, approval_id: str) -> None:
        """The workflow has the decision: the approval leaves the sweep's index."""
        self._db.update_item(
            TableName=self._table,
            Key=self._key(approval_id),
            UpdateExpression=f"REMOVE delivery_failed, {OPEN_ATTRIBUTE}",
        )

    def close(self, approval_id: str, status: Status, now: datetime, was: Status = Status.PENDING) -> bool:
        """Mark an approval expired or cancelled; False if it was no longer ``was``."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(approval_id),
                UpdateExpression=f"SET #status = :status, closed_at = :now REMOVE {OPEN_ATTRIBUTE}",
                ConditionExpression="#status = :was",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":status": {"S": status.value},
                    ":was": {"S": was.value},
                    ":now": {"N": _epoch(now)},
                },
            )
        except ClientError as error:
            _failed_condition_item(error)
            return False
        return True

    def claim_reminders(
        self, approval_id: str, reminders: list[str], now: datetime, recurring: int | None = None
    ) -> bool:
        """Claim the right to send the reminder these points, and the ``recurring`` period if
        given, call for (one email, however many fell due together); False if another
        sweep has, or it is settled."""
        names = {f"#r{i}": reminder for i, reminder in enumerate(reminders)}
        updates = [f"reminded.{name} = :now" for name in names]
        conditions = [f"attribute_not_exists(reminded.{name})" for name in names]
        write = _write_id()
        values: Item = {":pending": {"S": Status.PENDING.value}, ":write": write}
        if names:
            values[":now"] = {"N": _epoch(now)}
        if recurring is not None:
            updates.append("recurring = :recurring")
            conditions.append("(attribute_not_exists(recurring) OR recurring.period < :period)")
            values[":recurring"] = _recurring_item(recurring, now)
            values[":period"] = {"N": str(recurring)}
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(approval_id),
                UpdateExpression="SET reminder_write = :write, " + ", ".join(updates),
                ConditionExpression=" AND ".join([*conditions, "#status = :pending"]),
                ExpressionAttributeNames={**names, "#status": "status"},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            return _failed_condition_item(error).get("reminder_write") == write
        return True

    def release_reminders(
        self, approval: Approval, reminders: list[str], recurring: int | None = None
    ) -> None:
        """Give claimed reminders back after their emails failed, for the next sweep: the
        points, and the recurring reminder as it was before this claim."""
        if reminders:
            names = {f"#r{i}": reminder for i, reminder in enumerate(reminders)}
            self._db.update_item(
                TableName=self._table,
                Key=self._key(approval.approval_id),
                UpdateExpression="REMOVE " + ", ".join(f"reminded.{name}" for name in names),
                ExpressionAttributeNames=names,
            )
        if recurring is None:
            return
        before = approval.recurring_reminded_at
        restore: dict[str, Any] = (
            {"UpdateExpression": "REMOVE recurring", "ExpressionAttributeValues": {}}
            if before is None
            else {
                "UpdateExpression": "SET recurring = :before",
                "ExpressionAttributeValues": {
                    ":before": _recurring_item(approval.recurring_reminder, before)
                },
            }
        )
        restore["ExpressionAttributeValues"][":period"] = {"N": str(recurring)}
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(approval.approval_id),
                ConditionExpression="recurring.period = :period",  # unless a later sweep moved on
                **restore,
            )
        except ClientError as error:
            _failed_condition_item(error)

    def mark_unreachable(self, approval: Approval, lost: dict[str, str], now: datetime) -> Approval | None:
        """Note approvers who can no longer be emailed (for the timeline, and so reminders skip
        them); the approval as stored after, or None once it is no longer pending."""
        merged = {
            who: {"M": {"at": {"N": _epoch(mark.at)}, "why": {"S": mark.why}}}
            for who, mark in approval.unreachable.items()
        }
        merged |= {who: {"M": {"at": {"N": _epoch(now)}, "why": {"S": why}}} for who, why in lost.items()}
        try:
            result = self._db.update_item(
                TableName=self._table,
                Key=self._key(approval.approval_id),
                UpdateExpression="SET unreachable = :unreachable",
                ConditionExpression="#status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":unreachable": {"M": merged},
                    ":pending": {"S": Status.PENDING.value},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            _failed_condition_item(error)
            return None
        return approval_from_item(result["Attributes"])

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


def _refusal(current: Approval, vote: Vote) -> VoteRefusal | None:
    if vote.approver not in current.request.approvers:
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
    return None


def _failed_condition_item(error: ClientError) -> Item:
    """The item returned with a failed condition; any other error is raised again."""
    if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
        raise error
    response: dict[str, Any] = dict(error.response)
    item: Item = response.get("Item", {})
    return item
