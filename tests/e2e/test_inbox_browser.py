"""The batch page in Chromium, on `approvals local` in both modes: a fan-out's requests listed
newest first in pages of 50, filtered by workflow, on a desktop and on a phone, by keyboard,
and checked by axe-core; and a fan-out decided from it to the end (one item on its own, a
page at once, then all that match), each outcome landing in its item. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from approvals import inboxlinks, keys
from approvals.bulk import MAX_VOTES
from approvals.local import approver
from approvals.models import utcnow
from approvals.target import for_local
from tests.e2e.conftest import BOTH_MODES, RunningStack
from tests.e2e.test_browser import browser, shot  # noqa: F401 (browser: the fixture)

pytestmark = [pytest.mark.e2e, BOTH_MODES]

PAT = "pat@example.com"
QUINN = "quinn@example.com"  # decides a fan-out of their own from the page, to the end
FANOUT = 60  # more than a page of 50
# The fan-out decided from the page to the end: past a page, and `make scale` sets 1,000
# (about 130 CPU-seconds a mode, too many for every run of the suite).
DECIDED_ITEMS = int(os.environ.get("APPROVALS_E2E_DECIDED_ITEMS", "55"))
SINGLES = 2  # asked by the approval state machine: another workflow
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def fan_out(stack: RunningStack, approver: str, prefix: str, count: int) -> str:
    """A fan-out of ``count`` requests to ``approver``, titled ``prefix`` and a number; its execution."""
    stack.add_approvers(approver)
    requests = [{"title": f"{prefix} {i:02d}", "approvers": [approver], "requester": "batch@example.com"}
                for i in range(count)]  # fmt: skip
    started = stack.sfn.start_execution(
        stateMachineArn=stack.info.fanout_state_machine_arn, input=json.dumps({"requests": requests})
    )
    return str(started["executionArn"])


def link_when_waiting(stack: RunningStack, approver: str, count: int) -> str:
    """The approver's inbox link, once ``count`` requests wait in their inbox."""
    target = for_local(stack.info)
    key = keys.fetch(target.secrets, target.signing_secret_id).current
    link = inboxlinks.inbox_link(stack.info.api_url, key, approver, utcnow() + timedelta(days=1))
    deadline = time.monotonic() + 600  # a loaded machine runs moto's executor slowly
    while (waiting := answer(link)["total"]) < count:
        assert time.monotonic() < deadline, f"only {waiting} requests reached {approver}'s inbox"
        time.sleep(2)
    return link


@pytest.fixture(scope="module")
def inbox_link(local_stack: RunningStack) -> str:
    """Pat's inbox link, once a fan-out of 60 and two single requests all wait on Pat."""
    fan_out(local_stack, PAT, "Refund", FANOUT)
    for i in range(SINGLES):
        local_stack.start(f"Deploy {i}", [PAT], "release-bot@example.com", description="A release <b>")
    return link_when_waiting(local_stack, PAT, FANOUT + SINGLES)


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


def test_a_fan_out_decided_from_the_page_lands_each_outcome_in_its_item(
    context: BrowserContext, local_stack: RunningStack
) -> None:
    """One item rejected on its own, then a page approved at once, then the rest rejected as
    all matching (past 100, the first 100 at once and the others by the sweep's bulk job):
    each through the confirmation. `make scale` runs it with 1,000 items."""
    count = DECIDED_ITEMS
    execution = fan_out(local_stack, QUINN, "Payout", count)
    link = link_when_waiting(local_stack, QUINN, count)
    page = context.new_page()
    page.goto(link)

    single = page.locator("ol.inbox > li").first
    alone = single.locator("h2").inner_text().strip()
    single.locator("summary").click()
    single.get_by_label("Comment on this request").fill("a duplicate")
    single.get_by_role("button", name="Reject").click()
    expect(page.get_by_role("cell", name=re.compile("settled"))).to_be_visible()
    page.get_by_role("link", name="Back to your requests").click()

    expect(page.get_by_text(f"{count - 1} requests wait on you")).to_be_visible()
    approved = items(page)
    assert len(approved) == 50
    page.get_by_role("link", name="Select all on this page").click()
    page.get_by_role("button", name="Approve selected").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve 50 requests?")
    shot(page, "inbox-confirm")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Approve 50").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Approve: 50 requests")
    expect(page.get_by_role("status")).to_have_text("50 settled.")
    # The bulk vote confirmed each delivery itself, under the template's own grants too: no
    # sweep has run on the template since, and none is needed.
    settled = [a for a in for_local(local_stack.info).store.all() if a.request.title in approved]
    assert [(a.status.value, a.unconfirmed) for a in settled] == [("approved", False)] * 50
    shot(page, "inbox-results")
    assert axe_violations(page) == []
    page.get_by_role("link", name="Back to your requests").click()

    rest = count - 1 - 50
    expect(page.get_by_text(f"{rest} requests wait on you")).to_be_visible()
    page.get_by_label(f"Select all {rest} matching, on every page").check()
    page.get_by_label("Comment for every selected request").fill("over this month's budget")
    page.get_by_role("button", name="Reject selected").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Reject {rest} requests?")
    page.get_by_role("button", name=f"Reject {rest}").click()
    expect(page.get_by_role("status").first).to_have_text(f"{min(rest, MAX_VOTES)} settled.")
    if rest > MAX_VOTES:
        expect(page.get_by_text("The rest are decided in the background")).to_be_visible()
    page.get_by_role("link", name="Back to your requests").click()
    local_stack.swept_until(lambda: answer(link)["total"] == 0 or None, timeout=300, what="the job's end")
    page.reload()
    expect(page.get_by_text("Nothing waits on you")).to_be_visible()

    described = local_stack.ended(execution, timeout=300)
    assert described["status"] == "SUCCEEDED"
    decisions = local_stack.fanout_decisions(str(described["output"]))
    outcomes = {f"Payout {i:02d}": d["outcome"] for i, d in enumerate(decisions)}
    rejected = [title for title in outcomes if title != alone and title not in approved]
    assert len(rejected) == rest
    assert outcomes == {
        alone: "rejected",
        **dict.fromkeys(approved, "approved"),
        **dict.fromkeys(rejected, "rejected"),
    }
    comments = {f"Payout {i:02d}": d["votes"][0]["comment"] for i, d in enumerate(decisions)}
    assert comments[alone] == "a duplicate"
    assert {comments[title] for title in rejected} == {"over this month's budget"}
