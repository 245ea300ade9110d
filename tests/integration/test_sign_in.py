"""Sign-in before a vote counts: the whole redirect dance, against a real OpenID Connect
provider (oidc-provider-mock, over HTTP on localhost) and the API on moto."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlencode, urljoin, urlsplit

import boto3
import pytest
from oidc_provider_mock import run_server_in_thread

from approvals import runtime
from approvals.local.approver import form_headers, request
from approvals.models import ApprovalRequest
from approvals.signin import COOKIE
from tests.conftest import API_URL, ApiResponse, Stack, approval_id_of, moto_stack

ALICE, BOB, MALLORY = "alice@example.com", "bob@example.com", "mallory@example.com"
CLIENT_ID = "approvals-test"
SIGN_IN_REQUEST = ApprovalRequest(
    title="Deploy to production", approvers=[ALICE, BOB], requester="ci@example.com", identity="sign-in"
)


class Provider:
    """The local OpenID Connect provider: its users say who they are, with a verified email."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def add_user(self, email: str, verified: bool = True) -> None:
        body = json.dumps({"email": email, "email_verified": verified}).encode()
        request = urllib.request.Request(
            f"{self.issuer}/users/{email}", body, {"Content-Type": "application/json"}, method="PUT"
        )
        with urllib.request.urlopen(request):
            pass

    def sign_in_as(self, authorize_url: str, email: str) -> str:
        """Press Authorize as ``email`` on the provider's page: where it sends the browser back."""
        assert authorize_url.startswith(self.issuer), authorize_url
        chosen = request(
            authorize_url, urlencode({"sub": email}).encode(), method="POST", follow_redirects=False
        )
        assert chosen.status == 302, f"the provider did not redirect: {chosen.status}"
        return chosen.headers["Location"]


class Browser:
    """One browser: keeps the sign-in cookie the API sets, and sends it back."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.cookie = ""

    def call(
        self, method: str, url: str, headers: dict[str, str] | None = None, body: str = ""
    ) -> ApiResponse:
        sent = {**(headers or {}), **({"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {})}
        response = self.stack.call(method, url, sent, body)
        set_cookie = response.headers.get("Set-Cookie", "")
        if set_cookie.startswith(f"{COOKIE}="):
            self.cookie = set_cookie.split(";", 1)[0].split("=", 1)[1]
        return response

    def open(self, link: str) -> ApiResponse:
        return self.call("GET", link, {"Accept": "text/html"})

    def submit(self, page: ApiResponse, decision: str, comment: str = "") -> ApiResponse:
        assert page.form_action is not None, f"no form on the page ({page.status}): {page.body[:300]}"
        target = urljoin(page.url, page.form_action).split("?", 1)[0]
        fields = {**page.form_fields, "comment": comment, "decision": decision}
        return self.call("POST", target, form_headers(target), urlencode(fields))

    def sign_in(self, provider: Provider, link: str, email: str) -> ApiResponse:
        """Open the link, follow its sign-in button, sign in as ``email``, come back."""
        asked = self.open(link)
        assert asked.status == 401, asked.body
        started = self.call("GET", urljoin(link, _sign_in_href(asked)))
        assert started.status == 302, started.body
        callback = provider.sign_in_as(started.headers["Location"], email)
        return self.call("GET", callback)


def _sign_in_href(page: ApiResponse) -> str:
    start = page.body.index('href="../signin?') + len('href="')
    return page.body[start : page.body.index('"', start)].replace("&amp;", "&")


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with run_server_in_thread() as server:
        issuer = Provider(f"http://localhost:{server.server_port}")
        for email in (ALICE, BOB, MALLORY):
            issuer.add_user(email)
        yield issuer


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, provider: Provider) -> Iterator[Stack]:
    with _stack_signing_in_with(monkeypatch, provider) as created:
        yield created


@contextmanager
def _stack_signing_in_with(monkeypatch: pytest.MonkeyPatch, provider: Provider) -> Iterator[Stack]:
    with moto_stack(monkeypatch) as created:
        monkeypatch.setenv("APPROVALS_OIDC_ISSUER", provider.issuer)
        monkeypatch.setenv("APPROVALS_OIDC_CLIENT_ID", CLIENT_ID)
        secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="oidc-client-secret", SecretString="the client secret"
        )
        monkeypatch.setenv("APPROVALS_OIDC_CLIENT_SECRET", secret["ARN"])
        runtime.reset()
        yield created


def _link(stack: Stack, request: ApprovalRequest, to: str) -> str:
    stack.start(request)
    return stack.email(to, request.title).links[0]


def test_the_approver_signed_in_decides_and_the_decision_says_so(stack: Stack, provider: Provider) -> None:
    arn = stack.start(SIGN_IN_REQUEST.model_copy(update={"approvers": [ALICE]}))
    link = stack.email(ALICE, SIGN_IN_REQUEST.title).links[0]
    browser = Browser(stack)
    back = browser.sign_in(provider, link, ALICE)
    assert back.status == 302
    assert back.headers["Location"] == link  # back to the very page
    set_cookie = back.headers["Set-Cookie"].lower()
    assert {"httponly", "secure", "samesite=lax", "max-age=600", "path=/prod/"} <= {
        part.strip() for part in set_cookie.split(";")
    }
    page = browser.open(link)
    assert page.status == 200
    assert f"Signed in as <strong>{ALICE}</strong>" in page.body
    done = browser.submit(page, "approve")
    assert done.status == 200, done.body
    report = stack.finish(arn)
    vote = report.output["votes"][0]
    assert (vote["approver"], vote["proof"], vote["issuer"]) == (ALICE, "sign-in", provider.issuer)


def test_the_page_says_why_it_asks_for_sign_in_and_shows_nothing_of_the_request(stack: Stack) -> None:
    link = _link(stack, SIGN_IN_REQUEST, ALICE)
    asked = Browser(stack).open(link)
    assert asked.status == 401
    assert "in person" in asked.body
    assert "decides nothing" in asked.body
    assert SIGN_IN_REQUEST.title not in asked.body
    assert BOB not in asked.body
    assert asked.form_action is None


def test_following_the_sign_in_redirect_decides_and_writes_nothing(stack: Stack) -> None:
    link = _link(stack, SIGN_IN_REQUEST, ALICE)
    browser = Browser(stack)
    asked = browser.open(link)  # notes the first view, as any link's page does
    before = stack.raw_item(approval_id_of(link))
    started = browser.call("GET", urljoin(link, _sign_in_href(asked)))
    assert started.status == 302
    assert stack.raw_item(approval_id_of(link)) == before
    assert stack.approval(approval_id_of(link)).votes == {}


def test_a_signed_in_stranger_is_refused_without_naming_anyone(stack: Stack, provider: Provider) -> None:
    link = _link(stack, SIGN_IN_REQUEST, ALICE)
    browser = Browser(stack)
    assert browser.sign_in(provider, link, MALLORY).status == 302
    refused = browser.open(link)
    assert refused.status == 403
    assert "someone other than the approver" in refused.body
    for secret in (ALICE, BOB, MALLORY, SIGN_IN_REQUEST.title):
        assert secret not in refused.body


def test_a_vote_posted_without_the_approvers_session_is_refused_whatever_the_link(
    stack: Stack, provider: Provider
) -> None:
    link = _link(stack, SIGN_IN_REQUEST, ALICE)
    approval_id = approval_id_of(link)
    fields = {"approver": ALICE, "decision": "approve", "comment": ""}
    target = f"{API_URL}/a/{link.rsplit('/', 1)[-1]}"
    # Not signed in at all: the form of a genuine link decides nothing.
    anonymous = Browser(stack).call("POST", target, form_headers(target), urlencode(fields))
    assert anonymous.status == 401, anonymous.body
    # Signed in as Bob, another approver of the same request: his session is not Alice's.
    bob = Browser(stack)
    bob.sign_in(provider, _link_of(stack, BOB), BOB)
    as_bob = bob.call("POST", target, form_headers(target), urlencode(fields))
    assert as_bob.status == 401, as_bob.body
    assert stack.approval(approval_id).votes == {}
    # Alice herself, signed in, decides.
    alice = Browser(stack)
    alice.sign_in(provider, link, ALICE)
    assert alice.call("POST", target, form_headers(target), urlencode(fields)).status == 200
    assert stack.approval(approval_id).votes[ALICE].proof == "sign-in"


def _link_of(stack: Stack, approver: str) -> str:
    return stack.email(approver, SIGN_IN_REQUEST.title).links[0]


def test_a_session_spares_a_second_sign_in_for_the_same_approver(stack: Stack, provider: Provider) -> None:
    first = _link(stack, SIGN_IN_REQUEST.model_copy(update={"title": "First"}), ALICE)
    second = _link(stack, SIGN_IN_REQUEST.model_copy(update={"title": "Second"}), ALICE)
    browser = Browser(stack)
    browser.sign_in(provider, first, ALICE)
    assert browser.open(second).status == 200


@pytest.mark.parametrize("how", ["forged state", "replayed callback", "no flow cookie"])
def test_the_callback_refuses_a_stale_or_forged_state(stack: Stack, provider: Provider, how: str) -> None:
    link = _link(stack, SIGN_IN_REQUEST, ALICE)
    browser = Browser(stack)
    started = browser.call("GET", urljoin(link, _sign_in_href(browser.open(link))))
    callback = provider.sign_in_as(started.headers["Location"], ALICE)
    match how:
        case "forged state":
            parts = urlsplit(callback)
            callback = callback.replace(parts.query, parts.query.replace("state=", "state=x"))
        case "replayed callback":
            assert browser.call("GET", callback).status == 302
        case "no flow cookie":
            browser.cookie = ""
    refused = browser.call("GET", callback)
    assert refused.status == 403, refused.body
    if how != "replayed callback":
        assert browser.open(link).status == 401  # still not signed in


def test_sign_out_forgets_the_session(stack: Stack, provider: Provider) -> None:
    link = _link(stack, SIGN_IN_REQUEST, ALICE)
    browser = Browser(stack)
    browser.sign_in(provider, link, ALICE)
    signed_out = browser.call("GET", f"{API_URL}/signout")
    assert signed_out.status == 200
    assert "Max-Age=0" in signed_out.headers["Set-Cookie"]
    assert browser.cookie == ""
    assert browser.open(link).status == 401


def test_an_unverified_email_is_refused(stack: Stack, provider: Provider) -> None:
    provider.add_user("unverified@example.com", verified=False)
    request = SIGN_IN_REQUEST.model_copy(update={"approvers": ["unverified@example.com"]})
    stack.add_approvers(["unverified@example.com"])
    link = _link(stack, request, "unverified@example.com")
    refused = Browser(stack).sign_in(provider, link, "unverified@example.com")
    assert refused.status == 403
    assert "not verified" in refused.body


def test_link_only_requests_are_decided_by_link_as_before(stack: Stack) -> None:
    request = SIGN_IN_REQUEST.model_copy(update={"identity": "link", "approvers": [ALICE]})
    arn = stack.start(request)
    assert stack.click(stack.email(ALICE, request.title).links[0], "approve").status == 200
    vote = stack.finish(arn).output["votes"][0]
    assert (vote["proof"], "issuer" in vote) == ("link", False)


def test_a_deployment_that_requires_sign_in_requires_it_of_every_request(
    stack: Stack, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPROVALS_IDENTITY", "sign-in")
    runtime.reset()
    request = SIGN_IN_REQUEST.model_copy(update={"identity": "link", "approvers": [ALICE]})
    link = _link(stack, request, ALICE)
    assert Browser(stack).open(link).status == 401
    assert stack.post_link(link, "approve").status == 401
    browser = Browser(stack)
    browser.sign_in(provider, link, ALICE)
    assert browser.submit(browser.open(link), "approve").status == 200


def test_a_request_asking_for_sign_in_where_no_provider_is_set_up_is_invalid_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with moto_stack(monkeypatch) as without_provider:
        report = without_provider.finish(without_provider.start(SIGN_IN_REQUEST))
    assert (report.status, report.error) == ("FAILED", "Approval.InvalidRequest")
    assert (report.cause or "").startswith("request.identity: sign-in needs an OpenID Connect provider")


def test_a_form_to_fix_is_shown_again_only_to_the_approver_signed_in(
    stack: Stack, provider: Provider
) -> None:
    link = _link(stack, SIGN_IN_REQUEST, ALICE)
    target = f"{API_URL}/a/{link.rsplit('/', 1)[-1]}"
    unfinished = urlencode({"approver": ALICE, "decision": "", "comment": ""})  # no button pressed
    anonymous = Browser(stack).call("POST", target, form_headers(target), unfinished)
    assert anonymous.status == 401, anonymous.body
    assert SIGN_IN_REQUEST.title not in anonymous.body
    alice = Browser(stack)
    alice.sign_in(provider, link, ALICE)
    again = alice.call("POST", target, form_headers(target), unfinished)
    assert again.status == 400
    assert SIGN_IN_REQUEST.title in again.body


def test_sign_in_returns_only_to_an_approval_page(stack: Stack) -> None:
    refused = Browser(stack).call("GET", f"{API_URL}/signin?to=https%3A%2F%2Fevil.example.com%2F")
    assert refused.status == 403
    assert "Location" not in refused.headers


def test_an_expired_id_token_from_the_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A provider whose tokens expired an hour before they were issued (beyond any clock skew).
    with run_server_in_thread(access_token_max_age=timedelta(hours=-1)) as server:
        expired = Provider(f"http://localhost:{server.server_port}")
        expired.add_user(ALICE)
        with _stack_signing_in_with(monkeypatch, expired) as stack:
            link = _link(stack, SIGN_IN_REQUEST, ALICE)
            browser = Browser(stack)
            refused = browser.sign_in(expired, link, ALICE)
            assert refused.status == 403
            assert "The ID token does not hold (ExpiredTokenError)" in refused.body
            assert browser.open(link).status == 401  # not signed in


def test_an_unreachable_provider_gets_a_clear_page_not_a_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    with _stack_signing_in_with(monkeypatch, Provider("http://localhost:1")) as stack:  # nothing listens
        link = _link(stack, SIGN_IN_REQUEST, ALICE)
        browser = Browser(stack)
        started = browser.call("GET", urljoin(link, _sign_in_href(browser.open(link))))
        assert started.status == 502
        assert "cannot be reached just now" in started.body
