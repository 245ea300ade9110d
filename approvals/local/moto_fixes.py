"""Small corrections to moto (5.2.5), applied by the local stack and the tests so that they
behave as the services do.

- ``SendTaskFailure`` drops ``cause`` in moto's response layer; the service passes it on,
  and the fan-out's invalid entries show it.
- ``StartExecution`` without a name names every execution ``None`` in moto, so a second one
  fails with ``ExecutionAlreadyExists``; the service generates a unique name.
- DynamoDB applies a request to an item atomically. moto checks a condition, writes, then
  reads the item back for its answer, in steps that threads can interleave: two racing
  conditional writes could both pass (two votes settling one request), and an answer could
  show another request's write. Each DynamoDB request is served whole, one at a time.
- DynamoDB refuses an item over 400 KB. moto checks an item written whole, not one that an
  update grows through a nested path (``SET votes.#approver = :vote``): such an update is
  refused and undone, as the service refuses it.
- Step Functions' 256 KiB state payload moto enforces itself (``States.DataLimitExceeded``).
- SNS ``PublishBatch`` takes at most 256 KiB in all (each message with its subject and
  attributes); moto checks only each message alone. A larger batch is refused whole with
  ``BatchRequestTooLong``, as the service refuses it.
"""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.dynamodb.exceptions import ItemSizeToUpdateTooLarge
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler
from moto.sns.exceptions import SNSException
from moto.sns.responses import SNSResponse
from moto.stepfunctions.responses import StepFunctionResponse

PUBLISH_BATCH_BYTES = 256 * 1024
ITEM_BYTES = 400 * 1024  # attribute names and values, as DynamoDB counts them


class BatchRequestTooLong(SNSException):
    code = "BatchRequestTooLong"
    message = "The length of all the batch messages put together is more than the limit."


def _text_bytes(value: Any) -> int:
    """The UTF-8 bytes of every string in ``value`` (keys included): what a message and its
    attributes weigh."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return sum(_text_bytes(k) + _text_bytes(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(_text_bytes(v) for v in value)
    return 0


_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True

    def send_task_failure(self: StepFunctionResponse) -> Any:
        self.stepfunction_backend.send_task_failure(  # the executing backend takes a cause
            self._get_param("taskToken"),
            error=self._get_param("error"),
            cause=self._get_param("cause"),  # type: ignore[call-arg]
        )
        return EmptyResult()

    def start_execution(self: StepFunctionResponse) -> Any:
        execution = self.stepfunction_backend.start_execution(
            self._get_param("stateMachineArn"),
            self._get_param("name") or str(uuid.uuid4()),
            self._get_param("input", if_none="{}"),
        )
        return ActionResult({"executionArn": execution.execution_arn, "startDate": execution.start_date})

    StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]
    StepFunctionResponse.start_execution = start_execution  # type: ignore[method-assign]

    serve_publish_batch = SNSResponse.publish_batch

    def publish_batch(self: SNSResponse) -> Any:
        entries = self._get_param("PublishBatchRequestEntries", [])
        weighed = ("Message", "Subject", "MessageAttributes")
        if sum(_text_bytes(entry.get(part)) for entry in entries for part in weighed) > PUBLISH_BATCH_BYTES:
            raise BatchRequestTooLong
        return serve_publish_batch(self)

    SNSResponse.publish_batch = publish_batch  # type: ignore[method-assign]

    update_item = DynamoDBBackend.update_item

    def update_item_within_limit(
        self: DynamoDBBackend, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        table = self.get_table(table_name)
        before = table.get_item(*self.get_keys_value(table, key))
        snapshot = copy.deepcopy(before.attrs) if before is not None else None
        item = update_item(self, table_name, key, *args, **kwargs)
        if item.size() > ITEM_BYTES:
            if snapshot is None:  # the update created it
                table.delete_item(*self.get_keys_value(table, key))
            else:
                item.attrs = snapshot
            raise ItemSizeToUpdateTooLarge()
        return item

    DynamoDBBackend.update_item = update_item_within_limit  # type: ignore[method-assign]

    one_at_a_time = threading.RLock()
    serve_dynamodb = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with one_at_a_time:
            return serve_dynamodb(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
