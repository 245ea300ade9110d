"""The relying party's checks, with the provider's answers given by a fetcher (no network)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from approvals import signin
from approvals.links import KeyRing, SigningKey

ISSUER = "https://login.example.com"
CLIENT = "approvals-client"
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # same kid, another key
RING = KeyRing(SigningKey(b"s" * 32))


def _token(key: RSAKey = KEY, **overrides: Any) -> str:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "123",
        "exp": int((NOW + timedelta(minutes=5)).timestamp()),
        "iat": int(NOW.timestamp()),
        "nonce": "n-1",
        "email": "Alice@Example.com",
        "email_verified": True,
        **overrides,
    }
    return jwt.encode({"alg": "RS256", "kid": "k1"}, {k: v for k, v in claims.items() if v is not None}, key)


class Issuer:
    """The provider's documents, as a fetcher answers them; counts what was fetched."""

    def __init__(self, id_token: str = "") -> None:
        self.id_token = id_token
        self.fetched: list[str] = []
        self.posted: list[tuple[bytes | None, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, Any]:
        self.fetched.append(url)
        if url.endswith("/.well-known/openid-configuration"):
            return {
                "issuer": ISSUER,
                "authorization_endpoint": f"{ISSUER}/authorize",
                "token_endpoint": f"{ISSUER}/token",
                "jwks_uri": f"{ISSUER}/jwks",
            }
        if url.endswith("/jwks"):
            return {"keys": [KEY.as_dict(private=False)]}
        self.posted.append((body, headers))
        return {"id_token": self.id_token, "access_token": "a"}


def _provider(issuer: Issuer) -> signin.Provider:
    return signin.Provider(ISSUER, CLIENT, lambda: "the secret", issuer)


def test_a_token_that_holds_gives_its_verified_address_in_lower_case() -> None:
    assert _provider(Issuer()).verify(_token(), "n-1", NOW) == "alice@example.com"


# Made in the test, not at collection: the keys are random, and xdist's workers must
# collect the same test ids.
REFUSED_TOKENS: dict[str, Callable[[], str]] = {
    "wrong issuer": lambda: _token(iss="https://evil.example.com"),
    "wrong audience": lambda: _token(aud="another-client"),
    "expired": lambda: _token(exp=int((NOW - timedelta(minutes=5)).timestamp())),
    "no expiry": lambda: _token(exp=None),
    "bad signature": lambda: _token(key=OTHER_KEY),
    "another nonce": lambda: _token(nonce="n-2"),
    "no nonce": lambda: _token(nonce=None),
    "email not verified": lambda: _token(email_verified=False),
    "no email": lambda: _token(email=None),
    "not a token": lambda: "not.a.token",
    "unsigned": lambda: "eyJhbGciOiJub25lIn0." + _token().split(".")[1] + ".",
}


@pytest.mark.parametrize("why", REFUSED_TOKENS)
def test_a_token_that_does_not_hold_is_refused(why: str) -> None:
    with pytest.raises(signin.SignInFailed):
        _provider(Issuer()).verify(REFUSED_TOKENS[why](), "n-1", NOW)


def test_discovery_and_keys_are_read_once_per_container() -> None:
    issuer = Issuer()
    provider = _provider(issuer)
    for _ in range(3):
        provider.verify(_token(), "n-1", NOW)
    assert len(issuer.fetched) == 2  # the discovery document, the keys


def test_a_discovery_document_naming_another_issuer_is_refused() -> None:
    def fetch(url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, Any]:
        return {"issuer": "https://evil.example.com"}

    with pytest.raises(signin.SignInFailed):
        signin.Provider(ISSUER, CLIENT, lambda: "", fetch).metadata()


def test_the_flow_sends_pkce_state_and_nonce_and_its_cookie_keeps_them() -> None:
    started = signin.start(_provider(Issuer()), RING.current, "a/" + "x" * 22, "alice@example.com", "cb", NOW)
    query = {k: v[0] for k, v in parse_qs(urlsplit(started.authorize_url).query).items()}
    assert query["code_challenge_method"] == "S256"
    assert {"state", "nonce", "code_challenge"} <= set(query)
    flow = signin.unseal(RING, started.cookie, "flow", NOW)
    assert flow is not None
    assert (flow["state"], flow["nonce"]) == (query["state"], query["nonce"])
    assert signin._challenge(flow["verifier"]) == query["code_challenge"]
    assert query["login_hint"] == "alice@example.com"


@pytest.mark.parametrize("return_to", ["https://evil.example.com/", "//evil.example.com", "a/../../x", ""])
def test_sign_in_returns_only_to_an_approval_page(return_to: str) -> None:
    with pytest.raises(signin.SignInFailed):
        signin.start(_provider(Issuer()), RING.current, return_to, "", "cb", NOW)


def _finish(issuer: Issuer, cookie: str, state: str, now: datetime = NOW) -> signin.Finished:
    return signin.finish(_provider(issuer), RING, cookie, {"state": state, "code": "c"}, "cb", now, 600)


def test_the_callback_takes_its_own_state_and_gives_a_session_bound_to_the_address() -> None:
    issuer = Issuer()
    started = signin.start(_provider(issuer), RING.current, "a/" + "x" * 22, "", "cb", NOW)
    state = parse_qs(urlsplit(started.authorize_url).query)["state"][0]
    nonce = signin.unseal(RING, started.cookie, "flow", NOW)["nonce"]  # type: ignore[index]
    issuer.id_token = _token(nonce=nonce)
    finished = _finish(issuer, started.cookie, state)
    assert finished.return_to == "a/" + "x" * 22
    session = signin.session_from(RING, finished.cookie, ISSUER, NOW)
    assert session == signin.Session("alice@example.com", ISSUER, int(NOW.timestamp()) + 600)
    # The flow's cookie is not a session, nor the session a flow: a replayed callback finds no flow.
    assert signin.session_from(RING, started.cookie, ISSUER, NOW) is None
    with pytest.raises(signin.SignInFailed, match="stale"):
        _finish(issuer, finished.cookie, state)
    # The session ends after its minutes, and is worth nothing under another issuer.
    assert signin.session_from(RING, finished.cookie, ISSUER, NOW + timedelta(seconds=600)) is None
    assert signin.session_from(RING, finished.cookie, "https://other.example.com", NOW) is None


@pytest.mark.parametrize("why", ["foreign state", "no cookie", "forged cookie", "expired flow"])
def test_the_callback_refuses_a_stale_or_foreign_state_before_any_exchange(why: str) -> None:
    issuer = Issuer()
    started = signin.start(_provider(issuer), RING.current, "a/" + "x" * 22, "", "cb", NOW)
    state = parse_qs(urlsplit(started.authorize_url).query)["state"][0]
    cookie, now = started.cookie, NOW
    match why:
        case "foreign state":
            state = "another-flows-state"
        case "no cookie":
            cookie = ""
        case "forged cookie":
            body, _, _ = cookie.partition(".")
            cookie = body + ".AAAA"
        case "expired flow":
            now = NOW + timedelta(seconds=signin.FLOW_SECONDS)
    with pytest.raises(signin.SignInFailed):
        _finish(issuer, cookie, state, now)
    assert issuer.posted == []  # no code was exchanged


def test_the_code_is_exchanged_with_the_verifier_and_the_client_secret() -> None:
    issuer = Issuer()
    started = signin.start(_provider(issuer), RING.current, "a/" + "x" * 22, "", "cb", NOW)
    flow = signin.unseal(RING, started.cookie, "flow", NOW)
    assert flow is not None
    issuer.id_token = _token(nonce=flow["nonce"])
    _finish(issuer, started.cookie, flow["state"])
    body, headers = issuer.posted[0]
    assert body is not None
    sent = parse_qs(body.decode())
    assert sent["code_verifier"] == [flow["verifier"]]
    assert sent["grant_type"] == ["authorization_code"]
    assert headers["Authorization"].startswith("Basic ")


def test_the_fetcher_tells_a_provider_that_does_not_answer_from_one_that_refuses() -> None:
    with pytest.raises(signin.ProviderUnreachable):
        signin.http_fetch("http://localhost:1/.well-known/openid-configuration", None, {})
    with pytest.raises(signin.SignInFailed, match="HTTPS"):
        signin.http_fetch("http://login.example.com/.well-known/openid-configuration", None, {})
