"""Short approval links: ``{api}/a/<token>``, with no address and no signature in the URL.

A token is 43 URL-safe characters: the approval id (16 bytes) followed by 16 bytes only
we can make (an HMAC of the approval id and the approver under the link signing key),
base64url without padding. The table keeps only the SHA-256 of each token, on the
approval's own item, with the approver it is bound to (``Approval.short_links``).

Why the approval id is in the token rather than in a separate link item: the page view
and the vote each stay one conditional UpdateItem on the approval (the vote then one
SendTaskSuccess). The update finds the token's hash in the item's map, by key, in its
condition; a separate item would cost a GetItem before every view and every vote. The
approval id is itself a digest of the task token, no personal data, and it opens nothing
without the 128 secret bits beside it.

Why the secret part is derived rather than drawn at random: the worker may email again
after a crash, and every reminder carries a link; deriving the same token for the same
approver means nothing new is stored for either. A token the key can no longer derive
(the key rotated since the approval was stored) is simply not emailed: the signed link
goes instead (:func:`approvals.notify.emails_for`).

Why a token is checked against the keys as well as by its hash: rotation revokes links.
A token works while the current or the previous key makes it for its approver, as a signed
link works while one of them verifies it, so the tokens already sent keep working through
one rotation and a second rotation revokes them (:func:`made_by`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from approvals.links import KeyRing, SigningKey

PATH_PREFIX = "/a/"
ID_BYTES = 16  # the approval id, 32 hex digits
SECRET_BYTES = 16  # 128 bits
TOKEN_LENGTH = 43  # base64url of 32 bytes, unpadded
TOKEN = re.compile(rf"^[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}$")
# What a short link's page form carries: the approver, which the vote checks against the link.
FORM_FIELDS = ("approver",)


class MalformedToken(ValueError):
    """Not a token we could have issued: wrong length or alphabet."""


@dataclass(frozen=True)
class ShortLink:
    """A token as the API reads it: the approval it names, and the hash to look up there."""

    approval_id: str
    token_hash: str


def token_hash(token: str) -> str:
    """What the table keeps of a token (SHA-256, hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_for(key: SigningKey, approval_id: str, approver: str) -> str:
    # surrogatepass: a lone surrogate in a hand-made form must fail the check, not raise.
    message = f"approvals short link\n{approval_id}\n{approver}".encode("utf-8", "surrogatepass")
    secret = hmac.new(key.secret, message, hashlib.sha256).digest()[:SECRET_BYTES]
    return base64.urlsafe_b64encode(bytes.fromhex(approval_id) + secret).rstrip(b"=").decode()


def made_by(keys: KeyRing, token: str, approver: str) -> bool:
    """Whether one of the keys makes this well-formed token for the approver."""
    approval_id = parse(token).approval_id
    return any(hmac.compare_digest(token_for(key, approval_id, approver), token) for key in keys)


def bindings(key: SigningKey, approval_id: str, approvers: Iterable[str]) -> dict[str, str]:
    """Each approver's token hash, bound to the approver: what the approval stores."""
    return {token_hash(token_for(key, approval_id, approver)): approver for approver in approvers}


def short_link(api_url: str, token: str) -> str:
    return f"{api_url.rstrip('/')}{PATH_PREFIX}{token}"


def token_in(link: str) -> str | None:
    """The token of a short link (its last path segment, after ``/a/``); None for any other URL."""
    _, prefix, token = urlsplit(link).path.rpartition(PATH_PREFIX)
    return token if prefix and "/" not in token else None


def parse(token: str) -> ShortLink:
    """The approval a well-formed token names; :class:`MalformedToken` for anything else.

    Nothing here tells a real token from a made-up one of the right form: only the table
    knows the hashes, and it is asked by key.
    """
    if not TOKEN.match(token):
        raise MalformedToken("not a short link token")
    raw = base64.urlsafe_b64decode(token + "=")
    return ShortLink(approval_id=raw[:ID_BYTES].hex(), token_hash=token_hash(token))
