"""What the worker does with one queue message: validate, store, email.

A request that can never succeed is answered at once through its task token, so no
execution waits a year for an email that will never come; anything that might succeed
on a retry is raised, so that the message goes back to the queue.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from enum import Enum
from itertools import pairwise
from typing import TYPE_CHECKING

from pydantic import ValidationError

from approvals import directory, shortlinks
from approvals.digest import ToEmail, email_batch
from approvals.links import approval_id_for
from approvals.models import (
    MAX_TASK_TOKEN,
    Approval,
    ApprovalRequest,
    Policy,
    QueueMessage,
    Status,
    describe_validation_error,
)
from approvals.policy import excluded_voters, unreachable
from approvals.runtime import Services
from approvals.settings import Settings
from approvals.statemachine import DELIVERY_FAILED, INVALID_REQUEST
from approvals.store import Claim
from approvals.tasks import TaskGone, fail

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

log = logging.getLogger(__name__)


class InvalidEnvelope(Exception):
    """The message is not one the state machine sends; it goes to the dead-letter queue."""


class RetryLater(Exception):
    """Something that may pass on another delivery: some emails failed, or another worker
    holds the message right now."""


FAILED_EXECUTION = "failed execution"  # what fail_undeliverable did with a dead letter


class Handled(Enum):
    EMAILED = "emailed"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    ENDED = "ended"  # stored, but it no longer waits: nobody is emailed


def parse_message(body: str) -> QueueMessage:
    try:
        return QueueMessage.model_validate_json(body)
    except ValidationError as error:
        problem = describe_validation_error(error, prefix="message")
    # JSON can escape what is not text (a lone surrogate, "\udc80"), which the strict parser
    # refuses outright; Python's reads it, so that a request holding such a value is still
    # answered through its token (as invalid) instead of waiting for its timeout.
    try:
        return QueueMessage.model_validate(json.loads(body))
    except (ValueError, ValidationError):
        raise InvalidEnvelope(problem) from None


def task_token_of(body: str) -> str | None:
    """The body's task token, if it has one a task could have issued, whatever else is wrong."""
    try:
        fields = json.loads(body)
    except ValueError:
        return None
    token = fields.get("task_token") if isinstance(fields, dict) else None
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TASK_TOKEN or not token.isprintable():
        return None
    return token


def _timeout_mismatch(request: ApprovalRequest, message: QueueMessage) -> str | None:
    if request.timeout_seconds == message.timeout_seconds:
        return None
    return (
        f"request.timeout_seconds: {request.timeout_seconds} differs from message.timeout_seconds"
        f" ({message.timeout_seconds}, the task's own timeout); the links must expire with the task"
    )


def _too_often(request: ApprovalRequest, sweep_seconds: int) -> str | None:
    every = request.remind_every_seconds
    if every is not None and every < sweep_seconds:
        return (
            f"request.remind_every_seconds: at least {sweep_seconds} here, not {every}:"
            f" the sweep that sends reminders runs every {sweep_seconds} seconds"
        )
    # Each escalation step must fall in a sweep of its own, or two would come as one.
    times = [0] + [step.after_seconds for step in request.escalation]
    for step, (earlier, later) in enumerate(pairwise(times)):
        if later - earlier < sweep_seconds:
            return (
                f"request.escalation.{step}.after_seconds: at least {sweep_seconds} after the step before"
                f" (or the request), not {later - earlier}: the sweep that escalates runs every"
                f" {sweep_seconds} seconds"
            )
    return None


def _backup_is_requester(request: ApprovalRequest, allow_self_approval: bool) -> str | None:
    if allow_self_approval or request.requester.strip().lower() not in request.backups:
        return None
    return "request.escalation: the requester cannot approve their own request, so cannot be its backup"


def _sign_in_unavailable(request: ApprovalRequest, settings: Settings) -> str | None:
    if not settings.needs_sign_in(request.identity) or settings.sign_in_available:
        return None
    return (
        "request.identity: sign-in needs an OpenID Connect provider, and this deployment has none"
        " (deploy it with -c oidcIssuer=... -c oidcClientId=...)"
    )


def handle_message(services: Services, body: str, sent_at: datetime, now: datetime) -> Handled:
    """Handle one message alone: claim it, then email its approvers."""
    claimed = claim_message(services, body, sent_at, now)
    if isinstance(claimed, Handled):
        return claimed
    if email_batch(services, [claimed], now):
        raise RetryLater("emails failed to publish")
    return Handled.EMAILED


def claim_message(services: Services, body: str, sent_at: datetime, now: datetime) -> Handled | ToEmail:
    """Validate and claim one message; what is left is to email it (approvals.digest), with
    the others of its batch. ``sent_at`` is when the state machine queued it (its timeout's
    start).

    A body with a usable task token is answered through it when anything else is wrong (a
    hand-written Task without ``timeout_seconds``, say), naming the field, at once.
    """
    try:
        message = parse_message(body)
    except InvalidEnvelope as error:
        token = task_token_of(body)
        if token is None:
            raise
        return _invalid(services, token, approval_id_for(token), str(error))
    approval_id = approval_id_for(message.task_token)
    fields = message.request
    if isinstance(fields, dict) and "timeout_seconds" not in fields:
        fields = {**fields, "timeout_seconds": message.timeout_seconds}  # the links expire with the task
    try:
        request = ApprovalRequest.model_validate(fields)
    except ValidationError as error:
        return _invalid(services, message.task_token, approval_id, describe_validation_error(error))
    if problem := _timeout_mismatch(request, message):
        return _invalid(services, message.task_token, approval_id, problem)

    settings = services.settings
    excluded = excluded_voters(request, settings.allow_self_approval)
    if problem := (
        unreachable(request, excluded)
        or _backup_is_requester(request, settings.allow_self_approval)
        or _too_often(request, settings.sweep_seconds)
        or _sign_in_unavailable(request, settings)
    ):
        return _invalid(services, message.task_token, approval_id, problem)
    voters = [a for a in request.approvers if a not in excluded]
    approval = Approval(
        approval_id=approval_id,
        task_token=message.task_token,
        execution=message.execution,
        state=message.state,
        request=request,
        created_at=sent_at,
        expires_at=sent_at + timedelta(seconds=request.timeout_seconds),
        excluded=excluded,
        # Each voter's short link, stored as its hash (the requester gets no link); the
        # backups' too, for the escalation that may come (only joining lets them vote).
        short_links=shortlinks.bindings(services.keys.signing(), approval_id, voters + request.backups),
        link_base=settings.api_url if request.policy is Policy.SEQUENCE else "",
    )
    claim = services.store.claim(approval, now, settings.claim_seconds)
    if claim.claim is Claim.DONE:
        return Handled.DUPLICATE
    if claim.claim is Claim.BUSY:
        raise RetryLater("another delivery of this message is being handled")
    approval = claim.stored or approval  # a retry keeps the expiry first stored
    # Settled, expired or cancelled before its emails went out (they failed, and a place
    # handed over was decided by phone meanwhile; or the message came after its time): a
    # link would open a closed request. The sweep ends what is stored and still open.
    if approval.status_at(now) is not Status.PENDING:
        return Handled.ENDED
    # SNS drops, without a word, what no confirmed filtered subscription takes. Checked once
    # the claim says nothing was emailed yet: a duplicate of a request already emailed must
    # not fail it because an approver has left since (the sweep looks after that). Backups
    # too: an escalation must not find, hours later, that nobody can receive it.
    if cannot_email := services.directory.unreachable(approval.voters + request.backups, now):
        return _cannot_email(services, approval, cannot_email, now)
    # Nobody gets a link they may not use (that also keeps the requester from voting), nor
    # before their turn: a sequence emails its first voter only.
    return ToEmail(approval, [a for a in approval.first_asked if a not in claim.sent_to])


def _cannot_email(
    services: Services, approval: Approval, cannot_email: dict[str, str], now: datetime
) -> Handled:
    """Refuse a request naming approvers SNS cannot email; its record says who and why."""
    if services.store.mark_unreachable(approval, cannot_email, now):
        services.store.close(approval.approval_id, Status.CANCELLED, now)
    backups = set(approval.request.backups)
    by_field = {
        "request.approvers": {a: why for a, why in cannot_email.items() if a not in backups},
        "request.escalation": {a: why for a, why in cannot_email.items() if a in backups},
    }
    cause = "; ".join(directory.describe(lost, field) for field, lost in by_field.items() if lost)
    return _invalid(services, approval.task_token, approval.approval_id, cause)


def _invalid(services: Services, task_token: str, approval_id: str, cause: str) -> Handled:
    """Answer a request that can never succeed, at once, naming what is wrong."""
    log.warning("invalid request", extra={"approval_id": approval_id, "cause": cause})
    try:
        fail(services.sfn, task_token, INVALID_REQUEST, cause)
    except TaskGone:
        log.info("execution no longer waits", extra={"approval_id": approval_id})
    return Handled.INVALID


def fail_undeliverable(sfn: SFNClient, body: str) -> str:
    """Fail the execution behind a dead letter with ``Approval.DeliveryFailed``.

    A body without a task token belongs to no execution; it is logged (by size only, it
    is not ours to print) and dropped, since keeping it would only recirculate it.
    """
    token = task_token_of(body)
    if token is None:
        log.error("dead letter is not an approval message", extra={"size": len(body)})
        return "dropped"
    try:
        fail(
            sfn,
            token,
            DELIVERY_FAILED,
            "The approval request could not be delivered to its approvers after several attempts.",
        )
    except TaskGone:
        return "already closed"
    return FAILED_EXECUTION
