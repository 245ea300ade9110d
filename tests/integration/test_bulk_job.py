"""Deciding every request of a fan-out from the inbox link in three HTTP requests (issue 18):
the inbox, "select all N matching" (its confirmation), and the confirmed POST, which decides
the first hundred and leaves the rest to the sweep (approvals.bulkjob)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from approvals import inboxlinks, runtime
from approvals.models import ApprovalRequest, utcnow
from approvals.sweep import sweep
from tests.conftest import API_URL, Stack, eventually
from tests.integration.test_bulk_api import hidden, post

pytestmark = pytest.mark.xdist_group("bulk-job")

ALICE = "alice@example.com"
ITEMS = 201  # one past two POSTs' worth: the old way took three POSTs, one more per hundred


def test_an_approver_decides_every_item_of_a_fanout_in_three_requests(stack: Stack) -> None:
    request = ApprovalRequest(title="Refund", approvers=[ALICE], requester="ci@example.com")
    arn = stack.start_fanout([request.model_dump(mode="json", exclude_defaults=True)] * ITEMS)
    services = runtime.from_environment()
    alice = inboxlinks.approver_id(ALICE)

    def all_asked() -> bool | None:
        stack.worker.poll_once()
        return len(list(services.store.inbox_entries(alice))) == ITEMS or None

    eventually(all_asked, timeout=300, what=f"{ITEMS} requests in Alice's inbox")
    link = inboxlinks.inbox_link(API_URL, stack.signing_key, ALICE, utcnow() + timedelta(days=1))

    listed = stack.get(link)
    confirmation = post(stack, link, [("all", "1"), ("decision", "approve")])
    assert f"Approve {ITEMS} requests?" in confirmation.body
    done = post(stack, link, hidden(confirmation))

    assert [page.status for page in (listed, confirmation, done)] == [200, 200, 200]
    assert done.body.count("<strong>settled</strong>") == 100
    assert hidden(done) == []  # nothing more for the approver to send
    assert f"{ITEMS - 100} still going" in done.body

    sweep(services, utcnow())  # the schedule's next sweep
    summary = stack.finish(arn, timeout=300).output
    assert summary["counts"]["approved"] == ITEMS
    (job,) = stack.get(link, accept_json=True).json()["bulk_votes"]
    assert (job["decided"], job["remaining"], job["counts"]) == (ITEMS, 0, {"settled": ITEMS})
