"""Faults injected into the product's own AWS clients with botocore's event hooks.

The hooks sit on the clients the handlers use (``runtime.from_environment()``): a call
either goes on to moto (in this process, or the local stack's server) as usual, or the hook
answers in its place with what the service says when it fails (a throttle, a 5xx, a batch
with failed entries). Nothing else about the service is imitated.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import EndpointConnectionError

import worker.dead_letter
from approvals.notify import APPROVER_ATTRIBUTE
from tests.conftest import POLL_INTERVAL

Response = tuple[AWSResponse, dict[str, Any]]


class _Raw:
    """The raw body botocore reads an HTTP response from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def error(code: str, status: int, message: str = "injected fault") -> Response:
    """What a before-call hook returns for the call to fail as the service fails it."""
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0},
    }
    return AWSResponse("https://fault.invalid/", status, HTTPHeaders(), _Raw(b"")), parsed


def ok(parsed: dict[str, Any]) -> Response:
    parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0})
    return AWSResponse("https://fault.invalid/", 200, HTTPHeaders(), _Raw(b"")), parsed


# What botocore raises once its retries of a call that never reached the service are spent.
CONNECTION_LOST = EndpointConnectionError(endpoint_url="https://sns.us-east-1.amazonaws.com/")


class Hooks:
    """Event handlers registered on clients for one test, all removed at its end.

    Each handler must be reached at least once during its test: a fault registered on a
    client that no handler uses would let the test pass, or time out far away, without the
    fault ever happening. :meth:`wait_fired` says so by name as soon as it is known, and the
    fixture checks it again at the end of every test.
    """

    def __init__(self) -> None:
        self._registered: list[tuple[Any, str, Callable[..., Any]]] = []
        self._fired: list[tuple[str, list[int]]] = []  # each handler's name and count

    def on(self, client: Any, event: str, handler: Callable[..., Any], *, first: bool = False) -> None:
        count = [0]
        self._fired.append((f"{getattr(handler, '__name__', 'hook')} on {event}", count))

        def counted(**kwargs: Any) -> Any:
            count[0] += 1
            return handler(**kwargs)

        if first:
            client.meta.events.register_first(event, counted)
        else:
            client.meta.events.register(event, counted)
        self._registered.append((client, event, counted))

    def never_fired(self) -> list[str]:
        return [name for name, count in self._fired if not count[0]]

    def wait_fired(self, timeout: float = 15) -> None:
        """Until every handler has been reached, or fail naming those that were not."""
        deadline = time.monotonic() + timeout
        while self.never_fired():
            if time.monotonic() > deadline:
                raise AssertionError(self._not_reached(f"within {timeout}s"))
            time.sleep(POLL_INTERVAL)

    def check_fired(self) -> None:
        if self.never_fired():
            raise AssertionError(self._not_reached("during the test"))

    def _not_reached(self, when: str) -> str:
        return (
            f"the injected fault never triggered {when}: {', '.join(self.never_fired())}; "
            "the client it was hooked on is not the one the handlers used"
        )

    def remove_all(self) -> None:
        for client, event, handler in self._registered:
            client.meta.events.unregister(event, handler)
        self._registered.clear()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    registered = Hooks()
    try:
        yield registered
    finally:
        registered.remove_all()
    registered.check_fired()


def task_succeeded_events(sfn: Any, arn: str) -> int:
    """How many answers the execution took: the service takes one per token. (The workflow's
    own confirmation write, a DynamoDB task, succeeds too: it is no answer.)"""
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return sum(
        1
        for event in events
        if event["type"] == "TaskSucceeded" and event["taskSucceededEventDetails"]["resourceType"] == "sqs"
    )


class LostReplies:
    """A call the service applies but whose reply is lost (a read timeout, a dropped
    connection), so that the SDK sends it again, as botocore does.

    A ``needs-retry`` handler asks for the resend when the first call that succeeded and
    matches ``matches`` (its request body, parsed); ``lost`` counts the replies lost. The
    copy meets what the service answers it (a second answer to a task: ``TaskTimedOut``).
    """

    def __init__(
        self,
        hooks: Hooks,
        client: Any,
        operation: str,
        matches: Callable[[dict[str, Any]], bool],
    ) -> None:
        self.matches = matches
        self.lost = 0
        service = client.meta.service_model.service_id.hyphenize()
        hooks.on(client, f"needs-retry.{service}.{operation}", self._resend, first=True)

    def _resend(self, response: Response | None, request_dict: dict[str, Any], **_: Any) -> int | None:
        applied = response is not None and response[0].status_code == 200
        if applied and not self.lost and self.matches(json.loads(request_dict["body"])):
            self.lost += 1
            return 0  # resend at once
        return None


@dataclass
class PublishCall:
    approvers: list[str]
    failed: dict[str, str]  # approver: the error injected for their entry
    raised: str | None = None  # the error the whole call failed with


@dataclass
class SnsFaults:
    """PublishBatch calls of one SNS client, failed as ``decide`` says.

    ``decide(call, approvers)`` is asked before each call (``call`` counts from 0) and
    returns either the code of an error that fails the whole call (a throttle, a 5xx), an
    exception the call raises (what the SDK raises once its retries are spent, such as
    :data:`CONNECTION_LOST`), or a mapping of the approvers whose entries fail to the
    entry's error code. The entries that
    do not fail are published for real, by a twin client without the hook, and the answer
    lists both, as SNS's own partial answer does.
    """

    decide: Callable[[int, list[str]], str | Exception | dict[str, str]]
    calls: list[PublishCall] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, hooks: Hooks, sns: Any) -> SnsFaults:
        twin = boto3.Session(region_name=sns.meta.region_name).client(
            "sns", endpoint_url=sns.meta.endpoint_url
        )
        hooks.on(sns, "provide-client-params.sns.PublishBatch", self._remember)
        hooks.on(sns, "before-call.sns.PublishBatch", lambda context, **_: self._answer(twin, context))
        return self

    @staticmethod
    def _remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["publish_batch"] = json.loads(json.dumps(params))

    def _answer(self, twin: Any, context: dict[str, Any]) -> Response:
        params = context["publish_batch"]
        entries = params["PublishBatchRequestEntries"]
        approvers = [e["MessageAttributes"][APPROVER_ATTRIBUTE]["StringValue"] for e in entries]
        with self.lock:
            verdict = self.decide(len(self.calls), approvers)
            if isinstance(verdict, str | Exception):
                self.calls.append(PublishCall(approvers, {}, raised=str(verdict)))
            else:
                self.calls.append(PublishCall(approvers, dict(verdict)))
        if isinstance(verdict, Exception):
            raise verdict
        if isinstance(verdict, str):
            return error(verdict, 400 if "Throttl" in verdict else 500, "Rate exceeded")
        failing = {e["Id"]: verdict[who] for e, who in zip(entries, approvers, strict=True) if who in verdict}
        answer: dict[str, Any] = {"Successful": [], "Failed": []}
        sent = [e for e in entries if e["Id"] not in failing]
        if sent:
            real = twin.publish_batch(TopicArn=params["TopicArn"], PublishBatchRequestEntries=sent)
            answer["Successful"] = real.get("Successful", [])
            answer["Failed"] = real.get("Failed", [])
        answer["Failed"] += [
            {"Id": entry_id, "Code": code, "Message": "injected fault", "SenderFault": False}
            for entry_id, code in failing.items()
        ]
        return ok(answer)

    def published(self) -> list[str]:
        """Every approver whose entry was let through, in order."""
        ok_calls = [call for call in self.calls if call.raised is None]
        return [who for call in ok_calls for who in call.approvers if who not in call.failed]


def dead_letter_receipts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The receive count of each message the dead-letter function handles, as it handles it."""
    seen: list[int] = []
    handle = worker.dead_letter.record_handler

    def counting(record: Any) -> None:
        seen.append(int(record.attributes.approximate_receive_count))
        handle(record)

    monkeypatch.setattr(worker.dead_letter, "record_handler", counting)
    return seen
