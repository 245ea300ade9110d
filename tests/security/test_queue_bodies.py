"""Hostile and malformed queue bodies, each with its exact answer, and nothing changed.

A body that carries a task token but a request that can never succeed fails its execution
at once with ``Approval.InvalidRequest`` and a cause naming the field; it is not retried.
Each such case takes a real execution's message and puts the bad request in it, so that
the worker, not the state machine, is what refuses it. A body that is not an approval
message at all (no usable token) cannot answer any execution: it is a batch item failure,
retried, then dropped by the dead-letter function, having changed nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

import worker.dead_letter
import worker.handler
from approvals import request as worker_logic
from approvals.local.poller import sqs_event
from approvals.models import ApprovalRequest
from tests.conftest import Stack, lambda_context

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:approvals-requests"
DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:approvals-dead-letters"
GOOD: dict[str, Any] = {"title": "Deploy", "approvers": ["alice@example.com"], "requester": "ci@example.com"}
YEAR = 31_536_000


def good(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def without(name: str) -> dict[str, Any]:
    return {key: value for key, value in GOOD.items() if key != name}


@dataclass(frozen=True)
class BadRequest:
    name: str
    request: Any  # the message's "request", as the execution input would hold it
    cause: str  # the exact cause of Approval.InvalidRequest


BAD_REQUESTS = [
    BadRequest("not an object", "deploy now", "request: Input should be a valid dictionary"),
    BadRequest("a list", ["alice@example.com"], "request: Input should be a valid dictionary"),
    BadRequest("title of the wrong type", good(title=42), "request.title: Input should be a valid string"),
    BadRequest(
        "approvers of the wrong type",
        good(approvers="alice@example.com"),
        "request.approvers: Input should be a valid list",
    ),
    BadRequest(
        "approvers that are numbers",
        good(approvers=[1, 2]),
        "request.approvers.0: Input should be a valid string;"
        " request.approvers.1: Input should be a valid string",
    ),
    BadRequest("title missing", without("title"), "request.title: Field required"),
    BadRequest("requester missing", without("requester"), "request.requester: Field required"),
    BadRequest("approvers missing", without("approvers"), "request.approvers: Field required"),
    BadRequest(
        "no approvers",
        good(approvers=[]),
        "request.approvers: List should have at least 1 item after validation, not 0",
    ),
    BadRequest(
        "unknown policy",
        good(policy="majority"),
        "request.policy: Input should be 'first_response', 'all', 'quorum' or 'sequence'",
    ),
    BadRequest(
        "quorum above the number of approvers",
        good(approvers=["a@example.com", "b@example.com"], policy="quorum", quorum=3),
        "request.quorum: cannot exceed the number of approvers",
    ),
    BadRequest(
        "quorum of zero",
        good(policy="quorum", quorum=0),
        "request.quorum: Input should be greater than or equal to 1",
    ),
    BadRequest("quorum missing", good(policy="quorum"), "request.quorum: required when policy is quorum"),
    BadRequest(
        "quorum without the quorum policy",
        good(quorum=1),
        "request.quorum: only allowed when policy is quorum",
    ),
    BadRequest(
        "duplicate approvers",
        good(approvers=["alice@example.com", "bob@example.com", "alice@example.com"]),
        "request.approvers: each approver may be listed once",
    ),
    BadRequest(
        "duplicate approvers written differently",
        good(approvers=["alice@example.com", " ALICE@Example.COM "]),
        "request.approvers: each approver may be listed once",
    ),
    BadRequest(
        "300 approvers",
        good(approvers=[f"approver{i}@example.com" for i in range(300)]),
        "request.approvers: List should have at most 50 items after validation, not 300",
    ),
    BadRequest(
        "a 300 KB description",
        good(description="x" * 300_000),
        "request.description: at most 30,000 bytes of UTF-8, not 300,000",
    ),
    BadRequest(
        "a title of 201 CJK characters (603 bytes)",
        good(title="題" * 201),
        "request.title: at most 600 bytes of UTF-8, not 603",
    ),
    BadRequest(
        "a request over 64 KiB as JSON (large details)",
        good(details={f"field{i}": "v" * 2_000 for i in range(40)}),
        "request: at most 65,536 bytes as JSON, not 80,772",  # with the new keys at their defaults
    ),
    BadRequest(
        "a bell in the title", good(title="Deploy\x07"), "request.title: must not contain control characters"
    ),
    BadRequest(
        "terminal escapes in the description",
        good(description="fine\x1b[2J\x1b[31mred"),
        "request.description: must not contain control characters",
    ),
    BadRequest(
        "a NUL in the requester",
        good(requester="ci\x00@example.com"),
        "request.requester: must not contain control characters",
    ),
    BadRequest(
        "a control character in a detail's name",
        good(details={"ticket\x08": "OPS-1"}),
        "request.details.ticket\x08.[key]: must not contain control characters",
    ),
    BadRequest(
        "invalid UTF-8 (a lone surrogate) in the title",
        good(title="Deploy \udc80"),
        "request.title: Input should be a valid string, unable to parse raw data as a unicode string",
    ),
    BadRequest(
        "invalid UTF-8 (a lone surrogate) in a detail",
        good(details={"ticket": "OPS-\udcff"}),
        "request.details: must hold only valid Unicode text",
    ),
    BadRequest(
        "a timeout of 0",
        good(timeout_seconds=0),
        "request.timeout_seconds: Input should be greater than or equal to 1",
    ),
    BadRequest(
        "a negative timeout",
        good(timeout_seconds=-60),
        "request.timeout_seconds: Input should be greater than or equal to 1",
    ),
    BadRequest(
        "a timeout over a year",
        good(timeout_seconds=YEAR + 1),
        f"request.timeout_seconds: Input should be less than or equal to {YEAR}",
    ),
    BadRequest(
        "a timeout that is text",
        good(timeout_seconds="soon"),
        "request.timeout_seconds: Input should be a valid integer, unable to parse string as an integer",
    ),
    BadRequest(
        "a fractional timeout",
        good(timeout_seconds=1.5),
        "request.timeout_seconds: Input should be a valid integer, got a number with a fractional part",
    ),
    BadRequest(
        "not an address", good(approvers=["not an address"]), "request.approvers.0: not a valid email address"
    ),
    BadRequest(
        "a header injection in an address",
        good(approvers=["alice@example.com\r\nBcc: mallory@evil.example"]),
        "request.approvers.0: not a valid email address",
    ),
    BadRequest(
        "a non-ASCII address",
        good(approvers=["jörg@exämple.com"]),
        "request.approvers.0: not a valid email address",
    ),
    BadRequest(
        "an address over 254 characters",
        good(approvers=["a" * 250 + "@example.com"]),
        "request.approvers.0: not a valid email address",
    ),
    BadRequest(
        "an unknown field",
        good(approver="alice@example.com"),
        "request.approver: Extra inputs are not permitted",
    ),
    BadRequest(
        "51 details",
        good(details={f"k{i}": i for i in range(51)}),
        "request.details: Dictionary should have at most 50 items after validation, not more",
    ),
    BadRequest(
        "the requester as the only approver",
        good(approvers=["ci@example.com"]),
        "request.approvers: the requester cannot approve their own request, and nobody else is asked",
    ),
    # Escalation and sequence (see the README's "Escalation" and "Sequence").
    BadRequest(
        "an escalation step at zero seconds",
        good(escalation=[{"after_seconds": 0, "approvers": ["lead@example.com"]}]),
        "request.escalation.0.after_seconds: Input should be greater than 0",
    ),
    BadRequest(
        "an escalation step after true seconds",
        good(escalation=[{"after_seconds": True, "approvers": ["lead@example.com"]}]),
        "request.escalation.0.after_seconds: Input should be a valid integer",
    ),
    BadRequest(
        "an escalation step with nobody",
        good(escalation=[{"after_seconds": 3600, "approvers": []}]),
        "request.escalation.0.approvers: List should have at least 1 item after validation, not 0",
    ),
    BadRequest(
        "an escalation backup that is no address",
        good(escalation=[{"after_seconds": 3600, "approvers": ["the lead"]}]),
        "request.escalation.0.approvers.0: not a valid email address",
    ),
    BadRequest(
        "escalation steps out of order",
        good(
            escalation=[
                {"after_seconds": 7200, "approvers": ["lead@example.com"]},
                {"after_seconds": 3600, "approvers": ["boss@example.com"]},
            ]
        ),
        "request.escalation: each step's after_seconds must be later than the one before",
    ),
    BadRequest(
        "an escalation after the timeout",
        good(timeout_seconds=3600, escalation=[{"after_seconds": 3600, "approvers": ["lead@example.com"]}]),
        "request.escalation: after_seconds 3600 must be shorter than timeout_seconds, or it never fires",
    ),
    BadRequest(
        "an approver as their own backup",
        good(escalation=[{"after_seconds": 3600, "approvers": ["alice@example.com"]}]),
        "request.escalation: already approvers: alice@example.com",
    ),
    BadRequest(
        "a backup listed twice",
        good(
            escalation=[
                {"after_seconds": 3600, "approvers": ["lead@example.com"]},
                {"after_seconds": 7200, "approvers": ["lead@example.com"]},
            ]
        ),
        "request.escalation: each backup may be listed once",
    ),
    BadRequest(
        "six escalation steps",
        good(
            escalation=[
                {"after_seconds": 3600 * (i + 1), "approvers": [f"b{i}@example.com"]} for i in range(6)
            ]
        ),
        "request.escalation: List should have at most 5 items after validation, not 6",
    ),
    BadRequest(
        "more than 50 approvers and backups",
        good(
            approvers=[f"a{i}@example.com" for i in range(40)],
            escalation=[{"after_seconds": 3600, "approvers": [f"b{i}@example.com" for i in range(11)]}],
        ),
        "request.escalation: at most 50 approvers and backups in all",
    ),
    BadRequest(
        "escalation steps closer than the sweep runs",
        good(
            escalation=[
                {"after_seconds": 3600, "approvers": ["lead@example.com"]},
                {"after_seconds": 3660, "approvers": ["boss@example.com"]},
            ]
        ),
        "request.escalation.1.after_seconds: at least 300 after the step before (or the request), not 60:"
        " the sweep that escalates runs every 300 seconds",
    ),
    BadRequest(
        "the requester as a backup",
        good(escalation=[{"after_seconds": 3600, "approvers": ["ci@example.com"]}]),
        "request.escalation: the requester cannot approve their own request, so cannot be its backup",
    ),
    BadRequest(
        "a sequence with escalation",
        good(
            approvers=["alice@example.com", "bob@example.com"],
            policy="sequence",
            escalation=[{"after_seconds": 3600, "approvers": ["lead@example.com"]}],
        ),
        "request.escalation: not allowed with policy sequence, whose order is the listed one",
    ),
    BadRequest(
        "a sequence that includes the requester",
        good(approvers=["alice@example.com", "ci@example.com"], policy="sequence"),
        "request.approvers: policy 'sequence' needs every approver, but the requester cannot approve"
        " their own request",
    ),
]


def snapshot(stack: Stack) -> tuple[Any, ...]:
    """Everything a message could have changed: the table, the mailbox, the queues."""
    table = sorted(
        json.dumps(item, sort_keys=True)
        for item in stack.dynamodb.scan(TableName=stack.resources.table_name)["Items"]
    )
    queues = [
        stack.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        for url in (stack.resources.queue_url, stack.resources.dlq_url)
    ]
    return table, len(stack.emails()), queues


def as_received(message: dict[str, Any], body: str) -> dict[str, Any]:
    return {**message, "Body": body}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=lambda case: case.name)
def test_a_bad_request_fails_its_execution_at_once_and_changes_nothing(
    module_stack: Stack, case: BadRequest
) -> None:
    stack = module_stack
    arn = stack.start(ApprovalRequest.model_validate(GOOD))
    message = stack.queued_message()
    envelope = json.loads(message["Body"])
    body = json.dumps({**envelope, "request": case.request})  # lone surrogates travel as \\u escapes
    before = snapshot(stack)

    response = worker.handler.lambda_handler(
        sqs_event([as_received(message, body)], QUEUE_ARN), lambda_context("approval-worker")
    )
    assert response["batchItemFailures"] == []  # answered, so not retried
    report = stack.finish(arn)
    assert (report.status, report.error, report.final_state) == (
        "FAILED",
        "Approval.InvalidRequest",
        "InvalidRequest",
    )
    assert report.cause == case.cause
    assert envelope["task_token"] not in report.cause
    assert snapshot(stack) == before


@dataclass(frozen=True)
class BadEnvelope:
    name: str
    body: str
    problem: str  # the exact reason the worker gives (and logs)


REST = (
    '"execution": "arn:aws:states:us-east-1:123456789012:execution:m:e", "state": "RequestApproval",'
    ' "timeout_seconds": 60'
)

BAD_ENVELOPES = [
    BadEnvelope("not JSON", "approve everything", "message: Invalid JSON: expected value at line 1 column 1"),
    BadEnvelope("empty", "", "message: Invalid JSON: EOF while parsing a value at line 1 column 0"),
    BadEnvelope("a JSON list", "[]", "message: Input should be an object"),
    BadEnvelope("a JSON string", '"deploy"', "message: Input should be an object"),
    BadEnvelope(
        "no fields",
        "{}",
        "message.task_token: Field required; message.execution: Field required;"
        " message.state: Field required; message.request: Field required;"
        " message.timeout_seconds: Field required",
    ),
    BadEnvelope(
        "a token of the wrong type",
        '{"task_token": 42, ' + REST + ', "request": {}}',
        "message.task_token: Input should be a valid string",
    ),
    BadEnvelope("no token", "{" + REST + ', "request": {}}', "message.task_token: Field required"),
    BadEnvelope(
        "an empty token",
        '{"task_token": "", ' + REST + ', "request": {}}',
        "message.task_token: String should have at least 1 character",
    ),
    BadEnvelope(
        "an oversized token",
        '{"task_token": "' + "t" * 1025 + '", ' + REST + ', "request": {}}',
        "message.task_token: String should have at most 1024 characters",
    ),
    BadEnvelope(
        "invalid UTF-8 bytes",
        b'\xff\xfe{"task_token": 1}'.decode("utf-8", "surrogateescape"),
        "message: Input should be a valid string, unable to parse raw data as a unicode string",
    ),
    BadEnvelope(
        "invalid UTF-8 (a lone surrogate) in the token",
        '{"task_token": "t\\udc80", ' + REST + ', "request": {}}',
        "message: Invalid JSON: lone leading surrogate in hex escape at line 1 column 23",
    ),
]


@pytest.mark.parametrize("case", BAD_ENVELOPES, ids=lambda case: case.name)
def test_a_body_that_is_not_an_approval_message_is_retried_then_dropped(
    module_stack: Stack, case: BadEnvelope
) -> None:
    stack = module_stack
    before = snapshot(stack)
    with pytest.raises(worker_logic.InvalidEnvelope) as refused:
        worker_logic.parse_message(case.body)
    assert str(refused.value) == case.problem

    received = {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": case.body,
        "Attributes": {"SentTimestamp": "0"},
    }
    with pytest.raises(BatchProcessingError):  # its batch fails: back to the queue, then the DLQ
        worker.handler.lambda_handler(sqs_event([received], QUEUE_ARN), lambda_context("approval-worker"))
    dropped = worker.dead_letter.lambda_handler(sqs_event([received], DLQ_ARN), lambda_context("dead-letter"))
    assert dropped["batchItemFailures"] == []  # dropped there: keeping it would only recirculate it
    assert snapshot(stack) == before
