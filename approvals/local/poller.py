"""Plays the SQS event source mapping: receives batches, invokes a handler with the
Lambda SQS event, deletes what succeeded and leaves the failures to come back after the
visibility timeout (and to the dead-letter queue after the redrive count)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)
# How long each receive waits for a message: SQS's longest, as Lambda's own pollers wait. A
# message that arrives is received at once, an idle stack's pollers ask once in 20 s, and the
# local stack's stop ends the receives under way (approvals/local/long_polls.py).
LONG_POLL_SECONDS = 20
Handler = Callable[[dict[str, Any], Any], Mapping[str, Any]]


@dataclass
class LambdaContext:
    """The context object the Lambda runtime hands a function."""

    function_name: str
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def sqs_event(messages: Sequence[Mapping[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda builds from received messages."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for message in messages
        ]
    }


class QueuePoller:
    """``concurrency`` pollers on one queue, each invoking the handler with its batch and
    waiting for the answer, as the event source mapping scales its pollers with the
    function's environments."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        handler: Handler,
        function_name: str,
        batch_size: int = 10,
        concurrency: int = 1,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._handler = handler
        self._function_name = function_name
        self._batch_size = batch_size
        self._queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"poller-{function_name}-{i}", daemon=True)
            for i in range(concurrency)
        ]

    def poll_once(self, wait_seconds: int = 0) -> int:
        """Receive and handle one batch; returns how many messages it held."""
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        try:
            response = self._handler(sqs_event(messages, self._queue_arn), LambdaContext(self._function_name))
        except Exception:
            # As with Lambda: an invocation error returns the whole batch to the queue.
            log.exception("handler failed for the whole batch")
            return len(messages)
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(messages)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once(wait_seconds=LONG_POLL_SECONDS)
            except Exception:
                if not self._stop.is_set():
                    log.exception("polling failed")
                    self._stop.wait(1)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def request_stop(self) -> None:
        """Ends the polling after the receives under way (see :meth:`stop`)."""
        self._stop.set()

    def stop(self) -> None:
        self.request_stop()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=LONG_POLL_SECONDS + 5)
