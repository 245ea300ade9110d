"""An approver's inbox: everything that waits on them, newest first, for the batch page
(``GET /i/<token>``) and the operators' ``approvals inbox``.

Reading it writes nothing. The entries (approvals.store.inbox) say what may wait on the
approver; each approval itself says whether it still does (its votes, a sequence's turn,
a reassignment, its expiry), so an entry a decision left behind is skipped, not shown.
The calls: one Query of the approver's entries (a page per MB of them), then one
BatchGetItem per 100 entries not yet expired. The whole inbox is read for each page, so
that "select all N matching" counts exactly what waits and the filter lists only the
workflows that still wait.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from approvals import inboxlinks
from approvals.decision import LINK_EXPIRED, Forbidden, Gone, Malformed, NotFound
from approvals.inboxlinks import InboxToken, approver_id
from approvals.links import ExpiredLink, ForgedLink, MalformedLink
from approvals.models import Approval, BulkProgress, Inbox, InboxItem
from approvals.runtime import Services
from approvals.settings import Settings
from approvals.store import ApprovalStore, UnreadableItem, approval_from_item
from approvals.store.items import Item

log = logging.getLogger(__name__)

PAGE_SIZE = 50
# A place in the inbox: an entry's sort key (InboxEntry.order) with "-" for its "#", which a
# URL would take for the start of a fragment.
CURSOR = re.compile(r"^\d{10}-[0-9a-f]{32}$")


INBOX_REVOKED = (
    "This link was altered, or the keys that made it were retired. Open the link in the newest"
    " email that lists your requests."
)


class BadCursor(Malformed):
    """A page cursor that no page of ours gave out."""

    def __init__(self) -> None:
        super().__init__("This page of your requests does not exist. Open the link from your email again.")


@dataclass(frozen=True)
class Waiting:
    """One approval waiting on the approver, under the address it was asked at."""

    approval: Approval
    approver: str
    order: str  # its place in the inbox: the cursor after it


@dataclass(frozen=True)
class InboxPage:
    items: list[Approval]  # waiting on this approver, newest first
    next_cursor: str | None  # where the next page starts; None on the last page
    approver: str | None  # the address the items ask (None when nothing waits)
    total: int  # how many wait in all, with the page's filter: "select all N matching"
    workflows: list[str]  # the workflows something waits on this approver in, to filter by


def waiting(store: ApprovalStore, owner: str, now: datetime) -> list[Waiting]:
    """Every approval waiting on the approver whose id is ``owner``, newest first."""
    entries = [entry for entry in store.inbox_entries(owner) if entry.expires > now.timestamp()]
    items = store.get_many([entry.approval_id for entry in entries])
    found: list[Waiting] = []
    for entry in entries:
        item = items.get(entry.approval_id)
        approval = _readable(item) if item else None
        address = _asked_as(approval, owner, now) if approval else None
        if approval is not None and address is not None:
            found.append(Waiting(approval, address, entry.order))
    return found


def page(
    store: ApprovalStore,
    owner: str,
    now: datetime,
    workflow: str | None = None,
    cursor: str | None = None,
    size: int = PAGE_SIZE,
) -> InboxPage:
    """One page of the inbox, after ``cursor`` (a page's ``next_cursor``), of ``workflow`` only if given."""
    if cursor is not None and not CURSOR.match(cursor):
        raise BadCursor
    everything = waiting(store, owner, now)
    chosen = [w for w in everything if workflow is None or w.approval.workflow == workflow]
    after = [w for w in chosen if cursor is None or w.order < cursor.replace("-", "#")]
    shown = after[:size]
    return InboxPage(
        items=[w.approval for w in shown],
        next_cursor=shown[-1].order.replace("#", "-") if len(after) > size else None,
        approver=everything[0].approver if everything else None,
        total=len(chosen),
        workflows=sorted({w.approval.workflow for w in everything}),
    )


def matching(
    store: ApprovalStore,
    owner: str,
    now: datetime,
    workflow: str | None = None,
    asked_by: datetime | None = None,
) -> list[str]:
    """The ids of every approval waiting on the approver (of ``workflow`` only, if given;
    asked by ``asked_by`` only, if given), newest first: what "select all N matching" selects."""
    return [
        w.approval.approval_id
        for w in waiting(store, owner, now)
        if (workflow is None or w.approval.workflow == workflow)
        and (asked_by is None or w.approval.created_at <= asked_by)
    ]


def _asked_as(approval: Approval, owner: str, now: datetime) -> str | None:
    """The address ``owner`` is awaited at on this approval, or None if it no longer waits on them."""
    return next((who for who in approval.waiting_on(now) if approver_id(who) == owner), None)


def _readable(item: Item) -> Approval | None:
    try:
        return approval_from_item(item)
    except UnreadableItem as unreadable:  # one bad item must not hide the others
        log.error("approval unreadable", extra={"approval_id": unreadable.approval_id})
        return None


def open_inbox(services: Services, token: str, now: datetime) -> InboxToken:
    """The inbox an inbox link opens, or the page that says why not: a link mistyped (404),
    altered or made by retired keys (403), expired (410). Nothing is read but the keys."""
    try:
        inboxlinks.parse(token)
        keys = services.keys.holding(lambda ring: inboxlinks.made_by(ring, token))
        return inboxlinks.verify(keys, token, now)
    except MalformedLink:
        raise NotFound(
            "This link is incomplete or mistyped. Open the link from your email again, all of it."
        ) from None
    except ForgedLink:
        raise Forbidden(INBOX_REVOKED) from None
    except ExpiredLink:
        raise Gone(LINK_EXPIRED) from None


def as_answer(
    shown: InboxPage,
    opened: InboxToken,
    workflow: str | None,
    settings: Settings,
    bulk_votes: list[BulkProgress] | None = None,
) -> Inbox:
    """The page as the API answers it in JSON (and as the HTML page shows it), with the
    approver's ``bulk_votes`` going on. What a request to be decided signed in says beyond
    its title is left out: the link alone proves nobody."""

    def item(approval: Approval) -> InboxItem:
        request = approval.request
        hidden = settings.needs_sign_in(request.identity)
        return InboxItem(
            approval_id=approval.approval_id,
            title=request.title,
            requester=request.requester,
            workflow=approval.workflow,
            created_at=approval.created_at,
            expires_at=approval.expires_at,
            description="" if hidden else request.description,
            details={} if hidden else request.details,
            fields=[] if hidden else request.fields,
            policy=request.policy,
            sign_in=hidden,
        )

    return Inbox(
        approver=shown.approver,
        link_expires_at=opened.expires_at,
        workflow=workflow,
        total=shown.total,
        workflows=shown.workflows,
        items=[item(approval) for approval in shown.items],
        next_cursor=shown.next_cursor,
        bulk_votes=bulk_votes or [],
    )
