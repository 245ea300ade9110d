"""The two example apps end to end on `approvals local`: each app's synthesized state machine,
run by the local engine against the local service, approved by clicking the emailed links,
and a batch of refunds decided from each approver's inbox, reached by their digest's link.

The definitions are the ones `cdk synth` writes for the apps, with the service's request
queue filled in by the local stack's.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any
from unittest.mock import ANY
from urllib.parse import urlencode

import pytest

from approvals import fanout, keys
from approvals.local import approver
from approvals.local.resources import LOCAL_ROLE
from approvals.notify import approver_link
from approvals.target import for_local
from examples.deploy_gate.app import RELEASE_MANAGERS
from examples.refund_batch.app import FINANCE
from tests.cdk_templates import examples_templates, state_machine_definition
from tests.e2e.conftest import PROVISIONED, RunningStack, stack_in_mode

pytestmark = pytest.mark.e2e


def deploy_locally(stack: RunningStack, template: dict[str, Any], machine: str) -> str:
    """The app's state machine on the local stack, its approvers added as an operator does."""
    stack.add_approvers(*RELEASE_MANAGERS, *FINANCE)
    refs = {
        "ApprovalsRequestQueue": stack.info.queue_url,
        "ApprovalsTable": stack.info.table_name,
        "ApprovalsFanoutBucket": stack.info.fanout_bucket,
    }
    definition = state_machine_definition(template, machine, refs)
    sfn = for_local(stack.info).sfn
    return sfn.create_state_machine(
        name=f"{machine}-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=LOCAL_ROLE
    )["stateMachineArn"]


def start(stack: RunningStack, machine_arn: str, execution_input: dict[str, Any]) -> str:
    return for_local(stack.info).sfn.start_execution(
        stateMachineArn=machine_arn, input=json.dumps(execution_input)
    )["executionArn"]


def links(stack: RunningStack, title: str, count: int, execution: str = "") -> dict[str, str]:
    """Each approver's link for the request titled ``title``, once all ``count`` are emailed.

    A fan-out's requests that reach the worker in one batch go to each approver in one
    digest, whose link opens their inbox: for those, the request's own link is the one the
    inbox's page would open (the same short link its own email carries)."""
    deadline = time.monotonic() + 60
    while True:
        emails = approver.request(stack.info.outbox_url, headers={"Accept": "application/json"}).json()
        found = {e["to"]: e["links"][0] for e in emails if title in e["subject"]}
        digested = {
            e["to"] for e in emails if e["subject"].startswith("[Approvals needed]") and title in e["body"]
        }
        if len(found.keys() | digested) >= count or time.monotonic() > deadline:
            assert len(found.keys() | digested) == count, (
                f"{len(found)} of {count} emails about {title!r}"
                + (f"; the execution: {history(stack, execution)}" if execution else "")
            )
            return {**found, **own_links(stack, title, digested - found.keys())}
        time.sleep(0.3)


def own_links(stack: RunningStack, title: str, approvers: set[str]) -> dict[str, str]:
    if not approvers:
        return {}
    target = for_local(stack.info)
    (approval,) = [a for a in target.store.all() if a.request.title == title]
    key = keys.fetch(target.secrets, target.signing_secret_id).current
    return {who: approver_link(approval, who, stack.info.api_url, key) for who in approvers}


def history(stack: RunningStack, execution: str) -> str:
    sfn = for_local(stack.info).sfn
    status = sfn.describe_execution(executionArn=execution)["status"]
    events = sfn.get_execution_history(executionArn=execution)["events"]
    return f"{status}, {[(e['type'], e.get('executionFailedEventDetails')) for e in events][-12:]}"


def click(link: str, decision: str) -> None:
    page = approver.open_link(link)
    assert approver.submit(page, decision, "" if decision == "approve" else "not now").status == 200


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return examples_templates(tmp_path_factory)  # shared with tests/infra/test_examples.py


def test_deploy_gate_deploys_once_both_approve_and_fails_on_a_rejection(
    local_stack: RunningStack, templates: dict[str, dict[str, Any]]
) -> None:
    machine = deploy_locally(local_stack, templates["deploy"], "Pipeline")
    release = {"service": "checkout", "version": "2.4.0"}
    approved = start(local_stack, machine, {"title": "Deploy checkout 2.4.0", "release": release})
    sent = links(local_stack, "Deploy checkout 2.4.0", len(RELEASE_MANAGERS))
    assert sorted(sent) == sorted(RELEASE_MANAGERS)
    for link in sent.values():
        click(link, "approve")
    described = local_stack.ended(approved)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(str(described["output"])) == {"deployed": release}
    # The workflow confirmed the decision itself (confirmation_step): nothing left for the sweep.
    (approval,) = [a for a in for_local(local_stack.info).store.all() if a.execution == approved]
    assert (approval.status.value, approval.unconfirmed) == ("approved", False)

    rejected = start(local_stack, machine, {"title": "Deploy checkout 2.5.0", "release": release})
    click(links(local_stack, "Deploy checkout 2.5.0", len(RELEASE_MANAGERS))[RELEASE_MANAGERS[0]], "reject")
    described = local_stack.ended(rejected)
    assert (described["status"], described.get("error")) == ("FAILED", "Deploy.Rejected")

    # The operator sees which workflow asked, and can list that workflow's approvals alone.
    listed = local_stack.cli("list", "--workflow", machine.rsplit(":", 1)[-1])
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert sorted(row.split()[2:4] for row in rows) == [["Deploy", "checkout"], ["Deploy", "checkout"]]
    shown = local_stack.cli("show", rows[0].split()[0])
    assert f"workflow   {machine}" in shown.stdout
    assert "step       ReleaseApproval" in shown.stdout


def test_refund_batch_approves_each_refund_by_a_quorum_of_two(
    local_stack: RunningStack, templates: dict[str, dict[str, Any]]
) -> None:
    machine = deploy_locally(local_stack, templates["refunds"], "Refunds")
    refunds = [
        {"id": "R-1", "amount": 120, "customer": "ana@example.org"},
        {"id": "R-2", "amount": 9000, "customer": "bo@example.org"},
        {"id": "R-3", "amount": 45, "customer": "cy@example.org"},
    ]
    execution = start(local_stack, machine, {"refunds": refunds})
    sent = {
        r["id"]: links(local_stack, f"Refund {r['id']} of {r['amount']} USD", len(FINANCE), execution)
        for r in refunds
    }
    carol, dan, erin = FINANCE
    votes = {
        "R-1": [(carol, "approve"), (dan, "approve")],
        "R-2": [(carol, "reject"), (erin, "reject")],
        "R-3": [(carol, "approve"), (dan, "reject"), (erin, "approve")],
    }
    for refund, cast in votes.items():
        for who, decision in cast:
            click(sent[refund][who], decision)

    described = local_stack.ended(execution)
    assert described["status"] == "SUCCEEDED"
    output = json.loads(str(described["output"]))
    assert output == {"results": {"bucket": local_stack.info.fanout_bucket, "manifest": ANY}}
    assert fanout.results(for_local(local_stack.info).client("s3"), **output["results"]) == [
        {"id": "R-1", "status": "refunded"},
        {"id": "R-2", "status": "declined"},
        {"id": "R-3", "status": "refunded"},
    ]


# A short digest window, so that the stack's own sweep (every 2 s) sends the digests soon;
# long enough that a loaded machine's children, arriving one by one, still share a digest.
DIGEST_SECONDS = 10


@pytest.fixture(scope="module")
def windowed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A built-in local stack with a digest window, as a deployed service has one."""
    with stack_in_mode(tmp_path_factory, PROVISIONED, "--digest-seconds", str(DIGEST_SECONDS)) as stack:
        yield stack


def inbox_listing(stack: RunningStack, who: str, count: int) -> str | None:
    """``who``'s inbox link, from a digest email, once their inbox lists ``count`` requests."""
    emails = approver.request(stack.info.outbox_url, headers={"Accept": "application/json"}).json()
    for email in emails:
        if email["to"] == who and email["subject"].startswith("[Approvals needed]"):
            [link] = email["links"]
            listed = approver.request(link, headers={"Accept": "application/json"}).json()
            if listed["total"] == count:
                return str(link)
    return None


def test_refund_batch_is_decided_from_each_approver_s_inbox(
    windowed_stack: RunningStack, templates: dict[str, dict[str, Any]]
) -> None:
    machine = deploy_locally(windowed_stack, templates["refunds"], "Refunds")
    refunds = [{"id": f"R-{n}", "amount": 10 * n, "customer": "ana@example.org"} for n in range(1, 13)]
    execution = start(windowed_stack, machine, {"refunds": refunds})

    for who, result in ((FINANCE[0], "recorded"), (FINANCE[1], "settled")):
        listing = partial(inbox_listing, windowed_stack, who, len(refunds))
        link = windowed_stack.swept_until(listing, timeout=120, what=f"{who}'s digest")
        # "Select all 12 matching", "Approve selected", confirmed: one POST decides the batch.
        form = [("all", "1"), ("decision", "approve"), ("confirmed", "1")]
        done = approver.request(
            link, urlencode(form).encode(), approver.form_headers(link, accept_json=True), "POST"
        ).json()
        assert done["counts"] == {result: len(refunds)}, done

    described = windowed_stack.ended(execution)
    assert described["status"] == "SUCCEEDED"
    output = json.loads(str(described["output"]))
    assert fanout.results(for_local(windowed_stack.info).client("s3"), **output["results"]) == [
        {"id": refund["id"], "status": "refunded"} for refund in refunds
    ]
    # The example's Task has no confirmation step, and needs none here: the bulk vote
    # confirmed each delivery itself, so nothing is left for the sweep to repeat.
    asked = [a for a in for_local(windowed_stack.info).store.all() if a.execution == execution]
    assert [(a.status.value, a.unconfirmed) for a in asked] == [("approved", False)] * len(refunds)
