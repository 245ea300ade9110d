"""Escalation and sequence in the domain: who may vote and who is awaited as steps are
taken and votes come in, the thresholds over them, the timeline, and the page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from approval_api import pages
from approvals.models import Approval, Outcome, Policy, Vote, timeline
from approvals.policy import approval_thresholds, can_still_be_approved
from tests.unit.samples import sample_approval

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ALICE, BOB, LEAD, BOSS = "alice@example.com", "bob@example.com", "lead@example.com", "boss@example.com"
TWO_STEPS = [
    {"after_seconds": 3600, "approvers": [LEAD]},
    {"after_seconds": 7200, "approvers": [BOSS]},
]


def approval(request: dict[str, Any] | None = None, **changes: Any) -> Approval:
    return sample_approval(NOW, timedelta(days=1), request, emailed_at=NOW, **changes)


def vote(who: str, outcome: Outcome = Outcome.APPROVED) -> Vote:
    return Vote(approver=who, outcome=outcome, at=NOW + timedelta(minutes=1), comment="fine by me")


def test_steps_fall_due_in_order_and_once() -> None:
    waiting = approval({"escalation": TWO_STEPS})
    assert waiting.escalations_due(NOW + timedelta(minutes=59)) == []
    assert waiting.escalations_due(NOW + timedelta(hours=1)) == [0]
    assert waiting.escalations_due(NOW + timedelta(hours=3)) == [0, 1]
    taken = approval({"escalation": TWO_STEPS}, escalated={0: NOW + timedelta(hours=1)})
    assert taken.escalations_due(NOW + timedelta(hours=3)) == [1]
    settled = approval({"escalation": TWO_STEPS}, status="approved")
    assert settled.escalations_due(NOW + timedelta(hours=3)) == []


def test_backups_who_joined_may_vote_and_are_owed_their_link_once() -> None:
    joined = approval({"escalation": TWO_STEPS}, escalated={0: NOW + timedelta(hours=1)})
    later = NOW + timedelta(hours=1)
    assert joined.asked == [ALICE, BOB, LEAD]
    assert joined.waiting_on(later) == [ALICE, BOB, LEAD]
    assert joined.owed_link(later) == [LEAD]
    emailed = joined.model_copy(update={"notified": {LEAD: later}})
    assert emailed.owed_link(later) == []


def test_thresholds_count_everyone_who_may_vote_at_that_moment() -> None:
    quorum = {"policy": "quorum", "quorum": 2, "escalation": TWO_STEPS}
    before = approval_thresholds(approval(quorum))
    after = approval_thresholds(approval(quorum, escalated={0: NOW, 1: NOW}))
    assert (before.approve_at, before.reject_at) == (2, 1)  # 2 of 2: one rejection ends it
    assert (after.approve_at, after.reject_at) == (2, 3)  # 2 of 4: three rejections end it
    everyone = approval({"policy": "all", "escalation": TWO_STEPS}, escalated={0: NOW})
    assert approval_thresholds(everyone).approve_at == 3
    first = approval({"escalation": TWO_STEPS}, escalated={0: NOW, 1: NOW})
    assert (approval_thresholds(first).approve_at, approval_thresholds(first).reject_at) == (1, 1)


def test_a_request_whose_approvers_left_waits_for_an_escalation_still_to_come() -> None:
    lost = {who: {"at": NOW, "why": "no subscription"} for who in (ALICE, BOB)}
    assert can_still_be_approved(approval({"escalation": TWO_STEPS}, unreachable=lost), NOW)
    assert not can_still_be_approved(approval(unreachable=lost), NOW)


def test_a_sequence_awaits_one_approver_at_a_time() -> None:
    first = approval({"policy": "sequence"})
    assert first.waiting_on(NOW) == [ALICE]
    assert first.undecided(NOW) == [ALICE, BOB]
    assert first.owed_link(NOW) == []  # the worker emails the first
    second = approval({"policy": "sequence"}, votes={ALICE: vote(ALICE)})
    assert second.waiting_on(NOW) == [BOB]
    assert second.owed_link(NOW) == [BOB]
    assert approval_thresholds(second).approve_at == 2


def test_the_timeline_shows_each_escalation_and_who_was_emailed_then() -> None:
    at = NOW + timedelta(hours=1)
    joined = approval({"escalation": TWO_STEPS}, escalated={0: at}, notified={LEAD: at})
    events = [(e.kind, e.actor, e.detail) for e in timeline(joined) if e.at == at]
    assert events == [("escalated", "system", f"step 1: asked {LEAD}"), ("emailed", "system", LEAD)]
    sequence = approval({"policy": "sequence"})
    assert [e.detail for e in timeline(sequence) if e.kind == "emailed"] == [ALICE]


def test_the_page_lists_backups_and_a_sequence_in_order_with_who_came_before() -> None:
    joined = approval({"escalation": TWO_STEPS}, escalated={0: NOW + timedelta(hours=1)})
    html = pages.approval_page(joined, LEAD, {}, NOW + timedelta(hours=1), reason_required=True)
    assert "backup, asked 2026-11-30 10:00 UTC (escalation)" in html
    assert 'name="decision"' in html

    sequence = approval(
        {"policy": Policy.SEQUENCE.value, "approvers": [ALICE, BOB, BOSS]}, votes={ALICE: vote(ALICE)}
    )
    for_bob = pages.approval_page(sequence, BOB, {}, NOW, reason_required=True)
    assert "<ol" in for_bob
    assert "fine by me" in for_bob  # Alice's comment, before Bob decides
    assert 'name="decision"' in for_bob
    for_boss = pages.approval_page(sequence, BOSS, {}, NOW, reason_required=True)
    assert "Your turn has not come yet" in for_boss
    assert 'name="decision"' not in for_boss
