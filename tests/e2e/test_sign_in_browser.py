"""Sign-in before a vote counts, in Chromium: `approvals local --sign-in` runs a real OpenID
Connect provider on localhost, and the browser goes through the whole redirect dance, from a
request's own page and from the inbox (the batch page)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from approvals.demo import wait_for_email
from tests.e2e.conftest import RunningStack, running_local_stack
from tests.e2e.test_browser import browser, shot  # noqa: F401 (browser: the fixture)
from tests.e2e.test_inbox_browser import axe_violations, items, link_when_waiting

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ALICE, MALLORY = "alice@example.com", "mallory@example.com"
CASEY = "casey@example.com"  # decides from the inbox: nothing else waits on them


@pytest.fixture(scope="module")
def sign_in_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    workdir: Path = tmp_path_factory.mktemp("local-sign-in")
    with running_local_stack(workdir, "--sign-in") as stack:
        assert stack.info.identity_provider_url.startswith("http://localhost:")
        added = stack.cli("approvers", "add", ALICE, MALLORY, CASEY)
        assert added.returncode == 0, added.stderr
        yield stack


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:  # noqa: F811 (the fixture imported above)
    """A page in a fresh context: no sign-in cookie from another test."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    yield context.new_page()
    context.close()


def _sign_in_as(page: Page, who: str) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text("Please sign in")
    expect(page.get_by_role("status")).to_contain_text("decides nothing")
    page.get_by_role("link", name="Sign in with your company account").click()
    page.locator("input[name=sub]").fill(who)  # the local provider's own sign-in page
    page.get_by_role("button", name="Authorize").click()


def test_the_approver_signs_in_then_approves(tab: Page, sign_in_stack: RunningStack) -> None:
    title = "Deploy 3.0 to production (sign-in)"
    arn = sign_in_stack.start(title, [ALICE], requester="release-bot@example.com", identity="sign-in")
    email = wait_for_email(sign_in_stack.info, ALICE, title)
    tab.goto(email["links"][0])
    _sign_in_as(tab, ALICE)
    expect(tab.get_by_role("heading", level=1)).to_have_text(title)
    expect(tab.get_by_text(f"Signed in as {ALICE}")).to_be_visible()
    shot(tab, "sign-in-approval-page")
    tab.get_by_role("button", name="Approve").click()
    expect(tab.get_by_role("heading", level=1)).to_have_text("Decision recorded")
    described = sign_in_stack.ended(arn)
    assert described["status"] == "SUCCEEDED"
    assert '"proof":"sign-in"' in str(described["output"]).replace(" ", "")


def test_a_signed_in_stranger_is_refused(tab: Page, sign_in_stack: RunningStack) -> None:
    title = "Grant admin access (sign-in)"
    sign_in_stack.start(title, [ALICE], requester="release-bot@example.com", identity="sign-in")
    email = wait_for_email(sign_in_stack.info, ALICE, title)
    tab.goto(email["links"][0])
    _sign_in_as(tab, MALLORY)
    expect(tab.get_by_role("heading", level=1)).to_have_text("Signed in as someone else")
    expect(tab.get_by_text(title)).to_have_count(0)
    shot(tab, "sign-in-someone-else")


def test_the_approver_signs_in_from_the_inbox_then_decides_everything_there(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    sign_in_stack: RunningStack,
) -> None:
    asked = [
        sign_in_stack.start(title, [CASEY], requester="access-bot@example.com", identity=identity)
        for title, identity in (
            ("Grant admin 1", "sign-in"),
            ("Grant admin 2", "sign-in"),
            ("Refund 9", "link"),
        )
    ]
    link = link_when_waiting(sign_in_stack, CASEY, len(asked))
    # axe-core is injected as a script, which the page's own policy (no script at all) forbids.
    context = browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{link}?select=page")
    (only,) = page.get_by_role("checkbox", name=re.compile("^Select “")).all()  # the link alone decides it
    expect(only).to_have_accessible_name("Select “Refund 9”")
    shot(page, "inbox-sign-in-asked")
    assert axe_violations(page) == []

    page.get_by_role("link", name="Sign in to decide 2 requests that need it").click()
    page.locator("input[name=sub]").fill(CASEY)  # the local provider's own sign-in page
    page.get_by_role("button", name="Authorize").click()

    expect(page.get_by_text(f"Signed in as {CASEY}")).to_be_visible()
    assert page.url == link  # back to the same page (a selection is not kept)
    assert sorted(items(page)) == ["Grant admin 1", "Grant admin 2", "Refund 9"]
    shot(page, "inbox-signed-in")
    assert axe_violations(page) == []
    page.get_by_role("link", name="Select all on this page").click()
    page.get_by_role("button", name="Approve selected").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve 3 requests?")
    page.get_by_role("button", name="Approve 3").click()
    expect(page.get_by_role("status")).to_have_text("3 settled.")
    for arn in asked:
        described = sign_in_stack.ended(arn)
        assert described["status"] == "SUCCEEDED"
        assert '"proof":"sign-in"' in str(described["output"]).replace(" ", "")
    context.close()
