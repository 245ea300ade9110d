"""The requester told the outcome: one email when their request ends, sent by the sweep.

Only a requester who is an address in the approver directory is told (SNS delivers to no
one else). The approval carries a sparse marker from the moment it is stored; the sweep
finds ended approvals by it, claims the email with a conditional write (so two sweeps send
one) and gives the claim back if the email fails, for the next sweep.
"""

from __future__ import annotations

import logging
from datetime import datetime

from approvals.models import Status
from approvals.notify import outcome_email, publish
from approvals.runtime import Services
from approvals.store import UnreadableItem

log = logging.getLogger(__name__)


def tell_requesters(services: Services, now: datetime) -> int:
    """Email each requester whose request has ended since the last sweep; how many were."""
    store = services.store
    told = 0
    for approval in store.to_tell():
        if isinstance(approval, UnreadableItem):
            log.error("approval unreadable: requester not told", extra={"approval_id": approval.approval_id})
            continue
        address = approval.request.requester_address
        if approval.status is Status.PENDING or address is None:
            continue  # not ended yet (expiry is written by the sweep first)
        if services.directory.unreachable([address], now):
            store.not_to_tell(approval.approval_id)
            continue
        if not store.claim_telling(approval.approval_id, now):
            continue
        _, failed = publish(services.sns, services.settings.topic_arn, [outcome_email(approval, address)])
        if failed:
            log.warning("requester not told; next sweep retries", extra={"approval_id": approval.approval_id})
            store.release_telling(approval.approval_id)
            continue
        told += 1
    return told
