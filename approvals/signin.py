"""Sign-in before a vote counts: the approval API as an OpenID Connect relying party.

A request (or a whole deployment) may require that the approver sign in with the company's
provider, so that a forwarded or leaked link decides nothing by itself. The flow is the
authorization code flow with PKCE, ``state`` and ``nonce``. Nothing is stored server side:
the flow's secrets (state, nonce, PKCE verifier, the page to return to) travel in a cookie
sealed with an HMAC under the link key, so a GET writes nothing and a scanner that follows
the redirect decides nothing. The callback checks the returned ``state`` against that
cookie, exchanges the code, checks the ID token against the issuer's keys (``iss``,
``aud``, ``exp``, ``nonce``, the email verified) with joserfc, and replaces the flow's
cookie with a short session bound to the signed-in address: a replayed or foreign
``state`` then finds no flow to match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from approvals.inboxlinks import TOKEN_LENGTH
from approvals.links import KeyRing, SigningKey

COOKIE = "approvals_signin"  # the flow while signing in, then the session: one at a time
START_PATH, CALLBACK_PATH, SIGN_OUT_PATH = "/signin", "/signin/callback", "/signout"
FLOW_SECONDS = 600  # time to sign in at the provider
JWKS_REFRESH_SECONDS = 60.0  # a token naming a key we do not hold re-reads the keys, this seldom
CLOCK_SKEW_SECONDS = 60
# Where the callback may send the browser back to: the approval pages and the inbox (with
# its filter and page), never another site.
RETURN_TO = re.compile(
    r"^(approvals/[0-9a-f]{32}\?[A-Za-z0-9._~%&=+-]{1,1024}|a/[A-Za-z0-9_-]{10,64}"
    rf"|i/[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}(\?[A-Za-z0-9._~%&=+-]{{1,1024}})?)$"
)
LOCAL_HOSTS = ("localhost", "127.0.0.1")
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]

# url, form body (None: GET), headers -> the JSON answer; raises SignInFailed when the
# provider refuses (an HTTP error), ProviderUnreachable when it does not answer.
Fetch = Callable[[str, bytes | None, dict[str, str]], dict[str, Any]]


class SignInFailed(Exception):
    """The sign-in does not hold; the message is for the person and names nobody else."""


class ProviderUnreachable(Exception):
    """The identity provider did not answer, or not with JSON: try again later."""


@dataclass(frozen=True)
class SignedIn:
    """Who signed in (the ID token's verified address) and with which issuer: what proves a
    vote by sign-in, and what the vote records of it. No token, no secret."""

    email: str
    issuer: str


@dataclass(frozen=True)
class Session(SignedIn):
    """A browser's sign-in, until when (epoch seconds)."""

    expires: int


@dataclass(frozen=True)
class Started:
    authorize_url: str
    cookie: str  # the sealed flow


@dataclass(frozen=True)
class Finished:
    session: Session
    cookie: str  # the sealed session, in place of the flow
    return_to: str  # relative to the API's base URL


def http_fetch(url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, Any]:
    """The provider's JSON, over HTTPS (plain HTTP only for a local test provider)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS):
        raise SignInFailed("The identity provider must be reached over HTTPS.")
    import urllib.error
    import urllib.request  # here: only a sign-in pays for http.client and email

    request = urllib.request.Request(url, data=body, headers={"Accept": "application/json", **headers})  # noqa: S310 (checked above)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (checked above)
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as refused:  # a used, foreign or expired code, a wrong secret
        raise SignInFailed(
            f"The identity provider did not accept the sign-in ({refused.code}). Please sign in again."
        ) from None
    except (OSError, ValueError):
        raise ProviderUnreachable(
            "The identity provider cannot be reached just now. Please try again in a minute."
        ) from None


class Provider:
    """One issuer, as its discovery document and keys say; both read at first use and kept
    for the container's life (the keys re-read when a token names one we do not hold)."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: Callable[[], str],
        fetch: Fetch = http_fetch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.RLock()  # the keys' read reads the metadata
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, Any] | None = None
        self._keys_read_at = 0.0
        self._secret: str | None = None

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None:
                found = self._fetch(f"{self.issuer}/.well-known/openid-configuration", None, {})
                if str(found.get("issuer", "")).rstrip("/") != self.issuer:
                    raise SignInFailed("The identity provider's discovery document names another issuer.")
                self._metadata = found
            return self._metadata

    def _key_set(self, key_id: str) -> dict[str, Any]:
        with self._lock:
            held = self._keys is not None and any(k.get("kid") == key_id for k in self._keys.get("keys", []))
            stale = self._clock() - self._keys_read_at >= JWKS_REFRESH_SECONDS
            if self._keys is None or (not held and stale):
                self._keys = self._fetch(self.metadata()["jwks_uri"], None, {})
                self._keys_read_at = self._clock()
            return self._keys

    def authorize_url(self, state: str, nonce: str, verifier: str, redirect_uri: str, login_hint: str) -> str:
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email",
            "state": state,
            "nonce": nonce,
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
            "login_hint": login_hint,
        }
        return f"{self.metadata()['authorization_endpoint']}?{urlencode(query)}"

    def exchange(self, code: str, verifier: str, redirect_uri: str) -> str:
        """The ID token the provider gives for this code."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        if self._secret is None:
            self._secret = self._client_secret()  # once per container, at the first sign-in
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self._secret:  # client_secret_basic
            basic = base64.b64encode(f"{_form(self.client_id)}:{_form(self._secret)}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        else:  # a public client: PKCE alone
            form["client_id"] = self.client_id
        body = urlencode(form).encode()
        answer = self._fetch(self.metadata()["token_endpoint"], body, headers)
        token = answer.get("id_token")
        if not isinstance(token, str):
            raise SignInFailed("The identity provider returned no ID token.")
        return token

    def verify(self, id_token: str, nonce: str, now: datetime, email_claim: str = "email") -> str:
        """The verified address in the ID token: signature by the issuer's keys, ``iss``,
        ``aud``, ``exp``, ``nonce``, and (for the email claim) ``email_verified``."""
        # Imported here: only a sign-in callback pays for it, not every page and vote.
        from joserfc import jws, jwt
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        try:
            key_id = str(jws.extract_compact(id_token.encode()).headers().get("kid", ""))
            keys = KeySet.import_key_set(self._key_set(key_id))  # type: ignore[arg-type]
            token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(
                now=int(now.timestamp()),
                leeway=CLOCK_SKEW_SECONDS,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except (JoseError, ValueError) as error:
            raise SignInFailed(f"The ID token does not hold ({type(error).__name__}).") from None
        claims = token.claims
        if email_claim == "email" and claims.get("email_verified") is not True:
            raise SignInFailed("The identity provider has not verified this email address.")
        email = claims.get(email_claim)
        if not isinstance(email, str) or not email:
            raise SignInFailed(f"The ID token carries no {email_claim}.")
        return email.strip().lower()


def _form(value: str) -> str:
    # RFC 6749 section 2.3.1: the id and secret are form-encoded before Basic.
    return urlencode({"": value})[1:]


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _mac(key: SigningKey, body: str) -> str:
    # Under its own label: a sealed cookie can never pass for a link's signature, nor back.
    digest = hmac.new(key.secret, b"approvals sign-in cookie\n" + body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def seal(key: SigningKey, fields: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{body}.{_mac(key, body)}"


def unseal(keys: KeyRing, value: str, kind: str, now: datetime) -> dict[str, Any] | None:
    """The fields of a cookie sealed by one of the keys, of this kind, not expired; else None."""
    body, _, mac = value.partition(".")
    if not any(hmac.compare_digest(_mac(key, body), mac) for key in keys):
        return None
    fields: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    if (
        fields.get("kind") != kind
        or not isinstance(fields.get("exp"), int)
        or now.timestamp() >= fields["exp"]
    ):
        return None
    return fields


def start(
    provider: Provider, key: SigningKey, return_to: str, login_hint: str, redirect_uri: str, now: datetime
) -> Started:
    """Begin signing in: where to send the browser, and the sealed flow to keep meanwhile."""
    if not RETURN_TO.match(return_to):
        raise SignInFailed("This sign-in link is incomplete. Open the link from your email again.")
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    flow = {
        "kind": "flow",
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
        "return_to": return_to,
        "exp": int(now.timestamp()) + FLOW_SECONDS,
    }
    url = provider.authorize_url(state, nonce, verifier, redirect_uri, login_hint)
    return Started(url, seal(key, flow))


def finish(
    provider: Provider,
    keys: KeyRing,
    cookie: str,
    query: dict[str, str],
    redirect_uri: str,
    now: datetime,
    session_seconds: int,
    email_claim: str = "email",
) -> Finished:
    """End signing in: the callback's ``state`` must be the flow's own, the code must give
    an ID token that holds; the session replaces the flow."""
    if query.get("error"):
        raise SignInFailed("The sign-in was cancelled or refused at the identity provider.")
    flow = unseal(keys, cookie, "flow", now) if cookie else None
    state = query.get("state", "")
    if flow is None or not hmac.compare_digest(str(flow["state"]).encode(), state.encode()):
        raise SignInFailed(
            "This sign-in is stale or was not started here (it was already used, or it expired)."
            " Open the link from your email again."
        )
    id_token = provider.exchange(query.get("code", ""), flow["verifier"], redirect_uri)
    email = provider.verify(id_token, flow["nonce"], now, email_claim)
    session = Session(email=email, issuer=provider.issuer, expires=int(now.timestamp()) + session_seconds)
    sealed = seal(
        keys.current, {"kind": "session", "email": email, "iss": session.issuer, "exp": session.expires}
    )
    return Finished(session, sealed, flow["return_to"])


def session_from(keys: KeyRing, cookie: str, issuer: str, now: datetime) -> Session | None:
    """The session a cookie holds, if it is ours, unexpired and from this issuer."""
    fields = unseal(keys, cookie, "session", now) if cookie else None
    if fields is None or fields.get("iss") != issuer.rstrip("/"):
        return None
    return Session(email=str(fields["email"]), issuer=str(fields["iss"]), expires=int(fields["exp"]))
