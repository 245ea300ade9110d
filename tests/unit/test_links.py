"""Signed links: what they carry, and that nothing but an untouched, unexpired link passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from approvals.links import (
    ExpiredLink,
    ForgedLink,
    KeyRing,
    LinkClaims,
    LinkError,
    MalformedLink,
    SigningKey,
    WeakKey,
    approval_id_for,
    link_for,
    sign,
    verify,
)

KEY = SigningKey(b"k" * 64)
OTHER_KEY = SigningKey(b"o" * 64)
RING = KeyRing(KEY)
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
EXPIRES = int((NOW + timedelta(hours=24)).timestamp())
APPROVAL_ID = approval_id_for("token-of-some-execution")
CLAIMS = LinkClaims(APPROVAL_ID, "alice@example.com", EXPIRES)
API_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/"


def fields_of(link: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(link)
    return parts.path.rsplit("/", 1)[-1], dict(parse_qsl(parts.query))


def good_fields() -> dict[str, str]:
    return fields_of(link_for(API_URL, KEY, CLAIMS))[1]


def test_round_trip() -> None:
    link = link_for(API_URL, KEY, CLAIMS)
    approval_id, fields = fields_of(link)
    assert approval_id == APPROVAL_ID
    assert verify(RING, approval_id, fields, NOW) == CLAIMS


def test_link_shape() -> None:
    link = link_for(API_URL, KEY, CLAIMS)
    assert link.startswith(
        f"https://abc123.execute-api.eu-west-1.amazonaws.com/prod/approvals/{APPROVAL_ID}?"
    )
    _, fields = fields_of(link)
    assert set(fields) == {"approver", "expires", "kid", "sig"}
    assert fields["kid"] == KEY.key_id
    assert fields["approver"] == "alice@example.com"
    assert fields["expires"] == str(EXPIRES)
    assert "%40" in link  # the address is encoded in the query
    assert "=" not in fields["sig"]  # unpadded URL-safe base64
    assert len(fields["sig"]) == 43  # 32 bytes of HMAC-SHA256


def test_link_carries_no_token() -> None:
    token = "arn-like-secret-task-token-AAAAKgAAAAIAAAAA"
    link = link_for(API_URL, KEY, LinkClaims(approval_id_for(token), "alice@example.com", EXPIRES))
    assert token not in link
    assert approval_id_for(token) != token
    assert len(approval_id_for(token)) == 32


def test_approval_id_is_stable_and_distinct() -> None:
    assert approval_id_for("a") == approval_id_for("a")
    assert approval_id_for("a") != approval_id_for("b")


def test_signature_depends_on_every_claim_and_the_key() -> None:
    base = sign(KEY, CLAIMS)
    variants = [
        LinkClaims("f" * 32, CLAIMS.approver, CLAIMS.expires),
        LinkClaims(CLAIMS.approval_id, "bob@example.com", CLAIMS.expires),
        LinkClaims(CLAIMS.approval_id, CLAIMS.approver, CLAIMS.expires + 1),
    ]
    assert all(sign(KEY, v) != base for v in variants)
    assert sign(OTHER_KEY, CLAIMS) != base


def test_claims_cannot_be_shifted_between_fields() -> None:
    """The payload separates its fields, so moving text from one to the next is no use."""
    a = LinkClaims("abc", "x@example.com", 1)
    b = LinkClaims("ab", "cx@example.com", 1)
    assert sign(KEY, a) != sign(KEY, b)


@pytest.mark.parametrize(
    "change",
    [
        {"approver": "bob@example.com"},
        {"approver": "ALICE@example.com"},
        {"expires": str(EXPIRES + 3600)},
        {"expires": str(EXPIRES - 1)},
        {"sig": "A" * 43},
        {"sig": "x"},
        {"sig": "é" * 43},
    ],
)
def test_tampered_fields_are_forged(change: dict[str, str]) -> None:
    with pytest.raises(ForgedLink):
        verify(RING, APPROVAL_ID, {**good_fields(), **change}, NOW)


def test_tampered_signature_bit_is_forged() -> None:
    fields = good_fields()
    flipped = fields["sig"][:-2] + ("A" if fields["sig"][-2] != "A" else "B") + fields["sig"][-1]
    with pytest.raises(ForgedLink):
        verify(RING, APPROVAL_ID, {**fields, "sig": flipped}, NOW)


def test_link_for_another_approval_is_forged() -> None:
    with pytest.raises(ForgedLink):
        verify(RING, approval_id_for("another token"), good_fields(), NOW)


def test_link_under_another_key_is_forged() -> None:
    with pytest.raises(ForgedLink):
        verify(KeyRing(OTHER_KEY), APPROVAL_ID, good_fields(), NOW)


def test_altered_expiry_reads_as_forged_even_when_past() -> None:
    """Signature first: an expiry pushed into the past is an alteration, not an expiry."""
    with pytest.raises(ForgedLink):
        verify(RING, APPROVAL_ID, {**good_fields(), "expires": "1"}, NOW)


@pytest.mark.parametrize("late", [timedelta(0), timedelta(seconds=1), timedelta(days=400)])
def test_expired(late: timedelta) -> None:
    at_expiry = datetime.fromtimestamp(EXPIRES, UTC)
    with pytest.raises(ExpiredLink):
        verify(RING, APPROVAL_ID, good_fields(), at_expiry + late)


def test_valid_until_the_last_second() -> None:
    just_before = datetime.fromtimestamp(EXPIRES, UTC) - timedelta(seconds=1)
    assert verify(RING, APPROVAL_ID, good_fields(), just_before) == CLAIMS


def test_default_now_is_the_clock() -> None:
    past = LinkClaims(APPROVAL_ID, "alice@example.com", int(datetime.now(UTC).timestamp()) - 5)
    _, fields = fields_of(link_for(API_URL, KEY, past))
    with pytest.raises(ExpiredLink):
        verify(RING, APPROVAL_ID, fields)


@pytest.mark.parametrize("missing", ["approver", "expires", "sig"])
def test_missing_fields_are_malformed(missing: str) -> None:
    fields = {k: v for k, v in good_fields().items() if k != missing}
    with pytest.raises(MalformedLink):
        verify(RING, APPROVAL_ID, fields, NOW)
    with pytest.raises(MalformedLink):
        verify(RING, APPROVAL_ID, {**good_fields(), missing: ""}, NOW)


@pytest.mark.parametrize("expires", ["soon", "-1", "1.5", "1e9", " 123", "1" * 13, "١٢٣", "²", "1_000"])
def test_expiry_that_is_not_a_time_is_malformed(expires: str) -> None:
    with pytest.raises(MalformedLink):
        verify(RING, APPROVAL_ID, {**good_fields(), "expires": expires}, NOW)


def test_an_expiry_written_with_a_leading_zero_is_malformed() -> None:
    """Found by tests/security/test_fuzz.py: "0" before the issued expiry read as the same
    time, so the signature held and an altered link got past the API."""
    fields = good_fields()
    with pytest.raises(MalformedLink):
        verify(RING, APPROVAL_ID, {**fields, "expires": "0" + fields["expires"]}, NOW)


def test_error_messages_say_what_is_wrong() -> None:
    with pytest.raises(MalformedLink, match="approver, expires and sig"):
        verify(RING, APPROVAL_ID, {}, NOW)
    with pytest.raises(ForgedLink, match="altered"):
        verify(RING, APPROVAL_ID, {**good_fields(), "approver": "eve@example.com"}, NOW)
    with pytest.raises(ExpiredLink, match="expired"):
        verify(RING, APPROVAL_ID, good_fields(), NOW + timedelta(days=2))


def test_every_link_error_is_a_link_error() -> None:
    assert issubclass(ForgedLink, LinkError)
    assert issubclass(MalformedLink, LinkError)
    assert issubclass(ExpiredLink, LinkError)


@given(
    approval_id=st.text(),
    fields=st.dictionaries(
        st.sampled_from(["approver", "expires", "sig", "decision", "comment", ""]),
        st.text() | st.integers(min_value=0, max_value=10**14).map(str),
    ),
)
@example(approval_id=APPROVAL_ID, fields={"approver": "\ud800", "expires": "1", "sig": "\udfff"})
@example(approval_id="\x00", fields={"approver": "a", "expires": "99999999999", "sig": "\x00"})
def test_verify_never_raises_anything_but_link_errors(approval_id: str, fields: dict[str, str]) -> None:
    try:
        claims = verify(RING, approval_id, fields, NOW)
    except LinkError:
        return
    # Passing by chance would mean a forged signature: that must not happen.
    raise AssertionError(f"accepted unsigned fields: {claims}")


@given(
    approver=st.emails(),
    expires=st.integers(min_value=int(NOW.timestamp()) + 1, max_value=10**12 - 1),
    approval_id=st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
)
def test_any_issued_link_verifies(approver: str, expires: int, approval_id: str) -> None:
    claims = LinkClaims(approval_id, approver, expires)
    path_id, fields = fields_of(link_for(API_URL, KEY, claims))
    assert path_id == approval_id
    assert verify(RING, path_id, fields, NOW) == claims


# Keys that rotate --------------------------------------------------------------------------


def test_link_verifies_under_the_previous_key_after_a_rotation() -> None:
    """A link in flight (valid up to a year) outlives one rotation of the key."""
    rotated = KeyRing(current=OTHER_KEY, previous=KEY)
    assert verify(rotated, APPROVAL_ID, good_fields(), NOW) == CLAIMS
    new_link = fields_of(link_for(API_URL, OTHER_KEY, CLAIMS))[1]
    assert new_link["kid"] == OTHER_KEY.key_id != KEY.key_id
    assert verify(rotated, APPROVAL_ID, new_link, NOW) == CLAIMS


def test_link_of_a_retired_key_is_forged() -> None:
    """A second rotation retires the key: the way to revoke every older link."""
    retired = KeyRing(current=SigningKey(b"n" * 64), previous=OTHER_KEY)
    with pytest.raises(ForgedLink, match="retired"):
        verify(retired, APPROVAL_ID, good_fields(), NOW)


def test_key_id_only_chooses_the_key() -> None:
    """Naming the ring's other key makes the signature fail, whichever key is named."""
    ring = KeyRing(current=OTHER_KEY, previous=KEY)
    with pytest.raises(ForgedLink, match="signature"):
        verify(ring, APPROVAL_ID, {**good_fields(), "kid": OTHER_KEY.key_id}, NOW)


def test_link_without_key_id_is_tried_under_both_keys() -> None:
    """Links issued before links named their key still verify through a rotation."""
    unnamed = {name: value for name, value in good_fields().items() if name != "kid"}
    assert verify(KeyRing(current=OTHER_KEY, previous=KEY), APPROVAL_ID, unnamed, NOW) == CLAIMS
    with pytest.raises(ForgedLink):
        verify(KeyRing(current=OTHER_KEY), APPROVAL_ID, unnamed, NOW)


def test_key_id_names_the_key_without_revealing_it() -> None:
    assert len(KEY.key_id) == 8
    assert all(c in "0123456789abcdef" for c in KEY.key_id)
    assert KEY.key_id not in KEY.secret.hex()
    assert SigningKey(b"k" * 64).key_id == KEY.key_id
    assert "k" * 8 not in repr(KEY)  # the key stays out of logs and tracebacks


@pytest.mark.parametrize("length", [0, 1, 16, 31])
def test_key_shorter_than_32_bytes_is_refused(length: int) -> None:
    with pytest.raises(WeakKey, match=f"has {length} bytes; at least 32"):
        SigningKey(b"s" * length)
    assert SigningKey(b"s" * 32).key_id
