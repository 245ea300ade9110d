"""The fan-out's output size: the old definition against the one that writes to S3.

The same batch of refund-sized requests (about 157 bytes each, decided with about 350 bytes
each: the README's refund example) goes through the fan-out as it was (a Distributed Map
whose ``ResultPath`` adds every decision to a state that still holds every request) and
through the product's fan-out now (``ResultWriter`` to S3, a summary for output), at once,
in moto in this process. Each request is answered straight from the queue with the
product's own answer (``approvals.tasks.succeed``): what is measured is the definitions.

    .venv/bin/python -m bench.fanout_output --items 1000
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import moto

from approvals import fanout, statemachine, tasks
from approvals.links import approval_id_for
from approvals.local import moto_fixes
from approvals.local.resources import LOCAL_ROLE, Resources, provision
from approvals.models import Decision, Outcome, Vote
from bench.results import record

FINANCE = "finance@example.com"
STATE_LIMIT = 256 * 1024


def refund(n: int, description: str = "") -> dict[str, Any]:
    """A request the size of the README's refund example (about 157 bytes as JSON), plus a
    ``description`` if given."""
    return {
        "title": f"Refund {n:05d}: 2,400 EUR",
        "requester": "billing@example.com",
        "approvers": [FINANCE],
        "details": {"order": f"O-{n:06d}", "customer": "ana@example.org"},
        **({"description": description} if description else {}),
    }


def decision(token: str, n: int, comment_bytes: int = 0) -> Decision:
    """A decision the size of the refund example's (about 350 bytes as JSON), its comment
    padded to ``comment_bytes`` if given: odd items rejected."""
    outcome = Outcome.REJECTED if n % 2 else Outcome.APPROVED
    now = datetime.now(UTC)
    comment = f"Checked order O-{n:06d} against the customer's history and the refund policy."
    comment = comment.ljust(comment_bytes, ".")
    vote = Vote(approver=FINANCE, outcome=outcome, comment=comment, at=now)
    return Decision(approval_id=approval_id_for(token), outcome=outcome, votes=[vote], decided_at=now)


def previous_fanout_definition() -> dict[str, Any]:
    """The fan-out as it was before issue 18: every decision added to the state beside every
    request, and all of them its output."""
    each = dict(statemachine.fanout_definition()["States"]["ApproveEach"])
    del each["ResultWriter"]
    return {
        "StartAt": "ApproveEach",
        "States": {
            "ApproveEach": {**each, "ResultPath": "$.decisions", "Next": "Done"},
            "Done": {"Type": "Pass", "Parameters": {"decisions.$": "$.decisions"}, "End": True},
        },
    }


def answer_all(sqs: Any, sfn: Any, queue_url: str, count: int, comment_bytes: int = 0) -> None:
    """Answer ``count`` queued requests of :func:`refund`, each with its :func:`decision`."""
    answered = 0
    while answered < count:
        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in received.get("Messages", []):
            body = json.loads(message["Body"])
            n = int(body["request"]["details"]["order"].removeprefix("O-"))
            tasks.succeed(sfn, body["task_token"], decision(body["task_token"], n, comment_bytes))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            answered += 1


def start_both(sfn: Any, resources: Resources, items: int, description: str = "") -> tuple[str, str]:
    """The same batch through the previous fan-out and the product's: (previous, now)."""
    definition = statemachine.render(previous_fanout_definition(), resources.queue_url, resources.table_name)
    previous = sfn.create_state_machine(name="previous-fanout", definition=definition, roleArn=LOCAL_ROLE)[
        "stateMachineArn"
    ]
    batch = json.dumps({"requests": [refund(n, description) for n in range(items)]})
    old, new = (
        sfn.start_execution(stateMachineArn=machine, name=str(uuid.uuid4()), input=batch)["executionArn"]
        for machine in (previous, resources.fanout_state_machine_arn)
    )
    return old, new


def ended(sfn: Any, arn: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{arn} still running after {timeout} s")
        time.sleep(0.2)
    return dict(execution)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=1_000)
    items = parser.parse_args().items
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    with moto.mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        moto_fixes.apply()
        session = boto3.Session(region_name="us-east-1")
        resources = provision(session, visibility_timeout=30)
        sfn, sqs, s3 = session.client("stepfunctions"), session.client("sqs"), session.client("s3")
        begin = time.monotonic()
        old_arn, new_arn = start_both(sfn, resources, items)
        answer_all(sqs, sfn, resources.queue_url, 2 * items)
        old, new = ended(sfn, old_arn), ended(sfn, new_arn)
        seconds = time.monotonic() - begin
        decisions = fanout.decisions(s3, json.loads(new["output"]))
    # What the old definition's last state had to hold (requests and decisions), and its
    # output had it not failed (the decisions alone).
    old_state = len(json.dumps({"requests": [refund(n) for n in range(items)], "decisions": decisions}))
    figures = {
        "items": items,
        "previous_status": old["status"],
        "previous_error": old.get("error", ""),
        "previous_state_bytes": old_state,
        "previous_output_bytes": len(json.dumps({"decisions": decisions})),
        "state_limit_bytes": STATE_LIMIT,
        "output_bytes": len(new["output"].encode()),
        "status": new["status"],
        "decisions_in_s3": len(decisions),
        "outcomes": dict(fanout.counts(decisions)),
        "seconds_both_in_moto": round(seconds, 1),
    }
    print(json.dumps(figures, indent=2))
    record("fanout_output", figures)


if __name__ == "__main__":
    main()
