"""An email claimed before it is sent (a backup's link, a sequence's next approver's) that
fails, however it fails, is given back for the next sweep, and the timeline does not say it
went; one failing email never stops a sweep. The failure here is the one the SDK raises
once its retries are spent: the connection could not be made."""

from __future__ import annotations

from datetime import timedelta

import pytest

from approvals import reassign, sweep
from approvals.models import Escalation, Reassignment, timeline, utcnow
from approvals.runtime import Services
from tests.conftest import Stack
from tests.integration.test_sequence import in_sequence
from tests.reliability.faults import CONNECTION_LOST, Hooks, SnsFaults
from tests.reliability.test_escalation_races import AFTER, emails_to, escalating

ALICE, BOB, LEAD, BOSS = "alice@example.com", "bob@example.com", "lead@example.com", "boss@example.com"
DAVE = "dave@example.com"


def emailed_in_timeline(stack: Stack, approval_id: str) -> list[str]:
    return [e.detail for e in timeline(stack.approval(approval_id)) if e.kind == "emailed"]


def test_a_backups_email_lost_to_the_connection_is_given_back_and_the_sweep_goes_on(
    stack: Stack, services: Services, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    backups = {}
    for backup in (LEAD, BOSS):  # two requests, each escalating to its own backup
        _, approval_id, due = escalating(
            stack,
            services,
            monkeypatch,
            f"Escalate to {backup}",
            approvers=[ALICE],
            escalation=[Escalation(after_seconds=AFTER, approvers=[backup])],
        )
        backups[backup] = approval_id
    sns = SnsFaults(lambda call, _: CONNECTION_LOST if call == 0 else {}).install(hooks, services.sns)

    first = sweep.sweep(services, due)

    # The sweep's emails go out together (one PublishBatch): the lost call loses both, and
    # both are given back; the sweep went on all the same.
    assert (first["escalated"], first["emailed"]) == (2, 0)
    assert sorted(sns.calls[0].approvers) == sorted([LEAD, BOSS])
    for backup, approval_id in backups.items():
        assert backup not in stack.approval(approval_id).notified  # given back
        assert emailed_in_timeline(stack, approval_id) == [ALICE]  # the first email only
    assert sweep.sweep(services, due + timedelta(seconds=1))["emailed"] == 2
    for backup, approval_id in backups.items():
        assert emails_to(stack, f"Escalate to {backup}", backup) == 1
        assert emailed_in_timeline(stack, approval_id) == [ALICE, backup]


def test_the_next_approvers_email_lost_to_the_connection_is_sent_by_the_sweep(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    title = "Next in line, connection lost"
    _, approval_id = in_sequence(stack, title, [ALICE, BOB])
    link = stack.email(ALICE, title).links[0]
    SnsFaults(lambda call, _: CONNECTION_LOST if call == 0 else {}).install(hooks, services.sns)

    assert stack.click(link, "approve").status == 200  # the vote stands

    assert BOB not in stack.approval(approval_id).notified  # given back
    assert emailed_in_timeline(stack, approval_id) == [ALICE]
    assert sweep.sweep(services, utcnow())["emailed"] == 1
    assert emails_to(stack, title, BOB) == 1
    assert emailed_in_timeline(stack, approval_id) == [ALICE, BOB]


def test_a_handed_over_turns_email_that_failed_is_sent_by_the_sweep(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """Bob's turn, handed to Dave: the change notes Dave's link as sent (the sweep must not
    send it twice), and gives that back when the email fails, for the sweep to send."""
    title = "Handed over, email lost"
    _, approval_id = in_sequence(stack, title, [ALICE, BOB])
    link = stack.email(ALICE, title).links[0]
    assert stack.click(link, "approve").status == 200
    assert emails_to(stack, title, BOB) == 1
    stack.add_approvers([DAVE])
    change = Reassignment.model_validate({"from": BOB, "to": DAVE, "by": "oncall", "at": utcnow()})
    key = services.keys.signing()
    approval = reassign.reassign(services.store, services.directory, key, approval_id, change)
    assert DAVE in approval.notified
    SnsFaults(lambda call, _: CONNECTION_LOST).install(hooks, services.sns)

    settings = services.settings
    assert not reassign.email_new_approver(
        services.store, services.sns, settings.topic_arn, settings.api_url, key, approval, DAVE
    )

    assert DAVE not in stack.approval(approval_id).notified  # given back
    hooks.remove_all()
    assert sweep.sweep(services, utcnow())["emailed"] == 1
    assert sweep.sweep(services, utcnow())["emailed"] == 0
    assert emails_to(stack, title, DAVE) == 1
