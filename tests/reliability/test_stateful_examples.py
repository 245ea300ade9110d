"""What the model-based test (tests/reliability/test_stateful.py) found, each failure kept
as a plain test of its shrunk steps, on moto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from approvals import bulk, bulkjob, decision, reassign, request
from approvals.inboxlinks import approver_id
from approvals.models import ApprovalRequest, Outcome, Policy, Reassignment, Status, Vote
from approvals.runtime import Services
from approvals.sweep import sweep
from tests.conftest import Stack, approval_id_of_message
from tests.reliability.faults import Hooks, SnsFaults

ANN, BEN, CAT, DAN = "ann@example.com", "ben@example.com", "cat@example.com", "dan@example.com"
OPERATOR = "oncall@example.com"


def test_a_redelivery_after_the_request_was_settled_emails_nobody_and_fills_no_inbox(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """The worker's first emails fail (a throttle), so its message comes back. Meanwhile an
    operator hands Ben's place to Cat, who is emailed, and Cat rejects by phone: the request
    is settled. The message's redelivery then has nothing left to do: it emails neither Dan
    nor anyone, and puts the settled request in nobody's inbox."""
    sns = SnsFaults(lambda call, _: "Throttling" if call == 0 else {}).install(hooks, services.sns)
    stack.add_approvers([CAT])
    arn = stack.start(
        ApprovalRequest(title="Settled first", approvers=[BEN, DAN], policy=Policy.ALL, requester=OPERATOR)
    )
    message = stack.queued_message()
    approval_id = approval_id_of_message(message)
    sent_at = datetime.fromtimestamp(int(message["Attributes"]["SentTimestamp"]) / 1000, UTC)
    with pytest.raises(request.RetryLater):
        request.handle_message(services, message["Body"], sent_at, sent_at)

    now = sent_at + timedelta(minutes=5)
    change = Reassignment.model_validate({"from": BEN, "to": CAT, "by": OPERATOR, "at": now})
    signing, config = services.keys.signing(), services.settings
    handed = reassign.reassign(services.store, services.directory, signing, approval_id, change)
    assert reassign.email_new_approver(
        services.store, services.sns, config.topic_arn, config.api_url, signing, handed, CAT
    )
    vote = Vote(approver=CAT, outcome=Outcome.REJECTED, comment="by phone", at=now, on_behalf_by=OPERATOR)
    recorded = decision.record(services.store, services.sfn, approval_id, vote)
    decision.leave_inboxes(services.store, recorded)
    assert recorded.approval.status is Status.REJECTED
    assert stack.finish(arn).output["outcome"] == "rejected"

    # Redelivered once the first attempt's claim has lapsed.
    later = now + timedelta(seconds=services.settings.claim_seconds + 1)
    assert request.handle_message(services, message["Body"], sent_at, later) is request.Handled.ENDED
    assert sns.published() == [CAT]
    for who in (BEN, CAT, DAN):
        assert list(services.store.inbox_entries(approver_id(who))) == [], who


def test_a_message_first_taken_after_its_request_expired_emails_nobody_and_the_sweep_ends_it(
    stack: Stack, services: Services
) -> None:
    """The worker takes a message only once its request's time is up (its queue was held
    up): it emails nobody and fills no inbox, as no link could be used; the approval is kept
    for the sweep, which ends the task still waiting (nothing waits past its links)."""
    arn = stack.start(ApprovalRequest(title="Too late", approvers=[BEN, DAN], requester=OPERATOR))
    message = stack.queued_message()
    approval_id = approval_id_of_message(message)
    sent_at = datetime.fromtimestamp(int(message["Attributes"]["SentTimestamp"]) / 1000, UTC)
    late = sent_at + timedelta(days=1, seconds=1)  # the default timeout, 24 h

    assert request.handle_message(services, message["Body"], sent_at, late) is request.Handled.ENDED
    assert stack.emails() == []
    for who in (BEN, DAN):
        assert list(services.store.inbox_entries(approver_id(who))) == [], who
    sweep(services, late)
    stored = services.store.get(approval_id)
    assert stored is not None
    assert stored.status is Status.EXPIRED
    assert stack.finish(arn).final_state == "Expired"


def test_the_sweep_reminds_nobody_of_a_request_their_all_matching_job_votes_in_it(
    stack: Stack, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dan confirms "approve all matching" for two requests that also wait on Ann: the
    confirmed POST votes one, a job the next sweep runs the other. That sweep is also when a
    reminder falls due: Ann is reminded (one email for both), Dan is not (his job votes first)."""
    asked = ApprovalRequest(
        title="Remind", approvers=[DAN, ANN], policy=Policy.ALL, requester=OPERATOR, remind_every_seconds=1800
    )
    for _ in range(2):
        stack.start(asked)
        message = stack.queued_message()
        sent_at = datetime.fromtimestamp(int(message["Attributes"]["SentTimestamp"]) / 1000, UTC)
        assert request.handle_message(services, message["Body"], sent_at, sent_at) is request.Handled.EMAILED
    now = sent_at + timedelta(minutes=1)
    monkeypatch.setattr(bulk, "MAX_VOTES", 1)  # one request a POST: the other is the job's
    dan = approver_id(DAN)
    form = {"all": "1", "decision": "approve", "asof": str(int(now.timestamp()))}
    selection = bulk.selected(services, dan, list(form.items()), now)
    choices = bulk.choices_from_form(selection.approval_ids, form)
    decided = bulkjob.decide_all(services, dan, choices, selection.rest, form, now)
    assert decided.job is not None
    monkeypatch.undo()

    sweep(services, sent_at + timedelta(seconds=1800))
    reminded = [email.to for email in stack.emails() if email.subject.startswith("[Reminder]")]
    assert reminded == [ANN]
