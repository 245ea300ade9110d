"""A batch larger than an inline Map's 40 at once, on `approvals local`: every approver is
emailed before anyone clicks, and the decisions come back in the order of the requests."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from approvals.local import approver
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

BATCH = 41  # one more than the 40 iterations an inline Map runs at once on AWS


def emails_about(stack: RunningStack, prefix: str) -> list[dict[str, Any]]:
    emails = approver.request(stack.info.outbox_url, headers={"Accept": "application/json"}).json()
    return [e for e in emails if prefix in e["subject"]]


def test_every_approver_of_a_large_batch_is_emailed_before_the_first_click(local_stack: RunningStack) -> None:
    prefix = "Refund batch item"
    requests = [
        {
            "title": f"{prefix} {i:02d}",
            "approvers": [f"finance{i}@example.com"],
            "requester": "batch@example.com",
        }
        for i in range(BATCH)
    ]
    local_stack.add_approvers(*(f"finance{i}@example.com" for i in range(BATCH)))
    started = local_stack.sfn.start_execution(
        stateMachineArn=local_stack.info.fanout_state_machine_arn, input=json.dumps({"requests": requests})
    )

    deadline = time.monotonic() + 120
    while len(emails := emails_about(local_stack, prefix)) < BATCH and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sorted(e["to"] for e in emails) == sorted(f"finance{i}@example.com" for i in range(BATCH))

    rejected = {3, 40}  # the one past the 40th too
    for email in emails:
        index = int(email["subject"].split(prefix)[1].split()[0])
        page = approver.open_link(email["links"][0])
        decision = "reject" if index in rejected else "approve"
        assert approver.submit(page, decision, "no" if index in rejected else "").status == 200

    described = local_stack.ended(str(started["executionArn"]), timeout=120)
    assert described["status"] == "SUCCEEDED"
    decisions = local_stack.fanout_decisions(str(described["output"]))
    assert [d["outcome"] for d in decisions] == [
        "rejected" if i in rejected else "approved" for i in range(BATCH)
    ]
    assert [d["votes"][0]["approver"] for d in decisions] == [f"finance{i}@example.com" for i in range(BATCH)]
    # Counted by the summary function, which the local stack runs as Lambda would.
    counts = json.loads(str(described["output"]))["counts"]
    assert (counts["approved"], counts["rejected"]) == (BATCH - len(rejected), len(rejected))
