"""The fan-out at a size where the state limit bites (issue 18): Step Functions caps a
state, and an execution's input, at 256 KiB. The old fan-out (a Distributed Map whose
``ResultPath`` added every decision to a state that still held every request) fails with
``States.DataLimitExceeded`` past about 500 items of the README's refund example; the
fan-out now writes its decisions to S3 and ends in a small summary.

The approvals here are answered straight from the queue with the product's own answer
(``approvals.tasks.succeed``, decisions the size of the refund example's): the worker and
the approval API have tests of their own, and what is tested here is the definitions."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from approvals import fanout, statemachine, tasks
from approvals.links import approval_id_for
from approvals.local.resources import LOCAL_ROLE
from approvals.models import Decision, Outcome, Vote
from tests.conftest import Stack, eventually, moto_stack

ITEMS = 600
STATE_LIMIT = 256 * 1024
FINANCE = "finance@example.com"


def refund(n: int) -> dict[str, Any]:
    """A request the size of the README's refund example (about 157 bytes as JSON)."""
    return {
        "title": f"Refund {n:05d}: 2,400 EUR",
        "requester": "billing@example.com",
        "approvers": [FINANCE],
        "details": {"order": f"O-{n:06d}", "customer": "ana@example.org"},
    }


def decision(token: str, n: int) -> Decision:
    """A decision the size of the refund example's (about 350 bytes as JSON): odd items rejected."""
    outcome = Outcome.REJECTED if n % 2 else Outcome.APPROVED
    now = datetime.now(UTC)
    comment = f"Checked order O-{n:06d} against the customer's history and the refund policy."
    vote = Vote(approver=FINANCE, outcome=outcome, comment=comment, at=now)
    return Decision(approval_id=approval_id_for(token), outcome=outcome, votes=[vote], decided_at=now)


def old_fanout_definition() -> dict[str, Any]:
    """The fan-out as it was: every decision added to the state beside every request."""
    each = dict(statemachine.fanout_definition()["States"]["ApproveEach"])
    del each["ResultWriter"]
    return {
        "StartAt": "ApproveEach",
        "States": {
            "ApproveEach": {**each, "ResultPath": "$.decisions", "Next": "Done"},
            "Done": {"Type": "Pass", "Parameters": {"decisions.$": "$.decisions"}, "End": True},
        },
    }


def answer_all(stack: Stack, count: int) -> None:
    """Answer ``count`` queued requests, each as its item's decision."""
    answered = 0
    while answered < count:
        messages = stack.sqs.receive_message(
            QueueUrl=stack.resources.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        for message in messages:
            body = json.loads(message["Body"])
            n = int(body["request"]["details"]["order"].removeprefix("O-"))
            tasks.succeed(stack.sfn, body["task_token"], decision(body["task_token"], n))
            stack.sqs.delete_message(
                QueueUrl=stack.resources.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            answered += 1


def ended(stack: Stack, arn: str) -> dict[str, Any]:
    def described() -> dict[str, Any] | None:
        execution = stack.sfn.describe_execution(executionArn=arn)
        return dict(execution) if execution["status"] != "RUNNING" else None

    return eventually(described, 120, f"{arn} to end")


@pytest.fixture(scope="module")
def batches() -> Iterator[tuple[Stack, dict[str, Any], dict[str, Any]]]:
    """The same 600 refunds through the old fan-out and the new one, at once (one wait for both)."""
    with pytest.MonkeyPatch.context() as monkeypatch, moto_stack(monkeypatch) as stack:
        old = stack.sfn.create_state_machine(
            name="old-fanout",
            definition=statemachine.render(
                old_fanout_definition(), stack.resources.queue_url, stack.resources.table_name
            ),
            roleArn=LOCAL_ROLE,
        )["stateMachineArn"]
        batch = json.dumps({"requests": [refund(n) for n in range(ITEMS)]})
        arns = [
            stack.sfn.start_execution(stateMachineArn=machine, name=str(uuid.uuid4()), input=batch)[
                "executionArn"
            ]
            for machine in (old, stack.resources.fanout_state_machine_arn)
        ]
        answer_all(stack, 2 * ITEMS)
        yield stack, ended(stack, arns[0]), ended(stack, arns[1])


def test_the_old_fanout_overflows_the_state_once_everyone_has_voted(
    batches: tuple[Stack, dict[str, Any], dict[str, Any]],
) -> None:
    _, old, _ = batches
    assert old["status"] == "FAILED"
    assert old["error"] == "States.DataLimitExceeded"


def test_the_fanout_ends_in_a_small_summary_with_every_decision_in_s3(
    batches: tuple[Stack, dict[str, Any], dict[str, Any]],
) -> None:
    stack, _, new = batches
    assert new["status"] == "SUCCEEDED", new
    summary = json.loads(new["output"])
    assert len(new["output"].encode()) < 1024  # whatever the number of items
    bucket = stack.resources.fanout_bucket
    assert summary["decisions"]["bucket"] == bucket
    run_id = summary["map_run"].rsplit(":", 1)[-1]
    assert summary["decisions"]["manifest"] == f"fanout/{run_id}/manifest.json"

    s3 = stack.s3
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=summary["decisions"]["manifest"])["Body"].read())
    assert manifest["MapRunArn"] == summary["map_run"]
    assert [f["Key"] for f in manifest["ResultFiles"]["SUCCEEDED"]] == [f"fanout/{run_id}/SUCCEEDED_0.json"]
    assert manifest["ResultFiles"]["FAILED"] == []

    decisions = fanout.decisions(s3, summary)
    assert [d["outcome"] for d in decisions] == ["rejected" if n % 2 else "approved" for n in range(ITEMS)]
    assert decisions[7]["votes"][0]["comment"].startswith("Checked order O-000007 ")
    assert fanout.counts(decisions) == {"approved": ITEMS // 2, "rejected": ITEMS // 2}
    # What the old fan-out would have had to hold, against the limit.
    assert (
        len(json.dumps({"requests": [refund(n) for n in range(ITEMS)], "decisions": decisions})) > STATE_LIMIT
    )


def test_an_execution_input_over_the_state_limit_is_refused(stack: Stack) -> None:
    requests = [refund(n) for n in range(2_000)]  # about 330 KB
    with pytest.raises(ClientError) as refused:
        stack.start_fanout(requests)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert (
        stack.sfn.list_executions(stateMachineArn=stack.resources.fanout_state_machine_arn)["executions"]
        == []
    )


def test_requests_read_from_s3(stack: Stack) -> None:
    s3 = stack.s3
    key = f"{statemachine.FANOUT_REQUESTS_PREFIX}batch.json"
    s3.put_object(
        Bucket=stack.resources.fanout_bucket, Key=key, Body=json.dumps([refund(n) for n in range(3)])
    )
    stack.add_approvers([FINANCE])
    arn = stack.sfn.start_execution(
        stateMachineArn=stack.resources.fanout_state_machine_arn,
        input=json.dumps({"requests_from": {"bucket": stack.resources.fanout_bucket, "key": key}}),
    )["executionArn"]
    answer_all(stack, 3)
    execution = ended(stack, arn)
    assert execution["status"] == "SUCCEEDED", execution
    decisions = fanout.decisions(s3, json.loads(execution["output"]))
    assert [d["outcome"] for d in decisions] == ["approved", "rejected", "approved"]
