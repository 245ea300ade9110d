"""One email per approver: the worker's batch, and the digests that wait for their window.

The worker claims each message of a batch on its own (approvals.request), then hands the
claimed approvals here: their emails are gathered by approver, one email each. A single
request gets its own approval email with its own short link; two or more, a digest listing
them with one link to the approver's inbox (approvals.inboxlinks). A request that opted out
(``digest: false``) gets its own email at once, always.

The window (``Settings.digest_seconds``): once an approver is emailed, the requests arriving
for them within the window wait in their digest (approvals.store.digest) and go together
when it closes, sent by the sweep or by the next batch that has something for them.

What holds: an approval is marked emailed only once each of its approvers has their email
or waits for it in a digest that is durably written (the same transaction, digest first),
so a redelivered message is never emailed twice and no request is dropped. A failed publish
fails only the approvals whose emails it carried; what did go out is remembered
(``sent_to``) for their retry.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from approvals.inboxlinks import inbox_link
from approvals.links import SigningKey
from approvals.models import Approval
from approvals.notify import (
    Email,
    NeedsSignIn,
    approval_email,
    approver_link,
    asks_sign_in,
    digest_email,
    publish_emails,
    reminder_email,
)
from approvals.runtime import Services
from approvals.store import DigestState, UnreadableItem
from approvals.store.digest import Write

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToEmail:
    """A claimed approval and the approvers it still owes their first email."""

    approval: Approval
    to: Sequence[str]


@dataclass
class _Outgoing:
    """One email and what it carries: its approvals; for an approver's digest (not an urgent
    request's own email), the waiting items that joined it and every id their digest held
    (those no longer waiting leave it too)."""

    approver: str
    email: Email
    approvals: list[Approval]
    digest: bool = False
    joined: list[str] = field(default_factory=list)
    cleared: Sequence[str] = ()


def compose(
    approver: str,
    approvals: Sequence[Approval],
    api_url: str,
    key: SigningKey,
    needs_sign_in: NeedsSignIn = asks_sign_in,
) -> Email:
    """The email for the approvals waiting on ``approver``: one request's own email, or a
    digest of several with one link to the approver's inbox."""
    if len(approvals) == 1:
        (approval,) = approvals
        link = approver_link(approval, approver, api_url, key)
        return approval_email(approval, approver, link, needs_sign_in)
    return _digest(approver, approvals, api_url, key, needs_sign_in)


def _digest(
    approver: str,
    approvals: Sequence[Approval],
    api_url: str,
    key: SigningKey,
    needs_sign_in: NeedsSignIn,
    reminder: bool = False,
) -> Email:
    # The link must open the inbox for as long as any item in it may still be decided: the
    # latest expiry. Items that expire sooner are simply no longer listed there by then.
    expires_at = max(approval.expires_at for approval in approvals)
    link = inbox_link(api_url, key, approver, expires_at)
    return digest_email(approver, approvals, link, reminder, needs_sign_in)


def email_batch(services: Services, claimed: Sequence[ToEmail], now: datetime) -> set[str]:
    """Email a worker batch's claimed approvals, one email per approver; returns the ids of
    the approvals to retry (whose emails failed)."""
    settings, store = services.settings, services.store
    urgent: list[tuple[str, Approval]] = []
    by_approver: dict[str, list[Approval]] = {}
    for item in claimed:
        for approver in item.to:
            if item.approval.request.digest:
                by_approver.setdefault(approver, []).append(item.approval)
            else:
                urgent.append((approver, item.approval))
    won, open_windows = _windows(services, list(by_approver), now) if settings.digest_seconds else ({}, {})
    deferred = {who: items for who, items in by_approver.items() if who in open_windows}
    key = services.keys.signing()
    outgoing = [
        _Outgoing(who, compose(who, [a], settings.api_url, key, settings.needs_sign_in), [a])
        for who, a in urgent
    ]
    outgoing += _digests(
        services,
        {who: items for who, items in by_approver.items() if who not in deferred},
        list(won.values()),
        _pending(services, list(won.values()), now),
    )
    sent, failed = _publish(services, outgoing)
    _give_back(services, won, [out for out in outgoing if out.email in failed], now)

    # The digests first: an approval is marked only once what it counts on is written.
    writes = [
        store.defer_write(open_windows[who], [a.approval_id for a in deferred[who]]) for who in deferred
    ]
    writes += _sent_writes(services, [out for out in outgoing if out.email in sent])
    lost = {(a.approval_id, out.approver) for out in outgoing if out.email in failed for a in out.approvals}
    retry: set[str] = set()
    for item in claimed:
        approval_id = item.approval.approval_id
        waits = [who for who in item.to if who in deferred and item.approval.request.digest]
        failed_to = [who for who in item.to if (approval_id, who) in lost]
        # Each approver emailed, or waiting for their digest, finds it in their inbox.
        writes += [store.inbox_put(item.approval, who) for who in item.to if who not in failed_to]
        if not failed_to:
            writes.append(store.emailed_write(approval_id, now, waits))
            continue
        retry.add(approval_id)
        done = [who for who in item.to if who not in failed_to and who not in waits]
        if done or waits:
            writes.append(store.sent_write(approval_id, done, waits))
    store.write_together(writes)
    log.info(
        "emailed a batch",
        extra={"emails": len(sent), "failed": len(failed), "deferred": sum(map(len, deferred.values()))},
    )
    return retry


def _windows(
    services: Services, approvers: Sequence[str], now: datetime
) -> tuple[dict[str, DigestState], dict[str, DigestState]]:
    """The approvers whose window this batch claimed (to email now, with what waits in
    their digest), and those whose window is open (their requests wait in it). Several
    approvers' digests are read first in one call, and only a closed window is claimed;
    a lone approver's is claimed at once (one call either way)."""
    store = services.store
    read = store.digest_states(approvers) if len(approvers) > 1 else {}
    won: dict[str, DigestState] = {}
    open_windows = {who: state for who, state in read.items() if state.window_open(now)}
    for who in approvers:
        if who in open_windows:
            continue
        claim = store.claim_window(who, now, services.settings.digest_seconds)
        (won if claim.won else open_windows)[who] = claim.state
    return won, open_windows


def send_due_digests(services: Services, now: datetime) -> int:
    """The sweep's part: send each digest whose window has closed; returns the emails sent.
    A digest whose window a worker claimed meanwhile is that worker's to send. A failed
    email leaves its items in the digest, and its window closed, for the next sweep."""
    store = services.store
    states = list(store.due_digests(now))
    for state in states:
        if not state.pending:
            store.forget_empty_digest(state.approver)
    waiting = [state for state in states if state.pending]
    pending = _pending(services, waiting, now)
    # A digest whose items all stopped waiting is emptied, and opens no window: nobody is emailed.
    writes = [store.cleared_write(s.approver, sorted(s.pending)) for s in waiting if not pending[s.approver]]
    claimed = [s for s in waiting if pending[s.approver]]
    claims = {
        s.approver: store.claim_window(s.approver, now, services.settings.digest_seconds) for s in claimed
    }
    outgoing = _digests(services, {}, [s for s in claimed if claims[s.approver].won], pending)
    sent, failed = _publish(services, outgoing)
    won = {who: claim.state for who, claim in claims.items() if claim.won}
    _give_back(services, won, [out for out in outgoing if out.email in failed], now)
    writes += _sent_writes(services, [out for out in outgoing if out.email in sent])
    store.write_together(writes)
    return len(sent)


def _give_back(
    services: Services, won: dict[str, DigestState], failed: Sequence[_Outgoing], now: datetime
) -> None:
    """The windows claimed for emails that failed close again: their retries go at once."""
    for who in dict.fromkeys(out.approver for out in failed if out.digest and out.approver in won):
        services.store.give_back_window(won[who], now)


def _publish(services: Services, outgoing: Sequence[_Outgoing]) -> tuple[list[Email], list[Email]]:
    return publish_emails(services.sns, services.settings.topic_arn, [out.email for out in outgoing])


def _digests(
    services: Services,
    batch: dict[str, list[Approval]],
    states: Sequence[DigestState],
    pending: dict[str, list[Approval]],
) -> list[_Outgoing]:
    """Each approver's email now: their batch's approvals, with what waits in their digest
    (``states``, whose windows are claimed) and still waits on them (``pending``). Each has
    something to send: a batch's approvals, or (the sweep's) a digest's still waiting."""
    settings = services.settings
    key = services.keys.signing()
    held = {state.approver: sorted(state.pending) for state in states}
    outgoing = []
    for who in dict.fromkeys([*batch, *held]):
        approvals = batch.get(who, [])
        in_batch = {a.approval_id for a in approvals}
        joining = [a for a in pending.get(who, []) if a.approval_id not in in_batch]
        everything = [*approvals, *joining]
        joined = [a.approval_id for a in joining]
        email = compose(who, everything, settings.api_url, key, settings.needs_sign_in)
        outgoing.append(_Outgoing(who, email, everything, True, joined, held.get(who, [])))
    return outgoing


def _sent_writes(services: Services, sent: Sequence[_Outgoing]) -> list[Write]:
    """For each digest sent: the items it held leave it (whether they went in the email or
    no longer wait), and the approvals that went no longer await it."""
    store = services.store
    writes: list[Write] = []
    for out in sent:
        if not out.digest or not out.cleared:
            continue
        writes.append(store.cleared_write(out.approver, out.cleared))
        writes += [store.digested_write(approval_id, out.approver) for approval_id in out.joined]
    return writes


def _pending(services: Services, states: Sequence[DigestState], now: datetime) -> dict[str, list[Approval]]:
    """The approvals waiting in these digests that still wait on their approver, by approver."""
    ids = {approval_id for state in states for approval_id in state.pending}
    if not ids:
        return {state.approver: [] for state in states}
    approvals = {a.approval_id: a for a in services.store.approvals(ids) if not isinstance(a, UnreadableItem)}
    return {
        state.approver: [
            approvals[i]
            for i in sorted(state.pending)
            if i in approvals and state.approver in approvals[i].waiting_on(now)
        ]
        for state in states
    }


Release = Callable[[list[str]], None]  # gives claims back: the approvers whose emails failed


@dataclass(frozen=True)
class _Owed:
    approval: Approval
    approvers: Sequence[str]
    reminder: bool
    release: Release


@dataclass
class SweepEmails:
    """The sweep's reminders and owed links (a backup who joined, a sequence's next voter),
    each claimed in the store first, gathered to go out as one email per approver per
    sweep: an item's own email when it is their only one, else a digest with their inbox
    link. An email that fails gives its items' claims back, for the next sweep."""

    owed: list[_Owed] = field(default_factory=list)

    def add(self, approval: Approval, approvers: Sequence[str], reminder: bool, release: Release) -> None:
        self.owed.append(_Owed(approval, approvers, reminder, release))

    def send(self, services: Services) -> Counter[str]:
        """Send them; returns the items emailed, as "reminded" and "emailed" (links)."""
        try:
            emails = self._compose(services)
            sent, failed = publish_emails(services.sns, services.settings.topic_arn, [e for e, _ in emails])
        except BaseException:
            # Whatever stopped it, nobody may be left owed an email that a claim says went out.
            for owed in self.owed:
                owed.release(list(owed.approvers))
            raise
        lost: dict[int, list[str]] = {}
        done: Counter[str] = Counter()
        for email, items in emails:
            for owed in items:
                if email in failed:
                    lost.setdefault(id(owed), []).append(email.to)
                else:
                    done["reminded" if owed.reminder else "emailed"] += 1
        for owed in self.owed:
            if id(owed) in lost:
                owed.release(lost[id(owed)])
        log.info("sweep emails", extra={"emails": len(sent), "failed": len(failed)})
        return done

    def _compose(self, services: Services) -> list[tuple[Email, list[_Owed]]]:
        settings, key = services.settings, services.keys.signing()
        by_approver: dict[str, list[_Owed]] = {}
        for owed in self.owed:
            for approver in owed.approvers:
                by_approver.setdefault(approver, []).append(owed)
        emails = []
        for approver, items in by_approver.items():
            if len(items) == 1 or not settings.api_url:
                emails += [(_own_email(services, owed, approver, key), [owed]) for owed in items]
                continue
            reminder = all(owed.reminder for owed in items)
            approvals = [owed.approval for owed in items]
            digest = _digest(approver, approvals, settings.api_url, key, settings.needs_sign_in, reminder)
            emails.append((digest, items))
        return emails


def _own_email(services: Services, owed: _Owed, approver: str, key: SigningKey) -> Email:
    # The approval API cannot know its own URL at deploy time: it links where the worker did.
    api_url = owed.approval.link_base or services.settings.api_url
    link = approver_link(owed.approval, approver, api_url, key)
    compose = reminder_email if owed.reminder else approval_email
    return compose(owed.approval, approver, link, services.settings.needs_sign_in)
