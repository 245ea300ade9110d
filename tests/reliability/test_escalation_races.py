"""Escalation under races and faults, against moto: the store's conditional writes decide.

An escalation racing the vote that would settle the request either comes first (the vote
then counts over the backups too, and does not settle) or comes second (and finds the
request settled, emailing nobody); either way the workflow gets exactly one answer. Two
sweeps escalating at once email each backup once; an email that fails goes out with the
next sweep."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest

from approvals import decision, sweep
from approvals.models import ApprovalRequest, Escalation, Outcome, Policy, Status, Vote, utcnow
from approvals.runtime import Services
from tests.conftest import POLL_INTERVAL, Stack, approval_id_of, eventually
from tests.reliability.faults import Hooks, SnsFaults, task_succeeded_events

ALICE, BOB, LEAD, BOSS = "alice@example.com", "bob@example.com", "lead@example.com", "boss@example.com"
AFTER = 1  # seconds: the sweep is set to run as often (the worker refuses steps closer than that)
SWEEPS = 4


def escalating(
    stack: Stack, services: Services, monkeypatch: pytest.MonkeyPatch, title: str, **fields: Any
) -> tuple[str, str, datetime]:
    """A request escalating after AFTER seconds, emailed; (execution, approval id, when due)."""
    monkeypatch.setattr(services.settings, "sweep_seconds", AFTER)
    request = ApprovalRequest(title=title, requester="ci@example.com", timeout_seconds=3600, **fields)
    arn = stack.start(request)
    approval_id = approval_id_of(stack.email(request.approvers[0], title).links[0])
    eventually(lambda: stack.approval(approval_id).emailed, what="the worker to finish")
    created = stack.approval(approval_id).created_at
    due = created + timedelta(seconds=AFTER)
    eventually(lambda: utcnow() >= due, what="the escalation to fall due")
    return arn, approval_id, due


def emails_to(stack: Stack, title: str, who: str) -> int:
    return sum(1 for e in stack.emails() if e.to == who and title in e.subject)


def approve(services: Services, approval_id: str, who: str) -> decision.Recorded:
    return decision.record(
        services.store, services.sfn, approval_id, Vote(approver=who, outcome=Outcome.APPROVED, at=utcnow())
    )


def _holding(hooks: Hooks, services: Services, write: str, until: Callable[[], bool]) -> None:
    """Hold the store's UpdateItem whose expression holds ``write`` until ``until()``."""

    def hold(params: dict[str, Any], **_: Any) -> None:
        if write in params.get("UpdateExpression", ""):
            eventually(until, what=f"the other write before {write}")

    hooks.on(services.store._db, "before-parameter-build.dynamodb.UpdateItem", hold)


@pytest.mark.parametrize("order", ["vote first", "escalation first", "as it comes"])
def test_an_escalation_racing_the_settling_vote_answers_the_workflow_once(
    stack: Stack, services: Services, hooks: Hooks, monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    """Policy all: Bob's approval settles it, unless the lead joined first (then the lead
    must approve too). Several sweeps and the vote start together; the store's writes are
    held so that each order is run for sure, and once as the threads happen to run."""
    title = f"Escalation races the vote, {order}"
    arn, approval_id, due = escalating(
        stack,
        services,
        monkeypatch,
        title,
        approvers=[ALICE, BOB],
        policy=Policy.ALL,
        escalation=[Escalation(after_seconds=AFTER, approvers=[LEAD])],
    )
    approve(services, approval_id, ALICE)
    attempted = threading.Event()  # a sweep is about to write the escalation
    if order == "vote first":

        def vote_recorded() -> bool:
            attempted.set()
            return BOB in stack.approval(approval_id).votes

        _holding(hooks, services, "escalation_write", vote_recorded)
        _holding(hooks, services, "votes.#approver", attempted.is_set)
    elif order == "escalation first":
        _holding(hooks, services, "votes.#approver", lambda: bool(stack.approval(approval_id).escalated))
    start = threading.Barrier(SWEEPS + 1)

    def race(index: int) -> Any:
        start.wait()
        return approve(services, approval_id, BOB) if index == 0 else sweep.sweep(services, due)

    with ThreadPoolExecutor(SWEEPS + 1) as pool:
        results = list(pool.map(race, range(SWEEPS + 1)))
    escalated = sum(done["escalated"] for done in results[1:])
    approval = stack.approval(approval_id)
    assert escalated == (1 if LEAD in approval.asked else 0)
    if order != "as it comes":
        assert escalated == (order == "escalation first")
    if escalated:
        # The vote counted over the lead too: it did not settle, and the lead was emailed once.
        assert results[0].delivery is decision.Delivery.NOT_SETTLED
        assert approval.status is Status.PENDING
        eventually(lambda: emails_to(stack, title, LEAD) == 1, what="the lead's email")
        assert approve(services, approval_id, LEAD).delivery is decision.Delivery.DELIVERED
    else:
        assert results[0].delivery is decision.Delivery.DELIVERED
        assert emails_to(stack, title, LEAD) == 0
    report = stack.finish(arn)
    assert (report.status, report.output["outcome"]) == ("SUCCEEDED", "approved")
    assert task_succeeded_events(stack.sfn, arn) == 1
    assert stack.approval(approval_id).status is Status.APPROVED


def test_two_sweeps_escalating_at_once_email_each_backup_once(
    stack: Stack, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    title = "Sweeps race to escalate"
    arn, approval_id, due = escalating(
        stack,
        services,
        monkeypatch,
        title,
        approvers=[ALICE],
        escalation=[Escalation(after_seconds=AFTER, approvers=[LEAD, BOSS])],
    )
    start = threading.Barrier(SWEEPS)

    def one_sweep(_: int) -> Any:
        start.wait()
        return sweep.sweep(services, due)

    with ThreadPoolExecutor(SWEEPS) as pool:
        results = list(pool.map(one_sweep, range(SWEEPS)))
    assert sum(done["escalated"] for done in results) == 1
    assert sum(done["emailed"] for done in results) == 2
    assert (emails_to(stack, title, LEAD), emails_to(stack, title, BOSS)) == (1, 1)

    approve(services, approval_id, BOSS)
    assert stack.finish(arn).status == "SUCCEEDED"
    assert task_succeeded_events(stack.sfn, arn) == 1


def test_a_backup_email_that_failed_goes_out_with_the_next_sweep(
    stack: Stack, services: Services, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    title = "Backup email fails once"
    _, approval_id, due = escalating(
        stack,
        services,
        monkeypatch,
        title,
        approvers=[ALICE],
        escalation=[Escalation(after_seconds=AFTER, approvers=[LEAD])],
    )
    sns = SnsFaults(lambda call, _: "InternalError" if call == 0 else {}).install(hooks, services.sns)
    first = sweep.sweep(services, due)
    assert (first["escalated"], first["emailed"]) == (1, 0)
    assert LEAD not in stack.approval(approval_id).notified  # given back
    assert sweep.sweep(services, due + timedelta(seconds=POLL_INTERVAL))["emailed"] == 1
    assert sweep.sweep(services, due + timedelta(seconds=1))["emailed"] == 0
    assert emails_to(stack, title, LEAD) == 1
    assert len(sns.calls) == 2
