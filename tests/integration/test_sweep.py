"""The sweep and the execution-ended handler against moto: reminders once each to those
who have not decided, expiry written down, pending approvals closed when their execution
ends. The sweep takes the time as an argument, so no test waits for a clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import worker.execution_ended
from approvals import runtime
from approvals.models import ApprovalRequest, Policy, Status, timeline
from approvals.sweep import sweep
from tests.integration.conftest import Stack, approval_id_of, lambda_context

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def pending(stack: Stack, title: str, approvers: list[str], **fields: Any) -> tuple[str, str]:
    """Start a request and wait for its first email; returns (execution, approval id)."""
    request = ApprovalRequest(title=title, approvers=approvers, requester="ci@example.com", **fields)
    arn = stack.start(request)
    link = stack.email(approvers[0], title).links[0]
    return arn, approval_id_of(link)


def reminders(stack: Stack, title: str) -> list[str]:
    return [e.to for e in stack.emails() if e.subject.startswith("[Reminder]") and title in e.subject]


def test_reminder_goes_once_to_each_approver_who_has_not_decided(stack: Stack) -> None:
    title = "Remind the slow ones"
    _, approval_id = pending(stack, title, [ALICE, BOB, CAROL], policy=Policy.ALL, timeout_seconds=4 * 3600)
    stack.click(stack.email(ALICE, title).links[0], "approve")
    approval = stack.approval(approval_id)
    services = runtime.from_environment()

    early = approval.created_at + timedelta(minutes=30)
    assert sweep(services, early)["reminded"] == 0
    assert reminders(stack, title) == []

    half_time = approval.created_at + timedelta(hours=2, seconds=1)
    assert sweep(services, half_time)["reminded"] == 2
    assert sorted(reminders(stack, title)) == [BOB, CAROL]
    assert sweep(services, half_time + timedelta(seconds=30))["reminded"] == 0  # sent once

    one_hour_before = approval.expires_at - timedelta(minutes=59)
    assert sweep(services, one_hour_before)["reminded"] == 2
    assert sorted(reminders(stack, title)) == [BOB, BOB, CAROL, CAROL]
    assert sweep(services, one_hour_before)["reminded"] == 0

    reminded = stack.approval(approval_id).reminded
    assert set(reminded) == {"50%", "1h"}
    kinds = [e.kind for e in timeline(stack.approval(approval_id))]
    assert kinds.count("reminded") == 2


def test_reminder_points_falling_due_together_send_one_reminder(stack: Stack) -> None:
    title = "Two points at once"
    # With two hours allowed, "50%" and "1h" before expiry are the same moment.
    _, approval_id = pending(stack, title, [ALICE], timeout_seconds=7200)
    approval = stack.approval(approval_id)
    services = runtime.from_environment()
    assert sweep(services, approval.created_at + timedelta(hours=1, seconds=1))["reminded"] == 1
    assert sweep(services, approval.created_at + timedelta(hours=1, seconds=30))["reminded"] == 0
    assert reminders(stack, title) == [ALICE]
    reminder = next(e for e in stack.emails() if e.subject.startswith("[Reminder]"))
    assert "still waits for your decision" in reminder.body
    assert reminder.links == stack.email(ALICE, title).links  # the same short link


def test_requester_listed_as_approver_gets_neither_link_nor_reminder(stack: Stack) -> None:
    title = "Self approval is off"
    request = ApprovalRequest(title=title, approvers=[ALICE, "ci@example.com"], requester="ci@example.com")
    stack.start(request)
    link = stack.email(ALICE, title).links[0]
    stack.drain()
    assert [e.to for e in stack.emails() if title in e.subject] == [ALICE]
    approval = stack.approval(approval_id_of(link))
    assert approval.excluded == ["ci@example.com"]
    sweep(runtime.from_environment(), approval.created_at + timedelta(hours=12, seconds=1))
    assert reminders(stack, title) == [ALICE]


def test_expiry_is_written_down_and_leaves_the_sweep(stack: Stack) -> None:
    _, approval_id = pending(stack, "Expire me", [ALICE], timeout_seconds=600)
    approval = stack.approval(approval_id)
    services = runtime.from_environment()
    done = sweep(services, approval.expires_at + timedelta(seconds=1))
    assert done["expired"] == 1
    closed = stack.approval(approval_id)
    assert closed.status is Status.EXPIRED
    assert [e.kind for e in timeline(closed)][-1] == "expired"
    assert approval_id not in {a.approval_id for a in services.store.open_approvals()}
    assert sweep(services, approval.expires_at + timedelta(seconds=2)) == {}


def execution_ended_event(execution_arn: str, status: str) -> dict[str, Any]:
    """What EventBridge delivers for a Step Functions execution status change."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2026-11-25T06:00:00Z",
        "region": "us-east-1",
        "resources": [execution_arn],
        "detail": {"executionArn": execution_arn, "status": status, "stopDate": 1795600000000},
    }


def test_execution_ended_event_cancels_pending_approvals_of_that_execution(stack: Stack) -> None:
    arn, approval_id = pending(stack, "Cancel me", [ALICE])
    _, other_id = pending(stack, "Leave me", [BOB])
    closed = worker.execution_ended.lambda_handler(
        execution_ended_event(arn, "ABORTED"), lambda_context("execution-ended")
    )
    assert closed == {"cancelled": 1}
    assert stack.approval(approval_id).status is Status.CANCELLED
    assert stack.approval(other_id).status is Status.PENDING
    page = stack.get(stack.email(ALICE, "Cancel me").links[0])
    assert page.status == 200
    assert page.buttons == []
    # A second event for the same execution finds nothing left to close.
    again = worker.execution_ended.lambda_handler(execution_ended_event(arn, "ABORTED"), lambda_context("e"))
    assert again == {}


def test_execution_ended_after_a_decision_changes_nothing(stack: Stack) -> None:
    arn, approval_id = pending(stack, "Decided", [ALICE])
    assert stack.click(stack.email(ALICE, "Decided").links[0], "approve").status == 200
    assert stack.finish(arn).final_state == "Approved"
    closed = worker.execution_ended.lambda_handler(
        execution_ended_event(arn, "SUCCEEDED"), lambda_context("e")
    )
    assert closed == {}
    assert stack.approval(approval_id).status is Status.APPROVED


def test_recurring_reminders_come_once_a_period_until_the_request_settles(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    title = "Remind every hour"
    _, approval_id = pending(
        stack, title, [ALICE, BOB], policy=Policy.ALL, timeout_seconds=10 * 3600, remind_every_seconds=3600
    )
    created = stack.approval(approval_id).created_at
    services = runtime.from_environment()
    monkeypatch.setattr(services.settings, "reminders", ())  # no points: the recurring ones alone

    assert sweep(services, created + timedelta(minutes=59))["reminded"] == 0
    assert sweep(services, created + timedelta(hours=1, seconds=1))["reminded"] == 2
    assert sweep(services, created + timedelta(hours=1, minutes=5))["reminded"] == 0  # once a period
    # A sweep that comes late sends one reminder for the periods it missed, not a burst.
    assert sweep(services, created + timedelta(hours=4, minutes=1))["reminded"] == 2
    assert sweep(services, created + timedelta(hours=4, minutes=59))["reminded"] == 0
    assert sorted(reminders(stack, title)) == [ALICE, ALICE, BOB, BOB]
    recurring = [e.detail for e in timeline(stack.approval(approval_id)) if e.kind == "reminded"]
    assert recurring == ["recurring reminder 4 (every 3600 s; the latest shown)"]

    stack.click(stack.email(ALICE, title).links[0], "approve")
    assert sweep(services, created + timedelta(hours=5, seconds=1))["reminded"] == 1  # Bob alone
    stack.click(stack.email(BOB, title).links[0], "approve")
    assert sweep(services, created + timedelta(hours=6, seconds=1))["reminded"] == 0  # settled
    assert sorted(reminders(stack, title)) == [ALICE, ALICE, BOB, BOB, BOB]


def test_a_recurring_reminder_and_a_reminder_point_due_together_send_one_email(stack: Stack) -> None:
    title = "Point and period at once"
    _, approval_id = pending(stack, title, [ALICE], timeout_seconds=4 * 3600, remind_every_seconds=7200)
    created = stack.approval(approval_id).created_at
    services = runtime.from_environment()
    assert sweep(services, created + timedelta(hours=2, seconds=1))["reminded"] == 1  # "50%" and period 1
    assert reminders(stack, title) == [ALICE]
    approval = stack.approval(approval_id)
    assert (set(approval.reminded), approval.recurring_reminder) == ({"50%"}, 1)


def test_recurring_reminders_oftener_than_the_sweep_runs_are_refused_by_name(stack: Stack) -> None:
    """The sweep runs every 300 seconds by default (APPROVALS_SWEEP_SECONDS)."""
    arn = stack.start(
        ApprovalRequest(
            title="Remind every two minutes",
            approvers=[ALICE],
            requester="ci@example.com",
            remind_every_seconds=120,
        )
    )
    stack.drain()
    report = stack.finish(arn)
    assert (report.status, report.error) == ("FAILED", "Approval.InvalidRequest")
    assert report.cause == (
        "request.remind_every_seconds: at least 300 here, not 120:"
        " the sweep that sends reminders runs every 300 seconds"
    )
    assert stack.emails() == []
