"""The local mailbox: every email SNS would deliver, one per recipient, from the queue the
local SNS mails to (moto_fixes): what each confirmed, filtered subscription takes, and the
confirmation email of each new subscription."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

LINK = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class SentEmail:
    to: str
    subject: str
    body: str
    links: list[str]  # in the message itself
    sent_at: str
    kind: str  # "Notification", or "SubscriptionConfirmation"
    unsubscribe: str  # the footer link SNS adds to a notification

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def from_notification(body: str) -> SentEmail:
    notification = json.loads(body)
    message = notification["Message"]
    return SentEmail(
        to=notification["To"],
        subject=notification.get("Subject", ""),
        body=message,
        links=LINK.findall(message),
        sent_at=notification.get("Timestamp", ""),
        kind=notification["Type"],
        unsubscribe=notification.get("UnsubscribeURL", ""),
    )


class Outbox:
    def __init__(self, sqs: SQSClient, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._emails: list[SentEmail] = []
        self._lock = threading.Lock()

    def collect(self) -> int:
        """Move whatever the subscription has delivered into the outbox."""
        count = 0
        while True:
            messages = self._sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return count
            with self._lock:
                self._emails += [from_notification(m["Body"]) for m in messages]
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
            count += len(messages)

    def emails(self) -> list[SentEmail]:
        self.collect()
        with self._lock:
            return list(self._emails)
