"""The worker under faults, against moto: SNS failing for some messages or entries, two
workers racing on one message, a crash between storing and publishing, and a message that
keeps failing until the dead-letter queue fails its execution by name."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import EndpointConnectionError

import worker.dead_letter
import worker.handler
from approvals import request
from approvals.local.poller import QueuePoller, sqs_event
from approvals.models import Approval, ApprovalRequest, Policy, utcnow
from approvals.runtime import Services
from tests.conftest import (
    MAX_RECEIVES,
    Stack,
    approval_id_of_message,
    eventually,
    lambda_context,
)
from tests.reliability.conftest import wait_for_claims_to_lapse
from tests.reliability.faults import Hooks, SnsFaults, dead_letter_receipts

ALICE, BOB, CAROL, DAN = (f"{name}@example.com" for name in ("alice", "bob", "carol", "dan"))
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:approvals-requests"


def simple(title: str, approvers: list[str], **fields: Any) -> ApprovalRequest:
    return ApprovalRequest(title=title, approvers=approvers, requester="ci@example.com", **fields)


def one_batch(stack: Stack, expected: int) -> tuple[list[dict[str, Any]], set[str]]:
    """Receive ``expected`` messages as one batch, hand it to the worker, delete what
    succeeded (as the event source mapping does); returns the batch and its failed ids."""
    eventually(lambda: stack.queue_counts(stack.resources.queue_url)[0] >= expected, what="queued messages")
    messages = stack.sqs.receive_message(
        QueueUrl=stack.resources.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert len(messages) == expected
    try:
        response = worker.handler.lambda_handler(
            sqs_event(list(messages), QUEUE_ARN), lambda_context("approval-worker")
        )
        failed = {str(item["itemIdentifier"]) for item in response["batchItemFailures"]}
    except BatchProcessingError:  # every record failed: the invocation fails, all come back
        failed = {m["MessageId"] for m in messages}
    done = [m for m in messages if m["MessageId"] not in failed]
    if done:
        stack.sqs.delete_message_batch(
            QueueUrl=stack.resources.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
        )
    return [dict(m) for m in messages], failed


def emails_by_approver(stack: Stack) -> Counter[str]:
    return Counter(email.to for email in stack.emails())


def stored(stack: Stack) -> dict[str, Approval]:
    """The approvals stored, by title."""
    return {a.request.title: a for a in stack.approvals()}


def title_of(message: dict[str, Any]) -> str:
    return str(json.loads(message["Body"])["request"]["title"])


def test_only_the_messages_whose_emails_failed_are_retried(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """Three requests in one batch, emailed in one PublishBatch (one email per approver);
    SNS fails the single entry of Bob's email (a 5xx for that entry). Only that request is
    a batch item failure; its retry sends only what is missing; everyone has one email."""
    first_attempt: set[str] = set()

    def decide(call: int, approvers: list[str]) -> str | dict[str, str]:
        if BOB in approvers and BOB not in first_attempt:
            first_attempt.add(BOB)
            return {BOB: "InternalError"}
        return {}

    sns = SnsFaults(decide).install(hooks, services.sns)
    for title, approvers in (("Fault A", [ALICE]), ("Fault B", [BOB, DAN]), ("Fault C", [CAROL])):
        stack.start(simple(title, approvers))

    batch, failed = one_batch(stack, 3)
    assert {title_of(m) for m in batch if m["MessageId"] in failed} == {"Fault B"}
    assert emails_by_approver(stack) == Counter({ALICE: 1, DAN: 1, CAROL: 1})
    approvals = stored(stack)
    assert [approvals[t].emailed for t in ("Fault A", "Fault B", "Fault C")] == [True, False, True]
    item = stack.raw_item(approvals["Fault B"].approval_id)
    assert item is not None
    assert item["sent_to"] == {"SS": [DAN]}  # remembered for the retry

    wait_for_claims_to_lapse(stack)
    stack.drain()
    assert emails_by_approver(stack) == Counter({ALICE: 1, BOB: 1, CAROL: 1, DAN: 1})
    assert all(a.emailed for a in stored(stack).values())
    # The retry published only what was missing: Bob again, not Dan.
    assert sorted(sns.published()) == sorted([ALICE, DAN, BOB, CAROL])
    assert stack.queue_counts(stack.resources.queue_url) == (0, 0)
    assert stack.queue_counts(stack.resources.dlq_url) == (0, 0)


def test_a_throttled_publish_retries_the_messages_it_carried_and_no_email_twice(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """The batch's one PublishBatch is throttled after the client's retries: every message
    whose email it carried is retried, and each approver then gets their email once."""
    sns = SnsFaults(lambda call, _: "Throttling" if call == 0 else {}).install(hooks, services.sns)
    for title, approvers in (("Throttled A", [ALICE]), ("Throttled B", [BOB])):
        stack.start(simple(title, approvers))

    _, failed = one_batch(stack, 2)
    assert len(failed) == 2
    assert stack.emails() == []
    assert not any(a.emailed for a in stack.approvals())

    wait_for_claims_to_lapse(stack)
    stack.drain()
    assert emails_by_approver(stack) == Counter({ALICE: 1, BOB: 1})
    assert all(a.emailed for a in stack.approvals())
    assert [c.raised for c in sns.calls] == ["Throttling", None]


def test_what_an_earlier_batch_of_emails_sent_is_kept_when_a_later_one_fails(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """Twelve approvers take two PublishBatch calls; the second fails with a 5xx. The retry
    sends the two that are missing, not the ten that went out."""
    approvers = [f"approver{i:02}@example.com" for i in range(12)]
    sns = SnsFaults(lambda call, _: "InternalError" if call == 1 else {}).install(hooks, services.sns)
    arn = stack.start(simple("Twelve", approvers, policy=Policy.QUORUM, quorum=2))

    _, failed = one_batch(stack, 1)
    assert len(failed) == 1
    assert sorted(emails_by_approver(stack)) == approvers[:10]

    wait_for_claims_to_lapse(stack)
    stack.drain()
    assert emails_by_approver(stack) == Counter(dict.fromkeys(approvers, 1))
    assert [(len(c.approvers), c.raised) for c in sns.calls] == [(10, None), (2, "InternalError"), (2, None)]
    # The links work: two approvals settle it.
    links = {e.to: e.links[0] for e in stack.emails()}
    for who in approvers[:2]:
        assert stack.click(links[who], "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"


def test_a_failed_attempt_the_client_retries_away_is_not_a_failure(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """The clients retry throttles, 5xx and lost connections themselves (standard mode): an
    attempt that never reached SNS costs a retry inside the call, not a redelivery."""
    attempts: list[str] = []

    def connection_lost_once(request: Any, **_: Any) -> None:
        attempts.append(request.url)
        if len(attempts) == 1:
            raise EndpointConnectionError(endpoint_url=request.url)

    # First in line, so that the attempt stops before moto's own handler serves it.
    hooks.on(services.sns, "before-send.sns.PublishBatch", connection_lost_once, first=True)
    stack.start(simple("Retried by the client", [ALICE]))
    _, failed = one_batch(stack, 1)
    assert failed == set()
    assert len(attempts) == 2
    assert emails_by_approver(stack) == Counter({ALICE: 1})


def test_two_workers_handling_the_same_message_at_once_send_one_email_each(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """Both store the approval at the same moment (a barrier holds each PutItem until the
    other has reached its own): the table takes one, the other is told to try later, and a
    later delivery finds the emails sent."""
    arn = stack.start(simple("Raced", [ALICE, BOB]))
    message = stack.queued_message()
    both_there = threading.Barrier(2, timeout=10)

    def wait_for_the_other(**_: Any) -> None:
        both_there.wait()

    hooks.on(services.store._db, "before-call.dynamodb.PutItem", wait_for_the_other)
    sent_at = datetime.fromtimestamp(int(message["Attributes"]["SentTimestamp"]) / 1000, UTC)

    def handle(_: int) -> str:
        try:
            return request.handle_message(services, message["Body"], sent_at, utcnow()).value
        except request.RetryLater:
            return "retry later"

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(handle, range(2)))
    # The one whose write lost reads the winner's claim: still held (try later), or, when
    # the winner has emailed in the meantime, done (a duplicate). Never a second email.
    assert results in (["emailed", "retry later"], ["duplicate", "emailed"])
    assert emails_by_approver(stack) == Counter({ALICE: 1, BOB: 1})

    # The worker told to retry gets the message again: the emails are out, nothing more.
    hooks.remove_all()
    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=message["Body"])
    stack.drain()
    assert emails_by_approver(stack) == Counter({ALICE: 1, BOB: 1})
    assert len(stack.approvals()) == 1
    link = next(e.links[0] for e in stack.emails() if e.to == BOB)
    assert stack.click(link, "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"


def test_a_crash_after_storing_is_retried_and_emails_once(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """The worker dies right after its PutItem succeeds: the approval is stored, no email
    has gone. Storing is not taken for sending: a redelivery within the claim is turned
    away (another worker may be on it), and the one after it sends every email, once."""
    crashed: list[str] = []

    def crash_once(http_response: Any, **_: Any) -> None:
        if http_response.status_code == 200 and not crashed:
            crashed.append("PutItem")
            raise RuntimeError("the worker crashed")

    hooks.on(services.store._db, "after-call.dynamodb.PutItem", crash_once)
    arn = stack.start(simple("Crashed", [ALICE, BOB]))
    message = stack.queued_message()
    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=message["Body"])
    batch, failed = one_batch(stack, 1)
    assert crashed == ["PutItem"]
    assert failed == {batch[0]["MessageId"]}
    approval = stack.approval(approval_id_of_message(message))
    assert not approval.emailed
    assert stack.emails() == []

    # Within the claim: a duplicate delivery, sent away to try again later. (Its time is
    # taken inside the claim, however slowly a busy machine got here.)
    sent_at = datetime.fromtimestamp(int(message["Attributes"]["SentTimestamp"]) / 1000, UTC)
    item = stack.raw_item(approval.approval_id)
    assert item is not None
    within_claim = datetime.fromtimestamp(int(item["claim_until"]["N"]) - 1, UTC)
    with pytest.raises(request.RetryLater, match="another delivery"):
        request.handle_message(services, message["Body"], sent_at, within_claim)
    assert stack.emails() == []

    wait_for_claims_to_lapse(stack)
    stack.drain()
    assert emails_by_approver(stack) == Counter({ALICE: 1, BOB: 1})
    approval = stack.approval(approval.approval_id)
    assert approval.emailed
    link = next(e.links[0] for e in stack.emails() if e.to == ALICE)
    assert stack.click(link, "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"


def test_a_message_that_keeps_failing_fails_its_execution_as_undelivered(
    stack: Stack, services: Services, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SNS refuses every attempt. After the redrive count the message is in the dead-letter
    queue, and the first time the dead-letter function sees it, it fails the execution with
    Approval.DeliveryFailed (no waiting for a year, nor for another visibility timeout)."""
    sns = SnsFaults(lambda call, _: "InternalError").install(hooks, services.sns)
    seen = dead_letter_receipts(monkeypatch)
    arn = stack.start(simple("Never delivered", [ALICE]))
    dead_letters = QueuePoller(
        stack.sqs, stack.resources.dlq_url, worker.dead_letter.lambda_handler, "approval-dead-letter"
    )

    def ended() -> bool:
        stack.worker.poll_once()
        dead_letters.poll_once()
        return stack.status(arn) != "RUNNING"

    eventually(ended, timeout=30, what="the execution to fail")
    report = stack.finish(arn)
    assert (report.status, report.error, report.final_state) == (
        "FAILED",
        "Approval.DeliveryFailed",
        "Undelivered",
    )
    assert report.cause == (
        "The approval request could not be delivered to its approvers after several attempts."
    )
    assert stack.emails() == []
    assert 1 <= len(sns.calls) <= MAX_RECEIVES
    # Handled on its first receipt from the dead-letter queue, and gone from it.
    assert seen == [MAX_RECEIVES + 1]
    assert stack.queue_counts(stack.resources.dlq_url) == (0, 0)
    assert stack.queue_counts(stack.resources.queue_url) == (0, 0)
    (approval,) = stack.approvals()
    assert not approval.emailed


def test_a_failed_digest_retries_only_its_approvers_requests(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """Seven requests in one batch: four to Alice, three to Bob, one digest each. SNS fails
    Bob's entry: only his three messages are retried, and the retry sends him one digest."""
    failed_once: set[str] = set()

    def decide(call: int, approvers: list[str]) -> str | dict[str, str]:
        if BOB in approvers and BOB not in failed_once:
            failed_once.add(BOB)
            return {BOB: "InternalError"}
        return {}

    SnsFaults(decide).install(hooks, services.sns)
    requests = [simple(f"Alice {n}", [ALICE]) for n in range(4)] + [
        simple(f"Bob {n}", [BOB]) for n in range(3)
    ]
    for each in requests:
        stack.start(each)

    batch, failed = one_batch(stack, len(requests))
    assert sorted(title_of(m) for m in batch if m["MessageId"] in failed) == ["Bob 0", "Bob 1", "Bob 2"]
    assert emails_by_approver(stack) == Counter({ALICE: 1})
    assert {t: a.emailed for t, a in stored(stack).items()} == {
        each.title: each.title.startswith("Alice") for each in requests
    }

    wait_for_claims_to_lapse(stack)
    stack.drain()
    assert emails_by_approver(stack) == Counter({ALICE: 1, BOB: 1})
    [to_bob] = [e for e in stack.emails() if e.to == BOB]
    assert "3 requests wait" in to_bob.subject
    assert all(a.emailed for a in stored(stack).values())
