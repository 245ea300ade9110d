"""End to end: a user's session with `approvals local`, the AWS CLI and an approver's clicks,
on the stack `approvals local` provisions and on the product's synthesized template deployed
with `approvals local --template` (which catches wiring errors of the CDK app: environment
names, substitutions, outputs)."""

from __future__ import annotations

import json
import re
import signal
from typing import Any

import pytest

from approvals.demo import wait_for_email
from approvals.local import approver
from tests.e2e.conftest import BOTH_MODES, RunningStack

pytestmark = [pytest.mark.e2e, BOTH_MODES]


def test_state_file_names_every_resource(local_stack: RunningStack) -> None:
    state = json.loads((local_stack.workdir / ".approvals" / "local.json").read_text())
    assert set(state) == {
        "endpoint_url", "region", "state_machine_arn", "fanout_state_machine_arn", "api_url",
        "outbox_url", "queue_url", "dlq_url", "table_name", "topic_arn", "signing_secret_arn",
        "fanout_bucket", "identity_provider_url",
    }  # fmt: skip
    machines = local_stack.aws("stepfunctions", "list-state-machines")["stateMachines"]
    assert {m["stateMachineArn"] for m in machines} >= {
        state["state_machine_arn"],
        state["fanout_state_machine_arn"],
    }


def test_execution_started_with_the_aws_cli_is_approved_by_clicking(local_stack: RunningStack) -> None:
    request: dict[str, Any] = {
        "title": "E2E deploy <b>now</b>",
        "approvers": ["ops@example.com"],
        "requester": "e2e@example.com",
        "details": {"ticket": "OPS-1"},
    }
    started = local_stack.aws(
        "stepfunctions", "start-execution",
        "--state-machine-arn", local_stack.info.state_machine_arn,
        "--input", json.dumps({"request": request}),
    )  # fmt: skip
    email = wait_for_email(local_stack.info, "ops@example.com", request["title"])
    assert "task_token" not in email["body"]
    # Only a short link, with no address or signature: {api}/a/<43 characters>.
    (link,) = email["links"]
    assert re.fullmatch(re.escape(local_stack.info.api_url.rstrip("/")) + r"/a/[A-Za-z0-9_-]{43}", link)
    assert "sig=" not in email["body"]
    assert "approver=" not in email["body"]
    page = approver.open_link(link)
    assert page.status == 200
    assert "E2E deploy &lt;b&gt;now&lt;/b&gt;" in page.text
    assert page.headers["X-Frame-Options"] == "DENY"
    confirmation = approver.submit(page, "approve", "ship it")
    assert confirmation.status == 200
    assert "Decision recorded" in confirmation.text

    local_stack.ended(str(started["executionArn"]))
    # As the README shows it: the AWS CLI reads the outcome.
    described = local_stack.aws(
        "stepfunctions", "describe-execution", "--execution-arn", started["executionArn"]
    )
    assert described["status"] == "SUCCEEDED"
    output = json.loads(str(described["output"]))
    assert output["outcome"] == "approved"
    assert output["votes"][0]["comment"] == "ship it"

    again = approver.submit(page, "reject", "changed my mind")
    assert again.status == 409


def test_cli_start_and_status_with_rejection(local_stack: RunningStack) -> None:
    started = local_stack.cli(
        "start", "--title", "CLI refund", "--approver", "fin@example.com", "--requester", "cli@example.com"
    )
    assert started.returncode == 0, started.stderr
    execution_arn = started.stdout.strip()
    email = wait_for_email(local_stack.info, "fin@example.com", "CLI refund")
    page = approver.open_link(email["links"][0])
    refused = approver.submit(page, "reject", "")
    assert refused.status == 400
    assert "reason is required" in refused.text
    assert approver.submit(page, "reject", "over budget").status == 200
    local_stack.ended(execution_arn)

    status = local_stack.cli("status", execution_arn)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["status"] == "SUCCEEDED"
    assert report["final_state"] == "Rejected"
    assert report["output"]["votes"][0]["comment"] == "over budget"


def test_fanout_started_with_the_aws_cli_answers_each_request_in_order(local_stack: RunningStack) -> None:
    requests = [
        {"title": f"Fan-out {n}", "approvers": [f"fan{n}@example.com"], "requester": "e2e@example.com"}
        for n in (1, 2)
    ]
    started = local_stack.aws(
        "stepfunctions", "start-execution",
        "--state-machine-arn", local_stack.info.fanout_state_machine_arn,
        "--input", json.dumps({"requests": requests}),
    )  # fmt: skip
    for n, decision in ((2, "reject"), (1, "approve")):
        page = approver.open_link(
            wait_for_email(local_stack.info, f"fan{n}@example.com", f"Fan-out {n}")["links"][0]
        )
        assert approver.submit(page, decision, "seen").status == 200

    described = local_stack.ended(str(started["executionArn"]))
    assert described["status"] == "SUCCEEDED"
    decisions = local_stack.fanout_decisions(str(described["output"]))
    assert [d["outcome"] for d in decisions] == ["approved", "rejected"]
    # Counted by the summary function: in template mode, under its own role's grants.
    counts = json.loads(str(described["output"]))["counts"]
    assert (counts["approved"], counts["rejected"], counts["expired"]) == (1, 1, 0)


def test_cli_refuses_an_invalid_request_with_one_clear_line(local_stack: RunningStack) -> None:
    result = local_stack.cli("start", "--title", "x", "--approver", "not-an-email")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "approvals: invalid request: request.approvers.0: Value error, not a valid email address"
        or ("request.approvers.0" in result.stderr and "Traceback" not in result.stderr)
    )


def test_outbox_page_and_json(local_stack: RunningStack) -> None:
    emails = approver.request(local_stack.info.outbox_url, headers={"Accept": "application/json"}).json()
    assert emails, "earlier tests sent emails"
    assert set(emails[0]) == {"to", "subject", "body", "links", "sent_at", "kind", "unsubscribe"}
    page = approver.request(local_stack.info.outbox_url)
    assert page.status == 200
    assert "Open the approval page" in page.text


def test_no_task_token_in_any_output_and_clean_stop(local_stack: RunningStack) -> None:
    """Runs last in this module: collects every token the queue carried from the
    execution histories, then scans everything the stack printed."""
    machines = [local_stack.info.state_machine_arn]
    tokens: set[str] = set()
    for machine in machines:
        # Read with boto3: the README's AWS CLI commands are the earlier tests'.
        for execution in local_stack.sfn.list_executions(stateMachineArn=machine)["executions"]:
            for event in local_stack.history(execution["executionArn"]):
                scheduled = event.get("taskScheduledEventDetails", {})
                if scheduled.get("resourceType") == "sqs":  # not the workflow's confirmation
                    body = json.loads(scheduled["parameters"])["MessageBody"]
                    tokens.add(body["task_token"])
    assert tokens, "the earlier tests ran executions"
    emails = approver.request(local_stack.info.outbox_url, headers={"Accept": "application/json"}).text
    local_stack.process.send_signal(signal.SIGINT)
    assert local_stack.process.wait(timeout=30) == 0
    printed = (local_stack.workdir / "local.log").read_text()
    assert "Local stack stopped." in printed
    for token in tokens:
        assert token not in printed
        assert token not in emails
