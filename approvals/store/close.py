"""The approval's end: the decision delivered, the request expired or cancelled, approvers
lost on the way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from botocore.exceptions import ClientError

from approvals.models import Approval, Status
from approvals.store.digest import TRANSACTION_LIMIT
from approvals.store.items import (
    OPEN_ATTRIBUTE,
    Item,
    Table,
    approval_from_item,
    epoch,
    failed_condition_item,
)

# The workflow has the decision: the approval leaves the sweep's index. One update, written
# by the workflow itself (approvals.statemachine's ConfirmApproved / ConfirmRejected, right
# after the task takes the decision), by a bulk vote for the tasks it answered (100 in a transaction:
# their decisions tell the workflows to skip theirs), or, as a fallback, by the sweep once
# a repeated answer shows the workflow has it. The condition keeps the workflow's write
# from creating an item that is not there (UpdateItem would) and from touching an approval
# not settled.
CONFIRM_DELIVERY: Item = {
    "UpdateExpression": f"REMOVE delivery_failed, {OPEN_ATTRIBUTE}",
    "ConditionExpression": "#status IN (:approved, :rejected)",
    "ExpressionAttributeNames": {"#status": "status"},
    "ExpressionAttributeValues": {
        ":approved": {"S": Status.APPROVED.value},
        ":rejected": {"S": Status.REJECTED.value},
    },
}

# Every top-level attribute that write names (its key, what it removes, what its condition
# reads): the only ones IAM lets a workflow's confirmation touch (dynamodb:Attributes).
CONFIRM_DELIVERY_ATTRIBUTES = ("approval_id", "delivery_failed", "status", OPEN_ATTRIBUTE)

# Transactions of confirmations tried per 100: the first, one without the approvals closed
# meanwhile, one more after a conflict with another write at that moment.
CONFIRM_ATTEMPTS = 3


class CloseStore(Table):
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
        try:
            self._db.update_item(TableName=self._table, Key=self._key(approval_id), **CONFIRM_DELIVERY)
        except ClientError as error:
            failed_condition_item(error)  # no longer settled: closed meanwhile, nothing to confirm

    def confirm_deliveries(self, approval_ids: Sequence[str]) -> None:
        """:meth:`confirm_delivery` for many approvals, one TransactWriteItems per 100. A
        transaction cancelled because some are no longer settled is written again without
        them; one cancelled otherwise (a conflict), again as it was, up to CONFIRM_ATTEMPTS.
        What is then still unconfirmed raises: the sweep confirms it."""
        for start in range(0, len(approval_ids), TRANSACTION_LIMIT):
            self._confirm_together(list(approval_ids[start : start + TRANSACTION_LIMIT]))

    def _confirm_together(self, approval_ids: list[str]) -> None:
        for attempt in range(1, CONFIRM_ATTEMPTS + 1):
            if len(approval_ids) <= 1:  # a transaction of one costs twice the write capacity
                for approval_id in approval_ids:
                    self.confirm_delivery(approval_id)
                return
            writes = [
                {"Update": {"TableName": self._table, "Key": self._key(approval_id), **CONFIRM_DELIVERY}}
                for approval_id in approval_ids
            ]
            try:
                self._db.transact_write_items(TransactItems=writes)  # type: ignore[arg-type]
                return
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                if attempt == CONFIRM_ATTEMPTS:
                    raise
                reasons = error.response.get("CancellationReasons", [])
                closed = {
                    approval_id
                    for approval_id, reason in zip(approval_ids, reasons, strict=False)
                    if reason.get("Code") == "ConditionalCheckFailed"
                }
                approval_ids = [approval_id for approval_id in approval_ids if approval_id not in closed]

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
                    ":now": {"N": epoch(now)},
                },
            )
        except ClientError as error:
            failed_condition_item(error)
            return False
        return True

    def mark_unreachable(self, approval: Approval, lost: dict[str, str], now: datetime) -> Approval | None:
        """Note approvers who can no longer be emailed (for the timeline, and so reminders skip
        them); the approval as stored after, or None once it is no longer pending."""
        merged = {
            who: {"M": {"at": {"N": epoch(mark.at)}, "why": {"S": mark.why}}}
            for who, mark in approval.unreachable.items()
        }
        merged |= {who: {"M": {"at": {"N": epoch(now)}, "why": {"S": why}}} for who, why in lost.items()}
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
            failed_condition_item(error)
            return None
        return approval_from_item(result["Attributes"])
