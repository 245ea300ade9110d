"""The operator's view, end to end on `approvals local`: reminders, cancellation when an
execution stops, list/show/decide from the CLI."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from approvals.demo import wait_for_email
from approvals.local import approver
from approvals.local.resources import LOCAL_ROLE
from approvals.statemachine import approval_definition, render
from tests.e2e.conftest import BIN, SWEEP_MODES, RunningStack

pytestmark = pytest.mark.e2e


def start(stack: RunningStack, title: str, approvers: list[str], **extra: Any) -> str:
    return stack.start(title, approvers, requester="ops-bot@example.com", **extra)


def emails_about(stack: RunningStack, title: str) -> list[dict[str, Any]]:
    emails = approver.request(stack.info.outbox_url, headers={"Accept": "application/json"}).json()
    return [e for e in emails if title in e["subject"]]


def approval_id_of(stack: RunningStack, title: str) -> str:
    listed = stack.cli("list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if title in line)
    return line.split()[0]


@SWEEP_MODES  # the template's sweeper, fired by the test (the provisioned stack's runs every 2 s)
def test_reminder_reaches_only_who_has_not_decided_and_only_once(local_stack: RunningStack) -> None:
    title = "Reminder check"
    # The local stack reminds at half the time allowed ("50%"), which a sweep falls in
    # before the request expires; "1h" before expiry is before this short request began,
    # so it is skipped. Ann approves before the half: twenty seconds, time enough for the
    # first email and page under load (their functions start cold).
    timeout_seconds = 40
    start(
        local_stack,
        title,
        ["ann@example.com", "ben@example.com"],
        policy="all",
        timeout_seconds=timeout_seconds,
    )
    page = approver.open_link(wait_for_email(local_stack.info, "ann@example.com", title)["links"][0])
    assert approver.submit(page, "approve").status == 200

    def reminders() -> list[dict[str, Any]] | None:
        sent = [e for e in emails_about(local_stack, title) if e["subject"].startswith("[Reminder]")]
        return sent or None

    local_stack.swept_until(reminders, timeout_seconds + 7, "reminder")
    local_stack.sweep()  # more sweeps pass; none may send it again
    sent = reminders() or []
    assert [e["to"] for e in sent] == ["ben@example.com"]
    assert "still waits for your decision" in sent[0]["body"]
    assert sent[0]["links"], "the reminder carries the approver's link"


def test_execution_that_ends_elsewhere_cancels_its_approval(local_stack: RunningStack) -> None:
    """A team's own workflow: the approval runs beside another branch, which fails.

    (StopExecution would be the simplest trigger, but moto 5.2.5 keeps an execution that
    waits on a task token RUNNING after StopExecution; a failing parallel branch ends it.)
    """
    approval = approval_definition()
    workflow = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "End": True,
                "Branches": [
                    {"StartAt": approval["StartAt"], "States": approval["States"]},
                    {
                        "StartAt": "Build",
                        "States": {
                            "Build": {"Type": "Wait", "Seconds": 2, "Next": "BuildFailed"},
                            "BuildFailed": {"Type": "Fail", "Error": "Build.Failed", "Cause": "tests failed"},
                        },
                    },
                ],
            }
        },
    }
    definition = render(workflow, local_stack.info.queue_url, local_stack.info.table_name)
    machine = local_stack.sfn.create_state_machine(
        name="team-workflow", roleArn=LOCAL_ROLE, definition=definition
    )["stateMachineArn"]
    title = "Cancel check"
    request = {"title": title, "approvers": ["cat@example.com"], "requester": "ops-bot@example.com"}
    local_stack.sfn.start_execution(stateMachineArn=machine, input=json.dumps({"request": request}))
    link = wait_for_email(local_stack.info, "cat@example.com", title)["links"][0]
    deadline = time.monotonic() + 20
    while approver.request(link, headers={"Accept": "application/json"}).json()["status"] != "cancelled":
        assert time.monotonic() < deadline, "the approval was not cancelled within 20 s"
        time.sleep(0.5)
    page = approver.open_link(link)
    assert page.status == 200
    assert 'badge cancelled">cancelled<' in page.text
    assert page.buttons == [], "a cancelled request cannot be decided"
    refused = approver.post_from_link(link, "approve", approver="cat@example.com")
    assert refused.status == 410
    assert "This request was cancelled." in refused.text
    shown = local_stack.cli("show", approval_id_of(local_stack, title))
    assert "cancelled  system" in shown.stdout


def test_operator_lists_shows_and_decides_on_behalf(local_stack: RunningStack) -> None:
    title = "Operator check"
    arn = start(local_stack, title, ["dee@example.com", "eve@example.com"], policy="all")
    wait_for_email(local_stack.info, "eve@example.com", title)
    pending = local_stack.cli("list", "--pending", "--approver", "dee@example.com")
    assert title in pending.stdout
    assert "dee@example.com, eve@example.com" in pending.stdout
    approval_id = approval_id_of(local_stack, title)
    eve_link = wait_for_email(local_stack.info, "eve@example.com", title)["links"][0]

    first = local_stack.cli(
        "decide", approval_id, "approve", "--as", "dee@example.com", "--operator", "oncall@example.com"
    )
    assert first.returncode == 0, first.stderr
    assert "request is pending" in first.stdout
    not_hers = local_stack.cli("decide", eve_link, "approve", "--as", "dee@example.com")
    assert not_hers.returncode == 2
    assert (
        not_hers.stderr.strip()
        == "approvals: that link was emailed to eve@example.com, not to dee@example.com"
    )
    # Eve forwarded her email: her short link names the approval as well as its id does.
    second = local_stack.cli(
        "decide", eve_link, "approve", "--as", "eve@example.com", "--comment", "by phone"
    )
    assert second.returncode == 0, second.stderr
    assert "the workflow has the decision" in second.stdout

    again = local_stack.cli("decide", approval_id, "reject", "--as", "eve@example.com")
    assert again.returncode == 2
    assert again.stderr.strip() == "approvals: You have already decided on this request."
    stranger = local_stack.cli("decide", approval_id, "approve", "--as", "mallory@example.com")
    assert stranger.returncode == 2
    assert "not an approver" in stranger.stderr

    shown = local_stack.cli("show", approval_id)
    kinds = [line.split()[2] for line in shown.stdout.split("Timeline (UTC):")[1].strip().splitlines()]
    assert kinds == ["requested", "emailed", "voted", "voted", "settled"]
    assert "recorded by oncall@example.com on the approver's behalf" in shown.stdout
    settled = local_stack.cli("list", "--settled")
    assert title in settled.stdout
    status = json.loads(local_stack.cli("status", arn).stdout)
    assert status["final_state"] == "Approved"
    assert [v["approver"] for v in status["output"]["votes"]] == ["dee@example.com", "eve@example.com"]


def test_start_and_wait_shows_progress_until_the_outcome(local_stack: RunningStack) -> None:
    title = "Wait for me"
    waiting = subprocess.Popen(
        [str(BIN / "approvals"), "start", "--title", title, "--approver", "fay@example.com", "--wait"],
        cwd=local_stack.workdir,
        env=local_stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    page = approver.open_link(wait_for_email(local_stack.info, "fay@example.com", title)["links"][0])
    time.sleep(2.5)  # let it report the waiting state at least once
    assert approver.submit(page, "approve").status == 200
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    assert out.splitlines()[0].startswith("arn:aws:states:")
    assert out.splitlines()[-1] == "SUCCEEDED: approved (ended in Approved)"
    assert "… pending: 0 vote(s), waiting on fay@example.com" in err


def test_rotate_key_keeps_the_links_in_flight(local_stack: RunningStack) -> None:
    title = "Across a key rotation"
    start(local_stack, title, ["rot@example.com"])
    link = wait_for_email(local_stack.info, "rot@example.com", title)["links"][0]  # a short link
    assert approver.open_link(link).status == 200  # the API holds the key of the day

    rotated = local_stack.cli("rotate-key")
    assert rotated.returncode == 0, rotated.stderr
    new_key_id = rotated.stdout.split()[3]
    old_key_id = rotated.stdout.split("links of key ")[1].split()[0]
    assert new_key_id != old_key_id

    page = approver.open_link(link)
    assert page.status == 200
    assert approver.submit(page, "approve").status == 200
