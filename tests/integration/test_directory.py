"""The approver directory against moto's SNS (with the local stack's SNS fixes): a request
naming anyone without a confirmed, filtered email subscription fails at once, by name; the
worker reads the subscriptions once and keeps them; an approver lost mid-request is noted,
and ends the request when the policy can no longer be met."""

from __future__ import annotations

from datetime import timedelta

import pytest

from approvals import directory, runtime, sweep
from approvals.directory import Directory, DirectoryError, Reach
from approvals.inboxlinks import approver_id
from approvals.local.resources import CONFIRM_AT_ONCE_TAG
from approvals.models import ApprovalRequest, Policy, Status, timeline, utcnow
from bench.calls import CallCounter
from tests.integration.conftest import Stack, approval_id_of

ALICE, BOB, NOBODY = "alice@example.com", "bob@example.com", "nobody@example.com"


def request(
    *approvers: str, policy: Policy = Policy.FIRST_RESPONSE, title: str = "Deploy"
) -> ApprovalRequest:
    return ApprovalRequest(title=title, approvers=list(approvers), policy=policy, requester="ci@example.com")


def leave_new_subscriptions_pending(stack: Stack) -> None:
    stack.sns.untag_resource(ResourceArn=stack.resources.topic_arn, TagKeys=[CONFIRM_AT_ONCE_TAG])


def test_an_address_without_subscription_fails_the_request_at_once_by_name(stack: Stack) -> None:
    stack.add_approvers([ALICE])
    arn = stack.start(request(ALICE, NOBODY), add_approvers=False)
    report = stack.finish(arn)
    assert (report.status, report.error) == ("FAILED", "Approval.InvalidRequest")
    assert report.cause == f"request.approvers: cannot be emailed: {NOBODY} (no subscription)"
    assert stack.emails() == []  # not even alice: the request was refused whole
    # Its record tells operators who could not be emailed, and that it was cancelled.
    (refused,) = stack.approvals()
    assert refused.status is Status.CANCELLED
    events = [(e.kind, e.actor, e.detail) for e in timeline(refused)]
    assert events[1:] == [
        ("unreachable", NOBODY, "cannot be emailed: no subscription"),
        ("cancelled", "system", ""),
    ]


def test_a_duplicate_of_an_emailed_request_is_not_failed_by_an_approver_who_left_since(stack: Stack) -> None:
    stack.add_approvers([ALICE, BOB])
    arn = stack.start(request(ALICE, BOB), add_approvers=False)
    message = stack.queued_message()
    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=message["Body"])
    link = stack.email(ALICE, "Deploy").links[0]
    directory.remove(stack.sns, stack.resources.topic_arn, BOB)
    runtime.from_environment().directory.refresh(utcnow())  # the worker knows Bob left
    stack.sqs.send_message(QueueUrl=stack.resources.queue_url, MessageBody=message["Body"])  # SQS's copy
    stack.drain()
    stack.assert_running(arn)
    stack.click(link, "approve")
    assert stack.finish(arn).output["outcome"] == "approved"


def test_a_pending_subscription_fails_the_request_until_confirmed(stack: Stack) -> None:
    leave_new_subscriptions_pending(stack)
    stack.add_approvers([ALICE])
    report = stack.finish(stack.start(request(ALICE), add_approvers=False))
    assert report.error == "Approval.InvalidRequest"
    assert report.cause is not None
    assert report.cause.startswith(
        f"request.approvers: cannot be emailed: {ALICE} (subscription pending confirmation since "
    )

    (confirmation,) = stack.emails()
    assert (confirmation.to, confirmation.subject) == (ALICE, "AWS Notification - Subscription Confirmation")
    directory.confirm(stack.sns, confirmation.links[0])
    held = directory.read(stack.sns, stack.resources.topic_arn)[ALICE]
    assert (held.reach, held.protected) == (Reach.CONFIRMED, True)

    # The worker read alice as pending a moment ago: the miss reads again.
    arn = stack.start(request(ALICE, title="Again"), add_approvers=False)
    stack.click(stack.email(ALICE, "Again").links[0], "approve")
    assert stack.finish(arn).output["outcome"] == "approved"


def test_an_unfiltered_subscription_is_refused(stack: Stack) -> None:
    # It would get every approver's email, links included.
    stack.sns.subscribe(TopicArn=stack.resources.topic_arn, Protocol="email", Endpoint=ALICE)
    report = stack.finish(stack.start(request(ALICE), add_approvers=False))
    assert report.error == "Approval.InvalidRequest"
    assert report.cause == (
        f"request.approvers: cannot be emailed: {ALICE}"
        " (its subscription has no filter policy taking only its own 'approver')"
    )


def test_the_requester_who_may_not_vote_need_not_be_subscribed(stack: Stack) -> None:
    stack.add_approvers([BOB])
    arn = stack.start(
        ApprovalRequest(title="Self", approvers=[ALICE, BOB], requester=ALICE), add_approvers=False
    )
    stack.click(stack.email(BOB, "Self").links[0], "approve")
    assert stack.finish(arn).output["outcome"] == "approved"


def test_the_outbox_holds_only_what_each_subscription_takes(stack: Stack) -> None:
    stack.add_approvers([ALICE, BOB])
    stack.start(request(ALICE, BOB, policy=Policy.ALL), add_approvers=False)
    stack.email(BOB, "Deploy")
    emails = stack.emails()
    assert sorted(e.to for e in emails) == [ALICE, BOB]
    for email in emails:  # each gets its own link, and nobody else's
        assert len(email.links) == 1
        assert stack.bound_to(email.links[0]) == email.to


def test_a_topic_with_more_than_a_hundred_approvers_mails_each_of_them(stack: Stack) -> None:
    """SNS delivers to every subscription of a topic; moto delivered to the first page of
    100 only, so that the 101st approver of the one shared topic never got an email."""
    approvers = [f"approver{i}@example.com" for i in range(120)]
    stack.add_approvers(approvers)
    stack.start(request(approvers[-1], title="The 120th"), add_approvers=False)
    assert stack.email(approvers[-1], "The 120th").to == approvers[-1]


def test_a_warm_worker_reads_the_directory_once_and_a_miss_refreshes(stack: Stack) -> None:
    services = runtime.from_environment()
    counter = CallCounter(services.sns)
    stack.add_approvers([ALICE, BOB])
    stack.start(request(ALICE, BOB, title="One"), add_approvers=False)
    stack.email(BOB, "One")
    # Cold: one list, and one read of the filter policy of each approver asked about.
    assert counter.take() == {
        "ListSubscriptionsByTopic": 1,
        "GetSubscriptionAttributes": 2,
        "PublishBatch": 1,
    }

    for title in ("Two", "Three"):
        stack.start(request(ALICE, title=title), add_approvers=False)
        stack.email(ALICE, title)
    assert counter.take() == {"PublishBatch": 2}

    # Carol was added after the worker's read: the miss reads again and she is emailed.
    stack.add_approvers(["carol@example.com"])
    stack.start(request("carol@example.com", title="Four"), add_approvers=False)
    stack.email("carol@example.com", "Four")
    # The read lists every subscription but reads only the attributes of the one asked about.
    assert counter.take() == {
        "ListSubscriptionsByTopic": 1,
        "GetSubscriptionAttributes": 1,
        "PublishBatch": 1,
    }


def test_the_cache_is_read_again_once_stale_or_on_a_miss(stack: Stack) -> None:
    counter = CallCounter(stack.sns)
    cache = Directory(stack.sns, stack.resources.topic_arn, max_age=timedelta(seconds=60))
    stack.add_approvers([ALICE])
    start = utcnow()
    counter.take()
    assert cache.unreachable([ALICE], start) == {}
    assert cache.unreachable([ALICE], start + timedelta(seconds=59)) == {}
    assert counter.take() == {"ListSubscriptionsByTopic": 1, "GetSubscriptionAttributes": 1}
    assert cache.unreachable([NOBODY], start + timedelta(seconds=1)) == {NOBODY: "no subscription"}
    assert counter.take() == {"ListSubscriptionsByTopic": 1}  # a miss lists again
    # Stale: read again even with nothing missing, so an unsubscribe is noticed.
    directory.remove(stack.sns, stack.resources.topic_arn, ALICE)
    assert cache.unreachable([ALICE], start + timedelta(seconds=70)) == {ALICE: "no subscription"}


def test_remove_and_its_refusals(stack: Stack) -> None:
    topic = stack.resources.topic_arn
    with pytest.raises(DirectoryError, match="has no subscription"):
        directory.remove(stack.sns, topic, NOBODY)
    leave_new_subscriptions_pending(stack)
    stack.add_approvers([BOB])
    with pytest.raises(DirectoryError, match="pending confirmation: SNS cannot remove"):
        directory.remove(stack.sns, topic, BOB)
    with pytest.raises(DirectoryError, match="not a subscription confirmation link"):
        directory.confirm(stack.sns, "https://example.com/?Token=x")


def test_an_approver_who_unsubscribes_mid_request_is_noted_and_all_ends(stack: Stack) -> None:
    services = runtime.from_environment()
    stack.add_approvers([ALICE, BOB])
    arn = stack.start(request(ALICE, BOB, policy=Policy.ALL), add_approvers=False)
    approval_id = approval_id_of(stack.email(BOB, "Deploy").links[0])

    directory.remove(stack.sns, stack.resources.topic_arn, BOB)
    later = utcnow() + timedelta(minutes=5)  # past the worker's read
    assert sweep.sweep(services, later)["ended unreachable"] == 1
    report = stack.finish(arn)
    assert (report.status, report.error) == ("FAILED", "Approval.DeliveryFailed")
    assert (
        report.cause
        == f"can no longer be emailed: {BOB} (no subscription); policy 'all' can no longer be met"
    )
    approval = stack.approval(approval_id)
    assert approval.status is Status.CANCELLED
    kinds = [(e.kind, e.actor) for e in timeline(approval)]
    assert ("unreachable", BOB) in kinds
    assert kinds[-1] == ("cancelled", "system")
    # Nobody is left with it in their inbox.
    assert [e for who in (ALICE, BOB) for e in services.store.inbox_entries(approver_id(who))] == []


def test_an_approver_lost_under_first_response_is_noted_and_skipped_by_reminders(stack: Stack) -> None:
    services = runtime.from_environment()
    stack.add_approvers([ALICE, BOB])
    arn = stack.start(request(ALICE, BOB), add_approvers=False)
    link = stack.email(ALICE, "Deploy").links[0]
    stack.email(BOB, "Deploy")
    directory.remove(stack.sns, stack.resources.topic_arn, BOB)
    half_time = utcnow() + timedelta(hours=13)  # the 50% reminder is due
    done = sweep.sweep(services, half_time)
    assert (done["unreachable"], done["reminded"]) == (1, 1)
    reminders = [e.to for e in stack.emails() if e.subject.startswith("[Reminder]")]
    assert reminders == [ALICE]
    assert sweep.sweep(services, half_time + timedelta(minutes=5))["unreachable"] == 0  # noted once
    stack.click(link, "approve")
    assert stack.finish(arn).output["outcome"] == "approved"
