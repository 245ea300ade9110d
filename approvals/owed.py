"""Emailing their link to those owed one after the request was first emailed: backups who
joined by escalation, a sequence's next voter. Each is claimed in the store first, so that
the approval API (right after a vote) and the sweep (its fallback) never both send it."""

from __future__ import annotations

import logging
from datetime import datetime

from approvals.models import Approval
from approvals.notify import emails_for, publish
from approvals.runtime import Services

log = logging.getLogger(__name__)


def owed_links(services: Services, approval: Approval, now: datetime) -> tuple[list[str], str]:
    """Who is owed their link, and the API's URL to link to (nobody where no topic or URL is
    configured)."""
    owed = approval.owed_link(now)
    # The approval API cannot know its own URL at deploy time: it links where the worker did.
    api_url = approval.link_base or services.settings.api_url
    if not owed or not services.settings.topic_arn or not api_url:
        return [], api_url
    return owed, api_url


def send_owed_links(services: Services, approval: Approval, now: datetime) -> int:
    """Email each approver owed their link, once; returns how many went out. A failed email
    is given back, for the next sweep. Sends nothing where no topic is configured."""
    owed, api_url = owed_links(services, approval, now)
    if not owed:
        return 0
    # Written before the claim: once claimed, only a failed publish gives the links back.
    signing, needs_sign_in = services.keys.signing(), services.settings.needs_sign_in
    emails = emails_for(approval, api_url, signing, to=owed, needs_sign_in=needs_sign_in)
    if not services.store.claim_notices(approval.approval_id, owed, now):
        return 0
    try:
        # In their inboxes before the email that links there (idempotent, so a retry may repeat it).
        services.store.add_to_inbox(approval, owed)
        sent, failed = publish(services.sns, services.settings.topic_arn, emails)
    except BaseException:
        # Whatever stopped it, nobody may be left owed a link that a claim says went out.
        services.store.release_notices(approval.approval_id, owed)
        raise
    if failed:
        services.store.release_notices(approval.approval_id, failed)
        log.warning("links not emailed; the sweep retries", extra={"approval_id": approval.approval_id})
    return len(sent)
