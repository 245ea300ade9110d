"""Escalation against moto: when a request is still unsettled after a step's after_seconds,
the sweep lets its backups vote and emails each their link once; the policy then counts
over everyone who may vote. The sweep takes the time as an argument, so no test waits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from approvals import directory, runtime
from approvals.models import ApprovalRequest, Escalation, Policy, Status, timeline
from approvals.sweep import sweep
from tests.conftest import Stack, approval_id_of, eventually

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
LEAD, BOSS = "lead@example.com", "boss@example.com"
HOUR = 3600


def pending(stack: Stack, title: str, approvers: list[str], **fields: Any) -> tuple[str, str]:
    """Start a request and wait until the worker has emailed it; (execution, approval id)."""
    request = ApprovalRequest(
        title=title, approvers=approvers, requester="ci@example.com", timeout_seconds=10 * HOUR, **fields
    )
    arn = stack.start(request)
    approval_id = approval_id_of(stack.email(approvers[0], title).links[0])
    eventually(lambda: stack.approval(approval_id).emailed, what="the worker to finish")
    return arn, approval_id


def emailed(stack: Stack, title: str) -> list[str]:
    return sorted(e.to for e in stack.emails() if title in e.subject)


def test_an_unsettled_request_asks_its_backups_who_may_then_decide(stack: Stack) -> None:
    title = "Escalate to the lead"
    arn, approval_id = pending(
        stack, title, [ALICE], escalation=[Escalation(after_seconds=HOUR, approvers=[LEAD])]
    )
    services = runtime.from_environment()
    created = stack.approval(approval_id).created_at

    assert sweep(services, created + timedelta(minutes=59))["escalated"] == 0
    assert emailed(stack, title) == [ALICE]
    done = sweep(services, created + timedelta(seconds=HOUR))
    assert (done["escalated"], done["emailed"]) == (1, 1)
    assert emailed(stack, title) == [ALICE, LEAD]
    again = sweep(services, created + timedelta(seconds=HOUR + 300))
    assert (again["escalated"], again["emailed"]) == (0, 0)  # once

    lead_link = stack.email(LEAD, title).links[0]
    page = stack.get(lead_link)
    assert "backup, asked" in page.body
    assert stack.click(lead_link, "approve", "covering for Alice").status == 200
    report = stack.finish(arn)
    assert report.status == "SUCCEEDED"
    assert [(v["approver"], v["outcome"]) for v in report.output["votes"]] == [(LEAD, "approved")]

    events = [(e.kind, e.detail) for e in timeline(stack.approval(approval_id))]
    assert ("escalated", f"step 1: asked {LEAD}") in events
    assert ("emailed", LEAD) in events


def test_a_settled_request_never_escalates(stack: Stack) -> None:
    title = "Settled before the lead"
    arn, approval_id = pending(
        stack, title, [ALICE], escalation=[Escalation(after_seconds=HOUR, approvers=[LEAD])]
    )
    stack.click(stack.email(ALICE, title).links[0], "approve")
    assert stack.finish(arn).status == "SUCCEEDED"
    created = stack.approval(approval_id).created_at
    assert sweep(runtime.from_environment(), created + timedelta(seconds=HOUR))["escalated"] == 0
    assert emailed(stack, title) == [ALICE]


def test_a_quorum_counts_over_approvers_and_backups_and_stays_reachable(stack: Stack) -> None:
    """Quorum 2 of 3: one rejection leaves it open, a second would end it; the backup who
    joined raises the count of rejections that ends it, so the quorum stays reachable."""
    title = "Quorum with a backup"
    arn, approval_id = pending(
        stack,
        title,
        [ALICE, BOB, CAROL],
        policy=Policy.QUORUM,
        quorum=2,
        escalation=[Escalation(after_seconds=HOUR, approvers=[LEAD])],
    )
    stack.click(stack.email(ALICE, title).links[0], "reject", "not yet")
    created = stack.approval(approval_id).created_at
    assert sweep(runtime.from_environment(), created + timedelta(seconds=HOUR))["escalated"] == 1
    assert stack.click(stack.email(BOB, title).links[0], "reject", "no").status == 200
    assert stack.approval(approval_id).status is Status.PENDING  # 2 of 4 rejected: 2 may still approve
    stack.click(stack.email(LEAD, title).links[0], "approve")
    stack.click(stack.email(CAROL, title).links[0], "approve")
    report = stack.finish(arn)
    assert (report.status, report.output["outcome"]) == ("SUCCEEDED", "approved")
    assert [v["approver"] for v in report.output["votes"]] == [ALICE, BOB, LEAD, CAROL]


def test_all_must_include_the_backups_who_joined(stack: Stack) -> None:
    title = "All with a backup"
    arn, approval_id = pending(
        stack,
        title,
        [ALICE, BOB],
        policy=Policy.ALL,
        escalation=[Escalation(after_seconds=HOUR, approvers=[LEAD])],
    )
    stack.click(stack.email(ALICE, title).links[0], "approve")
    created = stack.approval(approval_id).created_at
    sweep(runtime.from_environment(), created + timedelta(seconds=HOUR))
    stack.click(stack.email(BOB, title).links[0], "approve")
    assert stack.approval(approval_id).status is Status.PENDING  # the lead may still reject
    stack.click(stack.email(LEAD, title).links[0], "approve")
    report = stack.finish(arn)
    assert (report.status, report.output["outcome"]) == ("SUCCEEDED", "approved")


def test_steps_due_together_join_at_once_and_each_backup_is_emailed_once(stack: Stack) -> None:
    title = "Two steps, one late sweep"
    _, approval_id = pending(
        stack,
        title,
        [ALICE],
        escalation=[
            Escalation(after_seconds=HOUR, approvers=[LEAD]),
            Escalation(after_seconds=2 * HOUR, approvers=[BOSS]),
        ],
    )
    created = stack.approval(approval_id).created_at
    done = sweep(runtime.from_environment(), created + timedelta(seconds=3 * HOUR))
    assert (done["escalated"], done["emailed"]) == (2, 2)
    assert emailed(stack, title) == [ALICE, BOSS, LEAD]
    assert set(stack.approval(approval_id).escalated) == {0, 1}


def test_a_backup_who_cannot_be_emailed_is_refused_with_the_request(stack: Stack) -> None:
    request = ApprovalRequest(
        title="Unknown backup",
        approvers=[ALICE],
        requester="ci@example.com",
        escalation=[Escalation(after_seconds=HOUR, approvers=["nobody@example.com"])],
    )
    stack.add_approvers([ALICE])
    arn = stack.start(request, add_approvers=False)
    stack.drain()
    report = stack.finish(arn)
    assert (report.status, report.error) == ("FAILED", "Approval.InvalidRequest")
    assert report.cause == "request.escalation: cannot be emailed: nobody@example.com (no subscription)"
    assert stack.emails() == []


def test_a_backup_lost_by_escalation_time_is_marked_unreachable_and_the_rest_are_asked(stack: Stack) -> None:
    title = "A backup left"
    _, approval_id = pending(
        stack, title, [ALICE], escalation=[Escalation(after_seconds=HOUR, approvers=[LEAD, BOSS])]
    )
    directory.remove(stack.sns, stack.resources.topic_arn, LEAD)
    created = stack.approval(approval_id).created_at
    done = sweep(runtime.from_environment(), created + timedelta(seconds=HOUR))
    assert (done["escalated"], done["unreachable"], done["emailed"]) == (1, 1, 1)
    assert emailed(stack, title) == [ALICE, BOSS]
    approval = stack.approval(approval_id)
    assert set(approval.unreachable) == {LEAD}
    assert approval.status is Status.PENDING  # first response: Alice or Boss may still decide
