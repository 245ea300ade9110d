"""Bulk votes: one approver decides many approvals at once (the inbox page's "Approve
selected", an operator's ``approvals decide --workflow``), exactly once per item.

One read finds the items (a BatchGetItem per 100), and then each vote is what a click on
that item's own page would be: its own conditional write (approvals.decision.record),
under all of its item's rules (policy, sequence turn, the requester's exclusion, escalation,
expiry, reassignment, fields, sign-in), its task answered once if it settles. A refused item
is reported, never a reason to fail the others: each item gets its own result.

The tasks answered are then confirmed delivered together, 100 in one write, and their
decisions say so (``confirmed_by_service``), so that no workflow writes its own
confirmation: about 0.01 calls an item instead of 1. Should that write fail, or the
function stop before it, the sweep confirms them as any decision left unconfirmed.

The inbox names its approver by id (approvals.inboxlinks): each item's approver is the
address it asked whose id that is.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from approvals import answers, decision, inbox, inboxlinks
from approvals.decision import (
    APPROVAL_ID,
    Conflict,
    Delivery,
    Forbidden,
    Gone,
    InvalidComment,
    Malformed,
    NotFound,
    NotYourTurn,
    Problem,
    Proof,
    Reassigned,
    SignInRequired,
    SomeoneElse,
    Unanswered,
)
from approvals.models import Approval, BulkProgress, FieldSpec, Outcome, Vote
from approvals.runtime import Services
from approvals.signin import Session, SignedIn
from approvals.store import UnreadableItem, approval_from_item, vote_refusal
from approvals.store.inbox import every_entry

log = logging.getLogger(__name__)

MAX_VOTES = 100  # one POST: a page of the inbox, and well within the API's 29 seconds


class Result(StrEnum):
    RECORDED = "recorded"  # the vote is in; the request waits for other approvers
    SETTLED = "settled"  # the vote settled the request; its workflow is answered
    ALREADY_DECIDED = "already_decided"  # this approver had decided, or the request is settled
    EXPIRED = "expired"  # the request expired or was cancelled before the vote
    NOT_YOURS = "not_yours"  # not asked of this approver (or no longer: reassigned, the requester)
    NOT_YOUR_TURN = "not_your_turn"  # a sequence's earlier approver has not yet approved
    NEEDS_ANSWERS = "needs_answers"  # the request's fields want answers to approve
    SIGN_IN_REQUIRED = "sign_in_required"  # the request must be decided signed in as the approver
    NOT_FOUND = "not_found"  # no such approval
    FAILED = "failed"  # a fault on our side: nothing was recorded; trying again may work


# Results after which the item no longer waits on the voter: it leaves their inbox.
_DONE = frozenset(
    {
        Result.RECORDED,
        Result.SETTLED,
        Result.ALREADY_DECIDED,
        Result.EXPIRED,
        Result.NOT_YOURS,
        Result.NOT_FOUND,
    }
)


class ItemResult(BaseModel):
    """What became of one item of a bulk vote."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    result: Result
    detail: str = Field(description="The result in words, for the approver")
    title: str | None = Field(default=None, description="The request's title, if it was asked of the voter")
    workflow: str | None = Field(default=None, description="The state machine that asked, likewise")


class PlannedItem(BaseModel):
    """One item of a bulk vote before it is confirmed: whether the vote would be taken as it stands."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    title: str | None = None
    workflow: str | None = None
    ready: bool = Field(description="The vote would be taken as the form stands")
    result: Result | None = Field(default=None, description="What the item would get now, if not ready")
    detail: str = ""
    needs: list[FieldSpec] = Field(
        default_factory=list, description="The request's fields still to answer for this decision"
    )


class BulkPlan(BaseModel):
    """A bulk vote to confirm: how many items, from which workflows, which are ready."""

    decision: Literal["approve", "reject"]
    count: int
    ready: int = Field(description="How many would be taken as the form stands")
    workflows: dict[str, int] = Field(description="How many of the items shown each workflow asked for")
    items: list[PlannedItem] = Field(description=f"The first {MAX_VOTES} items, decided first")
    more: int = Field(description="With all=1: how many more match, decided in the background after these")


class BulkResults(BaseModel):
    """A bulk vote done: what became of each item."""

    decision: Literal["approve", "reject"]
    counts: dict[Result, int] = Field(description="How many items got each result")
    items: list[ItemResult] = Field(description="This POST's (none for a confirmation posted again)")
    background: BulkProgress | None = Field(
        description="With all=1, past the first items: the rest, decided in the background (GET the inbox)"
    )


class TooManyVotes(Malformed):
    title = "Too many items at once"


class InvalidChoice(Malformed):
    """A choice refused before anything is recorded: a comment to fix, a decision missing."""

    title = "Please complete the form"


@dataclass(frozen=True)
class Choice:
    """One item of a bulk vote: the decision, the comment, and the answers to the request's
    fields by name, as typed (checked against the request's fields before the vote)."""

    approval_id: str
    outcome: Outcome
    comment: str = ""
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Selection:
    """The approvals a bulk form selects: at most MAX_VOTES of them, and those matching after
    them (approvals.bulkjob decides them in the background)."""

    approval_ids: list[str]
    rest: list[str] = field(default_factory=list)

    @property
    def more(self) -> int:
        return len(self.rest)


def selected(
    services: Services, approver_id: str, form: Sequence[tuple[str, str]], now: datetime
) -> Selection:
    """The approvals a bulk form names: the ticked ones (``approval``, repeated), or with
    ``all=1`` every one waiting on the approver (of ``workflow``, if given) that was asked by
    ``asof`` (epoch seconds: when the approver confirmed "all matching", so that requests
    arriving since are not decided unseen), newest first, MAX_VOTES at a time."""
    fields = dict(form)
    if fields.get("all") != "1":
        return Selection([value for name, value in form if name == "approval"])
    asof = fields.get("asof", "")
    asked_by = datetime.fromtimestamp(int(asof), UTC) if asof.isdigit() and len(asof) <= 10 else now
    ids = inbox.matching(services.store, approver_id, now, fields.get("workflow") or None, asked_by)
    return Selection(ids[:MAX_VOTES], ids[MAX_VOTES:])


def choices_from_form(approval_ids: Sequence[str], form: Mapping[str, str]) -> list[Choice]:
    """The choices a bulk form makes: one decision and comment for every item, and each
    item's answers as ``<approval id>.<answers.FORM_PREFIX><field name>``."""
    outcome = decision.OUTCOMES.get(form.get("decision", ""))
    if outcome is None:
        raise InvalidChoice("Choose Approve or Reject.")
    if not approval_ids:
        raise InvalidChoice("Choose at least one request.")
    comment = form.get("comment", "")
    return [
        Choice(approval_id, outcome, comment, _answers_of(approval_id, form)) for approval_id in approval_ids
    ]


def _answers_of(approval_id: str, form: Mapping[str, str]) -> dict[str, str]:
    prefix = f"{approval_id}.{answers.FORM_PREFIX}"
    return {key.removeprefix(prefix): value for key, value in form.items() if key.startswith(prefix)}


@dataclass(frozen=True)
class _Found:
    """An item read, and the address it asked of the voter (None: not asked of them)."""

    approval: Approval
    approver: str | None


def decide_many(
    services: Services,
    approver_id: str,
    choices: Sequence[Choice],
    now: datetime,
    signed_in: SignedIn | None = None,
    on_behalf_by: str | None = None,
) -> list[ItemResult]:
    """Record the votes of the approver ``approver_id`` (approvals.inboxlinks), one result
    per distinct approval, in the order given. ``signed_in``: the browser's session, or the
    sign-in a bulk job keeps of its confirmation. ``on_behalf_by``: the operator recording
    them (then the request's sign-in rule does not apply: their AWS identity is the proof).

    Refused as a whole, before anything is recorded: more than MAX_VOTES choices, or a
    comment to fix (InvalidChoice). Everything else is an item's own result."""
    chosen = _distinct(choices)
    comments = check_comments(services, chosen)
    found = _find(services, approver_id, [choice.approval_id for choice in chosen])
    delivered: list[str] = []
    results = [
        _decide_one(
            services,
            choice,
            comments[choice.approval_id],
            found.get(choice.approval_id),
            now,
            signed_in,
            on_behalf_by,
            delivered,
        )
        for choice in chosen
    ]
    try:
        services.store.confirm_deliveries(delivered)
    except Exception:  # a fault: each stays in the sweep's index, which confirms it
        log.exception("bulk deliveries not confirmed; the sweep will", extra={"count": len(delivered)})
    # What no longer waits on the voter leaves their inbox; what settled, everyone's: together.
    ended = [(approver_id, item.approval_id) for item in results if item.result in _DONE]
    for item in results:
        settled = found.get(item.approval_id) if item.result is Result.SETTLED else None
        ended += every_entry(settled.approval) if isinstance(settled, _Found) else []
    services.store.leave_inboxes(ended)
    return results


def plan(
    services: Services,
    approver_id: str,
    choices: Sequence[Choice],
    now: datetime,
    session: Session | None = None,
) -> list[PlannedItem]:
    """What :func:`decide_many` would do with these choices now, for the approver to confirm
    (how many, which workflows, which items still need answers or sign-in). Writes nothing."""
    chosen = _distinct(choices)
    check_comments(services, chosen)
    found = _find(services, approver_id, [choice.approval_id for choice in chosen])
    return [_plan_one(services, choice, found.get(choice.approval_id), now, session) for choice in chosen]


def workflows(items: Iterable[PlannedItem | ItemResult]) -> dict[str, int]:
    """How many of the items each workflow asked for, most first."""
    return dict(Counter(item.workflow for item in items if item.workflow).most_common())


def _distinct(choices: Sequence[Choice]) -> list[Choice]:
    """The first choice for each approval (a page may list an item twice)."""
    if len(choices) > MAX_VOTES:
        raise TooManyVotes(
            f"At most {MAX_VOTES} items can be decided at once, not {len(choices)}: choose fewer."
        )
    first: dict[str, Choice] = {}
    for choice in choices:
        first.setdefault(choice.approval_id, choice)
    return list(first.values())


def check_comments(services: Services, choices: Sequence[Choice]) -> dict[str, str]:
    """Each choice's comment as it is recorded, by approval id; InvalidChoice for one to fix."""
    return {choice.approval_id: _comment(services, choice) for choice in choices}


def _comment(services: Services, choice: Choice) -> str:
    try:
        return decision.checked_comment(services.settings, choice.outcome, choice.comment)
    except InvalidComment as invalid:
        raise InvalidChoice(invalid.message) from None


def _find(
    services: Services, approver_id: str, approval_ids: list[str]
) -> dict[str, _Found | UnreadableItem]:
    """The items that exist, and the address each asked of the voter. Only what reads as an
    approval id is looked up: nothing else of the table is reachable from a form."""
    wanted = [approval_id for approval_id in approval_ids if APPROVAL_ID.match(approval_id)]
    found: dict[str, _Found | UnreadableItem] = {}
    for approval_id, item in services.store.get_many(wanted).items():
        try:
            approval = approval_from_item(item)
        except UnreadableItem as unreadable:  # one bad item must not hide the others
            found[approval_id] = unreadable
            continue
        found[approval_id] = _Found(approval, _approver(approval, approver_id))
    return found


def _approver(approval: Approval, approver_id: str) -> str | None:
    """The address this approval asked (now, or before a reassignment) whose inbox id is
    ``approver_id``."""
    asked = dict.fromkeys([*approval.asked, *(change.from_ for change in approval.reassigned)])
    return next((who for who in asked if inboxlinks.approver_id(who) == approver_id), None)


def _decide_one(
    services: Services,
    choice: Choice,
    comment: str,
    found: _Found | UnreadableItem | None,
    now: datetime,
    signed_in: SignedIn | None,
    on_behalf_by: str | None,
    delivered: list[str],
) -> ItemResult:
    """The vote on one item; an item whose workflow took the decision is added to
    ``delivered``, for decide_many to confirm."""
    if isinstance(found, UnreadableItem):
        log.error("approval unreadable", extra={"approval_id": found.approval_id, "problem": found.problem})
        return _result(choice, Result.FAILED, decision.Unreadable().message)
    if found is None or found.approver is None:
        return _refused(choice, None, _not_asked(found))
    approval, approver = found.approval, found.approver
    vote = Vote(approver=approver, outcome=choice.outcome, comment=comment, at=now, on_behalf_by=on_behalf_by)
    try:
        refusal = vote_refusal(approval, vote)
        if refusal is not None:
            raise decision.refusal_problem(refusal, approval)
        # The operator's own AWS identity proves an operator's vote (as `approvals decide`).
        proven = (
            Proof()
            if on_behalf_by
            else decision.proof(services.settings, approval.request.identity, approver, signed_in)
        )
        data = answers.read(approval.request.fields, answers.as_form(choice.data), choice.outcome)
        vote = vote.model_copy(update={"data": data, "proof": proven.kind, "issuer": proven.issuer})
        recorded = decision.cast_vote(services, approval.approval_id, vote, now, sender_confirms=True)
    except answers.InvalidAnswer as invalid:
        return _result(choice, Result.NEEDS_ANSWERS, invalid.message, approval)
    except Problem as refused:
        return _refused(choice, approval, refused)
    except Exception:  # a fault (throttled after the SDK's retries): this item only
        log.exception("bulk vote not recorded", extra={"approval_id": choice.approval_id})
        return _result(
            choice, Result.FAILED, "Not recorded: a fault on our side. Try this item again.", approval
        )
    if recorded.delivery is Delivery.NOT_SETTLED:
        return _result(
            choice, Result.RECORDED, "Your vote is recorded; the request waits for other approvers.", approval
        )
    if recorded.delivery is Delivery.DELIVERED:
        delivered.append(approval.approval_id)
    status = recorded.approval.status.value
    told = (
        "the workflow has the decision"
        if recorded.delivery is Delivery.DELIVERED
        else "the workflow receives the decision within a few minutes"
    )
    return _result(choice, Result.SETTLED, f"The request is {status}: {told}.", approval)


def _plan_one(
    services: Services,
    choice: Choice,
    found: _Found | UnreadableItem | None,
    now: datetime,
    session: Session | None,
) -> PlannedItem:
    if isinstance(found, UnreadableItem):
        return PlannedItem(
            approval_id=choice.approval_id,
            ready=False,
            result=Result.FAILED,
            detail=decision.Unreadable().message,
        )
    if found is None or found.approver is None:
        refused = _refused(choice, None, _not_asked(found))
        return PlannedItem(
            approval_id=choice.approval_id, ready=False, result=refused.result, detail=refused.detail
        )
    approval = found.approval
    about = {
        "approval_id": choice.approval_id,
        "title": approval.request.title,
        "workflow": approval.workflow,
    }
    refusal = vote_refusal(approval, Vote(approver=found.approver, outcome=choice.outcome, at=now))
    try:
        if refusal is not None:
            raise decision.refusal_problem(refusal, approval)
        decision.proof(services.settings, approval.request.identity, found.approver, session)
    except Problem as problem:
        refused = _refused(choice, approval, problem)
        return PlannedItem(**about, ready=False, result=refused.result, detail=refused.detail)
    form = answers.as_form(choice.data)
    needs = [spec for spec in approval.request.fields if _unanswered(spec, form, choice.outcome)]
    if needs:
        detail = "Answer " + ", ".join(spec.label for spec in needs) + f" to {choice.outcome.value[:-1]} it."
        return PlannedItem(**about, ready=False, result=Result.NEEDS_ANSWERS, detail=detail, needs=needs)
    return PlannedItem(**about, ready=True)


def _unanswered(spec: FieldSpec, form: Mapping[str, str], outcome: Outcome) -> bool:
    try:
        answers.read([spec], form, outcome)
    except answers.InvalidAnswer:
        return True
    return False


def _not_asked(found: _Found | None) -> Problem:
    if found is None:
        return NotFound(decision.NO_APPROVAL)
    return Forbidden("This request was not asked of you.")


# The first that fits: a reassignment is Gone, yet not the request's end.
_RESULTS: tuple[tuple[type[Problem], Result], ...] = (
    (Reassigned, Result.NOT_YOURS),
    (Gone, Result.EXPIRED),  # expired, cancelled, or too late for the workflow
    (NotYourTurn, Result.NOT_YOUR_TURN),
    (Conflict, Result.ALREADY_DECIDED),
    (Unanswered, Result.NEEDS_ANSWERS),
    (SignInRequired, Result.SIGN_IN_REQUIRED),
    (SomeoneElse, Result.SIGN_IN_REQUIRED),
    (Forbidden, Result.NOT_YOURS),
    (NotFound, Result.NOT_FOUND),
)


# The sign-in page's own words send the browser back to a request's page: these name the inbox.
SIGN_IN_ON_ITS_PAGE = (
    "This request must be decided by its approver in person: sign in with your company account"
    " from your list of requests and decide it there, or decide it on its own page, from its own email."
)


def _refused(choice: Choice, approval: Approval | None, problem: Problem) -> ItemResult:
    result = next((result for kind, result in _RESULTS if isinstance(problem, kind)), Result.FAILED)
    detail = SIGN_IN_ON_ITS_PAGE if result is Result.SIGN_IN_REQUIRED else problem.message
    return _result(choice, result, detail, approval)


def _result(choice: Choice, result: Result, detail: str, approval: Approval | None = None) -> ItemResult:
    """``approval``: given where it was asked of the voter, whose result then names it."""
    return ItemResult(
        approval_id=choice.approval_id,
        result=result,
        detail=detail,
        title=approval.request.title if approval else None,
        workflow=approval.workflow if approval else None,
    )
