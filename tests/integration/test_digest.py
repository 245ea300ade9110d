"""One email per approver, against moto: a worker batch gathered by approver, the opt-out,
redelivery, the digest window across batches (sent by the sweep or the next batch), and
the sweep's reminders gathered the same way."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

import worker.handler
from approvals import digest, request, runtime, sweep
from approvals.local.poller import sqs_event
from approvals.models import ApprovalRequest, Status, utcnow
from approvals.runtime import Services
from approvals.store.items import DIGEST_ATTRIBUTE
from tests.conftest import Stack, eventually, lambda_context

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:approvals-requests"
WINDOW = 60


def ask(title: str, approvers: list[str], **fields: Any) -> ApprovalRequest:
    return ApprovalRequest(title=title, approvers=approvers, requester="ci@example.com", **fields)


def queued(stack: Stack, requests: list[ApprovalRequest]) -> list[dict[str, Any]]:
    """Start the requests; their messages, received as one batch (not yet handled)."""
    for each in requests:
        stack.start(each)
    eventually(lambda: stack.queue_counts(stack.resources.queue_url)[0] >= len(requests), what="queued")
    messages = stack.sqs.receive_message(
        QueueUrl=stack.resources.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert len(messages) == len(requests)
    return [dict(m) for m in messages]


def handle(stack: Stack, messages: list[dict[str, Any]]) -> set[str]:
    """The worker's batch; the ids it reports failed. The others are deleted from the
    queue, as the event source mapping does."""
    response = worker.handler.lambda_handler(sqs_event(messages, QUEUE_ARN), lambda_context("worker"))
    failed = {str(item["itemIdentifier"]) for item in response["batchItemFailures"]}
    for message in messages:
        if message["MessageId"] not in failed:
            stack.sqs.delete_message(
                QueueUrl=stack.resources.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
    return failed


def by_approver(stack: Stack) -> Counter[str]:
    return Counter(email.to for email in stack.emails())


def listed(body: str) -> list[str]:
    return re.findall(r"^- (.+)$", body, re.MULTILINE)


@pytest.fixture
def windowed(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Services:
    """The services with a digest window, as deployed."""
    monkeypatch.setenv("APPROVALS_DIGEST_SECONDS", str(WINDOW))
    runtime.reset()
    return runtime.from_environment()


def test_a_batch_of_ten_requests_to_two_approvers_is_two_emails(stack: Stack) -> None:
    titles = [f"Refund {n}" for n in range(10)]
    assert handle(stack, queued(stack, [ask(t, [ALICE, BOB]) for t in titles])) == set()

    assert by_approver(stack) == Counter({ALICE: 1, BOB: 1})
    for email in stack.emails():
        assert "10 requests wait" in email.subject
        assert sorted(listed(email.body)) == sorted(titles)
        [link] = email.links
        assert "/i/" in link
    assert all(a.emailed for a in stack.approvals())


def test_each_approver_is_listed_only_their_own_requests(stack: Stack) -> None:
    requests = [ask("Alice's A", [ALICE]), ask("Alice's B", [ALICE]), ask("Both", [ALICE, CAROL])]
    requests += [ask("Carol's", [CAROL])]
    handle(stack, queued(stack, requests))
    emails = {email.to: email for email in stack.emails()}
    assert sorted(listed(emails[ALICE].body)) == ["Alice's A", "Alice's B", "Both"]
    assert sorted(listed(emails[CAROL].body)) == ["Both", "Carol's"]


def test_a_lone_request_gets_its_own_email_with_its_own_link(stack: Stack) -> None:
    handle(stack, queued(stack, [ask("Alone", [ALICE]), ask("Other", [BOB])]))
    emails = {email.to: email for email in stack.emails()}
    assert emails[ALICE].subject.startswith("[Approval needed] Alone")
    assert "/i/" not in emails[ALICE].links[0]
    assert stack.click(emails[ALICE].links[0], "approve").status == 200


def test_an_opted_out_request_is_emailed_at_once_on_its_own(stack: Stack) -> None:
    requests = [ask("Routine 1", [ALICE]), ask("Routine 2", [ALICE]), ask("Urgent", [ALICE], digest=False)]
    handle(stack, queued(stack, requests))
    subjects = sorted(email.subject for email in stack.emails())
    assert subjects == [
        "[Approval needed] Urgent (from ci@example.com)",
        "[Approvals needed] 2 requests wait for your decision",
    ]


def test_a_redelivered_batch_is_not_emailed_again(stack: Stack) -> None:
    messages = queued(stack, [ask(f"Twice {n}", [ALICE, BOB]) for n in range(3)])
    assert handle(stack, messages) == set()
    assert handle(stack, messages) == set()  # the same messages again: each claim says DONE
    assert by_approver(stack) == Counter({ALICE: 1, BOB: 1})


def test_within_the_window_requests_wait_for_the_sweep_to_send_them_together(
    stack: Stack, windowed: Services
) -> None:
    handle(stack, queued(stack, [ask("First", [ALICE])]))
    assert [e.subject for e in stack.emails()] == ["[Approval needed] First (from ci@example.com)"]

    handle(stack, queued(stack, [ask("Later 1", [ALICE]), ask("Later 2", [ALICE, BOB])]))
    # Bob had no window open: emailed at once. Alice's wait in her digest, and their
    # approvals say so (emailed: the worker's part is done; awaiting her digest).
    assert by_approver(stack) == Counter({ALICE: 1, BOB: 1})
    later = {a.request.title: a for a in stack.approvals() if a.request.title.startswith("Later")}
    assert all(a.emailed and a.awaiting_digest == [ALICE] for a in later.values())

    now = utcnow()
    assert sweep.sweep(windowed, now)["digests"] == 0  # the window is still open
    done = sweep.sweep(windowed, now + timedelta(seconds=WINDOW + 1))
    assert done["digests"] == 1
    [digest_email] = [e for e in stack.emails() if e.to == ALICE and "2 requests" in e.subject]
    assert sorted(listed(digest_email.body)) == ["Later 1", "Later 2"]
    assert all(stack.approval(a.approval_id).awaiting_digest == [] for a in later.values())
    assert sweep.sweep(windowed, now + timedelta(seconds=WINDOW + 2))["digests"] == 0  # sent once

    # Once that window closes too, the digest leaves the index: nothing is left for sweeps.
    sweep.sweep(windowed, now + timedelta(seconds=2 * WINDOW + 2))
    assert [d for d in stack.digests() if DIGEST_ATTRIBUTE in d] == []


def test_a_waiting_digest_goes_with_the_next_batch_once_its_window_closed(
    stack: Stack, windowed: Services
) -> None:
    handle(stack, queued(stack, [ask("First", [ALICE])]))
    handle(stack, queued(stack, [ask("Waiting", [ALICE])]))
    assert len(stack.emails()) == 1
    messages = queued(stack, [ask("Next batch", [ALICE])])
    # The next batch comes after the window closed (its claims made as any, then emailed later).
    claimed = [request.claim_message(windowed, m["Body"], utcnow(), utcnow()) for m in messages]
    assert all(isinstance(c, digest.ToEmail) for c in claimed)
    later = utcnow() + timedelta(seconds=WINDOW + 1)
    assert digest.email_batch(windowed, [c for c in claimed if isinstance(c, digest.ToEmail)], later) == set()
    [latest] = [e for e in stack.emails() if "2 requests" in e.subject]
    assert sorted(listed(latest.body)) == ["Next batch", "Waiting"]
    assert sweep.sweep(windowed, utcnow() + timedelta(seconds=WINDOW + 2))["digests"] == 0


def test_a_window_whose_email_failed_is_given_back_so_the_retry_goes_at_once(
    stack: Stack, windowed: Services
) -> None:
    messages = queued(stack, [ask("One", [ALICE]), ask("Two", [ALICE])])
    claimed = [request.claim_message(windowed, m["Body"], utcnow(), utcnow()) for m in messages]
    to_email = [c for c in claimed if isinstance(c, digest.ToEmail)]
    lost: list[bool] = []

    def connection_lost(**_: Any) -> None:
        if not lost:
            lost.append(True)
            raise EndpointConnectionError(endpoint_url="https://sns.us-east-1.amazonaws.com/")

    windowed.sns.meta.events.register("before-call.sns.PublishBatch", connection_lost)
    assert digest.email_batch(windowed, to_email, utcnow()) == {c.approval.approval_id for c in to_email}
    assert stack.emails() == []

    # The retry is emailed at once: the window the failed email claimed does not hold it back.
    assert digest.email_batch(windowed, to_email, utcnow()) == set()
    [email] = stack.emails()
    assert sorted(listed(email.body)) == ["One", "Two"]


def test_a_request_no_longer_waiting_leaves_the_digest_it_waited_in(stack: Stack, windowed: Services) -> None:
    handle(stack, queued(stack, [ask("First", [ALICE])]))
    handle(stack, queued(stack, [ask("Cancelled meanwhile", [ALICE]), ask("Still waiting", [ALICE])]))
    cancelled = next(a for a in stack.approvals() if a.request.title == "Cancelled meanwhile")
    assert windowed.store.close(cancelled.approval_id, Status.CANCELLED, utcnow())
    sweep.sweep(windowed, utcnow() + timedelta(seconds=WINDOW + 1))
    [latest] = stack.emails()[1:]
    assert latest.subject.startswith("[Approval needed] Still waiting")  # alone now: its own email


def test_reminders_due_together_are_one_email_per_approver(stack: Stack) -> None:
    services = runtime.from_environment()
    handle(
        stack, queued(stack, [ask(f"Remind {n}", [ALICE, BOB], timeout_seconds=4 * 3600) for n in range(3)])
    )
    halfway = min(a.created_at for a in stack.approvals()) + timedelta(hours=2, seconds=1)
    done = sweep.sweep(services, halfway)
    assert done["reminded"] == 6  # each request's reminder to each approver
    reminders = [e for e in stack.emails() if e.subject.startswith("[Reminder]")]
    assert Counter(e.to for e in reminders) == Counter({ALICE: 1, BOB: 1})
    for email in reminders:
        assert "3 requests" in email.subject
        assert sorted(listed(email.body)) == [f"Remind {n}" for n in range(3)]


def test_a_digest_left_waiting_when_the_window_is_turned_off_is_sent_once(
    stack: Stack, windowed: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle(stack, queued(stack, [ask("First", [ALICE])]))
    handle(stack, queued(stack, [ask("Waiting 1", [ALICE]), ask("Waiting 2", [ALICE])]))
    monkeypatch.setenv("APPROVALS_DIGEST_SECONDS", "0")  # redeployed without a window
    runtime.reset()
    services = runtime.from_environment()
    later = utcnow() + timedelta(seconds=WINDOW + 1)
    assert sweep.sweep(services, later)["digests"] == 1
    assert sweep.sweep(services, later + timedelta(seconds=1))["digests"] == 0
    assert len(stack.emails()) == 2
    assert stack.digests()[0].get("pending") is None
