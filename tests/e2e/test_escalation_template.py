"""Escalation end to end on the product's synthesized template (`approvals local --template`),
deployed with a one-minute sweep (`-c sweepMinutes=1`): the template's own scheduled sweeper
asks the backup, who approves from the emailed link."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from approvals.demo import wait_for_email
from approvals.local import approver
from tests.e2e.conftest import RunningStack, stack_with_approvers, synthesize_template
from tests.e2e.test_escalation import REQUESTER, emailed, outcome
from tests.e2e.test_operator import approval_id_of

# It waits a minute for the escalation: a group of its own runs it beside the other e2e tests.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-escalation-template")]

# The template's sweep runs every minute (the shortest rate EventBridge Scheduler takes), and
# its worker refuses an escalation step sooner after the request than that.
SWEEP_SECONDS = 60
AFTER_SECONDS = SWEEP_SECONDS


@pytest.fixture(scope="module")
def one_minute_sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    template = synthesize_template(tmp_path_factory, sweepMinutes="1")
    workdir = tmp_path_factory.mktemp("local-sweep-1m")
    with stack_with_approvers(workdir, "--template", str(template)) as stack:
        yield stack


def test_the_templates_sweeper_escalates_to_a_backup_who_approves(one_minute_sweep: RunningStack) -> None:
    stack = one_minute_sweep
    title = "E2E template escalates to Gina"
    arn = stack.start(
        title,
        ["hank@example.com"],
        REQUESTER,
        escalation=[{"after_seconds": AFTER_SECONDS, "approvers": ["gina@example.com"]}],
    )
    wait_for_email(stack.info, "hank@example.com", title)
    # Hank does not answer. The sweep runs at the template's rate, from the stack's start: the
    # first one after the step is due asks Gina, up to a sweep later (two minutes in all).
    backup = wait_for_email(stack.info, "gina@example.com", title, timeout=AFTER_SECONDS + SWEEP_SECONDS + 30)
    page = approver.open_link(backup["links"][0])
    assert page.status == 200
    assert "(escalation)" in page.text
    assert approver.submit(page, "approve", "covering for Hank").status == 200

    decision = outcome(stack, arn)
    assert decision["outcome"] == "approved"
    assert [(v["approver"], v["comment"]) for v in decision["votes"]] == [
        ("gina@example.com", "covering for Hank")
    ]
    assert emailed(stack, title) == ["gina@example.com", "hank@example.com"]  # one each

    shown = stack.cli("show", approval_id_of(stack, title))
    assert shown.returncode == 0, shown.stderr
    assert "step 1: asked gina@example.com" in shown.stdout
