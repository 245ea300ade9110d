"""Inbox links: short, bound to one approver, expiring, revoked by the second rotation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from approvals import inboxlinks
from approvals.links import ExpiredLink, ForgedLink, KeyRing, MalformedLink, SigningKey

KEY = SigningKey(b"k" * 64)
NEWER_KEY, NEWEST_KEY = SigningKey(b"n" * 64), SigningKey(b"z" * 64)
ALICE, BOB = "alice@example.com", "bob@example.com"
API_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
EXPIRES = NOW + timedelta(days=3)


def test_an_inbox_link_is_the_api_then_a_48_character_token_with_nothing_personal() -> None:
    link = inboxlinks.inbox_link(API_URL, KEY, ALICE, EXPIRES)
    token = link.rpartition("/i/")[2]
    assert link == f"https://abc123.execute-api.eu-west-1.amazonaws.com/prod/i/{token}"
    assert re.fullmatch(r"[A-Za-z0-9_-]{48}", token)
    assert not any(personal in link for personal in ("?", "@", "alice"))


def test_the_token_opens_its_approvers_inbox_until_its_expiry() -> None:
    token = inboxlinks.token_for(KEY, ALICE, EXPIRES)
    opened = inboxlinks.verify(KeyRing(KEY), token, NOW)
    assert opened == inboxlinks.InboxToken(inboxlinks.approver_id(ALICE), int(EXPIRES.timestamp()))
    assert opened.approver_id != inboxlinks.approver_id(BOB)
    assert opened.expires_at == EXPIRES
    with pytest.raises(ExpiredLink):
        inboxlinks.verify(KeyRing(KEY), token, EXPIRES)


def test_the_approver_id_ignores_the_case_of_the_address() -> None:
    assert inboxlinks.approver_id("Alice@Example.com ") == inboxlinks.approver_id(ALICE)


def test_one_rotation_keeps_the_link_and_a_second_revokes_it() -> None:
    token = inboxlinks.token_for(KEY, ALICE, EXPIRES)
    assert inboxlinks.verify(KeyRing(NEWER_KEY, KEY), token, NOW)
    with pytest.raises(ForgedLink):
        inboxlinks.verify(KeyRing(NEWEST_KEY, NEWER_KEY), token, NOW)


def test_another_approvers_id_or_a_later_expiry_in_the_token_reads_as_forged() -> None:
    token = inboxlinks.token_for(KEY, ALICE, EXPIRES)
    bobs = inboxlinks.token_for(KEY, BOB, EXPIRES)
    later = inboxlinks.token_for(KEY, ALICE, EXPIRES + timedelta(days=30))
    # Alice's secret part under Bob's id, then under a later expiry.
    for head in (bobs[:21], later[:27]):
        altered = head + token[len(head) :]
        with pytest.raises(ForgedLink):
            inboxlinks.verify(KeyRing(KEY), altered, NOW)


@given(st.text(max_size=60))
def test_anything_else_is_malformed_or_forged_never_an_inbox(text: str) -> None:
    with pytest.raises((MalformedLink, ForgedLink)):
        inboxlinks.verify(KeyRing(KEY), text, NOW)
