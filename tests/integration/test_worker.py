"""The worker behind its queue: invalid requests, broken messages, redelivery, dead letters."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from typing import Any

import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

import worker.dead_letter
import worker.handler
from approvals import runtime
from approvals.local.poller import QueuePoller, sqs_event
from approvals.models import ApprovalRequest
from tests.integration.conftest import (
    VISIBILITY_TIMEOUT,
    Stack,
    approval_id_of_message,
    eventually,
    lambda_context,
    token_of,
)

ALICE, BOB = "alice@example.com", "bob@example.com"
VISIBILITY_AND_A_BIT = VISIBILITY_TIMEOUT + 0.3  # long enough for a message left behind to reappear


def receive_all(stack: Stack, expected: int) -> list[dict[str, Any]]:
    messages: list[Any] = []

    def more() -> bool:
        messages.extend(
            stack.sqs.receive_message(
                QueueUrl=stack.resources.queue_url,
                MaxNumberOfMessages=10,
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
        )
        return len(messages) >= expected

    eventually(more, what=f"{expected} messages")
    return messages


def simple(title: str, approvers: list[str] | None = None) -> ApprovalRequest:
    return ApprovalRequest(title=title, approvers=approvers or [ALICE], requester="ci@example.com")


def test_invalid_request_fails_the_execution_at_once_and_is_not_retried(stack: Stack) -> None:
    arn = stack.start_raw(
        {"title": "Bad", "approvers": ["alice@example.com", "not an address"], "requester": "ci@example.com"}
    )
    report = stack.finish(arn)
    assert report.status == "FAILED"
    assert report.error == "Approval.InvalidRequest"
    assert report.cause == "request.approvers.1: not a valid email address"
    assert report.final_state == "InvalidRequest"
    # Answered and deleted: nothing waits in the queue, nothing went to the dead letters.
    stack.drain(quiet=VISIBILITY_AND_A_BIT)
    assert stack.queue_counts(stack.resources.queue_url) == (0, 0)
    assert stack.queue_counts(stack.resources.dlq_url) == (0, 0)
    assert stack.emails() == []
    assert stack.approvals() == []


def test_domain_warnings_reach_the_functions_log_with_their_approval_id(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lambda's default log format drops a record's extra fields; the domain's records go
    through the function's structured logger, which keeps them."""
    lines = io.StringIO()
    [handler] = [  # a Powertools logger's, as in Lambda
        h
        for h in logging.getLogger("approvals").handlers
        if isinstance(h.formatter, LambdaPowertoolsFormatter)
    ]
    monkeypatch.setattr(handler, "stream", lines)
    arn = stack.start_raw({"title": "Bad", "approvers": ["not an address"], "requester": "ci@example.com"})
    stack.finish(arn)
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    [warning] = [r for r in records if r["message"] == "invalid request"]
    assert warning["level"] == "WARNING"
    assert warning["name"] == "approvals.request"
    assert re.fullmatch(r"[0-9a-f]{32}", warning["approval_id"])
    assert warning["cause"] == "request.approvers.0: not a valid email address"


def test_invalid_request_cause_names_every_field(stack: Stack) -> None:
    arn = stack.start_raw(
        {
            "title": "",
            "approvers": [],
            "requester": "ci",
            "policy": "quorum",
            "unknown": 1,
            "timeout_seconds": 60,
        }
    )
    report = stack.finish(arn)
    assert report.error == "Approval.InvalidRequest"
    assert report.cause is not None
    fields = [problem.split(":")[0] for problem in report.cause.split("; ")]
    assert fields == ["request.title", "request.approvers", "request.unknown"]


def test_timeout_out_of_range_is_refused_before_anything_is_queued(stack: Stack) -> None:
    # Out of range, not a number, or not a whole number (which the task's timeout refuses).
    for timeout in (0, 31_536_001, "soon", "60", 1.5, 1.0, 1e3):
        arn = stack.start_raw(
            {"title": "t", "approvers": [ALICE], "requester": "r", "timeout_seconds": timeout}
        )
        report = stack.finish(arn)
        assert (report.status, report.error) == ("FAILED", "Approval.InvalidRequest")
        assert report.cause is not None
        assert report.cause.startswith("request.timeout_seconds: ")
        assert "RequestApproval" not in report.states
    assert stack.queue_counts(stack.resources.queue_url) == (0, 0)


def test_missing_timeout_gets_the_default(stack: Stack) -> None:
    stack.start_raw({"title": "Default timeout", "approvers": [ALICE], "requester": "r"})
    email = stack.email(ALICE, "Default timeout")
    approval = stack.approvals()[0]
    assert approval.request.timeout_seconds == 86_400
    assert (approval.expires_at - approval.created_at).total_seconds() == 86_400
    assert email.links


def test_a_broken_message_fails_alone_and_the_rest_of_the_batch_is_handled(stack: Stack) -> None:
    stack.start(simple("Good one"))
    good = stack.queued_message()
    bodies = ["not json", good["Body"], json.dumps({"task_token": "", "request": {}}), "[]"]
    for body in bodies:
        stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=body)
    messages = receive_all(stack, len(bodies))
    by_body = {m["Body"]: m["MessageId"] for m in messages}

    response = worker.handler.lambda_handler(
        sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:approvals-requests"), lambda_context("worker")
    )
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    assert failed == {by_body[b] for b in bodies if b != good["Body"]}
    assert [e.to for e in stack.emails()] == [ALICE]


def test_the_messages_of_a_batch_are_claimed_at_once_and_emailed_together(stack: Stack) -> None:
    """Every message waits at its claim until all of the batch have reached theirs: one
    after another, the first would wait alone until the barrier broke, failing them all.
    Then one email goes to their one approver: a digest of the five."""
    messages = []
    for number in range(5):
        stack.start(simple(f"At once {number}"))
        messages.append(stack.queued_message())
    everyone_claiming = threading.Barrier(len(messages), timeout=10)  # a deadlock guard only

    def wait_for_the_others(**_: Any) -> None:
        everyone_claiming.wait()

    db = runtime.from_environment().store._db
    db.meta.events.register("before-call.dynamodb.PutItem", wait_for_the_others)
    try:
        response = worker.handler.lambda_handler(
            sqs_event(messages, "arn:aws:sqs:us-east-1:123456789012:approvals-requests"),
            lambda_context("worker"),
        )
    finally:
        db.meta.events.unregister("before-call.dynamodb.PutItem", wait_for_the_others)
    assert response["batchItemFailures"] == []
    [email] = stack.emails()
    assert email.to == ALICE
    assert "5 requests wait" in email.subject
    assert all(approval.emailed for approval in stack.approvals())
    assert len(stack.approvals()) == len(messages)


def test_broken_messages_reach_the_dead_letter_queue_and_are_dropped_there(stack: Stack) -> None:
    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody="garbage")

    def in_dlq() -> bool:
        stack.worker.poll_once()
        return stack.queue_counts(stack.resources.dlq_url)[0] == 1

    eventually(in_dlq, what="the redrive to the dead-letter queue")
    response = worker.dead_letter.lambda_handler(
        sqs_event(receive_dlq(stack), "arn:aws:sqs:us-east-1:123456789012:approvals-dead-letters"),
        lambda_context("dead-letter"),
    )
    assert response["batchItemFailures"] == []  # dropped: keeping it would only recirculate it


def receive_dlq(stack: Stack) -> list[Any]:
    return list(
        stack.sqs.receive_message(
            QueueUrl=stack.resources.dlq_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        )["Messages"]
    )


def test_a_dead_letter_fails_its_execution_by_name(stack: Stack) -> None:
    arn = stack.start(simple("Undeliverable"))
    message = stack.queued_message()  # as if every delivery had failed
    stack.sqs.send_message(QueueUrl=stack.resources.dlq_url, MessageBody=message["Body"])
    stack.drain(stack.dead_letters)
    report = stack.finish(arn)
    assert report.status == "FAILED"
    assert report.error == "Approval.DeliveryFailed"
    assert report.final_state == "Undelivered"
    assert report.cause is not None
    assert token_of(message) not in report.cause
    # A second copy finds the execution closed and is not an error either.
    stack.sqs.send_message(QueueUrl=stack.resources.dlq_url, MessageBody=message["Body"])
    stack.drain(stack.dead_letters)
    assert stack.queue_counts(stack.resources.dlq_url) == (0, 0)


def test_duplicate_delivery_sends_one_set_of_emails(stack: Stack) -> None:
    arn = stack.start(simple("Delivered twice", [ALICE, BOB]))
    message = stack.queued_message()
    for _ in range(2):
        stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=message["Body"])
    stack.drain()
    emails = stack.emails()
    assert sorted(e.to for e in emails) == [ALICE, BOB]
    assert len(stack.approvals()) == 1

    # A third copy, in a later batch of its own: still nothing new.
    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=message["Body"])
    stack.drain()
    assert len(stack.emails()) == 2

    alice = next(e for e in emails if e.to == ALICE)
    assert stack.click(alice.links[0], "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"


def test_duplicates_in_separate_batches_of_one(stack: Stack) -> None:
    stack.start(simple("One at a time"))
    message = stack.queued_message()
    for _ in range(3):
        stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=message["Body"])
    one_by_one = QueuePoller(stack.sqs, stack.resources.queue_url, worker.handler.lambda_handler, "w", 1)
    stack.drain(one_by_one)
    assert [e.to for e in stack.emails()] == [ALICE]


def test_expiry_runs_from_when_the_message_was_queued(stack: Stack) -> None:
    stack.start(ApprovalRequest(title="Clock", approvers=[ALICE], requester="r", timeout_seconds=3600))
    message = stack.queued_message()
    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=message["Body"])
    stack.drain()
    approval = stack.approval(approval_id_of_message(message))
    assert (approval.expires_at - approval.created_at).total_seconds() == 3600
    assert approval.emailed


def test_more_approvers_than_one_batch_of_emails(stack: Stack) -> None:
    approvers = [f"approver{i:02}@example.com" for i in range(23)]
    stack.start(simple("Many", approvers))
    stack.email(approvers[-1], "Many")
    stack.drain()
    emails = stack.emails()
    assert sorted(e.to for e in emails) == approvers
    assert all(len(e.links) == 1 and stack.bound_to(e.links[0]) == e.to for e in emails)
    assert len({e.links[0] for e in emails}) == 23


def test_long_non_latin_emails_to_ten_approvers_are_batched_by_bytes(stack: Stack) -> None:
    """Ten emails of a 10,000-character CJK description weigh about 300 KB, more than one
    PublishBatch takes (256 KiB in all): each batch must fit by bytes as well as by count."""
    approvers = [f"approver{i}@example.com" for i in range(10)]
    description = "承認をお願いします。" * 1_000
    stack.start(
        ApprovalRequest(
            title="長い説明", description=description, approvers=approvers, requester="ci@example.com"
        )
    )
    stack.email(approvers[-1], "長い説明")
    stack.drain()
    emails = stack.emails()
    assert sorted(e.to for e in emails) == approvers
    assert all(description in e.body for e in emails)
    assert stack.queue_counts(stack.resources.queue_url) == (0, 0)


def test_requester_who_is_also_an_approver_gets_no_link(stack: Stack) -> None:
    stack.start(ApprovalRequest(title="Self", approvers=[ALICE, BOB], requester=ALICE))
    stack.email(BOB, "Self")
    stack.drain()
    assert [e.to for e in stack.emails()] == [BOB]
