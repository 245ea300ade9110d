"""Reassignments as the approval reads them (who holds each place now, who was first asked,
whose link is closed), the decision's record of them, and the requester's outcome email."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from approvals.models import Outcome, Reassignment, Status, Vote, handed_over, timeline
from approvals.notify import handed_over_email, outcome_email
from tests.unit.samples import TOKEN, sample_approval

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ALICE, BOB, CAROL, DAVE = "alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"


def change(from_: str, to: str, minutes: int = 1) -> Reassignment:
    return Reassignment.model_validate(
        {"from": from_, "to": to, "by": "oncall", "at": NOW + timedelta(minutes=minutes)}
    )


def test_each_change_hands_on_the_place_as_it_stands() -> None:
    changes = [change(ALICE, CAROL), change(CAROL, DAVE, 2)]
    assert handed_over([ALICE, BOB], changes) == [DAVE, BOB]
    approval = sample_approval(NOW, timedelta(hours=1), {"approvers": [DAVE, BOB]}, reassigned=changes)
    assert approval.originally_asked() == [ALICE, BOB]
    assert [approval.reassigned_away(who) for who in (ALICE, BOB, CAROL, DAVE)] == [True, False, True, False]


def test_a_place_handed_back_reopens_the_first_link() -> None:
    changes = [change(ALICE, CAROL), change(CAROL, ALICE, 2)]
    approval = sample_approval(NOW, timedelta(hours=1), {"approvers": handed_over([ALICE, BOB], changes)})
    approval = approval.model_copy(update={"reassigned": changes})
    assert approval.request.approvers == [ALICE, BOB]
    assert not approval.reassigned_away(ALICE)
    assert approval.reassigned_away(CAROL)


def test_the_decision_names_the_changes_as_from_and_to_and_leaves_them_out_when_none() -> None:
    vote = Vote(approver=CAROL, outcome=Outcome.APPROVED, at=NOW)
    settled = {"status": Status.APPROVED, "decided_at": NOW, "votes": {CAROL: vote}}
    plain = sample_approval(NOW, timedelta(hours=1), {"approvers": [CAROL]}, **settled)
    decision = plain.decision()
    assert decision is not None
    assert "reassigned" not in json.loads(decision.model_dump_json(exclude_none=True))

    changed = plain.model_copy(update={"reassigned": [change(ALICE, CAROL)]})
    decision = changed.decision()
    assert decision is not None
    (recorded,) = json.loads(decision.model_dump_json(exclude_none=True))["reassigned"]
    assert recorded == {"from": ALICE, "to": CAROL, "by": "oncall", "at": "2026-11-30T09:01:00Z"}


def test_the_timeline_shows_who_reassigned_whom_and_the_requester_told() -> None:
    approval = sample_approval(
        NOW, timedelta(hours=1), {"approvers": [CAROL, BOB]},
        reassigned=[change(ALICE, CAROL)], emailed_at=NOW, requester_told_at=NOW + timedelta(minutes=5),
    )  # fmt: skip
    events = [(e.kind, e.actor, e.detail) for e in timeline(approval)]
    assert ("emailed", "system", f"{ALICE}, {BOB}") in events  # those first asked
    assert ("reassigned", "oncall", f"{ALICE} -> {CAROL}") in events
    assert events[-1] == ("told", "system", "emailed ci@example.com")


def test_the_stand_in_is_told_whose_place_they_take() -> None:
    approval = sample_approval(
        NOW, timedelta(hours=1), {"approvers": [CAROL, BOB]}, reassigned=[change(ALICE, CAROL)]
    )
    email = handed_over_email(approval, CAROL, "https://api.example.com/link")
    assert email.to == CAROL
    assert email.body.startswith(f"You are asked in place of {ALICE}, who no longer decides")
    assert "https://api.example.com/link" in email.body


def test_the_outcome_email_has_the_votes_comments_answers_and_no_token() -> None:
    votes = {
        ALICE: Vote(
            approver=ALICE, outcome=Outcome.APPROVED, comment="ok", at=NOW, data={"environment": "prod"}
        ),
        BOB: Vote(
            approver=BOB, outcome=Outcome.APPROVED, at=NOW + timedelta(minutes=1), on_behalf_by="oncall"
        ),
    }
    approval = sample_approval(
        NOW, timedelta(hours=1), {"requester": "lead@example.com"},
        status=Status.APPROVED, decided_at=NOW + timedelta(minutes=1), votes=votes,
    )  # fmt: skip
    email = outcome_email(approval, "lead@example.com")
    assert email.subject == "[Approved] Deploy checkout 2.4 (from lead@example.com)"
    assert email.body.splitlines()[:6] == [
        "Your request was approved:",
        "",
        "  Deploy checkout 2.4",
        "",
        "Decided 2026-11-30 09:01 UTC.",
        "Votes:",
    ]
    assert f"- {ALICE} approved at 2026-11-30 09:00 UTC\n    “ok”\n    environment: prod" in email.body
    assert f"- {BOB} approved at 2026-11-30 09:01 UTC (recorded by oncall)" in email.body
    assert TOKEN not in email.body


def test_the_outcome_email_says_how_an_unsettled_request_ended() -> None:
    expired = sample_approval(
        NOW, timedelta(hours=1), status=Status.EXPIRED, closed_at=NOW + timedelta(hours=1)
    )
    assert outcome_email(expired, "ci@example.com").body.startswith(
        "Your request expired before it was settled:"
    )
    assert "Nobody voted." in outcome_email(expired, "ci@example.com").body
    cancelled = expired.model_copy(update={"status": Status.CANCELLED})
    assert outcome_email(cancelled, "ci@example.com").subject.startswith("[Cancelled]")
    late_vote = Vote(approver=ALICE, outcome=Outcome.APPROVED, at=NOW)
    too_late = expired.model_copy(update={"votes": {ALICE: late_vote}, "decided_at": NOW})
    assert outcome_email(too_late, "ci@example.com").body.startswith(
        "Your request was decided too late: the workflow had stopped waiting"
    )
