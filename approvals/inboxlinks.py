"""An approver's inbox link: ``{api}/i/<token>``, one short link to every request waiting on them.

A digest email carries one of these instead of a link per request. The token is 48 URL-safe
characters: the approver's id (16 bytes, a digest of the address: the inbox's key in the
table), the link's expiry (4 bytes, epoch seconds) and 16 bytes only we can make (an HMAC
of the two under the link signing key), base64url without padding.

Why nothing is stored for it: the id and the expiry are in the token and the HMAC binds
them, so a GET is one query of the approver's inbox and changes nothing. Why the address is
not in it: a link is forwarded and logged; the id opens nothing without the secret part.

Rotation revokes it as it revokes every link: a token works while the current or the
previous key makes it (:func:`verify`), so one rotation keeps it working and a second
retires it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from approvals.links import ExpiredLink, ForgedLink, KeyRing, MalformedLink, SigningKey

PATH_PREFIX = "/i/"
ID_BYTES = 16
EXPIRES_BYTES = 4  # unsigned epoch seconds: enough until 2106
SECRET_BYTES = 16  # 128 bits
TOKEN_LENGTH = 48  # base64url of 36 bytes, which needs no padding
TOKEN = re.compile(rf"^[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}$")


def approver_id(approver: str) -> str:
    """The inbox's key for an approver (32 hex digits): the same for any spelling of the
    address's case, as the directory and the worker lower-case addresses."""
    return hashlib.sha256(f"approvals inbox\n{approver.strip().lower()}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class InboxToken:
    """What a token names: whose inbox, until when."""

    approver_id: str
    expires: int  # epoch seconds

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires, UTC)


def _secret(key: SigningKey, approver_id: str, expires: int) -> bytes:
    message = f"approvals inbox link\n{approver_id}\n{expires}".encode()
    return hmac.new(key.secret, message, hashlib.sha256).digest()[:SECRET_BYTES]


def token_for(key: SigningKey, approver: str, expires_at: datetime) -> str:
    owner = approver_id(approver)
    expires = int(expires_at.timestamp())
    raw = bytes.fromhex(owner) + expires.to_bytes(EXPIRES_BYTES, "big") + _secret(key, owner, expires)
    return base64.urlsafe_b64encode(raw).decode()


def inbox_link(api_url: str, key: SigningKey, approver: str, expires_at: datetime) -> str:
    return f"{api_url.rstrip('/')}{PATH_PREFIX}{token_for(key, approver, expires_at)}"


def parse(token: str) -> tuple[InboxToken, bytes]:
    """The inbox a well-formed token names, and its secret part; :class:`MalformedLink` else."""
    if not TOKEN.match(token):
        raise MalformedLink("not an inbox link")
    raw = base64.urlsafe_b64decode(token)
    owner, expires = raw[:ID_BYTES].hex(), int.from_bytes(raw[ID_BYTES : ID_BYTES + EXPIRES_BYTES], "big")
    return InboxToken(owner, expires), raw[ID_BYTES + EXPIRES_BYTES :]


def made_by(keys: KeyRing, token: str) -> bool:
    """Whether one of the keys makes this token (whatever its expiry)."""
    named, secret = parse(token)
    return any(hmac.compare_digest(_secret(key, named.approver_id, named.expires), secret) for key in keys)


def verify(keys: KeyRing, token: str, now: datetime) -> InboxToken:
    """The inbox a token opens, or a :class:`approvals.links.LinkError` saying why not.

    The secret part is checked before the expiry, so an altered expiry reads as forged.
    """
    named, _ = parse(token)
    if not made_by(keys, token):
        raise ForgedLink("the inbox link was altered, was not issued by us, or its key was retired")
    if now.timestamp() >= named.expires:
        raise ExpiredLink("the inbox link has expired")
    return named
