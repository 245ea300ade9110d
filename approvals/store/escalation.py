"""Asking more people while the approval waits: an escalation's backups join the voters,
and whoever is owed their link (a backup, a sequence's next voter) is emailed once."""

from __future__ import annotations

from datetime import datetime

from botocore.exceptions import ClientError

from approvals.models import Approval, Status
from approvals.policy import approval_thresholds
from approvals.store.items import Item, Table, approval_from_item, epoch, failed_condition_item, write_id


class EscalationStore(Table):
    def escalate(self, approval: Approval, steps: list[int], now: datetime) -> Approval | None:
        """Let the backups of these escalation steps vote; the approval as stored after, or
        None when another sweep took these steps or the request is no longer pending.

        One conditional write adds them to the voters and raises the stored thresholds to
        count them, so a vote at the same moment either settles the request first (and this
        write fails) or is counted over the larger set. The raise is relative: thresholds
        grow by what these backups add, whatever other steps were taken meanwhile.
        """
        joined = approval.model_copy(
            update={"escalated": {**approval.escalated, **dict.fromkeys(steps, now)}}
        )
        before, after = approval_thresholds(approval), approval_thresholds(joined)
        backups = [a for step in steps for a in approval.request.escalation[step].approvers]
        names = {f"#s{step}": str(step) for step in steps}
        write = write_id()
        try:
            result = self._db.update_item(
                TableName=self._table,
                Key=self._key(approval.approval_id),
                UpdateExpression="SET escalation_write = :write, "
                + ", ".join(f"escalated.{name} = :now" for name in names)
                + ", approve_last = approve_last + :approve, reject_last = reject_last + :reject"
                " ADD voters :backups",
                ConditionExpression=" AND ".join(
                    [*(f"attribute_not_exists(escalated.{name})" for name in names), "#status = :pending"]
                ),
                ExpressionAttributeNames={**names, "#status": "status"},
                ExpressionAttributeValues={
                    ":write": write,
                    ":now": {"N": epoch(now)},
                    ":approve": {"N": str(after.approve_at - before.approve_at)},
                    ":reject": {"N": str(after.reject_at - before.reject_at)},
                    ":backups": {"SS": backups},
                    ":pending": {"S": Status.PENDING.value},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            old = failed_condition_item(error)
            # The SDK sent this write again after a lost reply: it is in.
            return approval_from_item(old) if old.get("escalation_write") == write else None
        return approval_from_item(result["Attributes"])

    def claim_notices(self, approval_id: str, approvers: list[str], now: datetime) -> bool:
        """Claim the right to email these approvers their link (each once, however many
        sweeps run); False if another sweep has, or the request is no longer pending."""
        names = {f"#a{i}": who for i, who in enumerate(approvers)}
        write = write_id()
        values: Item = {":now": {"N": epoch(now)}, ":pending": {"S": Status.PENDING.value}, ":write": write}
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(approval_id),
                UpdateExpression="SET notice_write = :write, "
                + ", ".join(f"notified.{name} = :now" for name in names),
                ConditionExpression=" AND ".join(
                    [*(f"attribute_not_exists(notified.{name})" for name in names), "#status = :pending"]
                ),
                ExpressionAttributeNames={**names, "#status": "status"},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            return failed_condition_item(error).get("notice_write") == write
        return True

    def release_notices(self, approval_id: str, approvers: list[str]) -> None:
        """Give claimed notices back after their emails failed, for the next sweep."""
        names = {f"#a{i}": who for i, who in enumerate(approvers)}
        self._db.update_item(
            TableName=self._table,
            Key=self._key(approval_id),
            UpdateExpression="REMOVE " + ", ".join(f"notified.{name}" for name in names),
            ExpressionAttributeNames=names,
        )
