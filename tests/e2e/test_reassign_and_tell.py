"""Reassignment and the requester told, end to end on `approvals local`: the operator hands
a place over with the CLI, the new approver approves from the emailed link, the old link
shows the reassigned page; the requester's email after settlement and after expiry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from approvals.demo import wait_for_email
from approvals.local import approver
from tests.e2e.conftest import SWEEP_MODES, RunningStack

pytestmark = pytest.mark.e2e

REQUESTER = "lead@example.com"  # in the directory: told the outcome
STAND_IN = "standin@example.com"


def approval_id_of(stack: RunningStack, title: str) -> str:
    listed = stack.cli("list")
    assert listed.returncode == 0, listed.stderr
    return next(line for line in listed.stdout.splitlines() if title in line).split()[0]


def refused(stack: RunningStack, *args: str) -> str:
    """The CLI's one line for a refusal, which must exit with 2."""
    result = stack.cli(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    return result.stderr.strip()


def wait_for_outcome_email(stack: RunningStack, title: str) -> dict[str, Any]:
    """The requester's email about ``title`` (sent by the sweep once the request ends)."""

    def told() -> list[dict[str, Any]] | None:
        emails = approver.request(stack.info.outbox_url, headers={"Accept": "application/json"}).json()
        return [e for e in emails if e["to"] == REQUESTER and title in e["subject"]] or None

    stack.swept_until(told, stack.sweep_seconds + 30, f"email to {REQUESTER} about {title!r}")
    stack.sweep()  # a sweep more: it must not send a second one
    (email,) = told() or []
    return dict(email)


def test_reassign_from_the_cli_then_the_stand_in_approves_and_the_old_link_is_closed(
    local_stack: RunningStack,
) -> None:
    added = local_stack.cli("approvers", "add", STAND_IN, REQUESTER)
    assert added.returncode == 0, added.stderr
    title = "Reassign check"
    arn = local_stack.start(title, ["alice@example.com", "bob@example.com"], REQUESTER, policy="all")
    old_link = wait_for_email(local_stack.info, "alice@example.com", title)["links"][0]
    approval_id = approval_id_of(local_stack, title)

    assert refused(local_stack, "reassign", "f" * 32, "--from", "alice@example.com", "--to", STAND_IN) == (
        "approvals: no such approval: `approvals list` shows the ids"
    )
    assert refused(local_stack, "reassign", approval_id, "--from", "zed@example.com", "--to", STAND_IN) == (
        "approvals: zed@example.com is not an approver of this request (alice@example.com, bob@example.com)"
    )
    assert refused(
        local_stack, "reassign", approval_id, "--from", "alice@example.com", "--to", "bob@example.com"
    ) == ("approvals: bob@example.com is already an approver of this request")
    assert refused(
        local_stack, "reassign", approval_id, "--from", "alice@example.com", "--to", "nobody@example.com"
    ) == (
        "approvals: nobody@example.com cannot be emailed (no subscription):"
        " add them with `approvals approvers add nobody@example.com` first"
    )
    bob = wait_for_email(local_stack.info, "bob@example.com", title)["links"][0]
    assert approver.submit(approver.open_link(bob), "approve").status == 200
    assert refused(local_stack, "reassign", approval_id, "--from", "bob@example.com", "--to", STAND_IN) == (
        "approvals: bob@example.com has already decided (approved): their place can no longer be handed over"
    )

    handed = local_stack.cli(
        "reassign", approval_id, "--from", "alice@example.com", "--to", STAND_IN, "--operator", "oncall"
    )
    assert handed.returncode == 0, handed.stderr
    assert handed.stdout.strip() == (
        f"Reassigned alice@example.com's place to {STAND_IN} (by oncall); {STAND_IN} is emailed a link."
    )
    email = wait_for_email(local_stack.info, STAND_IN, title)
    assert "in place of alice@example.com" in email["body"]

    old = approver.open_link(old_link)
    assert old.status == 410
    assert "This request was reassigned" in old.text
    assert STAND_IN not in old.text
    assert old.buttons == []
    assert approver.post_from_link(old_link, "approve", approver="alice@example.com").status == 410

    assert approver.submit(approver.open_link(email["links"][0]), "approve", "covering").status == 200
    assert local_stack.ended(arn)["status"] != "RUNNING", "the execution did not end within 30 s"
    status = json.loads(local_stack.cli("status", arn).stdout)
    assert status["final_state"] == "Approved"
    assert [v["approver"] for v in status["output"]["votes"]] == ["bob@example.com", STAND_IN]
    (change,) = status["output"]["reassigned"]
    assert (change["from"], change["to"], change["by"]) == ("alice@example.com", STAND_IN, "oncall")
    assert refused(local_stack, "reassign", approval_id, "--from", STAND_IN, "--to", "carol@example.com") == (
        "approvals: the request is already settled: nothing is left to reassign"
    )

    shown = local_stack.cli("show", approval_id).stdout
    assert "reassigned  oncall" in shown
    assert f"alice@example.com -> {STAND_IN}" in shown

    told = wait_for_outcome_email(local_stack, title)
    assert told["subject"].startswith(f"[Approved] {title}")
    assert "- bob@example.com approved at" in told["body"]
    assert f"- {STAND_IN} approved at" in told["body"]
    assert "“covering”" in told["body"]
    assert f"alice@example.com's place went to {STAND_IN} (oncall," in told["body"]


@SWEEP_MODES  # the tell index and the sweep's rights come from the synthesized template too
def test_the_requester_is_told_once_when_nobody_decides_in_time(local_stack: RunningStack) -> None:
    added = local_stack.cli("approvers", "add", REQUESTER)
    assert added.returncode == 0, added.stderr
    title = "Told on expiry"
    local_stack.start(title, ["carol@example.com"], REQUESTER, timeout_seconds=3)
    told = wait_for_outcome_email(local_stack, title)
    assert told["subject"].startswith(f"[Expired] {title}")
    assert told["body"].startswith("Your request expired before it was settled:")
    assert "Nobody voted." in told["body"]
    assert told["links"] == []  # nothing to click: the email only tells
