"""The batch page in Chromium, on `approvals local` in both modes: a fan-out's requests listed
newest first in pages of 50, filtered by workflow, on a desktop and on a phone, by keyboard,
and checked by axe-core. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from approvals import inboxlinks, keys
from approvals.local import approver
from approvals.models import utcnow
from approvals.target import for_local
from tests.e2e.conftest import BOTH_MODES, RunningStack
from tests.e2e.test_browser import browser, shot  # noqa: F401 (browser: the fixture)

pytestmark = [pytest.mark.e2e, BOTH_MODES]

PAT = "pat@example.com"
FANOUT = 60  # more than a page of 50
SINGLES = 2  # asked by the approval state machine: another workflow
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def inbox_link(local_stack: RunningStack) -> str:
    """Pat's inbox link, once a fan-out of 60 and two single requests all wait on Pat."""
    added = local_stack.cli("approvers", "add", PAT)
    assert added.returncode == 0, added.stderr
    requests = [{"title": f"Refund {i:02d}", "approvers": [PAT], "requester": "batch@example.com"}
                for i in range(FANOUT)]  # fmt: skip
    local_stack.aws(
        "stepfunctions", "start-execution",
        "--state-machine-arn", local_stack.info.fanout_state_machine_arn,
        "--input", json.dumps({"requests": requests}),
    )  # fmt: skip
    for i in range(SINGLES):
        local_stack.start(f"Deploy {i}", [PAT], "release-bot@example.com", description="A release <b>")
    target = for_local(local_stack.info)
    key = keys.fetch(target.secrets, target.signing_secret_id).current
    link = inboxlinks.inbox_link(local_stack.info.api_url, key, PAT, utcnow() + timedelta(days=1))
    deadline = time.monotonic() + 600  # a loaded machine runs moto's executor slowly
    while (waiting := answer(link)["total"]) < FANOUT + SINGLES:
        assert time.monotonic() < deadline, f"only {waiting} requests reached Pat's inbox"
        time.sleep(2)
    return link


def answer(link: str) -> dict[str, Any]:
    got = approver.request(link, headers={"Accept": "application/json"})
    assert got.status == 200, got.text
    result: dict[str, Any] = got.json()
    return result


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:  # noqa: F811
    # axe-core is injected as a script, which the page's own policy (no script at all) forbids.
    made = browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True)
    yield made
    made.close()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    assert AXE.exists(), "axe-core is missing: run `npm ci` (package.json lists it)"
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return found


def items(page: Page) -> list[str]:
    return [title.strip() for title in page.locator("ol.inbox > li h2").all_inner_texts()]


def test_the_fan_out_is_listed_in_pages_newest_first(context: BrowserContext, inbox_link: str) -> None:
    page = context.new_page()
    page.goto(inbox_link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Waiting for your decision")
    expect(page.get_by_text(f"{FANOUT + SINGLES} requests wait on you")).to_be_visible()
    expect(page.get_by_text(f"You are {PAT}")).to_be_visible()
    first = items(page)
    assert len(first) == 50
    assert page.locator("summary", has_text="Decide this one").count() == 50  # each its own form
    shot(page, "inbox-desktop")
    assert axe_violations(page) == []

    page.get_by_role("link", name="Older requests").click()
    second = items(page)
    assert len(second) == FANOUT + SINGLES - 50
    expect(page.get_by_role("link", name="Older requests")).to_have_count(0)
    expected = {f"Refund {i:02d}" for i in range(FANOUT)} | {f"Deploy {i}" for i in range(SINGLES)}
    assert set(first) | set(second) == expected
    # Newest first, page after page: as the JSON answer, the same list, says by creation time.
    created = []
    cursor = ""
    while True:
        page_answer = answer(f"{inbox_link}?cursor={cursor}" if cursor else inbox_link)
        created += [item["created_at"] for item in page_answer["items"]]
        if not (cursor := page_answer["next_cursor"]):
            break
    assert created == sorted(created, reverse=True)


def test_the_workflow_filter_lists_one_workflow_s_requests(
    context: BrowserContext, inbox_link: str, local_stack: RunningStack
) -> None:
    page = context.new_page()
    page.goto(inbox_link)
    singles = local_stack.info.state_machine_arn.rsplit(":", 1)[-1]
    page.get_by_label("Workflow").select_option(singles)
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text(f"{SINGLES} requests wait on you in workflow {singles}")).to_be_visible()
    assert sorted(items(page)) == [f"Deploy {i}" for i in range(SINGLES)]
    expect(page.get_by_text("A release <b>").first).to_be_visible()  # the requester's text, as text
    expect(
        page.get_by_label(f"Select all {SINGLES} matching in workflow {singles}, on every page")
    ).to_be_visible()

    # By keyboard: the skip link first, then every control in reading order, the boxes too.
    focused: list[str] = []
    while len(focused) < 40 and (len(focused) < 2 or focused[-1] != focused[0]):  # once round
        page.keyboard.press("Tab")
        focused.append(page.evaluate(
            "() => { const e = document.activeElement;"
            " return `${e.tagName.toLowerCase()}:${e.getAttribute('type') || ''}:`"
            " + (e.getAttribute('aria-label') || e.innerText).trim(); }"
        ))  # fmt: skip
    assert focused[0] == "a::Skip to deciding the selected requests"
    boxes = [f for f in focused if f.startswith("input:checkbox:Select “")]
    assert sorted(boxes) == [f"input:checkbox:Select “Deploy {i}”" for i in range(SINGLES)]
    assert focused.count("summary::Decide this one") == SINGLES  # each one's own form, folded
    assert "button:submit:Approve selected" in focused
    assert focused.index(boxes[0]) < focused.index("button:submit:Approve selected")

    page.get_by_role("link", name="Select all on this page").focus()
    page.keyboard.press("Enter")
    for box in page.get_by_role("checkbox", name=re.compile("^Select “")).all():
        expect(box).to_be_checked()
    expect(page.get_by_role("link", name="Clear the selection")).to_be_visible()
    assert axe_violations(page) == []

    page.locator("summary", has_text="Decide this one").first.focus()
    page.keyboard.press("Enter")  # unfolds it: its comment and buttons come next
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_attribute("name", "comment")
    assert axe_violations(page) == []


def test_on_a_phone_nothing_scrolls_sideways(browser: Browser, inbox_link: str) -> None:  # noqa: F811
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, bypass_csp=True
    )
    page = context.new_page()
    page.goto(inbox_link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Waiting for your decision")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "nothing may scroll sideways"
    approve = page.get_by_role("button", name="Approve selected").bounding_box()
    assert approve is not None
    assert approve["height"] >= 44, "a thumb-sized button"
    box = page.get_by_role("checkbox", name=re.compile("^Select “")).first.bounding_box()
    assert box is not None
    assert box["width"] >= 24, "a box a thumb can tick"
    shot(page, "inbox-phone")
    assert axe_violations(page) == []
    context.close()
