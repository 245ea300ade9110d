"""Signed approval links.

A link names the approval, the approver and an expiry, and carries an HMAC-SHA256 of the
three under a key that lives in Secrets Manager. It never carries the task token: an email
is forwarded, scanned and logged, so the link must be worthless beyond its one purpose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
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


def sign(key: bytes, claims: LinkClaims) -> str:
    digest = hmac.new(key, claims.payload(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def link_for(api_url: str, key: bytes, claims: LinkClaims) -> str:
    query = urlencode({"approver": claims.approver, "expires": claims.expires, "sig": sign(key, claims)})
    return f"{api_url.rstrip('/')}/approvals/{claims.approval_id}?{query}"


def verify(key: bytes, approval_id: str, fields: dict[str, str], now: datetime | None = None) -> LinkClaims:
    """The claims of a link or form whose signature holds, else a :class:`LinkError`.

    The signature is checked before the expiry, so an altered expiry reads as forged.
    """
    approver, expires, signature = (fields.get(name, "") for name in ("approver", "expires", "sig"))
    if not (approver and expires and signature):
        raise MalformedLink("the link is incomplete: it needs approver, expires and sig")
    # ASCII digits only: str.isdigit() also accepts "²" and "١", which int() refuses or reads.
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        raise MalformedLink("the link's expiry is not a time")
    claims = LinkClaims(approval_id=approval_id, approver=approver, expires=int(expires))
    if not hmac.compare_digest(sign(key, claims).encode(), signature.encode("utf-8", "replace")):
        raise ForgedLink("the link's signature does not match: it was altered or not issued by us")
    current = now or datetime.now(UTC)
    if current.timestamp() >= claims.expires:
        raise ExpiredLink("the link has expired")
    return claims
