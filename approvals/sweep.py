"""The periodic sweep: what no single request or click can do by itself.

- first votes the rest of each approver's "all matching" vote (approvals.bulkjob), a batch
  at a time, so that what a job votes is neither reminded nor escalated below (a request
  whose time ran out refuses the job's vote as it would a click's);
- closes approvals whose time ran out, answering a task that still waits with
  ``Approval.Expired`` (a hand-written Task may wait longer than its links last);
- notes approvers awaited who can no longer be emailed (unsubscribed) and, when the policy
  can then no longer be met, ends the request with ``Approval.DeliveryFailed``;
- sends each reminder once to the approvers who have not decided (and can be emailed),
  and a request's recurring reminder once a period (``remind_every_seconds``);
- escalates: once a step's ``after_seconds`` have passed, its backups join the voters, and
  each is emailed their link once; a sequence's next voter gets theirs here if the approval
  API could not send it right after the vote;
- delivers decisions whose first delivery failed (safe to repeat: one answer per token);
- closes approvals whose execution stopped (the local stack asks Step Functions; in AWS
  an EventBridge rule on execution status calls :func:`close_for_execution` instead);
- tells each requester who is in the approver directory how their ended request came out
  (approvals.requester).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from approvals import directory
from approvals.bulkjob import run_due
from approvals.decision import TooLate, deliver
from approvals.digest import SweepEmails, send_due_digests
from approvals.models import Approval, Status, recurring_reminder_due, reminder_time
from approvals.owed import owed_links
from approvals.policy import can_still_be_approved
from approvals.requester import tell_requesters
from approvals.runtime import Services
from approvals.statemachine import DELIVERY_FAILED, EXPIRED
from approvals.store import ApprovalStore, UnreadableItem
from approvals.store.inbox import Entry, every_entry
from approvals.tasks import TaskGone, fail

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

log = logging.getLogger(__name__)


def close_for_execution(store: ApprovalStore, execution_arn: str, now: datetime) -> Counter[str]:
    """The execution ended: its approvals still pending are expired or cancelled."""
    closed: Counter[str] = Counter()
    ended: list[Entry] = []
    for approval in store.for_execution(execution_arn):
        if isinstance(approval, UnreadableItem):
            log_unreadable(approval)
        elif approval.status is Status.PENDING:
            status = Status.EXPIRED if now >= approval.expires_at else Status.CANCELLED
            if store.close(approval.approval_id, status, now):
                closed[status.value] += 1
                ended += every_entry(approval)
    store.leave_inboxes(ended)  # a fan-out's, 25 to a call
    return closed


def _check_reach(services: Services, approval: Approval, now: datetime) -> tuple[Approval, str | None]:
    """Note the approvers awaited who can no longer be emailed; end the request when its
    policy can then no longer be met. Returns the approval and what was done, if anything."""
    # Everyone undecided, not only those whose turn it is: a sequence whose third voter
    # has left can never be approved.
    awaited = [a for a in approval.undecided(now) if a not in approval.unreachable]
    lost = services.directory.unreachable(awaited, now) if awaited else {}
    if not lost:
        return approval, None
    marked = services.store.mark_unreachable(approval, lost, now)
    if marked is None:
        return approval, None
    if can_still_be_approved(marked, now):
        return marked, "unreachable"
    policy = marked.request.policy.value
    cause = f"can no longer be emailed: {directory.reasons(lost)}; policy '{policy}' can no longer be met"
    try:
        fail(services.sfn, marked.task_token, DELIVERY_FAILED, cause)
    except TaskGone:
        log.info("execution no longer waits", extra={"approval_id": marked.approval_id})
    if services.store.close(marked.approval_id, Status.CANCELLED, now):
        services.store.leave_inboxes(every_entry(marked))
    log.warning("approvers unreachable", extra={"approval_id": marked.approval_id, "cause": cause})
    return marked, "ended unreachable"


def _remind(services: Services, approval: Approval, now: datetime, emails: SweepEmails) -> None:
    """Claim one reminder for the approvers still awaited, for whatever reminder points, and
    recurring period, fell due since the last sweep (a late sweep sends one reminder, not
    a burst), and gather it into their email of this sweep. Those whose first email still
    waits in their digest are not reminded of it."""
    waiting = [
        a
        for a in approval.waiting_on(now)
        if a not in approval.unreachable and a not in approval.awaiting_digest
    ]
    due = [
        spec
        for spec in services.settings.reminders
        if spec not in approval.reminded
        and approval.created_at < reminder_time(spec, approval.created_at, approval.expires_at) <= now
    ]
    recurring = recurring_reminder_due(approval, now)
    if not (due or recurring) or not waiting:
        return
    if not services.store.claim_reminders(approval.approval_id, due, now, recurring):
        return
    store = services.store
    emails.add(approval, waiting, True, lambda _: store.release_reminders(approval, due, recurring))


def _owe_links(services: Services, approval: Approval, now: datetime, emails: SweepEmails) -> None:
    """Claim the links owed (a backup who joined, a sequence's next voter), gathered into
    their email of this sweep."""
    owed, _ = owed_links(services, approval, now)
    if owed and services.store.claim_notices(approval.approval_id, owed, now):
        store = services.store
        # In their inboxes before the email that links there (idempotent, so a retry may repeat it).
        store.add_to_inbox(approval, owed)
        emails.add(approval, owed, False, lambda failed: store.release_notices(approval.approval_id, failed))


def _escalate(services: Services, approval: Approval, now: datetime) -> tuple[Approval, int]:
    """Let the backups of every escalation step now due join the voters (claimed once);
    returns the approval and how many steps this sweep took."""
    steps = approval.escalations_due(now)
    if not steps:
        return approval, 0
    joined = services.store.escalate(approval, steps, now)
    if joined is None:
        return approval, 0
    log.info("escalated", extra={"approval_id": approval.approval_id, "steps": steps})
    return joined, len(steps)


def _expire_task(sfn: SFNClient, approval: Approval) -> None:
    """Nothing waits past its links: a task still waiting once they expired is answered."""
    try:
        fail(
            sfn,
            approval.task_token,
            EXPIRED,
            f"Nobody settled the request in {approval.request.timeout_seconds} seconds; its links expired.",
        )
    except TaskGone:
        return  # the usual case: the task's own timeout ended it first
    log.warning("answered a task that outlived its links", extra={"approval_id": approval.approval_id})


def _execution_running(sfn: SFNClient, execution_arn: str) -> bool:
    return sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING"


def sweep(services: Services, now: datetime, *, check_executions: bool = False) -> Counter[str]:
    """One pass over the open approvals; returns what it did, by kind."""
    done: Counter[str] = Counter()
    running: dict[str, bool] = {}
    emails = SweepEmails()
    # The approvers' "all matching" jobs first: what they vote is then neither reminded nor
    # escalated by this sweep (the approver confirmed it before it fell due).
    try:
        done.update(run_due(services, now))
    except Exception:  # the jobs could not be listed: the next sweep lists them again
        log.exception("bulk jobs not run; the next sweep retries")
        done["failed"] += 1
    for approval in services.store.open_approvals():
        if isinstance(approval, UnreadableItem):
            log_unreadable(approval)
            done["unreadable"] += 1
            continue
        try:
            _sweep_one(services, approval, now, done, emails, running if check_executions else None)
        except Exception:
            # One approval's fault (a call still failing after the SDK's retries, a bug) must
            # not keep the others from being swept: the next sweep tries it again.
            log.exception(
                "approval not swept; the next sweep retries", extra={"approval_id": approval.approval_id}
            )
            done["failed"] += 1
    try:
        done.update(emails.send(services))
        if digests := send_due_digests(services, now):
            done["digests"] += digests
    except Exception:
        # As for one approval: what failed is given back (or left waiting) for the next sweep,
        # and the requesters are still told.
        log.exception("sweep emails not sent; the next sweep retries")
        done["failed"] += 1
    if told := tell_requesters(services, now):
        done["requester told"] += told
    if done:
        log.info("sweep", extra=dict(done))
    return done


def log_unreadable(unreadable: UnreadableItem) -> None:
    """Say which item cannot be read and why, for an operator to mend; never what it holds."""
    log.error(
        "approval unreadable: left as it is",
        extra={"approval_id": unreadable.approval_id, "problem": unreadable.problem},
    )


def _sweep_one(
    services: Services,
    approval: Approval,
    now: datetime,
    done: Counter[str],
    emails: SweepEmails,
    running: dict[str, bool] | None,
) -> None:
    """Whatever one open approval needs now; ``running`` (the executions' status, read once
    each) when the sweep checks executions."""
    store = services.store
    if approval.status is not Status.PENDING:
        if approval.needs_redelivery(now):
            try:
                deliver(store, services.sfn, approval, repeat=True)
                done["redelivered"] += 1
            except TooLate:
                done["too late"] += 1
        return
    if running is not None:
        if approval.execution not in running:
            running[approval.execution] = _execution_running(services.sfn, approval.execution)
        if not running[approval.execution]:
            done.update(close_for_execution(store, approval.execution, now))
            return
    if now >= approval.expires_at:
        _expire_task(services.sfn, approval)
        if store.close(approval.approval_id, Status.EXPIRED, now):
            done["expired"] += 1
        return
    approval, steps = _escalate(services, approval, now)
    done["escalated"] += steps
    approval, reach = _check_reach(services, approval, now)
    if reach:
        done[reach] += 1
    if reach != "ended unreachable":
        _owe_links(services, approval, now, emails)
        _remind(services, approval, now, emails)
