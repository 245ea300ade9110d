"""An approver's session in a real browser: headless Chromium (Debian's package) driven
by Playwright against `approvals local`. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from approvals.demo import wait_for_email
from tests.e2e.conftest import RunningStack
from tests.unit.samples import DEPLOY_FIELDS

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine has no network to reach
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def start(stack: RunningStack, title: str, approvers: list[str], **extra: object) -> str:
    return stack.start(title, approvers, requester="release-bot@example.com", **extra)


def open_from_outbox(page: Page, stack: RunningStack, approver: str, title: str) -> None:
    wait_for_email(stack.info, approver, title)
    page.goto(stack.info.outbox_url)
    email = page.locator("article", has_text=title).filter(has_text=f"To {approver}").first
    email.get_by_role("link", name=f"Open the approval page for {approver}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)


def test_approve_from_the_outbox_link(page: Page, local_stack: RunningStack) -> None:
    title = "Deploy checkout 2.4 to production"
    arn = start(
        local_stack, title, ["alice@example.com", "bob@example.com"],
        description="Faster checkout; new invoices page.",
        details={"service": "checkout", "version": "2.4.0", "change": "CHG-1042"},
    )  # fmt: skip
    open_from_outbox(page, local_stack, "alice@example.com", title)
    # The emailed short link: nothing personal in the address bar, and none in the history.
    expect(page).to_have_url(re.compile(r"/a/[A-Za-z0-9_-]{43}$"))
    expect(page.get_by_text("you are alice@example.com")).to_be_visible()
    expect(page.get_by_text("Requested by release-bot@example.com")).to_be_visible()
    expect(page.get_by_role("row", name="version 2.4.0")).to_be_visible()
    expect(page.get_by_role("row", name="bob@example.com not yet decided")).to_be_visible()
    expect(page.get_by_text("expires in 1 day")).to_be_visible()
    shot(page, "approval-page")

    page.get_by_label("Comment").fill("Reviewed the release notes")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Decision recorded")
    expect(page.get_by_role("cell", name="Reviewed the release notes")).to_be_visible()
    shot(page, "confirmation-page")

    described = local_stack.ended(arn)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(str(described["output"]))["votes"][0]["comment"] == "Reviewed the release notes"


def test_reject_needs_a_reason_then_is_accepted(page: Page, local_stack: RunningStack) -> None:
    title = "Refund order 7731"
    arn = start(local_stack, title, ["carol@example.com"])
    open_from_outbox(page, local_stack, "carol@example.com", title)
    link = page.url
    page.get_by_role("button", name="Reject").click()
    expect(page.get_by_role("alert")).to_contain_text("a reason is required to reject")
    expect(page.get_by_role("button", name="Reject")).to_be_visible()  # the form is still there
    shot(page, "reject-without-reason")

    page.get_by_label("Comment").fill("Customer already refunded by hand")
    page.get_by_role("button", name="Reject").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Decision recorded")
    described = local_stack.ended(arn)
    assert json.loads(str(described["output"]))["outcome"] == "rejected"

    # The same link, opened after settlement, shows the outcome and no buttons.
    page.goto(link)
    expect(page.get_by_text("Status: rejected")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    shot(page, "after-settlement")


def test_keyboard_only_approval(page: Page, local_stack: RunningStack) -> None:
    title = "Rotate the signing key"
    arn = start(local_stack, title, ["dan@example.com"])
    open_from_outbox(page, local_stack, "dan@example.com", title)
    page.get_by_label("Comment").focus()
    page.keyboard.type("ok from the keyboard")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the Approve button comes first in tab order
    expect(page.get_by_role("heading", level=1)).to_have_text("Decision recorded")
    assert json.loads(str(local_stack.ended(arn)["output"]))["outcome"] == "approved"


def test_phone_viewport(browser: Browser, local_stack: RunningStack) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    title = "Delete the 2019 customer archive, a request with a long title to wrap on a phone"
    start(
        local_stack, title, ["erin@example.com"], details={"bucket": "s3://archive-2019", "objects": 120433}
    )
    open_from_outbox(page, local_stack, "erin@example.com", title)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "nothing may scroll sideways on a phone"
    approve = page.get_by_role("button", name="Approve").bounding_box()
    assert approve is not None
    assert approve["height"] >= 44, "a thumb-sized button"
    shot(page, "approval-page-phone")
    page.goto(local_stack.info.outbox_url)
    shot(page, "outbox-phone")
    context.close()


def test_outbox_lists_approvals_with_their_timeline(page: Page, local_stack: RunningStack) -> None:
    title = "Raise the payments rate limit"
    start(local_stack, title, ["gina@example.com", "hank@example.com"], policy="all")
    open_from_outbox(page, local_stack, "gina@example.com", title)
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Decision recorded")

    page.goto(local_stack.info.outbox_url)
    row = page.get_by_role("row").filter(has_text=title)
    expect(row.get_by_role("cell", name="pending", exact=True)).to_be_visible()
    expect(row.get_by_role("cell", name="hank@example.com", exact=True)).to_be_visible()  # still waiting
    row.get_by_text("events").click()
    expect(row).to_contain_text("viewed · gina@example.com · link opened (perhaps by a mail scanner)")
    expect(row).to_contain_text("voted · gina@example.com · approved")
    shot(page, "outbox")


def test_answers_with_a_wrong_value_shown_again_then_approved(page: Page, local_stack: RunningStack) -> None:
    title = "Deploy checkout 2.5, with answers"
    arn = start(local_stack, title, ["carol@example.com"], fields=DEPLOY_FIELDS)
    open_from_outbox(page, local_stack, "carol@example.com", title)
    page.get_by_label("Target environment").select_option("production")
    page.get_by_label("Replicas").fill("11")
    page.get_by_label("Backup checked").check()
    page.get_by_label("Change window").fill("2026-12-01")
    page.get_by_label("Ticket").fill("CHG-7")

    # The browser's own check stops an out-of-range number before anything is sent.
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    assert page.get_by_label("Replicas").evaluate("input => input.validity.rangeOverflow")

    # A browser that does not check (here: the bound removed) leaves it to the server.
    page.get_by_label("Replicas").evaluate("input => input.removeAttribute('max')")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert")).to_have_text("Replicas: at most 10.")
    replicas = page.get_by_label("Replicas")
    expect(replicas).to_have_value("11")
    expect(replicas).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Target environment")).to_have_value("production")
    expect(page.get_by_label("Backup checked")).to_be_checked()
    expect(page.get_by_label("Ticket")).to_have_value("CHG-7")
    shot(page, "answers-refused")

    replicas.fill("4")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Decision recorded")
    expect(page.get_by_role("row", name="environment production")).to_be_visible()
    described = local_stack.ended(arn)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(str(described["output"]))["votes"][0]["data"] == {
        "environment": "production",
        "replicas": 4,
        "backup_checked": True,
        "window": "2026-12-01",
        "ticket": "CHG-7",
    }


def test_answers_on_a_phone_by_keyboard_and_a_rejection_without_them(
    browser: Browser, local_stack: RunningStack
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    title = "Deploy checkout 2.6, asked on a phone"
    arn = start(local_stack, title, ["hank@example.com"], fields=DEPLOY_FIELDS)
    open_from_outbox(page, local_stack, "hank@example.com", title)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "nothing may scroll sideways"
    for label in ("Target environment", "Replicas", "Change window", "Ticket"):
        box = page.get_by_label(label).bounding_box()
        assert box is not None
        assert box["height"] >= 44, f"{label}: a thumb-sized input"
    expect(page.get_by_label("Replicas")).to_have_attribute("inputmode", "decimal")  # the number keypad
    shot(page, "answers-phone")

    # From the first answer to the buttons by keyboard alone: each field is in tab order
    # (in a date, its month, day, year and calendar button take a Tab each).
    page.get_by_label("Target environment").focus()
    for label, presses in (
        ("Replicas", 1),
        ("Backup checked", 1),
        ("Change window", 1),
        ("Ticket", 4),
        ("Comment", 1),
    ):
        for _ in range(presses):
            page.keyboard.press("Tab")
        expect(page.get_by_label(label)).to_be_focused()
    page.keyboard.type("Not during the freeze")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # past Approve, to Reject: required answers may stay empty
    expect(page.get_by_role("button", name="Reject")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Decision recorded")
    output = json.loads(str(local_stack.ended(arn)["output"]))
    assert output["outcome"] == "rejected"
    assert output["votes"][0]["data"] == {"backup_checked": False}
    context.close()
