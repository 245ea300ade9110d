"""Each approver's digest: when their last email went, and the requests waiting to go in
their next one.

One item per approver (``digest#<approver id>``): ``window_until`` (their last email plus the
digest window: requests arriving before it wait) and ``pending`` (the approval ids that
wait). While requests wait it is in the open index under a key of its own (``sweep`` =
"digest", sorted by ``expires_at``: when the window closes), where the sweep finds it; the
sweep's query for approvals ("open") never meets it, nor is it in the other indexes. Whoever
emails the approver (a worker, the sweep) first claims the closed window with a conditional
update that opens it (claim_window): of two at the same moment, one emails and the other's
requests wait in the digest. The worker writes its marks together (TransactWriteItems): one
call for a batch's approvals and digests rather than one per approval.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from approvals.inboxlinks import approver_id
from approvals.models import Approval
from approvals.store.items import (
    DIGEST_AT,
    DIGEST_ATTRIBUTE,
    DIGEST_PREFIX,
    DUE,
    Item,
    Table,
    UnreadableItem,
    approval_from_item,
    epoch,
    failed_condition_item,
    from_epoch,
)

AWAITING_DIGEST = "awaiting_digest"  # on an approval: approvers whose email waits in their digest
BATCH_GET_LIMIT = 100  # keys per BatchGetItem
TRANSACTION_LIMIT = 100  # writes per TransactWriteItems


@dataclass(frozen=True)
class DigestState:
    approver: str
    window_until: datetime | None = None
    pending: frozenset[str] = frozenset()

    def window_open(self, now: datetime) -> bool:
        return self.window_until is not None and now < self.window_until


@dataclass(frozen=True)
class WindowClaim:
    """A claim of an approver's window: ``won``, the digest as the claim left it (its
    ``pending`` go in the email); lost, the window that is open (what arrives now waits in it)."""

    won: bool
    state: DigestState


Write = dict[str, Any]  # one write of TransactWriteItems: {"Update": ...} or {"Put": ...}


class DigestStore(Table):
    def _digest_key(self, approver: str) -> Item:
        return self._key(f"{DIGEST_PREFIX}{approver_id(approver)}")

    def digest_states(self, approvers: Iterable[str]) -> dict[str, DigestState]:
        """Each approver's digest state (an approver never emailed has an empty one)."""
        wanted = list(dict.fromkeys(approvers))
        states = {who: DigestState(who) for who in wanted}
        for item in self._batch_get([self._digest_key(who) for who in wanted]):
            state = _state(item)
            states[state.approver] = state
        return states

    def due_digests(self, now: datetime) -> Iterator[DigestState]:
        """The digests whose window has closed with requests (or none left) in them."""
        return (_state(item) for item in self._due(DUE, now))

    def approvals(self, approval_ids: Iterable[str]) -> Iterator[Approval | UnreadableItem]:
        """The approvals of these ids that are kept, in no particular order."""
        for item in self._batch_get([self._key(approval_id) for approval_id in dict.fromkeys(approval_ids)]):
            try:
                yield approval_from_item(item)
            except UnreadableItem as unreadable:
                yield unreadable

    def _batch_get(self, keys: list[Item]) -> Iterator[Item]:
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: Any = {
                self._table: {"Keys": keys[start : start + BATCH_GET_LIMIT], "ConsistentRead": True}
            }
            while request:
                response = self._db.batch_get_item(RequestItems=request)
                yield from response["Responses"].get(self._table, [])
                request = response.get("UnprocessedKeys") or {}

    def forget_empty_digest(self, approver: str) -> None:
        """Take a digest with nothing pending out of the index (unless a request just joined)."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._digest_key(approver),
                UpdateExpression=f"REMOVE {DIGEST_ATTRIBUTE}, {DIGEST_AT}",
                ConditionExpression="attribute_not_exists(pending)",
            )
        except ClientError as error:
            failed_condition_item(error)

    # The writes, made by the functions below and written together by write_together.

    def emailed_write(self, approval_id: str, now: datetime, deferred: Sequence[str]) -> Write:
        """An approval's emails are out, or (``deferred``) wait in their approvers' digests."""
        update = "SET emailed_at = :now REMOVE claim_until, claim_write, sent_to"
        values: Item = {":now": {"N": epoch(now)}}
        if deferred:
            update += f" ADD {AWAITING_DIGEST} :deferred"
            values[":deferred"] = {"SS": list(deferred)}
        return self._update(self._key(approval_id), update, values)

    def sent_write(self, approval_id: str, sent: Sequence[str], deferred: Sequence[str]) -> Write:
        """Some emails failed: who has theirs (or waits for it in a digest), for the retry."""
        values: Item = {":sent": {"SS": [*sent, *deferred]}}
        update = "ADD sent_to :sent"
        if deferred:
            update += f", {AWAITING_DIGEST} :deferred"
            values[":deferred"] = {"SS": list(deferred)}
        return self._update(self._key(approval_id), update, values)

    def digested_write(self, approval_id: str, approver: str) -> Write:
        """The approver's digest carried this approval: it no longer waits for it."""
        return self._update(
            self._key(approval_id), f"DELETE {AWAITING_DIGEST} :who", {":who": {"SS": [approver]}}
        )

    def defer_write(self, state: DigestState, approval_ids: Sequence[str]) -> Write:
        """These approvals wait in the approver's digest until their window closes."""
        assert state.window_until is not None, "only an open window defers"
        return self._update(
            self._digest_key(state.approver),
            f"SET approver = :who, {DIGEST_ATTRIBUTE} = :due, {DIGEST_AT} = :until, #ttl = :ttl"
            " ADD pending :ids",
            {
                ":who": {"S": state.approver},
                ":due": DUE,
                ":until": {"N": epoch(state.window_until)},
                ":ttl": {"N": epoch(state.window_until + self._retention)},
                ":ids": {"SS": list(approval_ids)},
            },
            names={"#ttl": "ttl"},
        )

    def claim_window(self, approver: str, now: datetime, seconds: int) -> WindowClaim:
        """Claim the right to email the approver now, if their window is closed: the window
        opens (for ``seconds``) in the same conditional update, so two workers, or a worker
        and the sweep, at the same moment find each other and only one emails. The claim
        comes before the email: one that then fails is given back (give_back_window); were that
        lost too, the window stays open and the digest's items in it, for the sweep at its
        close (delayed, never dropped)."""
        # A claim holds at least a second, so that two claims without a window (a digest
        # left when the window was turned off) still find each other.
        until = now + timedelta(seconds=max(seconds, 1))
        try:
            result = self._db.update_item(
                TableName=self._table,
                Key=self._digest_key(approver),
                UpdateExpression=(
                    f"SET approver = :who, window_until = :until, {DIGEST_AT} = :until, #ttl = :ttl"
                ),
                ConditionExpression="attribute_not_exists(window_until) OR window_until <= :now",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":who": {"S": approver},
                    ":until": {"N": epoch(until)},
                    ":now": {"N": epoch(now)},
                    ":ttl": {"N": epoch(until + self._retention)},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            return WindowClaim(won=False, state=_state(failed_condition_item(error)))
        return WindowClaim(won=True, state=_state(result["Attributes"]))

    def give_back_window(self, claimed: DigestState, now: datetime) -> None:
        """The email a won claim was for failed: the window closes again (unless claimed
        since), so that the retry goes at once rather than at the window's close."""
        assert claimed.window_until is not None, "only a won claim is given back"
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._digest_key(claimed.approver),
                UpdateExpression=f"SET window_until = :now, {DIGEST_AT} = :now",
                ConditionExpression="window_until = :claimed",
                ExpressionAttributeValues={
                    ":now": {"N": epoch(now)},
                    ":claimed": {"N": epoch(claimed.window_until)},
                },
            )
        except ClientError as error:
            failed_condition_item(error)

    def cleared_write(self, approver: str, sent: Sequence[str]) -> Write:
        """The ``sent`` items leave the approver's digest: their email went (or they no
        longer wait). Items that joined since stay. The index entry, if any, stays until the
        sweep finds it empty at the window's close (forget_empty_digest)."""
        return self._update(self._digest_key(approver), "DELETE pending :sent", {":sent": {"SS": list(sent)}})

    def _update(self, key: Item, update: str, values: Item, names: dict[str, str] | None = None) -> Write:
        write: Write = {
            "TableName": self._table,
            "Key": key,
            "UpdateExpression": update,
            "ExpressionAttributeValues": values,
        }
        if names:
            write["ExpressionAttributeNames"] = names
        return {"Update": write}

    def write_together(self, writes: Sequence[Write]) -> int:
        """Apply the writes in order, up to 100 per TransactWriteItems (a key at most once in
        each); returns the calls made. A transaction refused as a whole (a conflict with a
        write at the same moment) is written again one update at a time: the writes are
        unconditional, so each holds alone, and in order (a digest's pending ids before the
        approvals that count on them)."""
        calls = 0
        for chunk in _chunks(writes):
            calls += 1
            if len(chunk) == 1:  # half the write capacity of a transaction of one
                self._write_one(chunk[0])
                continue
            try:
                self._db.transact_write_items(
                    TransactItems=chunk,  # type: ignore[arg-type]
                    ClientRequestToken=uuid.uuid4().hex,  # the SDK's own retry is then idempotent
                )
                continue
            except (ClientError, BotoCoreError):
                pass
            for write in chunk:
                calls += 1
                self._write_one(write)
        return calls

    def _write_one(self, write: Write) -> None:
        if "Put" in write:
            self._db.put_item(**write["Put"])
        else:
            self._db.update_item(**write["Update"])


def _chunks(writes: Sequence[Write]) -> list[list[Write]]:
    """Consecutive chunks of at most 100 writes, each key at most once in a chunk."""
    chunks: list[list[Write]] = []
    keys: set[str] = set()
    for write in writes:
        key = (
            write["Put"]["Item"]["approval_id"]["S"]
            if "Put" in write
            else write["Update"]["Key"]["approval_id"]["S"]
        )
        if not chunks or len(chunks[-1]) == TRANSACTION_LIMIT or key in keys:
            chunks.append([])
            keys = set()
        chunks[-1].append(write)
        keys.add(key)
    return chunks


def _state(item: Item) -> DigestState:
    return DigestState(
        approver=item["approver"]["S"],
        window_until=from_epoch(item["window_until"]["N"]) if "window_until" in item else None,
        pending=frozenset(item.get("pending", {}).get("SS", [])),
    )
