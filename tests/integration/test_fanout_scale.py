"""The fan-out at a size where the state limit bites (issue 18): Step Functions caps a
state, and an execution's input, at 256 KiB. The old fan-out (a Distributed Map whose
``ResultPath`` added every decision to a state that still held every request) fails with
``States.DataLimitExceeded`` past about 500 items of the README's refund example; the
fan-out now writes its decisions to S3 and ends in a small summary.

The approvals here are answered straight from the queue with the product's own answer
(``approvals.tasks.succeed``, decisions the size of the refund example's), as the benchmark
that measures the output sizes does (bench/fanout_output.py): the worker and the approval
API have tests of their own, and what is tested here is the definitions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from approvals import fanout, statemachine
from bench.fanout_output import STATE_LIMIT, answer_all, ended, refund, start_both
from tests.conftest import Stack, moto_stack

# One worker runs the module: its batches are made once, for both tests that read them.
pytestmark = pytest.mark.xdist_group("fanout-scale")

# The limit is on bytes: 40 refunds with a 5,500-character description and a full
# 1,000-byte comment overflow it as 600 of the README's refund example do, in a fifteenth
# of the child executions (moto starts each one, most of this module's time). Their input
# fits (about 228 KB); only their decisions, added to it once everyone has voted, do not
# (about 281 KB in all).
ITEMS = 40
DESCRIPTION = "Refund requested by the customer after a late delivery. ".ljust(5_500, ".")
COMMENT_BYTES = 1_000


@pytest.fixture(scope="module")
def batches() -> Iterator[tuple[Stack, dict[str, Any], dict[str, Any]]]:
    """The same refunds through the old fan-out and the new one, at once (one wait for both)."""
    with pytest.MonkeyPatch.context() as monkeypatch, moto_stack(monkeypatch) as stack:
        old, new = start_both(stack.sfn, stack.resources, ITEMS, DESCRIPTION)
        answer_all(stack.sqs, stack.sfn, stack.resources.queue_url, 2 * ITEMS, COMMENT_BYTES)
        yield stack, ended(stack.sfn, old), ended(stack.sfn, new)


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
    # The counts are in the output itself, every outcome named, for a Choice to branch on.
    assert summary["counts"] == {
        "approved": ITEMS // 2,
        "rejected": ITEMS // 2,
        **{outcome: 0 for outcome in ("expired", "invalid", "undelivered", "failed")},
    }
    # What the old fan-out would have had to hold, against the limit: the requests fit, not
    # with the decisions beside them.
    requests = [refund(n, DESCRIPTION) for n in range(ITEMS)]
    held = len(json.dumps({"requests": requests, "decisions": decisions}))
    assert len(json.dumps({"requests": requests})) < STATE_LIMIT < held


# These share the batches' stack (one mock per module): they add to it without reading it.


def test_an_execution_input_over_the_state_limit_is_refused(
    batches: tuple[Stack, dict[str, Any], dict[str, Any]],
) -> None:
    stack, _, _ = batches
    machine = stack.resources.fanout_state_machine_arn
    before = stack.sfn.list_executions(stateMachineArn=machine)["executions"]
    requests = [refund(n) for n in range(2_000)]  # about 350 KB
    with pytest.raises(ClientError) as refused:
        stack.start_fanout(requests)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert stack.sfn.list_executions(stateMachineArn=machine)["executions"] == before


def test_requests_read_from_s3(batches: tuple[Stack, dict[str, Any], dict[str, Any]]) -> None:
    stack, _, _ = batches
    key = f"{statemachine.FANOUT_REQUESTS_PREFIX}batch.json"
    body = json.dumps([refund(n) for n in range(3)])
    stack.s3.put_object(Bucket=stack.resources.fanout_bucket, Key=key, Body=body)
    arn = stack.sfn.start_execution(
        stateMachineArn=stack.resources.fanout_state_machine_arn,
        input=json.dumps({"requests_from": {"bucket": stack.resources.fanout_bucket, "key": key}}),
    )["executionArn"]
    answer_all(stack.sqs, stack.sfn, stack.resources.queue_url, 3)
    execution = ended(stack.sfn, arn)
    assert execution["status"] == "SUCCEEDED", execution
    decisions = fanout.decisions(stack.s3, json.loads(execution["output"]))
    assert [d["outcome"] for d in decisions] == ["approved", "rejected", "approved"]


def test_the_output_size_benchmark_runs(tmp_path: Path) -> None:
    """``make bench`` runs it with 1,000 items; a handful, both fan-outs fit."""
    results = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, "-m", "bench.fanout_output", "--items", "4"],
        env={**os.environ, "BENCH_RESULTS": str(results), "POWERTOOLS_LOG_LEVEL": "WARNING"},
        capture_output=True,
        check=True,
        timeout=120,
    )
    figures = json.loads(results.read_text())["fanout_output"]["figures"]
    assert (figures["previous_status"], figures["status"]) == ("SUCCEEDED", "SUCCEEDED")
    assert figures["decisions_in_s3"] == 4
    assert figures["outcomes"] == {"approved": 2, "rejected": 2}
    assert figures["output_bytes"] < figures["previous_output_bytes"]


def test_a_summary_that_cannot_count_still_says_where_the_decisions_are(
    batches: tuple[Stack, dict[str, Any], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, _, _ = batches

    def unreadable(s3: Any, map_output: dict[str, Any]) -> dict[str, Any]:
        raise PermissionError("the result files could not be read")

    monkeypatch.setattr(fanout, "summary", unreadable)
    arn = stack.start_fanout([refund(n) for n in range(2)])
    answer_all(stack.sqs, stack.sfn, stack.resources.queue_url, 2)
    execution = ended(stack.sfn, arn)
    assert execution["status"] == "SUCCEEDED", execution
    summary = json.loads(execution["output"])
    assert summary["counts_error"] == "PermissionError"
    assert "counts" not in summary
    assert [d["outcome"] for d in fanout.decisions(stack.s3, summary)] == ["approved", "rejected"]
