"""What the approval API does: show a request to an approver, and record their decision.

Showing changes nothing (mail scanners open every link). Deciding checks the signed
fields, records the vote with one conditional update and, when that vote settles the
request, answers the workflow exactly once. A short link (approvals.shortlinks) takes the
place of the signed fields: the same conditional update checks that it is bound to the voter.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import parse_qs, urlsplit

from approvals import answers, links, shortlinks, signin
from approvals.models import (
    Approval,
    FieldSpec,
    Identity,
    Outcome,
    Policy,
    Status,
    Vote,
    email_address,
    utcnow,
)
from approvals.owed import send_owed_links
from approvals.runtime import Services
from approvals.settings import Settings
from approvals.signin import Session, SignedIn
from approvals.store import ApprovalStore, VoteRefusal, VoteRejected
from approvals.store.inbox import ended_by_vote, every_entry
from approvals.tasks import HistoryDenied, TaskGone, succeed, took_answer

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

log = logging.getLogger(__name__)


def _no_control(text: str) -> str:
    """The text without control characters (line breaks and tabs are prose)."""
    return "".join(c for c in text if unicodedata.category(c) != "Cc" or c in "\n\r\t")


APPROVAL_ID = re.compile(r"^[0-9a-f]{32}$")
# In bytes of UTF-8: every vote's comment goes into the decision (the task's result, in
# the execution's 256 KiB state beside the request) and into the table's 400 KB item.
COMMENT_BYTES = 1_000
NOT_ASKED = "This link was not issued to an approver of this request."
NO_APPROVAL = "There is no approval at this address."
LINK_EXPIRED = "This link has expired; the request can no longer be decided."
LINK_REVOKED = (
    "This link no longer works: the keys that made it were retired."
    " Open the link in the newest email about this request."
)


class Problem(Exception):
    """A request the API refuses, with the HTTP status and words for the person."""

    status = 400
    title = "Bad request"

    def __init__(self, message: str, approval: Approval | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.approval = approval


class Malformed(Problem):
    status, title = 400, "This link or form is incomplete"


class FormIncomplete(Malformed):
    """Something the approver fixes on the same page, which is shown again with the message."""

    title = "Please complete the form"

    def __init__(self, message: str, voter: Voter, comment: str, field: str = "") -> None:
        super().__init__(message)
        self.voter = voter
        self.comment = comment
        self.field = field  # the request's field to fix, if one


class Forbidden(Problem):
    status, title = 403, "This link is not valid"


class Unanswered(Malformed):
    """The request asks for answers to its fields, and the vote carried none."""


class SignInRequired(Problem):
    """The request must be decided signed in, and this browser is not signed in as the approver."""

    status, title = 401, "Please sign in"


class SomeoneElse(Problem):
    """Signed in, as another person than the approver the link was issued to. Names nobody:
    neither who is signed in beyond the person themself, nor the other approvers."""

    status, title = 403, "Signed in as someone else"


class SignInRefused(Problem):
    status, title = 403, "Sign-in refused"


class SignInUnavailable(Problem):
    status, title = 502, "Sign-in unavailable"


class NotFound(Problem):
    status, title = 404, "No such approval"


class Conflict(Problem):
    status, title = 409, "Already decided"


class NotYourTurn(Conflict):
    """A sequence's approver listed earlier has not yet approved."""

    title = "Not your turn yet"


class Gone(Problem):
    status, title = 410, "This approval is closed"


class Unreadable(Problem):
    """The approval's record no longer reads: a fault on our side, said plainly."""

    status, title = 500, "This request cannot be shown"

    def __init__(self) -> None:
        super().__init__(
            "Its record cannot be read: a fault on our side, which the operators have been told of."
            " The requester can ask them about it."
        )


class Reassigned(Gone):
    """The approver's place went to someone else: their link no longer works. Who it went to
    is not said: the old link may be read by anyone the old mailbox reaches."""

    title = "This request was reassigned"

    def __init__(self, approval: Approval) -> None:
        super().__init__(
            "An operator handed your place on this request to another approver:"
            " you no longer need to decide, and this link no longer works.",
            approval,
        )


class TooLate(Gone):
    """The workflow stopped waiting before the decision reached it: recorded as expired."""


class Delivery(Enum):
    DELIVERED = "delivered"  # the workflow has the decision
    PENDING = "pending"  # recorded; the workflow will be told by a retry
    NOT_SETTLED = "not_settled"  # recorded; other approvers still to decide


@dataclass(frozen=True)
class Voter:
    """Who decides on which approval, as their link (signed or short) names them."""

    approval_id: str
    approver: str
    token_hash: str = ""  # of the short link, whose binding to the approver the table checks


@dataclass(frozen=True)
class Viewing:
    approval: Approval
    approver: str


@dataclass(frozen=True)
class Recorded:
    approval: Approval
    vote: Vote
    delivery: Delivery


SIGN_IN_WHY = (
    "This request must be decided by its approver in person: sign in with your company account,"
    " as the address this link was sent to, and you come back to this page. The link alone,"
    " forwarded or read by a mail scanner, decides nothing."
)
SOMEONE_ELSE = (
    "You are signed in as someone other than the approver this link was issued to, so you cannot"
    " decide here. Sign out, then open the link again and sign in as the address it was sent to."
)


@dataclass(frozen=True)
class Proof:
    """How a vote is proven: the vote's ``proof`` and ``issuer``."""

    kind: Identity = "link"
    issuer: str | None = None


def proof(settings: Settings, identity: Identity, approver: str, signed_in: SignedIn | None) -> Proof:
    """How a vote by ``approver`` is proven: by sign-in when the sign-in (this browser's
    session, or the one a bulk job keeps) is the approver's, else by the link. Refused here
    when the request (``identity``) or the deployment needs sign-in and it is not theirs."""
    if signed_in is not None and signed_in.email == approver:
        return Proof("sign-in", signed_in.issuer)
    if settings.needs_sign_in(identity):
        if signed_in is not None:
            raise SomeoneElse(SOMEONE_ELSE)
        raise SignInRequired(SIGN_IN_WHY)
    return Proof()


def session(services: Services, cookie: str, now: datetime) -> Session | None:
    """The sign-in session this browser's cookie holds, if any (none where sign-in is not set up)."""
    if services.provider is None or not cookie:
        return None
    return signin.session_from(services.keys.verifying(""), cookie, services.provider.issuer, now)


def _provider(services: Services) -> signin.Provider:
    if services.provider is None:
        raise NotFound("Sign-in is not set up for these approvals.")
    return services.provider


def start_sign_in(services: Services, return_to: str, redirect_uri: str, now: datetime) -> signin.Started:
    """Where to send the browser to sign in, and the flow's sealed cookie. Writes nothing."""
    approver = parse_qs(urlsplit(return_to).query).get("approver", [""])[0]
    try:
        return signin.start(
            _provider(services), services.keys.signing(), return_to, approver, redirect_uri, now
        )
    except signin.SignInFailed as failed:
        raise SignInRefused(str(failed)) from None
    except signin.ProviderUnreachable as unreachable:
        log.warning("identity provider unreachable")
        raise SignInUnavailable(str(unreachable)) from None


def finish_sign_in(
    services: Services, cookie: str, query: dict[str, str], redirect_uri: str, now: datetime
) -> signin.Finished:
    provider = _provider(services)
    settings = services.settings
    try:
        return signin.finish(
            provider,
            services.keys.verifying(""),
            cookie,
            query,
            redirect_uri,
            now,
            settings.session_seconds,
            settings.oidc_email_claim,
        )
    except signin.SignInFailed as failed:
        log.info("sign-in refused", extra={"reason": str(failed)})
        raise SignInRefused(str(failed)) from None
    except signin.ProviderUnreachable as unreachable:
        log.warning("identity provider unreachable")
        raise SignInUnavailable(str(unreachable)) from None


def check_link(
    services: Services, approval_id: str, fields: dict[str, str], now: datetime
) -> links.LinkClaims:
    if not APPROVAL_ID.match(approval_id):
        raise NotFound(NO_APPROVAL)
    try:
        return links.verify(services.keys.verifying(fields.get("kid", "")), approval_id, fields, now)
    except links.MalformedLink as error:
        raise Malformed(f"{error}. Open the link from your email again.") from None
    except links.ForgedLink:
        raise Forbidden(
            "The link was altered or was not issued for you. Open the link from your email again."
        ) from None
    except links.ExpiredLink:
        raise Gone(LINK_EXPIRED) from None


def check_short_link(token: str) -> shortlinks.ShortLink:
    try:
        return shortlinks.parse(token)
    except shortlinks.MalformedToken:
        raise NotFound(
            "This link is incomplete or mistyped. Open the link from your email again, all of it."
        ) from None


def view(services: Services, approval_id: str, fields: dict[str, str], now: datetime) -> Viewing:
    claims = check_link(services, approval_id, fields, now)
    approval = services.store.view(approval_id, claims.approver, now)
    if approval is None:
        raise NotFound(NO_APPROVAL)
    return _viewing(approval, claims.approver)


def view_by_link(services: Services, token: str, now: datetime) -> Viewing:
    """The page of a short link. An unknown link and a link to an approval that does not
    hold it get the same answer: nothing tells whether the approval exists."""
    link = check_short_link(token)
    found = services.store.view_by_link(link.approval_id, link.token_hash, now)
    if found is None:
        raise NotFound(NO_APPROVAL)
    approval, approver = found
    if not _made_by_a_current_key(services, token, approver):
        raise Forbidden(LINK_REVOKED)
    if now >= approval.expires_at:
        raise Gone(LINK_EXPIRED)
    return _viewing(approval, approver)


def _made_by_a_current_key(services: Services, token: str, approver: str) -> bool:
    """A short link works while the current or the previous key makes it for its approver,
    as a signed link works while one of them verifies it: two rotations revoke it."""
    return shortlinks.made_by(
        services.keys.holding(lambda ring: shortlinks.made_by(ring, token, approver)), token, approver
    )


def _viewing(approval: Approval, approver: str) -> Viewing:
    if approval.reassigned_away(approver):
        raise Reassigned(approval)
    if approver not in approval.asked:
        raise Forbidden(NOT_ASKED)
    return Viewing(approval, approver)


def decide(
    services: Services, approval_id: str, form: dict[str, str], now: datetime, session: Session | None = None
) -> Recorded:
    claims = check_link(services, approval_id, form, now)
    return _decide(services, Voter(approval_id, claims.approver), form, now, session)


def decide_by_link(
    services: Services, token: str, form: dict[str, str], now: datetime, session: Session | None = None
) -> Recorded:
    """A vote from a short link's page: the form names the approver, and the vote's own
    conditional update takes it only if the link is bound to that approver."""
    link = check_short_link(token)
    # Anyone can post any form to a made-up link: the approver it names must be an address
    # before it is taken for a voter (and the vote's own model would refuse it with a fault).
    approver = email_address(form.get("approver", ""))
    if approver is None:
        raise Malformed("The form is incomplete. Open the link from your email again.")
    voter = Voter(link.approval_id, approver, link.token_hash)
    if not _made_by_a_current_key(services, token, approver):
        # Revoked if the table binds it to this approver; anything else the vote's own
        # condition refuses as it always did (a read only on this path, never on a vote).
        approval = services.store.get(link.approval_id)
        if approval is not None and approval.short_links.get(link.token_hash) == approver:
            raise Forbidden(LINK_REVOKED)
    return _decide(services, voter, form, now, session)


def form_again(services: Services, voter: Voter, now: datetime, session: Session | None = None) -> Approval:
    """The approval whose page is shown again with a form to fix (one read). The form is
    shown only as its page is: a short link's to the approver it is bound to, until expiry;
    a request that needs sign-in, to its approver signed in."""
    approval = services.store.get(voter.approval_id)
    if approval is None:
        raise NotFound(NO_APPROVAL)
    if voter.token_hash:
        if approval.short_links.get(voter.token_hash) != voter.approver:
            raise NotFound(NO_APPROVAL)
        if now >= approval.expires_at:
            raise Gone(LINK_EXPIRED)
    proof(services.settings, approval.request.identity, voter.approver, session)
    return approval


OUTCOMES = {"approve": Outcome.APPROVED, "reject": Outcome.REJECTED}  # the form's decision


class InvalidComment(ValueError):
    """A comment the approver must fix; ``kept`` is what of it the form shows again."""

    def __init__(self, message: str, kept: str) -> None:
        super().__init__(message)
        self.message = message
        self.kept = kept


def checked_comment(settings: Settings, outcome: Outcome, text: str) -> str:
    """The comment to record with a vote, or :class:`InvalidComment` saying what to fix."""
    comment = text.strip()
    if comment != _no_control(comment):
        raise InvalidComment(
            "The comment contains control characters; please retype it.", _no_control(comment)
        )
    if len(comment.encode()) > COMMENT_BYTES:
        raise InvalidComment(
            f"The comment is too long: at most {COMMENT_BYTES:,} bytes"
            " (1,000 Latin letters, about 330 Chinese or Japanese characters).",
            comment.encode()[:COMMENT_BYTES].decode(errors="ignore"),
        )
    if outcome is Outcome.REJECTED and not comment and settings.reject_needs_reason:
        raise InvalidComment("Say why you reject: a reason is required to reject.", comment)
    return comment


def _decide(
    services: Services, voter: Voter, form: dict[str, str], now: datetime, session: Session | None
) -> Recorded:
    # The deployment's rule is known here; a request's own, only to the vote's condition
    # (no read): a vote by link on a request that needs sign-in is refused by the update.
    proven = proof(services.settings, "link", voter.approver, session)
    outcome = OUTCOMES.get(form.get("decision", ""))
    if outcome is None:
        raise FormIncomplete("Choose Approve or Reject.", voter, form.get("comment", "").strip())
    try:
        comment = checked_comment(services.settings, outcome, form.get("comment", ""))
    except InvalidComment as invalid:
        raise FormIncomplete(invalid.message, voter, invalid.kept) from None
    # A form with no answers costs no read: the vote's condition then refuses it if the
    # request asks for some (the page always sends its fields, an unticked box as false).
    answered = any(key.startswith(answers.FORM_PREFIX) for key in form)
    specs = _field_specs(services.store, voter.approval_id) if answered else []
    try:
        data = answers.read(specs, form, outcome)
    except answers.InvalidAnswer as invalid:
        raise FormIncomplete(invalid.message, voter, comment, invalid.field) from None
    vote = Vote(
        approver=voter.approver,
        outcome=outcome,
        comment=comment,
        at=now,
        data=data,
        proof=proven.kind,
        issuer=proven.issuer,
    )
    recorded = cast_vote(
        services, voter.approval_id, vote, now, answers_checked=answered, token_hash=voter.token_hash
    )
    leave_inboxes(services.store, recorded)
    return recorded


def leave_inboxes(store: ApprovalStore, recorded: Recorded) -> None:
    """The request no longer waits on the voter (nor, once settled, on anyone): it leaves
    their inboxes, with one BatchWriteItem on the click's path, so that an inbox's entries
    are what waits. (A bulk vote removes its items' entries together: approvals.bulk.)"""
    store.leave_inboxes(ended_by_vote(recorded.approval, recorded.vote.approver))


def cast_vote(
    services: Services,
    approval_id: str,
    vote: Vote,
    now: datetime,
    *,
    answers_checked: bool = True,
    token_hash: str = "",
    sender_confirms: bool = False,
) -> Recorded:
    """Record an approver's vote (:func:`record`) and, when a sequence's turn passes,
    email the next voter their link."""
    recorded = record(
        services.store,
        services.sfn,
        approval_id,
        vote,
        answers_checked=answers_checked,
        token_hash=token_hash,
        sender_confirms=sender_confirms,
    )
    if recorded.delivery is Delivery.NOT_SETTLED and recorded.approval.request.policy is Policy.SEQUENCE:
        _email_next(services, recorded.approval, now)
    return recorded


def _email_next(services: Services, approval: Approval, now: datetime) -> None:
    """A sequence's next voter is emailed as soon as their turn comes (a claim and a publish
    on the click's path); if that fails, the sweep sends it. The claim makes it go once."""
    try:
        send_owed_links(services, approval, now)
    except Exception:
        log.exception(
            "next approver not emailed; the sweep will", extra={"approval_id": approval.approval_id}
        )


def _field_specs(store: ApprovalStore, approval_id: str) -> list[FieldSpec]:
    approval = store.get(approval_id)
    if approval is None:
        raise NotFound(NO_APPROVAL)
    return approval.request.fields


def record(
    store: ApprovalStore,
    sfn: SFNClient,
    approval_id: str,
    vote: Vote,
    *,
    answers_checked: bool = True,
    token_hash: str = "",
    sender_confirms: bool = False,
) -> Recorded:
    """Record a vote already authorised (by a signed link, or an operator), or one whose
    short link (``token_hash``) the update itself checks, and settle. ``sender_confirms``:
    the caller records a delivery itself (see :func:`deliver`)."""
    # No read first: the signature (or the link's hash on the item) proves the approver
    # was asked, and the stored thresholds let the conditional update settle the policy by itself.
    try:
        updated = store.record_vote(approval_id, vote, answers_checked=answers_checked, token_hash=token_hash)
    except VoteRejected as refused:
        raise _refusal_problem(store, sfn, refused) from None
    if updated.status is Status.PENDING:
        return Recorded(updated, vote, Delivery.NOT_SETTLED)
    if updated.decided_by != vote.approver:
        # Only after the SDK resent this vote: another vote settled the request in between,
        # and that vote's request (or the sweep) tells the workflow.
        return Recorded(updated, vote, Delivery.PENDING)
    return Recorded(updated, vote, deliver(store, sfn, updated, sender_confirms=sender_confirms))


def deliver(
    store: ApprovalStore,
    sfn: SFNClient,
    approval: Approval,
    *,
    repeat: bool = False,
    sender_confirms: bool = False,
) -> Delivery:
    """Send the settled decision to the workflow.

    ``sender_confirms``: the caller records the delivery once this says DELIVERED (a bulk
    vote, 100 in one write: approvals.bulk), and the decision tells the workflow so, so that
    it spends no write of its own; until then the sweep judges it as any unconfirmed one.

    Safe to repeat: the service takes one answer per token and refuses the rest. It refuses
    alike an answer it took before and one the task no longer waits for (timed out, its
    heartbeat missed, its execution stopped or failed, whatever the approval's expiry), so
    a refusal of a repeat (the sweep, a late click: see Approval.needs_redelivery) or of
    the SDK's own resend is judged by the execution's history. On the first attempt, which
    nothing overtakes, a refusal means the workflow stopped waiting first.
    """
    decision = approval.decision(confirmed_by_service=sender_confirms)
    assert decision is not None, "only a settled approval is delivered"
    try:
        try:
            succeed(sfn, approval.task_token, decision)
        except TaskGone as gone:
            refused_at = utcnow()
            taken = (repeat or gone.resent) and _history_says_taken(sfn, approval)
            if not taken:
                _too_late(store, approval, refused_at)
    except TooLate:
        raise
    except Exception:
        # Throttled or down (the answer, or the history read): retry without waiting.
        log.exception("decision not delivered; will retry", extra={"approval_id": approval.approval_id})
        store.mark_delivery_failed(approval.approval_id)
        return Delivery.PENDING
    if repeat:
        store.confirm_delivery(approval.approval_id)
    return Delivery.DELIVERED


def _history_says_taken(sfn: SFNClient, approval: Approval) -> bool:
    """Whether the execution's history holds this approval's answer. Where it may not be
    read (asking again would not change that, and the approval would stay in the sweep's
    index for good), the store's record decides: a decision whose delivery never failed
    was taken, one whose delivery failed was not."""
    try:
        return took_answer(sfn, approval.execution, approval.approval_id)
    except HistoryDenied:
        log.warning(
            "execution history not readable: judged by the delivery record",
            extra={"approval_id": approval.approval_id, "delivery_failed": approval.delivery_failed},
        )
        return not approval.delivery_failed


def _too_late(store: ApprovalStore, approval: Approval, refused_at: datetime) -> NoReturn:
    """The vote came in the last moment, its delivery failed until the task timed out, or
    the execution was stopped: the workflow never saw this outcome, so the record must not
    claim it."""
    store.close(approval.approval_id, Status.EXPIRED, refused_at, was=approval.status)
    store.leave_inboxes(every_entry(approval))  # it waits on nobody now
    log.warning("decision too late for the workflow", extra={"approval_id": approval.approval_id})
    raise TooLate(
        "The workflow stopped waiting (it timed out or was stopped) before this decision reached it.",
        approval,
    )


# Refusals of a vote on a request that is settled or waits on someone else first: a moment
# to make sure the workflow has the outcome, if it may not.
_LATE = (VoteRefusal.ALREADY_VOTED, VoteRefusal.NOT_YOUR_TURN, VoteRefusal.SETTLED)


def _refusal_problem(store: ApprovalStore, sfn: SFNClient, refused: VoteRejected) -> Problem:
    current = refused.approval
    if refused.reason in _LATE:
        assert current is not None
        if current.needs_redelivery(utcnow()):
            # A late click is also a moment to make sure the workflow has the outcome.
            try:
                deliver(store, sfn, current, repeat=True)
            except TooLate as too_late:
                return too_late
    return refusal_problem(refused.reason, current)


def refusal_problem(reason: VoteRefusal, current: Approval | None) -> Problem:
    """What to tell the approver of a vote refused for ``reason`` (``current``: the approval then)."""
    match reason:
        case VoteRefusal.UNKNOWN:
            return NotFound(NO_APPROVAL)
        case VoteRefusal.NOT_ASKED:
            return Forbidden(NOT_ASKED)
        case VoteRefusal.OTHER_APPROVER:
            return Forbidden("The form was altered: this link was issued to another approver.")
        case VoteRefusal.EXCLUDED:
            return Forbidden("The requester may not decide on their own request.")
        case VoteRefusal.NOT_SIGNED_IN:
            return SignInRequired(SIGN_IN_WHY)
        case VoteRefusal.UNANSWERED:
            return Unanswered("This request asks for answers the form did not carry. Open the link again.")
    assert current is not None
    match reason:
        case VoteRefusal.REASSIGNED:
            return Reassigned(current)
        case VoteRefusal.EXPIRED:
            return Gone("This request expired before it was decided.", current)
        case VoteRefusal.CANCELLED:
            return Gone("This request was cancelled.", current)
        case VoteRefusal.ALREADY_VOTED:
            return Conflict("You have already decided on this request.", current)
        case VoteRefusal.NOT_YOUR_TURN:
            before = ", ".join(current.waiting_on(utcnow()))
            return NotYourTurn(
                f"It is not your turn yet: the approvers decide in order, and {before} decides before you."
                " You will get an email when it is your turn.",
                current,
            )
    return Conflict(f"This request is already {current.status.value}.", current)
