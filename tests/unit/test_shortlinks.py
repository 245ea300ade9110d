"""Short links: their form, what they carry (and do not), and what the table keeps of them."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from approvals import shortlinks
from approvals.links import KeyRing, SigningKey, approval_id_for
from approvals.shortlinks import MalformedToken, bindings, parse, short_link, token_for, token_hash, token_in

KEY = SigningKey(b"k" * 64)
OTHER_KEY = SigningKey(b"o" * 64)
APPROVAL_ID = approval_id_for("token-of-some-execution")
ALICE, BOB = "alice@example.com", "bob@example.com"
API_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/"


def test_a_short_link_is_the_api_then_a_43_character_url_safe_token() -> None:
    token = token_for(KEY, APPROVAL_ID, ALICE)
    link = short_link(API_URL, token)
    assert link == f"https://abc123.execute-api.eu-west-1.amazonaws.com/prod/a/{token}"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert not any(personal in link for personal in ("?", "@", "alice"))


def test_the_token_names_the_approval_and_its_hash_is_what_is_looked_up() -> None:
    token = token_for(KEY, APPROVAL_ID, ALICE)
    assert parse(token) == shortlinks.ShortLink(APPROVAL_ID, hashlib.sha256(token.encode()).hexdigest())
    assert re.fullmatch(r"[0-9a-f]{64}", token_hash(token))


def test_a_token_is_made_by_its_key_in_either_place_of_the_ring_for_its_approver_only() -> None:
    token = token_for(KEY, APPROVAL_ID, ALICE)
    assert shortlinks.made_by(KeyRing(KEY), token, ALICE)
    assert shortlinks.made_by(KeyRing(OTHER_KEY, KEY), token, ALICE)  # one rotation later
    assert not shortlinks.made_by(KeyRing(OTHER_KEY), token, ALICE)  # retired
    assert not shortlinks.made_by(KeyRing(KEY), token, BOB)
    assert not shortlinks.made_by(KeyRing(KEY), token, "\udcff@example.com")  # refused, not raised


def test_each_approver_and_each_key_gets_another_secret() -> None:
    tokens = {
        token_for(KEY, APPROVAL_ID, ALICE),
        token_for(KEY, APPROVAL_ID, BOB),
        token_for(OTHER_KEY, APPROVAL_ID, ALICE),
        token_for(KEY, approval_id_for("another execution's token"), ALICE),
    }
    assert len(tokens) == 4
    assert len({token[22:] for token in tokens}) == 4, "the secret part differs, not only the id"


def test_the_same_approver_gets_the_same_token_again() -> None:
    """A reminder, or an email sent again after a crash, carries a link that works."""
    assert token_for(KEY, APPROVAL_ID, ALICE) == token_for(KEY, APPROVAL_ID, ALICE)


def test_bindings_keep_hashes_not_tokens() -> None:
    bound = bindings(KEY, APPROVAL_ID, [ALICE, BOB])
    assert bound == {
        token_hash(token_for(KEY, APPROVAL_ID, ALICE)): ALICE,
        token_hash(token_for(KEY, APPROVAL_ID, BOB)): BOB,
    }
    tokens = [token_for(KEY, APPROVAL_ID, who) for who in (ALICE, BOB)]
    assert not any(token in str(bound) for token in tokens)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a" * 42,  # one short
        "a" * 44,  # one long
        "a" * 42 + "=",  # padding is not ours
        "a" * 42 + "+",  # standard base64, not URL-safe
        "a" * 42 + "/",
        "a" * 42 + ".",
        "a" * 42 + "é",
        "a" * 42 + "\n",
        "%61" * 14 + "a",
    ],
)
def test_a_malformed_token_is_refused_by_name(token: str) -> None:
    with pytest.raises(MalformedToken):
        parse(token)


@given(st.text(max_size=60))
def test_parse_accepts_only_the_form_it_issues(text: str) -> None:
    try:
        link = parse(text)
    except MalformedToken:
        assert not re.fullmatch(r"[A-Za-z0-9_-]{43}", text)
        return
    assert re.fullmatch(r"[0-9a-f]{32}", link.approval_id)


@pytest.mark.parametrize(
    ("link", "token"),
    [
        (f"{API_URL}a/abc", "abc"),
        ("http://127.0.0.1:8080/a/abc", "abc"),
        (f"{API_URL}approvals/{APPROVAL_ID}?approver=a&expires=1&sig=x", None),
        (f"{API_URL}a/abc/def", None),
        ("https://example.com/data/abc", None),
    ],
)
def test_token_in_finds_only_a_short_links_token(link: str, token: str | None) -> None:
    assert token_in(link) == token
