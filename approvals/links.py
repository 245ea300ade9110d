"""Signed approval links.

A link names the approval, the approver and an expiry, and carries an HMAC-SHA256 of the
three under a key that lives in Secrets Manager. It never carries the task token: an email
is forwarded, scanned and logged, so the link must be worthless beyond its one purpose.

Keys rotate: a link also names the key that signed it (``kid``, a digest of the key, not
the key), and a link verifies under the current key or the previous one, so rotating the
key breaks no link in flight. A link without a ``kid`` (issued before keys had ids) is
tried under both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode


class LinkError(Exception):
    """The link's fields are missing, malformed, altered or expired; the message says which."""


class ForgedLink(LinkError):
    pass


class MalformedLink(LinkError):
    pass


class ExpiredLink(LinkError):
    pass


# HMAC-SHA256 takes any key, but one shorter than its 32-byte output is weaker than the
# signature it makes (RFC 2104 section 3).
MIN_KEY_BYTES = 32


class WeakKey(ValueError):
    """The signing key is too short to sign links with."""


@dataclass(frozen=True)
class SigningKey:
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise WeakKey(
                f"the link signing key has {len(self.secret)} bytes; at least {MIN_KEY_BYTES} are"
                " needed: set a longer one (`approvals rotate-key` makes one)"
            )

    @property
    def key_id(self) -> str:
        """Names the key in a link; a digest under its own label, so it reveals nothing of the key."""
        return hashlib.sha256(b"approvals link key id\n" + self.secret).hexdigest()[:8]


@dataclass(frozen=True)
class KeyRing:
    """The keys a link may be signed with: the current one signs, both verify."""

    current: SigningKey
    previous: SigningKey | None = None

    def __iter__(self) -> Iterator[SigningKey]:
        yield self.current
        if self.previous is not None:
            yield self.previous

    def knows(self, key_id: str) -> bool:
        return any(key.key_id == key_id for key in self)


@dataclass(frozen=True)
class LinkClaims:
    approval_id: str
    approver: str
    expires: int  # epoch seconds

    def payload(self) -> bytes:
        # surrogatepass: a lone surrogate from a hand-made URL must fail the signature, not raise.
        return f"v1\n{self.approval_id}\n{self.approver}\n{self.expires}".encode("utf-8", "surrogatepass")


def approval_id_for(task_token: str) -> str:
    """A stable, non-reversible id for the approval behind a task token."""
    return hashlib.sha256(task_token.encode()).hexdigest()[:32]


# The fields of a link's query string, which the page's form carries on to the POST.
LINK_FIELDS = ("approver", "expires", "kid", "sig")


def sign(key: SigningKey, claims: LinkClaims) -> str:
    digest = hmac.new(key.secret, claims.payload(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def link_for(api_url: str, key: SigningKey, claims: LinkClaims) -> str:
    query = urlencode(
        {"approver": claims.approver, "expires": claims.expires, "kid": key.key_id, "sig": sign(key, claims)}
    )
    return f"{api_url.rstrip('/')}/approvals/{claims.approval_id}?{query}"


def verify(
    keys: KeyRing, approval_id: str, fields: dict[str, str], now: datetime | None = None
) -> LinkClaims:
    """The claims of a link or form whose signature holds under one of the keys, else a
    :class:`LinkError`.

    The signature is checked before the expiry, so an altered expiry reads as forged. The
    ``kid`` only chooses the key: naming another key makes the signature fail, no more.
    """
    approver, expires, signature = (fields.get(name, "") for name in ("approver", "expires", "sig"))
    if not (approver and expires and signature):
        raise MalformedLink("the link is incomplete: it needs approver, expires and sig")
    # ASCII digits only: str.isdigit() also accepts "²" and "١", which int() refuses or reads;
    # and as we write them, without a leading zero, which would read as the same time.
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 12 or expires.startswith("0"):
        raise MalformedLink("the link's expiry is not a time")
    claims = LinkClaims(approval_id=approval_id, approver=approver, expires=int(expires))
    key_id = fields.get("kid", "")
    candidates = [key for key in keys if not key_id or key.key_id == key_id]
    if key_id and not candidates:
        raise ForgedLink("the link names a key we do not hold: it was altered, or its key was retired")
    given = signature.encode("utf-8", "replace")
    if not any(hmac.compare_digest(sign(key, claims).encode(), given) for key in candidates):
        raise ForgedLink("the link's signature does not match: it was altered or not issued by us")
    current = now or datetime.now(UTC)
    if current.timestamp() >= claims.expires:
        raise ExpiredLink("the link has expired")
    return claims
