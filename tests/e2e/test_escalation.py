"""End to end on the local stack (its sweep runs every 2 seconds), and on the synthesized
template with its sweep every minute: an escalation that a backup approves (on the template,
by the schedule's own sweep a minute or two later), and a sequence whose second approver is
emailed only once the first has approved; on the local stack, a sequence whose second
approver is never emailed when the first rejects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from approvals.demo import wait_for_email
from approvals.local import approver
from tests.e2e.conftest import SWEEP_MODES, RunningStack
from tests.e2e.test_operator import approval_id_of

pytestmark = pytest.mark.e2e

REQUESTER = "e2e@example.com"


def emailed(stack: RunningStack, title: str) -> list[str]:
    emails = approver.request(stack.info.outbox_url, headers={"Accept": "application/json"}).json()
    return sorted(email["to"] for email in emails if title in email["subject"])


def outcome(stack: RunningStack, execution_arn: str) -> Any:
    described = stack.ended(execution_arn)
    assert described["status"] == "SUCCEEDED", described
    return json.loads(str(described["output"]))


# On the template, the schedule sweeps at the stack's start and every minute after: a step
# a minute after its request is first due at the second sweep, whenever in the first
# minute the request is made. Run last of its group, the wait is the minute the group's
# other tests have not used, not a whole one after them.
@SWEEP_MODES
@pytest.mark.last_in_group
def test_an_escalation_that_a_backup_approves(local_stack: RunningStack) -> None:
    title = "E2E escalate to Gina"
    # The soonest step the worker takes: one no closer to the request than the sweep runs.
    after_seconds = int(local_stack.sweep_seconds)
    arn = local_stack.start(
        title,
        ["hank@example.com"],
        REQUESTER,
        escalation=[{"after_seconds": after_seconds, "approvers": ["gina@example.com"]}],
    )
    wait_for_email(local_stack.info, "hank@example.com", title)
    # Hank does not answer. The sweep runs at its own pace from the stack's start: the first
    # one after the step is due asks Gina, up to a sweep later (two minutes on the template).
    backup = wait_for_email(
        local_stack.info, "gina@example.com", title, timeout=after_seconds + local_stack.sweep_seconds + 30
    )
    page = approver.open_link(backup["links"][0])
    assert page.status == 200
    assert "(escalation)" in page.text
    assert approver.submit(page, "approve", "covering for Hank").status == 200

    decision = outcome(local_stack, arn)
    assert decision["outcome"] == "approved"
    assert [(v["approver"], v["comment"]) for v in decision["votes"]] == [
        ("gina@example.com", "covering for Hank")
    ]
    assert emailed(local_stack, title) == ["gina@example.com", "hank@example.com"]  # one each
    shown = local_stack.cli("show", approval_id_of(local_stack, title))
    assert shown.returncode == 0, shown.stderr
    assert "step 1: asked gina@example.com" in shown.stdout


@SWEEP_MODES
def test_a_sequence_emails_the_second_only_after_the_first_approves(local_stack: RunningStack) -> None:
    title = "E2E sequence of two"
    arn = local_stack.start(title, ["ann@example.com", "ben@example.com"], REQUESTER, policy="sequence")
    first = wait_for_email(local_stack.info, "ann@example.com", title)
    local_stack.sweep()  # which may email nobody
    assert emailed(local_stack, title) == ["ann@example.com"]

    assert approver.submit(approver.open_link(first["links"][0]), "approve", "first look ok").status == 200
    second = wait_for_email(local_stack.info, "ben@example.com", title)
    page = approver.open_link(second["links"][0])
    assert "first look ok" in page.text  # who came before, and what they said
    assert approver.submit(page, "approve").status == 200

    decision = outcome(local_stack, arn)
    assert decision["outcome"] == "approved"
    assert [v["approver"] for v in decision["votes"]] == ["ann@example.com", "ben@example.com"]


def test_a_sequence_ends_when_the_first_rejects(local_stack: RunningStack) -> None:
    title = "E2E sequence rejected"
    arn = local_stack.start(title, ["cat@example.com", "dee@example.com"], REQUESTER, policy="sequence")
    first = wait_for_email(local_stack.info, "cat@example.com", title)
    assert approver.submit(approver.open_link(first["links"][0]), "reject", "not this week").status == 200
    assert outcome(local_stack, arn)["outcome"] == "rejected"
    local_stack.sweep()  # which may email nobody
    assert emailed(local_stack, title) == ["cat@example.com"]
