"""An approver's inbox: everything that waits on them, newest first, for the batch page
(``GET /i/<token>``) and the operators' ``approvals inbox``.

Reading it writes nothing. The entries (approvals.store.inbox) say what may wait on the
approver; each approval itself says whether it still does (its votes, a sequence's turn,
a reassignment, its expiry), so an entry left behind is skipped, not shown. Entries leave
as requests stop waiting (a vote, a settled request, a reassignment, a cancellation) and
the expired are not counted, so the entries are what waits, but for a removal that failed.

A page's calls: one Query of the approver's entries (one per MB of them: about 3,000), and
one BatchGetItem for the page's approvals (again only for as many more as it found no
longer waiting). Its count, "N matching", is the entries not yet expired under the filter,
less those the page itself found no longer waiting; its workflows, those of the entries.
``waiting`` and ``matching`` (the operators' list, and what "select all N matching"
selects) read every approval instead, 100 to a BatchGetItem, so that each is checked.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from approvals import inboxlinks
from approvals.decision import LINK_EXPIRED, SOMEONE_ELSE, Forbidden, Gone, Malformed, NotFound, SomeoneElse
from approvals.inboxlinks import InboxToken, approver_id
from approvals.links import ExpiredLink, ForgedLink, MalformedLink
from approvals.models import Approval, BulkProgress, Inbox, InboxItem
from approvals.runtime import Services
from approvals.settings import Settings
from approvals.signin import Session
from approvals.store import ApprovalStore, UnreadableItem, approval_from_item
from approvals.store.inbox import InboxEntry
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
    asking_sign_in: int  # how many of the ``total`` ask by themselves to be decided signed in


def waiting(store: ApprovalStore, owner: str, now: datetime) -> list[Waiting]:
    """Every approval waiting on the approver whose id is ``owner``, newest first."""
    return _still_waiting(store, owner, _unexpired(store, owner, now), now)


def _unexpired(store: ApprovalStore, owner: str, now: datetime) -> list[InboxEntry]:
    return [entry for entry in store.inbox_entries(owner) if entry.expires > now.timestamp()]


def _still_waiting(
    store: ApprovalStore, owner: str, entries: list[InboxEntry], now: datetime
) -> list[Waiting]:
    """The entries' approvals that still wait on the approver, in the entries' order."""
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
    """One page of the inbox, after ``cursor`` (a page's ``next_cursor``), of ``workflow``
    only if given. The approvals read are the page's own (and as many more as it finds no
    longer waiting, to fill it); the count and the workflows come from the entries alone
    (see the module's note)."""
    if cursor is not None and not CURSOR.match(cursor):
        raise BadCursor
    entries = _unexpired(store, owner, now)
    chosen = [e for e in entries if workflow is None or e.workflow == workflow]
    after = [e for e in chosen if cursor is None or e.order < cursor.replace("-", "#")]
    shown: list[Waiting] = []
    read = 0
    while len(shown) < size and read < len(after):
        wanted = after[read : read + size - len(shown)]
        read += len(wanted)
        shown += _still_waiting(store, owner, wanted, now)
    shown_ids = {w.approval.approval_id for w in shown}
    # Entries this page found no longer waiting: not counted.
    gone = [e for e in after[:read] if e.approval_id not in shown_ids]
    return InboxPage(
        items=[w.approval for w in shown],
        next_cursor=shown[-1].order.replace("#", "-") if shown and read < len(after) else None,
        approver=shown[0].approver if shown else next((e.approver for e in entries), None),
        total=len(chosen) - len(gone),
        workflows=sorted({e.workflow for e in entries}),
        asking_sign_in=sum(e.sign_in for e in chosen) - sum(e.sign_in for e in gone),
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


def sign_in_needed(shown: InboxPage, settings: Settings) -> int:
    """How many of the requests matching (on every page) must be decided signed in here."""
    return shown.total if settings.needs_sign_in("link") else shown.asking_sign_in


def signed_in(shown: InboxPage, opened: InboxToken, settings: Settings, session: Session | None) -> bool:
    """Whether this browser is signed in as the inbox's approver. Signed in as someone else
    while anything matching must be decided signed in, the inbox shows nothing (as a
    request's own page): :class:`SomeoneElse`, naming nobody."""
    if session is None:
        return False
    if approver_id(session.email) == opened.approver_id:
        return True
    if sign_in_needed(shown, settings):
        raise SomeoneElse(SOMEONE_ELSE)
    return False


def as_answer(
    shown: InboxPage,
    opened: InboxToken,
    workflow: str | None,
    settings: Settings,
    signed_in: bool,
    bulk_votes: list[BulkProgress] | None = None,
) -> Inbox:
    """The page as the API answers it in JSON (and as the HTML page shows it), with the
    approver's ``bulk_votes`` going on. What a request to be decided signed in says beyond
    its title is left out unless this browser is signed in as the approver (``signed_in``):
    the link alone proves nobody."""

    def item(approval: Approval) -> InboxItem:
        request = approval.request
        needs = settings.needs_sign_in(request.identity)
        hidden = needs and not signed_in
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
            sign_in=needs,
        )

    return Inbox(
        approver=shown.approver,
        link_expires_at=opened.expires_at,
        workflow=workflow,
        total=shown.total,
        workflows=shown.workflows,
        items=[item(approval) for approval in shown.items],
        next_cursor=shown.next_cursor,
        signed_in=signed_in,
        sign_in_needed=sign_in_needed(shown, settings),
        bulk_votes=bulk_votes or [],
    )
