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
- Step Functions' 256 KiB limit on a state's output (the next state's input) moto enforces
  itself (``States.DataLimitExceeded``), but it starts an execution whose input is larger:
  the service refuses that ``StartExecution`` (``ValidationException``), and so does this.
- A Distributed Map's ``ResultWriter`` in moto writes a manifest that lists no result files
  and drops the results. As the service does, the children's results are written under
  ``PREFIX/MAP-RUN-ID/`` as ``SUCCEEDED_0.json`` / ``FAILED_0.json`` (each child's ARN,
  name, input and output as JSON text, status and dates), listed by ``manifest.json``.
- SNS ``PublishBatch`` takes at most 256 KiB in all (each message with its subject and
  attributes); moto checks only each message alone. A larger batch is refused whole with
  ``BatchRequestTooLong``, as the service refuses it.
- Step Functions takes one answer per task token: ``SendTaskSuccess`` or ``SendTaskFailure``
  for a task already answered, timed out, or whose execution ended
  is refused with ``TaskTimedOut``. moto takes a second answer silently (the task has moved
  on, so it changes nothing), answers a failure after the execution ended, and refuses a
  success then as ``InvalidToken``; a token it never issued stays ``InvalidToken``.
- moto evaluates no resource policy: the Deny statements of the product's queue and topic
  policies are evaluated against the caller (approvals/local/access.py).

moto_speedups makes moto's executor faster without changing what it does.
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
import threading
import time
import uuid
import weakref
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
from moto.stepfunctions.exceptions import ValidationException
from moto.stepfunctions.parser.api import ExecutionStatus, InvalidToken, TaskTimedOut
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor_worker import (  # noqa: E501
    DistributedItemProcessorWorker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.map_run_record import (  # noqa: E501
    MapRunRecord,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.job import Job
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3 import (  # noqa: E501
    ResourceEvalS3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.callback.callback import (
    CallbackEndpoint,
    CallbackOutcome,
    CallbackOutcomeFailure,
    CallbackOutcomeSuccess,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.program_state import ProgramError
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.parser.quotas import MAX_STATE_SIZE_UTF8_BYTES
from moto.stepfunctions.responses import StepFunctionResponse

from approvals.local import access, moto_speedups
from approvals.local.resources import CONFIRM_AT_ONCE_TAG, MAILBOX_TAG, SNS_PAGES_TAG

EMAIL_PROTOCOLS = ("email", "email-json")
PENDING_ARN = "PendingConfirmation"
_tokens: dict[str, str] = {}  # subscription ARN: the token its confirmation link carries

PUBLISH_BATCH_BYTES = 256 * 1024
ANSWER_RECORDED_SECONDS = 10  # at most, for the executor to record an answer taken
# It records one in a few milliseconds; a fan-out answered one by one waits for each.
ANSWER_RECORDED_POLL_SECONDS = 0.001
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
    moto_speedups.apply()  # first: the result writer's input record wraps its Map input
    _apply_sns()
    access.apply()
    _apply_execution_input_limit()
    _apply_result_writer()
    _apply_one_answer_per_task()


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


def _apply_execution_input_limit() -> None:
    start_execution = StepFunctionsParserBackend.start_execution

    def start_execution_within_limit(
        self: StepFunctionsParserBackend,
        state_machine_arn: str,
        name: Any = None,
        execution_input: Any = None,
        trace_header: Any = None,
    ) -> Any:
        if execution_input is not None and len(execution_input.encode()) > MAX_STATE_SIZE_UTF8_BYTES:
            raise ValidationException(
                "1 validation error detected: Value at 'input' failed to satisfy constraint:"
                f" Member must have length less than or equal to {MAX_STATE_SIZE_UTF8_BYTES}"
            )
        return start_execution(self, state_machine_arn, name, execution_input, trace_header)

    StepFunctionsParserBackend.start_execution = start_execution_within_limit  # type: ignore[method-assign]


# Each map run's children as they end, for its ResultWriter.
_children: weakref.WeakKeyDictionary[MapRunRecord, list[dict[str, Any]]] = weakref.WeakKeyDictionary()
_children_lock = threading.Lock()


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _apply_result_writer() -> None:
    eval_job = DistributedItemProcessorWorker._eval_job
    eval_input = DistributedItemProcessorWorker._eval_input
    selected: weakref.WeakKeyDictionary[Environment, Any] = weakref.WeakKeyDictionary()

    def eval_input_kept(self: DistributedItemProcessorWorker, env_frame: Environment) -> None:
        eval_input(self, env_frame)
        selected[env_frame] = env_frame.states.get_input()  # the child's input (ItemSelector applied)

    def eval_job_recorded(self: DistributedItemProcessorWorker, env: Environment, job: Job) -> None:
        started = datetime.now(UTC)
        eval_job(self, env, job)
        record = self._map_run_record
        name = str(uuid.uuid4())
        child: dict[str, Any] = {
            "Index": job.job_index,
            "ExecutionArn": f"{record.map_state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}",
            "Name": name,
            "Input": json.dumps(selected.pop(env, job.job_input)),
            "InputDetails": {"Included": True},
            "StartDate": _iso(started),
            "StateMachineArn": record.map_state_machine_arn,
            "StopDate": _iso(datetime.now(UTC)),
            "RedriveCount": 0,
        }
        state = env.program_state()
        if job.job_output is None or isinstance(state, ProgramError):
            error = (state.error or {}) if isinstance(state, ProgramError) else {}
            child |= {"Status": "FAILED", "Error": error.get("error", ""), "Cause": error.get("cause", "")}
        else:
            child |= {"Status": "SUCCEEDED", "Output": json.dumps(job.job_output)}
            child["OutputDetails"] = {"Included": True}
        with _children_lock:
            _children.setdefault(record, []).append(child)

    def put_results(env: Environment, runtime_part: Any, credentials: Any) -> None:
        parameters = env.stack.pop()
        env.stack.pop()  # the results: written from the children's records, as the service does
        s3: Any = boto_client_for(region=runtime_part.region, service="s3", state_credentials=credentials)
        record = env.map_run_record_pool_manager.get_all().pop()
        bucket, prefix = parameters["Bucket"], parameters.get("Prefix", "")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        folder = f"{prefix}{record.map_run_arn.rsplit(':', 1)[-1]}/"
        with _children_lock:
            children = sorted(_children.pop(record, []), key=lambda child: int(child["Index"]))
        for child in children:
            del child["Index"]  # the order of the items, not a field of the service's
        files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
        for status in ("SUCCEEDED", "FAILED"):
            these = [child for child in children if child["Status"] == status]
            if not these:
                continue
            key = f"{folder}{status}_0.json"
            body = json.dumps(these).encode()
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            files[status].append({"Key": key, "Size": len(body)})
        manifest = {"DestinationBucket": bucket, "MapRunArn": record.map_run_arn, "ResultFiles": files}
        s3.put_object(Bucket=bucket, Key=f"{folder}manifest.json", Body=json.dumps(manifest).encode())
        env.stack.append(
            {
                "MapRunArn": record.map_run_arn,
                "ResultWriterDetails": {"Bucket": bucket, "Key": f"{folder}manifest.json"},
            }
        )

    DistributedItemProcessorWorker._eval_input = eval_input_kept  # type: ignore[method-assign,assignment]
    DistributedItemProcessorWorker._eval_job = eval_job_recorded  # type: ignore[method-assign]
    ResourceEvalS3._handle_put_object = staticmethod(put_results)  # type: ignore[method-assign,assignment]


def _apply_one_answer_per_task() -> None:
    answering = threading.Lock()  # the check and the answer at once: two racing answers, one taken
    # The frame each task waits in: a timeout ends the frame at once, while the task's own
    # wait (which sets the task's event) lasts a moment longer.
    waiting_in: weakref.WeakKeyDictionary[CallbackEndpoint, Environment] = weakref.WeakKeyDictionary()
    wait_for_task_token = StateTaskServiceCallback._eval_wait_for_task_token

    def wait_recorded(
        self: StateTaskServiceCallback,
        env: Environment,
        timeout_seconds: int,
        callback_endpoint: CallbackEndpoint,
        heartbeat_endpoint: Any,
    ) -> CallbackOutcome:
        waiting_in[callback_endpoint] = env
        return wait_for_task_token(self, env, timeout_seconds, callback_endpoint, heartbeat_endpoint)

    def answer_once(self: StepFunctionsParserBackend, outcome: CallbackOutcome) -> None:
        with answering:
            frame = answer(self, outcome)
        # As the service's, an answer taken is in the execution's history once the call
        # returns (moto's executor records it a moment later, in a thread of its own).
        deadline = time.monotonic() + ANSWER_RECORDED_SECONDS
        while frame is not None and frame.is_running() and time.monotonic() < deadline:
            time.sleep(ANSWER_RECORDED_POLL_SECONDS)

    def answer(self: StepFunctionsParserBackend, outcome: CallbackOutcome) -> Environment | None:
        """Give the waiting task its answer; the frame it waits in, if it waits yet."""
        for execution in self._get_executions():
            # An execution still starting has a worker but no environment yet.
            env = execution.exec_worker.env if execution.exec_worker else None
            task = env.callback_pool_manager.get(outcome.callback_id) if env else None
            if task is None:
                continue
            frame = waiting_in.get(task)
            if (
                execution.status != ExecutionStatus.RUNNING
                or task._notify_event.is_set()  # answered, or its wait is over
                or (frame is not None and not frame.is_running())  # timed out
            ):
                raise TaskTimedOut("Task Timed Out: 'Provided task does not exist anymore'")
            task.notify(outcome)
            return frame
        raise InvalidToken("Invalid Token: 'Invalid token'")

    def send_task_success(self: StepFunctionsParserBackend, task_token: str, outcome: str) -> None:
        answer_once(self, CallbackOutcomeSuccess(callback_id=task_token, output=outcome))

    def send_task_failure(
        self: StepFunctionsParserBackend, task_token: str, error: Any = None, cause: Any = None
    ) -> None:
        answer_once(self, CallbackOutcomeFailure(callback_id=task_token, error=error, cause=cause))

    StateTaskServiceCallback._eval_wait_for_task_token = wait_recorded  # type: ignore[method-assign]
    StepFunctionsParserBackend.send_task_success = send_task_success  # type: ignore[method-assign,assignment]
    StepFunctionsParserBackend.send_task_failure = send_task_failure  # type: ignore[method-assign,assignment]
