"""The HTML the approver sees. Jinja2 with autoescape: everything a requester wrote is text."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from approvals.answers import DEFAULT_TEXT_LENGTH, FORM_PREFIX
from approvals.bulk import MAX_VOTES, ItemResult, PlannedItem, Result, workflows
from approvals.inboxlinks import PATH_PREFIX
from approvals.models import (
    Approval,
    BulkProgress,
    FieldSpec,
    FieldType,
    Inbox,
    Outcome,
    Policy,
    Status,
    Vote,
)
from approvals.signin import SIGN_OUT_PATH, START_PATH

if TYPE_CHECKING:
    from jinja2 import Environment

TEMPLATES = Path(__file__).parent / "templates"
CSS = (TEMPLATES / "style.css").read_text()
# The page's only style is inline; pinning it by hash lets the policy forbid everything else.
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The link is a credential: never hand it to another site, never keep the page. Within
    # the site the browser may name the page: the POST's Origin is then the API's own.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

STATUS_TEXT = {
    Status.PENDING: "waiting for decision",
    Status.APPROVED: "approved",
    Status.REJECTED: "rejected",
    Status.EXPIRED: "expired",
    Status.CANCELLED: "cancelled",
}


@cache
def _environment() -> Environment:
    # Imported at the first page, not at the cold start: JSON answers never need it.
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
    )


def load_templates() -> None:
    """Compile the page templates now rather than at the first page of each kind."""
    for template in TEMPLATES.glob("*.html"):  # the pages and the base they extend
        _environment().get_template(template.name)


def humanize_until(moment: datetime, now: datetime) -> str:
    """'in 3 hours', in the approver's terms rather than a timestamp."""
    seconds = int((moment - now).total_seconds())
    if seconds <= 0:
        return "now"
    # A unit is used from just under one of it, so a fresh one-day request reads "in 1 day".
    for unit, size, from_seconds in (("day", 86_400, 82_800), ("hour", 3_600, 3_300), ("minute", 60, 60)):
        if seconds >= from_seconds:
            count = round(seconds / size)
            return f"in {count} {unit}{'s' if count != 1 else ''}"
    return "in less than a minute"


def policy_text(approval: Approval) -> str:
    request = approval.request
    match request.policy:
        case Policy.FIRST_RESPONSE:
            return "the first decision settles it"
        case Policy.ALL:
            return "every approver must approve; any rejection rejects"
        case Policy.QUORUM:
            return (
                f"{request.quorum} of {len(approval.voters)} approvals needed;"
                " rejected once that cannot be reached"
            )
        case Policy.SEQUENCE:
            return "each approver decides in turn, in the order listed; any rejection rejects"


def _detail_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def approval_page(
    approval: Approval,
    approver: str,
    fields: dict[str, str],
    now: datetime,
    *,
    reason_required: bool,
    notice: str = "",
    comment: str = "",
    typed: dict[str, str] | None = None,
    invalid_field: str = "",
    action: str = "",
    signed_in: str = "",
) -> str:
    """``signed_in``: who this browser is signed in as, if anyone.

    ``fields`` go with the form (a signed link's, or a short link's approver); ``action``
    is where it posts, relative to the page (the approval id by default, or a short link's
    token). ``typed`` and ``invalid_field``: the answers as sent, and the one to fix, when
    the page is shown again after a refused form."""
    status = approval.status_at(now)
    return (
        _environment()
        .get_template("approval.html")
        .render(
            css=CSS,
            request=approval.request,
            approver=approver,
            workflow=approval.workflow,
            step=approval.state,
            status=status.value,
            status_text=STATUS_TEXT[status],
            expires_in=humanize_until(approval.expires_at, now),
            expires_at=approval.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
            details=[(key, _detail_text(value)) for key, value in approval.request.details.items()],
            policy_text=policy_text(approval),
            approvers=[(person, approval.votes.get(person)) for person in approval.asked],
            excluded=approval.excluded,
            backups=_backups_joined(approval),
            sequence=approval.request.policy is Policy.SEQUENCE,
            waiting_on=approval.waiting_on(now),
            can_decide=approver in approval.waiting_on(now),
            awaiting_turn=approver in approval.undecided(now) and approver not in approval.waiting_on(now),
            action=action or approval.approval_id,
            fields=fields,
            reason_required=reason_required,
            notice=notice,
            notice_kind="error" if notice else "",
            comment=comment,
            inputs=[_field_input(spec, (typed or {}).get(spec.name, "")) for spec in approval.request.fields],
            invalid_field=invalid_field,
            form_prefix=FORM_PREFIX,
            signed_in=signed_in,
        )
    )


def _backups_joined(approval: Approval) -> dict[str, str]:
    """Each backup who joined, and the escalation step that asked them, in words."""
    return {
        backup: f"backup, asked {approval.escalated[step].strftime('%Y-%m-%d %H:%M UTC')} (escalation)"
        for step in sorted(approval.escalated)
        for backup in approval.request.escalation[step].approvers
    }


@dataclass(frozen=True)
class FieldInput:
    """One of the request's fields as the page shows it."""

    spec: FieldSpec
    value: str  # what was typed, or empty
    input_type: str  # the HTML input's type (a choice is a select)
    attributes: dict[str, str]  # the browser's own checks and keyboards; the server checks again


def _field_input(spec: FieldSpec, value: str) -> FieldInput:
    attributes: dict[str, str] = {}
    match spec.type:
        case FieldType.TEXT:
            attributes["maxlength"] = str(spec.max_length or DEFAULT_TEXT_LENGTH)
        case FieldType.NUMBER:
            attributes |= {"inputmode": "decimal", "step": "any"}
            attributes |= {
                name: f"{bound:g}"
                for name, bound in (("min", spec.min), ("max", spec.max))
                if bound is not None
            }
    input_type = {FieldType.BOOLEAN: "checkbox", FieldType.NUMBER: "number", FieldType.DATE: "date"}
    return FieldInput(spec, value, input_type.get(spec.type, "text"), attributes)


def inbox_page(
    inbox: Inbox,
    now: datetime,
    *,
    action: str,
    reason_required: bool,
    cursor: str = "",
    select_page: bool = False,
) -> str:
    """The approver's batch page: ``inbox`` is the page the JSON answer holds too. Its forms
    post to ``action`` (the inbox token, relative to the page); ``cursor`` is this page's
    place, kept by its links; ``select_page`` ticks every request on it."""

    def here(**query: str) -> str:
        kept = {"workflow": inbox.workflow or "", "cursor": cursor} | query
        return f"{action}?{urlencode({k: v for k, v in kept.items() if v})}".rstrip("?")

    return (
        _environment()
        .get_template("inbox.html")
        .render(
            css=CSS,
            inbox=inbox,
            items=[
                {
                    "item": item,
                    "expires_in": humanize_until(item.expires_at, now),
                    "expires_at": item.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
                    "details": [(key, _detail_text(value)) for key, value in item.details.items()],
                    "inputs": [_field_input(spec, "") for spec in item.fields],
                }
                for item in inbox.items
            ],
            link_expires_at=inbox.link_expires_at.strftime("%Y-%m-%d %H:%M UTC"),
            action=action,
            select_page=select_page,
            select_page_href=here(select="page"),
            clear_href=here(),
            sign_out_path=SIGN_OUT_PATH,
            sign_in_href=_sign_in_href(here()),  # back to this very page: its filter and place
            next_href=here(cursor=inbox.next_cursor) if inbox.next_cursor else "",
            first_href=here(cursor="") if cursor else "",
            reason_required=reason_required,
            form_prefix=FORM_PREFIX,
            max_votes=MAX_VOTES,
            bulk_votes=[bulk_progress_text(job) for job in inbox.bulk_votes],
        )
    )


def _sign_in_href(inbox_page: str) -> str:
    """Sign in, then back to this page of the inbox (its token and query), relative to it."""
    return f"..{START_PATH}?to={quote(PATH_PREFIX.lstrip('/') + inbox_page, safe='')}"


def _needing_sign_in(items: list[PlannedItem] | list[ItemResult]) -> int:
    return sum(item.result is Result.SIGN_IN_REQUIRED for item in items)


def message_page(
    heading: str,
    message: str,
    *,
    kind: str = "info",
    approval: Approval | None = None,
    vote: Vote | None = None,
    now: datetime | None = None,
) -> str:
    status = approval.status_at(now) if approval and now else None
    return (
        _environment()
        .get_template("message.html")
        .render(
            css=CSS,
            heading=heading,
            message=message,
            kind=kind,
            request=approval.request if approval else None,
            status=status.value if status else "",
            status_text=STATUS_TEXT[status] if status else "",
            vote=vote,
        )
    )


def sign_in_page(heading: str, message: str, href: str, label: str, *, kind: str = "info") -> str:
    """Why sign-in is asked (or refused), and the one thing to do next."""
    return (
        _environment()
        .get_template("signin.html")
        .render(css=CSS, heading=heading, message=message, href=href, label=label, kind=kind)
    )


RESULT_TEXT = {
    Result.RECORDED: "recorded",
    Result.SETTLED: "settled",
    Result.ALREADY_DECIDED: "already decided",
    Result.EXPIRED: "expired",
    Result.NOT_YOURS: "not yours",
    Result.NOT_YOUR_TURN: "not your turn yet",
    Result.NEEDS_ANSWERS: "needs answers",
    Result.SIGN_IN_REQUIRED: "needs sign-in",
    Result.NOT_FOUND: "not found",
    Result.FAILED: "not recorded",
}
VERBS = {Outcome.APPROVED: ("Approve", "approve"), Outcome.REJECTED: ("Reject", "reject")}


def bulk_confirmation_page(
    planned: list[PlannedItem],
    outcome: Outcome,
    carried: list[tuple[str, str]],
    comment: str,
    *,
    more: int,
    action: str,
    reason_required: bool,
) -> str:
    """How many items a bulk vote decides (``more``: those matching after the first
    bulk.MAX_VOTES, decided in the background), from which workflows, and which cannot be decided
    as they stand (with inputs for the answers they still need); ``carried``: the form's
    fields, posted again with the confirmation."""
    verb, decision = VERBS[outcome]
    return (
        _environment()
        .get_template("bulk_confirm.html")
        .render(
            css=CSS,
            verb=verb,
            decision=decision,
            done=outcome.value,
            count=len(planned) + more,
            shown=len(planned),
            more=more,
            ready=sum(item.ready for item in planned),
            workflows=workflows(planned),
            blocked=[item for item in planned if not item.ready],
            answering=[
                (item, [_field_input(spec, "") for spec in item.needs]) for item in planned if item.needs
            ],
            carried=carried,
            comment=comment,
            action=action,
            reason_required=reason_required,
            form_prefix=FORM_PREFIX,
            sign_in_needed=_needing_sign_in(planned),
            sign_in_href=_sign_in_href(action),
        )
    )


def bulk_results_page(
    results: list[ItemResult], outcome: Outcome, *, background: BulkProgress | None, action: str
) -> str:
    """Each item of a bulk vote and what became of it; ``background``: the rest of "all
    matching", decided in the background, whose progress the inbox shows."""
    counts = Counter(item.result for item in results)
    count = background.count if background else len(results)
    return (
        _environment()
        .get_template("bulk_results.html")
        .render(
            css=CSS,
            heading=f"{VERBS[outcome][0]}: {count} request{'s' if count != 1 else ''}",
            counts=[(RESULT_TEXT[result], many) for result, many in counts.most_common()],
            results=results,
            labels=RESULT_TEXT,
            background=background,
            progress=bulk_progress_text(background) if background else "",
            action=action,
            sign_in_needed=_needing_sign_in(results),
            sign_in_href=_sign_in_href(action),
        )
    )


def bulk_progress_text(job: BulkProgress) -> str:
    """A background bulk vote in words: how many decided, how many still going, the results."""
    verb = "Approving" if job.decision == "approve" else "Rejecting"
    results = "; ".join(f"{many} {RESULT_TEXT[Result(kind)]}" for kind, many in job.counts.items() if many)
    if job.finished_at is None:
        said = f"{verb} {job.count} requests: {job.decided} decided, {job.remaining} still going."
    else:
        said = f"{verb} {job.count} requests: done, all {job.decided} decided."
    return f"{said} {results}." if results else said
