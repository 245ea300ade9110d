"""Sign-in on the batch page: the inbox offers the same OpenID Connect flow as a request's own
page, against the real oidc-provider-mock, and comes back to the same page of the inbox.
Signed in as its approver, the requests that need sign-in are shown in full and decided in
bulk with the others, each vote proven by sign-in; without that session they are refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode, urljoin, urlsplit

import pytest

from approvals import runtime
from approvals.local.approver import form_headers
from approvals.models import ApprovalRequest, Identity, utcnow
from tests.conftest import API_URL, ApiResponse, Stack, approval_id_of
from tests.integration.test_bulk_api import inbox, post
from tests.integration.test_inbox import stored
from tests.integration.test_inbox_page import read
from tests.integration.test_sign_in import (  # noqa: F401 (provider, stack: the fixtures)
    ALICE,
    BOB,
    MALLORY,
    Browser,
    Provider,
    _sign_in_href,
    provider,
    stack,
)

SECRET_PLAN = "the plan only the approver signed in may read"


def ask(stack: Stack, title: str, identity: Identity = "link", to: str = ALICE) -> tuple[str, str]:  # noqa: F811
    """A request to ``to`` (in their inbox once emailed): its execution and approval id."""
    request = ApprovalRequest(
        title=title,
        approvers=[to],
        requester="ci@example.com",
        description=SECRET_PLAN,
        identity=identity,
        digest=False,  # its own email, to wait for
    )
    arn = stack.start(request)
    return arn, approval_id_of(stack.email(to, title).links[0])


def signed_in_from_inbox(browser: Browser, provider: Provider, link: str, email: str) -> str:  # noqa: F811
    """Follow the inbox page's sign-in link, sign in as ``email``: where the API sends the browser back."""
    page = browser.open(link)
    assert page.status == 200, page.body
    return signed_in_from(browser, provider, page, email)


def signed_in_from(browser: Browser, provider: Provider, page: ApiResponse, email: str) -> str:  # noqa: F811
    """Follow the page's sign-in link, sign in as ``email``: where the API sends the browser back."""
    started = browser.call("GET", urljoin(page.url, _sign_in_href(page)))
    assert started.status == 302, started.body
    back = browser.call("GET", provider.sign_in_as(started.headers["Location"], email))
    assert back.status == 302, back.body
    return back.headers["Location"]


def test_the_inbox_offers_sign_in_and_comes_back_to_the_same_page_and_filter(
    stack: Stack,  # noqa: F811
    provider: Provider,  # noqa: F811
) -> None:
    store = runtime.from_environment().store
    start = utcnow() - timedelta(hours=1)
    for i in range(52):  # two pages of refunds; the oldest two need sign-in
        stored(store, f"Refund {i}", start + timedelta(seconds=i), identity="sign-in" if i < 2 else "link")
    stored(store, "Deploy", start, workflow="deploys", identity="sign-in", description=SECRET_PLAN)
    link = inbox(stack)
    first = stack.get(f"{link}?workflow=refunds", accept_json=True).json()
    second_page = f"{link}?workflow=refunds&cursor={first['next_cursor']}"

    browser = Browser(stack)
    anonymous = browser.open(second_page)
    assert "Sign in to decide 2 requests that need it" in anonymous.body
    assert [form.id for form in read(anonymous.body).forms if form.method == "post"] == ["bulk"]
    assert read(anonymous.body).form("bulk").inputs.count("approval") == 0  # none can be ticked
    json_before = browser.call("GET", second_page, {"Accept": "application/json"}).json()
    assert (json_before["signed_in"], json_before["sign_in_needed"]) == (False, 2)

    assert signed_in_from_inbox(browser, provider, second_page, ALICE) == second_page

    page = browser.open(second_page)
    assert page.status == 200, page.body
    assert f"Signed in as <strong>{ALICE}</strong>" in page.body
    assert "Sign in to decide" not in page.body
    assert page.body.count(SECRET_PLAN) == 0  # the refunds have no description; the deploy is filtered out
    assert read(page.body).form("bulk").inputs.count("approval") == 2
    deploys = f"{link}?workflow=deploys"
    assert SECRET_PLAN in browser.open(deploys).body
    shown = browser.call("GET", deploys, {"Accept": "application/json"}).json()
    assert (shown["signed_in"], shown["sign_in_needed"]) == (True, 1)
    (deploy,) = shown["items"]
    assert (deploy["sign_in"], deploy["description"]) == (True, SECRET_PLAN)


def test_signed_in_the_requests_that_need_it_are_decided_in_bulk_proven_by_sign_in(
    stack: Stack,  # noqa: F811
    provider: Provider,  # noqa: F811
) -> None:
    asked = [ask(stack, f"Grant access {n}", "sign-in") for n in range(2)]
    plain_arn, plain = ask(stack, "Refund 12 EUR")
    link = inbox(stack)
    browser = Browser(stack)
    signed_in_from_inbox(browser, provider, link, ALICE)
    ids = [approval_id for _, approval_id in asked] + [plain]

    chosen = [*(("approval", i) for i in ids), ("decision", "approve"), ("comment", ""), ("confirmed", "1")]
    done = _post(browser, link, chosen)

    assert done.status == 200, done.body
    assert done.json()["counts"] == {"settled": 3}
    for arn in [*(arn for arn, _ in asked), plain_arn]:
        vote = stack.finish(arn).output["votes"][0]
        assert (vote["approver"], vote["proof"], vote["issuer"]) == (ALICE, "sign-in", provider.issuer)
    emptied = browser.open(link).body
    assert "Nothing waits on you" in emptied
    assert "Signed in as" not in emptied  # nobody to name: nothing waits


@dataclass(frozen=True)
class OneOfEach:
    """Two requests waiting on Alice: one that needs sign-in, one the link alone decides."""

    needs: str
    plain_arn: str
    plain: str
    link: str  # Alice's inbox


def one_of_each(stack: Stack) -> OneOfEach:  # noqa: F811
    _, needs = ask(stack, "Grant access", "sign-in")
    plain_arn, plain = ask(stack, "Refund 12 EUR")
    return OneOfEach(needs, plain_arn, plain, inbox(stack))


def test_without_the_approver_s_session_the_requests_that_need_it_are_refused(
    stack: Stack,  # noqa: F811
    provider: Provider,  # noqa: F811
) -> None:
    waiting = one_of_each(stack)
    needs, plain_arn, plain, link = waiting.needs, waiting.plain_arn, waiting.plain, waiting.link
    chosen = [("approval", needs), ("approval", plain), ("decision", "approve"), ("confirmed", "1")]

    done = post(stack, link, chosen, accept_json=True)  # no session at all

    assert done.status == 200, done.body
    results = {item["approval_id"]: item for item in done.json()["items"]}
    assert results[needs]["result"] == "sign_in_required"
    assert "sign in" in results[needs]["detail"].lower()
    assert results[plain]["result"] == "settled"
    assert stack.finish(plain_arn).output["votes"][0]["proof"] == "link"
    assert stack.approval(needs).votes == {}

    bob = Browser(stack)  # signed in, as another approver: his session is not Alice's
    signed_in_from_inbox(bob, provider, _inbox_needing_sign_in(stack), BOB)
    as_bob = _post(bob, link, [("approval", needs), ("decision", "approve"), ("confirmed", "1")])
    assert [item["result"] for item in as_bob.json()["items"]] == ["sign_in_required"]
    assert stack.approval(needs).votes == {}


def test_signed_in_as_someone_else_the_inbox_is_refused_naming_nobody(
    stack: Stack,  # noqa: F811
    provider: Provider,  # noqa: F811
) -> None:
    _, needs = ask(stack, "Grant admin access", "sign-in")
    link = inbox(stack)
    browser = Browser(stack)

    assert signed_in_from_inbox(browser, provider, link, MALLORY) == link

    for accept in ("text/html", "application/json"):
        refused = browser.call("GET", link, {"Accept": accept})
        assert refused.status == 403, refused.body
        assert "someone other than the approver" in refused.body
        for secret in (ALICE, MALLORY, "Grant admin access", SECRET_PLAN):
            assert secret not in refused.body
    assert 'href="../signout"' in browser.open(link).body
    assert stack.approval(needs).votes == {}


def test_an_inbox_with_nothing_that_needs_sign_in_asks_for_none(
    stack: Stack,  # noqa: F811
    provider: Provider,  # noqa: F811
) -> None:
    ask(stack, "Refund 12 EUR")
    link = inbox(stack)
    page = Browser(stack).open(link)
    assert "Sign in" not in page.body
    mallory = Browser(stack)
    signed_in_from_inbox(mallory, provider, _inbox_needing_sign_in(stack), MALLORY)
    assert mallory.open(link).status == 200  # a session, anyone's, changes nothing here


def _inbox_needing_sign_in(stack: Stack) -> str:  # noqa: F811
    ask(stack, "Bob's grant", "sign-in", to=BOB)
    return inbox(stack, BOB)


def test_sign_in_returns_only_to_an_inbox_link_of_the_right_shape(stack: Stack) -> None:  # noqa: F811
    for to in ("i%2Fshort", "i%2F" + "A" * 48 + "%2F..%2Fevil", "i%2F" + "A" * 48 + "%3Fx%3D%3Cscript%3E"):
        refused = Browser(stack).call("GET", f"{API_URL}/signin?to={to}")
        assert refused.status == 403, to
        assert "Location" not in refused.headers


def _post(browser: Browser, link: str, fields: list[tuple[str, str]]) -> ApiResponse:
    target = urlsplit(link)._replace(query="").geturl()
    return browser.call("POST", target, form_headers(target, True), urlencode(fields))


def test_the_confirmation_says_which_requests_need_sign_in_before_anything_is_decided(
    stack: Stack,  # noqa: F811
    provider: Provider,  # noqa: F811
) -> None:
    waiting = one_of_each(stack)
    needs, plain, link = waiting.needs, waiting.plain, waiting.link
    every = [("all", "1"), ("decision", "approve")]

    anonymous = post(stack, link, every, accept_json=True).json()
    planned = {item["approval_id"]: item for item in anonymous["items"]}
    assert (anonymous["count"], anonymous["ready"]) == (2, 1)
    assert (planned[needs]["ready"], planned[needs]["result"]) == (False, "sign_in_required")
    assert planned[plain]["ready"] is True

    browser = Browser(stack)
    signed_in_from_inbox(browser, provider, link, ALICE)
    assert _post(browser, link, every).json()["ready"] == 2


def test_the_confirmation_and_the_results_lead_to_sign_in_for_the_requests_that_need_it(
    stack: Stack,  # noqa: F811
    provider: Provider,  # noqa: F811
) -> None:
    waiting = one_of_each(stack)
    browser = Browser(stack)
    chosen = [("approval", waiting.needs), ("approval", waiting.plain), ("decision", "approve")]
    target = waiting.link

    for page in (
        browser.call("POST", target, form_headers(target), urlencode(chosen)),
        browser.call("POST", target, form_headers(target), urlencode([*chosen, ("confirmed", "1")])),
    ):
        assert page.status == 200, page.body
        assert "Sign in to decide 1 request that needs it" in page.body
        assert signed_in_from(browser, provider, page, ALICE) == target
        browser.cookie = ""  # signed out again, for the results
    assert stack.approval(waiting.needs).votes == {}


def test_where_the_deployment_requires_sign_in_the_emails_say_it_will_be_asked(
    stack: Stack,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APPROVALS_IDENTITY", "sign-in")
    runtime.reset()
    ask(stack, "Refund 12 EUR")  # asks nothing of the kind itself
    (email,) = [e for e in stack.emails() if e.to == ALICE]
    assert "asks you to sign in with your company account" in email.body
