"""Recurring reminders under faults, against moto: each period's reminder goes out once,
whether the claim's reply is lost, the emails fail, or two sweeps run at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest

from approvals import sweep
from approvals.models import ApprovalRequest
from approvals.runtime import Services
from tests.conftest import Stack, approval_id_of
from tests.reliability.faults import Hooks, LostReplies, SnsFaults

ALICE = "alice@example.com"
EVERY = 3600


def waiting(
    stack: Stack, services: Services, monkeypatch: pytest.MonkeyPatch, title: str
) -> tuple[str, datetime]:
    """A request reminding every hour, with the deploy-wide points set apart; its id and
    when it came."""
    monkeypatch.setattr(services.settings, "reminders", ())
    stack.start(
        ApprovalRequest(
            title=title, approvers=[ALICE], requester="ci@example.com", timeout_seconds=10 * EVERY,
            remind_every_seconds=EVERY,
        )
    )  # fmt: skip
    approval_id = approval_id_of(stack.email(ALICE, title).links[0])
    return approval_id, stack.approval(approval_id).created_at


def reminders(stack: Stack) -> list[str]:
    return [e.to for e in stack.emails() if e.subject.startswith("[Reminder]")]


def test_a_recurring_reminder_claim_sent_twice_still_sends_the_reminder(
    stack: Stack, services: Services, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    approval_id, created = waiting(stack, services, monkeypatch, "Lost recurring reply")
    lost = LostReplies(
        hooks, services.store._db, "UpdateItem", lambda body: "recurring" in body.get("UpdateExpression", "")
    )
    assert sweep.sweep(services, created + timedelta(seconds=EVERY + 1))["reminded"] == 1
    assert lost.lost == 1
    assert reminders(stack) == [ALICE]
    assert stack.approval(approval_id).recurring_reminder == 1


def test_a_recurring_reminder_whose_email_failed_is_sent_by_the_next_sweep(
    stack: Stack, services: Services, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    approval_id, created = waiting(stack, services, monkeypatch, "Failed recurring email")
    sweep.sweep(services, created + timedelta(seconds=2 * EVERY + 1))  # period 2, sent
    sns = SnsFaults(lambda call, _: "InternalError" if call == 0 else {}).install(hooks, services.sns)

    assert sweep.sweep(services, created + timedelta(seconds=3 * EVERY + 1))["reminded"] == 0  # failed
    approval = stack.approval(approval_id)
    assert approval.recurring_reminder == 2  # given back: period 3 is due again
    assert sweep.sweep(services, created + timedelta(seconds=3 * EVERY + 60))["reminded"] == 1
    assert stack.approval(approval_id).recurring_reminder == 3
    assert reminders(stack) == [ALICE, ALICE]
    assert len(sns.calls) == 2


def test_two_sweeps_at_once_send_one_recurring_reminder(
    stack: Stack, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, created = waiting(stack, services, monkeypatch, "Two sweeps at once")
    due = created + timedelta(seconds=EVERY + 1)
    with ThreadPoolExecutor(4) as pool:
        sent = sum(done["reminded"] for done in pool.map(lambda _: sweep.sweep(services, due), range(4)))
    assert sent == 1
    assert reminders(stack) == [ALICE]
