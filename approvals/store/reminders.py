"""Reminders while the approval waits: each due point, and the recurring one, claimed once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from approvals.models import Approval, Status
from approvals.store.items import Item, Table, epoch, failed_condition_item, recurring_item, write_id


class ReminderStore(Table):
    def claim_reminders(
        self, approval_id: str, reminders: list[str], now: datetime, recurring: int | None = None
    ) -> bool:
        """Claim the right to send the reminder these points, and the ``recurring`` period if
        given, call for (one email, however many fell due together); False if another
        sweep has, or it is settled."""
        names = {f"#r{i}": reminder for i, reminder in enumerate(reminders)}
        updates = [f"reminded.{name} = :now" for name in names]
        conditions = [f"attribute_not_exists(reminded.{name})" for name in names]
        write = write_id()
        values: Item = {":pending": {"S": Status.PENDING.value}, ":write": write}
        if names:
            values[":now"] = {"N": epoch(now)}
        if recurring is not None:
            updates.append("recurring = :recurring")
            conditions.append("(attribute_not_exists(recurring) OR recurring.period < :period)")
            values[":recurring"] = recurring_item(recurring, now)
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
            return failed_condition_item(error).get("reminder_write") == write
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
                "ExpressionAttributeValues": {":before": recurring_item(approval.recurring_reminder, before)},
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
            failed_condition_item(error)
