"""What makes two confirmed "all matching" POSTs the same confirmation (approvals.bulkjob):
a double submit finds the first one's job; another confirmation makes its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from approvals.bulkjob import confirmation

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CONFIRMED = {"all": "1", "decision": "approve", "asof": "1796558400", "comment": "ok"}


def test_the_same_confirmation_posted_again_is_the_same_whenever_it_comes() -> None:
    again = {**CONFIRMED, "comment": "ok, again"}
    assert confirmation(CONFIRMED, NOW) == confirmation(again, NOW + timedelta(minutes=5))


def test_another_moment_filter_or_decision_is_another_confirmation() -> None:
    others = [
        {**CONFIRMED, "asof": "1796558401"},
        {**CONFIRMED, "workflow": "refunds"},
        {**CONFIRMED, "decision": "reject"},
    ]
    assert len({confirmation(form, NOW) for form in [CONFIRMED, *others]}) == 4


def test_a_post_without_the_confirmations_moment_is_confirmed_when_it_comes() -> None:
    """A client posting all=1 and confirmed=1 without asof: each later POST is its own
    confirmation, not a double submit of the first one ever made."""
    bare = {"all": "1", "decision": "approve"}
    assert confirmation(bare, NOW) != confirmation(bare, NOW + timedelta(minutes=5))
