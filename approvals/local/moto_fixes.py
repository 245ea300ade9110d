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
- SNS confirms every subscription at once, lists its ARN, and delivers nothing to an email
  endpoint. The service keeps an email subscription pending until the link in its
  confirmation email is followed (listing it as ``PendingConfirmation``, delivering nothing
  to it), confirms it by token (``AuthenticateOnUnsubscribe`` protects it), and mails what
  the filter policy takes. Here a topic tagged :data:`MAILBOX_TAG` has its email delivered
  to that SQS queue, one message per recipient (the local outbox); tagged
  :data:`CONFIRM_AT_ONCE_TAG`, its email subscriptions are confirmed at once, as by
  ``approvals approvers confirm`` (nobody reads the local mail); otherwise the confirmation
  email goes to the mailbox with a link to confirm it. As SNS's, each email carries an
  unsubscribe link (unauthenticated: it cannot remove a protected subscription). Both links
  point at :data:`SNS_PAGES_TAG` (the local API), or at SNS's own pages.
- DynamoDB refuses an item over 400 KB. moto checks an item written whole, not one that an
  update grows through a nested path (``SET votes.#approver = :vote``): such an update is
  refused and undone, as the service refuses it.
- SNS delivers a message to every subscription of its topic; moto delivers it to the first
  100 only (one page of its listing), so that the 101st approver on the product's one topic
  would get no email. Every subscription gets it, as in the service.
- Step Functions' 256 KiB state payload moto enforces itself (``States.DataLimitExceeded``).
- SNS ``PublishBatch`` takes at most 256 KiB in all (each message with its subject and
  attributes); moto checks only each message alone. A larger batch is refused whole with
  ``BatchRequestTooLong``, as the service refuses it.
- moto evaluates no resource policy: the Deny statements of the product's queue and topic
  policies are evaluated against the caller (approvals/local/access.py).
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
import threading
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from moto.core.responses import ActionResult, EmptyResult
from moto.dynamodb.exceptions import ItemSizeToUpdateTooLarge
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler
from moto.sns.exceptions import SNSException, SNSInvalidParameter
from moto.sns.models import SNSBackend, Subscription, Topic, sns_backends
from moto.sns.responses import SNSResponse
from moto.sqs.exceptions import QueueDoesNotExist
from moto.sqs.models import sqs_backends
from moto.stepfunctions.responses import StepFunctionResponse

from approvals.local import access
from approvals.local.resources import CONFIRM_AT_ONCE_TAG, MAILBOX_TAG, SNS_PAGES_TAG

EMAIL_PROTOCOLS = ("email", "email-json")
PENDING_ARN = "PendingConfirmation"
_tokens: dict[str, str] = {}  # subscription ARN: the token its confirmation link carries

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
    _apply_sns()
    access.apply()


def sns_page(topic: Topic, page: str, **query: str) -> str:
    base = topic._tags.get(SNS_PAGES_TAG, f"https://sns.{topic.sns_backend.region_name}.amazonaws.com")
    return f"{base}/{page}?{urlencode(query)}"


def _mail(topic: Topic, to: str, kind: str, subject: str, message: str, unsubscribe: str = "") -> None:
    """Put one email in the topic's mailbox queue, if it has one."""
    queue = topic._tags.get(MAILBOX_TAG)
    if not queue:
        return
    email = {
        "Type": kind,
        "To": to,
        "TopicArn": topic.arn,
        "Subject": subject,
        "Message": message,
        "UnsubscribeURL": unsubscribe,
        "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    with contextlib.suppress(QueueDoesNotExist):  # moto drops email, as it did before
        sqs_backends[topic.account_id][topic.sns_backend.region_name].send_message(queue, json.dumps(email))


def _pending(subscription: Subscription) -> bool:
    return subscription.protocol in EMAIL_PROTOCOLS and bool(subscription.attributes["PendingConfirmation"])


def _confirm(subscription: Subscription, authenticated: bool) -> None:
    subscription.attributes["PendingConfirmation"] = False
    subscription.attributes["ConfirmationWasAuthenticated"] = authenticated


def confirm_pending_emails(topic_arn: str) -> None:
    """Confirm, as ``approvals approvers confirm`` does, the email subscriptions a topic got
    before it was tagged :data:`CONFIRM_AT_ONCE_TAG` (a template's, made by CloudFormation)."""
    _, _, _, region, account, _ = topic_arn.split(":")
    for subscription in sns_backends[account][region].subscriptions.values():
        if subscription.topic_arn == topic_arn and _pending(subscription):
            _confirm(subscription, authenticated=True)


def _apply_sns() -> None:
    subscribe = SNSBackend.subscribe
    publish = Subscription.publish

    def subscribe_pending(self: SNSBackend, topic_arn: str, endpoint: str, protocol: str) -> Subscription:
        known = set(self.subscriptions)
        subscription = subscribe(self, topic_arn, endpoint, protocol)
        if protocol not in EMAIL_PROTOCOLS or subscription.arn in known:
            return subscription
        topic = subscription.topic
        if CONFIRM_AT_ONCE_TAG in topic._tags:
            _confirm(subscription, authenticated=True)
            return subscription
        subscription.attributes["PendingConfirmation"] = True
        subscription.attributes["ConfirmationWasAuthenticated"] = False
        token = _tokens[subscription.arn] = secrets.token_hex(64)
        link = sns_page(topic, "confirmation.html", TopicArn=topic.arn, Token=token, Endpoint=endpoint)
        _mail(
            topic,
            endpoint,
            "SubscriptionConfirmation",
            "AWS Notification - Subscription Confirmation",
            f"You have chosen to subscribe to the topic:\n{topic.arn}\n\n"
            f"To confirm this subscription, click or visit the link below"
            f" (If this was in error no action is necessary):\nConfirm subscription: {link}",
        )
        return subscription

    def publish_delivered(self: Subscription, message: str, message_id: str, **kwargs: Any) -> None:
        if self.protocol not in EMAIL_PROTOCOLS:
            return publish(self, message, message_id, **kwargs)
        if _pending(self):
            return None
        matcher = self._filter_policy_matcher
        if matcher is not None and not matcher.matches(kwargs.get("message_attributes"), message):
            return None
        unsubscribe = sns_page(
            self.topic, "unsubscribe.html", SubscriptionArn=self.arn, Endpoint=self.endpoint
        )
        _mail(self.topic, self.endpoint, "Notification", kwargs.get("subject") or "", message, unsubscribe)
        return None

    def subscribe_response(self: SNSResponse) -> Any:
        result = serve_subscribe(self)
        arn = result.result["SubscriptionArn"]  # type: ignore[index]
        if (
            _pending(self.backend.subscriptions[arn])
            and str(self._get_param("ReturnSubscriptionArn")).lower() != "true"
        ):
            return ActionResult({"SubscriptionArn": "pending confirmation"})
        return result

    def list_subscriptions_by_topic(self: SNSResponse) -> Any:
        listed, next_token = self.backend.list_subscriptions_by_topic(
            self._get_param("TopicArn"), next_token=self._get_param("NextToken")
        )
        subscriptions = [
            {
                "SubscriptionArn": PENDING_ARN if _pending(s) else s.arn,
                "Owner": s.owner,
                "Protocol": s.protocol,
                "Endpoint": s.endpoint,
                "TopicArn": s.topic_arn,
            }
            for s in listed
        ]
        return ActionResult({"Subscriptions": subscriptions, "NextToken": next_token})

    def confirm_subscription(self: SNSResponse) -> Any:
        topic_arn, token = self._get_param("TopicArn"), self._get_param("Token")
        for subscription in self.backend.subscriptions.values():
            if subscription.topic_arn == topic_arn and _tokens.get(subscription.arn) == token:
                if _pending(subscription):
                    authenticated = self._get_param("AuthenticateOnUnsubscribe", "false").lower() == "true"
                    _confirm(subscription, authenticated)
                return ActionResult({"SubscriptionArn": subscription.arn})
        raise SNSInvalidParameter("Invalid token")

    def publish_to_every_subscription(
        self: Topic,
        message: str,
        subject: str | None = None,
        message_attributes: dict[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
        message_structure: str | None = None,
    ) -> str:
        message_id = str(uuid.uuid4())
        for subscription in self.sns_backend._get_topic_subscriptions(self):  # not one page of them
            subscription.publish(
                message,
                message_id,
                subject=subject,
                message_attributes=message_attributes,
                group_id=group_id,
                deduplication_id=deduplication_id,
                message_structure=message_structure,
            )
        self.sent_notifications.append((message_id, message, subject, message_attributes, group_id))
        return message_id

    serve_subscribe = SNSResponse.subscribe
    Topic.publish = publish_to_every_subscription  # type: ignore[method-assign]
    SNSBackend.subscribe = subscribe_pending  # type: ignore[method-assign]
    Subscription.publish = publish_delivered  # type: ignore[method-assign,assignment]
    SNSResponse.subscribe = subscribe_response  # type: ignore[method-assign]
    SNSResponse.list_subscriptions_by_topic = list_subscriptions_by_topic  # type: ignore[method-assign]
    SNSResponse.confirm_subscription = confirm_subscription  # type: ignore[method-assign]
