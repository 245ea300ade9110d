"""An approver's "all N matching" vote beyond one POST's worth: the confirmed POST decides the
first bulk.MAX_VOTES at once and leaves the rest to the sweep, so that deciding a thousand
requests takes the approver three HTTP requests (the inbox, the confirmation, the confirmed
POST) rather than one more per hundred.

The confirmed POST records a job (approvals.store.bulkjob): what waited when the approver
confirmed, the decision and the comment. Each sweep takes the due jobs up and votes their
items a batch at a time with exactly the votes the POST makes (bulk.decide_many: each its
own conditional write under all of its item's rules, each settled task answered once), so a
request decided meanwhile by a click, or expired by the sweep, gets its result as it would
from the POST. A checkpoint after each batch notes how far the job got; a sweep that dies
midway leaves the rest to the next once its lease runs out, which votes the unfinished batch
again: what the dead sweep had voted is then "already decided", nothing is voted twice.

The votes are proven as the confirmation was. Signed in as the approver when they
confirmed, the job keeps that sign-in (the verified address and issuer, and when: never a
token) and its votes record it as the POST's do, each judged against its own request's rule
as the POST's are: the approver proved who they were when they confirmed, and the job
applies that confirmation (while the deployment still signs in with that issuer). Else by
the link: a request that must be decided signed in gets ``sign_in_required`` (decided on its
own page or signed in). One whose fields want answers gets ``needs_answers`` (the
confirmation asks only the first batch's).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from approvals import bulk
from approvals.bulk import Choice, ItemResult
from approvals.inboxlinks import approver_id
from approvals.models import BulkProgress, Outcome, utcnow
from approvals.runtime import Services
from approvals.signin import Session
from approvals.store import ApprovalStore, BulkJob
from approvals.store.bulkjob import SignInProof, job_key

log = logging.getLogger(__name__)

# Whoever votes a job holds it this long past each batch's start: longer than a batch can
# take, as long as the sweeper may run (2 minutes), so a dead sweep's job waits no longer.
HOLD = timedelta(minutes=2)
# Batches a sweep votes of one job: 1,000 votes, about 40 s of the sweeper's 2 minutes in AWS
# (a conditional update and a SendTaskSuccess each). A larger job goes on at the next sweep.
BATCHES_PER_SWEEP = 10
MAX_ITEMS = 10_000  # what one job takes; beyond it, "all matching" is chosen again afterwards
SHOWN_FOR = timedelta(hours=1)  # how long the inbox shows a finished job
LISTED_FOR = timedelta(days=1)  # how far back the inbox looks for jobs, finished or not


@dataclass(frozen=True)
class Decided:
    """A confirmed bulk vote: what the POST decided itself, and the job that decides the rest."""

    results: list[ItemResult]  # empty for a double submit: the first one's job decides them
    job: BulkJob | None


def confirmation(form: Mapping[str, str], now: datetime) -> str:
    """What makes a confirmation the same one, posted twice: its moment (``asof``, which the
    confirmation page carries; else now, as bulk.selected reads it), filter and decision."""
    asof = form.get("asof") or str(int(now.timestamp()))
    what = "\n".join([asof, form.get("workflow", ""), form.get("decision", "")])
    return hashlib.sha256(what.encode()).hexdigest()[:32]


def decide_all(
    services: Services,
    owner: str,
    choices: Sequence[Choice],
    rest: Sequence[str],
    form: Mapping[str, str],
    now: datetime,
    session: Session | None = None,
) -> Decided:
    """Decide ``choices`` (at most bulk.MAX_VOTES) now and leave ``rest`` (the ids after them)
    to a job the sweep runs, unless this confirmation has one already (a double submit)."""
    if not rest:
        return Decided(bulk.decide_many(services, owner, choices, now, session), None)
    # A comment to fix is refused before the job is written; the job keeps it as recorded.
    first = choices[0]
    comment = bulk.check_comments(services, choices)[first.approval_id]
    ids = [*(choice.approval_id for choice in choices), *rest][:MAX_ITEMS]
    # Someone else's session proves nothing of the approver: the job's votes go by the link.
    proof = (
        SignInProof(session.email, session.issuer, now)
        if session is not None and approver_id(session.email) == owner
        else None
    )
    wanted = BulkJob(
        key=job_key(owner, confirmation(form, now)),
        owner=owner,
        outcome=first.outcome,
        comment=comment,
        workflow=form.get("workflow") or None,
        confirmed_at=now,
        count=len(ids),
        done=0,
        counts={},
        finished_at=None,
        proof=proof,
    )
    job, lease = services.store.start_job(wanted, ids, now + HOLD)
    if not lease:
        log.info("bulk vote already confirmed", extra={"job": job.key})
        return Decided([], job)
    results = bulk.decide_many(services, owner, choices, now, session)
    counts = Counter(item.result.value for item in results)
    try:
        services.store.checkpoint_job(job.key, lease, len(choices), counts, now, now)  # due at once
    except Exception:
        # The votes are in: the sweep takes the job up once the hold runs out, from the start.
        log.exception("bulk job not advanced; the sweep resumes it", extra={"job": job.key})
    return Decided(results, replace(job, done=len(choices), counts=counts))


def run_due(services: Services, now: datetime) -> Counter[str]:
    """Vote the jobs due (the sweep's part): up to BATCHES_PER_SWEEP batches of each."""
    done: Counter[str] = Counter()
    for job in services.store.due_jobs(now):
        lease = services.store.take_job(job.key, now, now + HOLD)
        if lease is None:
            continue  # another sweep took it
        try:
            done["bulk voted"] += _run(services, job, lease, now)
        except Exception:
            log.exception("bulk job stopped; the next sweep resumes it", extra={"job": job.key})
            done["failed"] += 1
    return done


def _run(services: Services, job: BulkJob, lease: str, now: datetime) -> int:
    """Vote the job's next batches under ``lease``; how many items were voted."""
    started = utcnow()
    position, counts = job.done, Counter(job.counts)
    signed_in = _trusted(services, job.proof)
    for batch in range(BATCHES_PER_SWEEP):
        moment = now + (utcnow() - started)  # the sweep's clock, moving on as the votes take time
        chunk = job.approval_ids[position : position + bulk.MAX_VOTES]
        choices = [Choice(approval_id, job.outcome, job.comment) for approval_id in chunk]
        results = bulk.decide_many(services, job.owner, choices, moment, signed_in) if choices else []
        position += len(chunk)
        counts.update(item.result.value for item in results)
        finished = position >= len(job.approval_ids)
        last = batch == BATCHES_PER_SWEEP - 1
        next_due = None if finished else moment if last else moment + HOLD
        if not services.store.checkpoint_job(job.key, lease, position, counts, moment, next_due):
            log.warning("bulk job taken over: its lease ran out", extra={"job": job.key})
            break
        if finished:
            break
    return position - job.done


def _trusted(services: Services, proof: SignInProof | None) -> SignInProof | None:
    """The job's sign-in, while the deployment signs in with its issuer: as a session
    cookie from another issuer, one from an issuer no longer trusted proves nothing."""
    provider = services.provider
    if proof is None or provider is None or proof.issuer != provider.issuer:
        return None
    return proof


def progress(store: ApprovalStore, owner: str, now: datetime) -> list[BulkProgress]:
    """The approver's jobs going on, and those finished within SHOWN_FOR, newest first."""
    return [
        progress_of(job)
        for job in store.jobs_of(owner, now - LISTED_FOR)
        if job.finished_at is None or job.finished_at >= now - SHOWN_FOR
    ]


def progress_of(job: BulkJob) -> BulkProgress:
    return BulkProgress(
        decision="approve" if job.outcome is Outcome.APPROVED else "reject",
        workflow=job.workflow,
        confirmed_at=job.confirmed_at,
        count=job.count,
        decided=job.done,
        remaining=job.count - job.done,
        counts=dict(job.counts),
        finished_at=job.finished_at,
    )
