"""The requester told the outcome: once, claimed before the email, given back if it fails."""

from __future__ import annotations

from datetime import datetime

from botocore.exceptions import ClientError

from approvals.models import Status
from approvals.store.items import TELL, TELL_ATTRIBUTE, Table, epoch, failed_condition_item, write_id


class TellStore(Table):
    def claim_telling(self, approval_id: str, now: datetime) -> bool:
        """Claim the one email to the requester of an ended approval; False if another
        sweep has it."""
        write = write_id()
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(approval_id),
                UpdateExpression=f"SET requester_told_at = :now, tell_write = :write REMOVE {TELL_ATTRIBUTE}",
                ConditionExpression=f"{TELL_ATTRIBUTE} = :tell AND #status <> :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":now": {"N": epoch(now)},
                    ":write": write,
                    ":tell": TELL,
                    ":pending": {"S": Status.PENDING.value},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            return failed_condition_item(error).get("tell_write") == write  # a lost reply: ours
        return True

    def release_telling(self, approval_id: str) -> None:
        """The email failed: the next sweep tells the requester."""
        self._db.update_item(
            TableName=self._table,
            Key=self._key(approval_id),
            UpdateExpression=f"SET {TELL_ATTRIBUTE} = :tell REMOVE requester_told_at, tell_write",
            ExpressionAttributeValues={":tell": TELL},
        )

    def not_to_tell(self, approval_id: str) -> None:
        """The requester cannot be emailed (not in the approver directory): nothing to tell."""
        self._db.update_item(
            TableName=self._table, Key=self._key(approval_id), UpdateExpression=f"REMOVE {TELL_ATTRIBUTE}"
        )
