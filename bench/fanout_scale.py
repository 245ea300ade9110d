"""The local engine at fan-out scale: how fast moto's executor (with approvals/local's
patches) starts a Distributed Map's children and takes their answers.

The product's fan-out runs N refund-sized requests (from the state when they fit its
256 KiB, from S3 otherwise), in moto in this process. Measured: the time until every child
has queued its request (children started per second), the time to answer them all with the
product's own answer (``approvals.tasks.succeed``, from the queue as bench.fanout_output
does), and the time until the execution ends. ``--baseline-items`` runs the same at that
size twice in child processes, with and without moto_speedups, for a ratio taken in one run
(without them, a child takes about a second of CPU once hundreds wait: keep that size small).

    .venv/bin/python -m bench.fanout_scale --items 1000 --baseline-items 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import boto3

from approvals import fanout, statemachine
from approvals.local import access, moto_speedups
from approvals.local.resources import provision
from bench.calls import on_moto
from bench.fanout_output import STATE_LIMIT, answer_all, ended, refund
from bench.results import record

WITHOUT_SPEEDUPS = "--without-speedups"


def queued(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def execution_input(s3: Any, bucket: str, items: int) -> tuple[str, str]:
    """The fan-out's input, and where its requests are: in the state if they fit, else S3."""
    requests = [refund(n) for n in range(items)]
    state = json.dumps({"requests": requests})
    if len(state.encode()) <= STATE_LIMIT:
        return state, "state"
    key = f"{statemachine.FANOUT_REQUESTS_PREFIX}{uuid.uuid4()}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(requests).encode())
    return json.dumps({"requests_from": {"bucket": bucket, "key": key}}), "s3"


def measure(items: int) -> dict[str, Any]:
    with on_moto():
        session = boto3.Session(region_name="us-east-1")
        resources = provision(session, visibility_timeout=300)  # none comes back while it runs
        sfn, sqs, s3 = (session.client(service) for service in ("stepfunctions", "sqs", "s3"))  # type: ignore[call-overload]
        batch, source = execution_input(s3, resources.fanout_bucket, items)
        cpu, begin = time.process_time(), time.monotonic()
        arn = sfn.start_execution(
            stateMachineArn=resources.fanout_state_machine_arn, name=str(uuid.uuid4()), input=batch
        )["executionArn"]
        while queued(sqs, resources.queue_url) < items:
            time.sleep(0.1)
        started = time.monotonic() - begin
        answer_all(sqs, sfn, resources.queue_url, items)
        answered = time.monotonic() - begin
        execution = ended(sfn, arn, timeout=3600)
        seconds = time.monotonic() - begin
        cpu_seconds = time.process_time() - cpu
        outcomes = fanout.counts(fanout.decisions(s3, json.loads(execution["output"])))
    if execution["status"] != "SUCCEEDED" or sum(outcomes.values()) != items:
        raise RuntimeError(f"the fan-out did not end with every item decided: {execution}, {outcomes}")
    return {
        "items": items,
        "requests_from": source,
        "seconds_to_every_child_queued": round(started, 1),
        "children_started_per_second": round(items / started, 1),
        "seconds_to_every_answer_taken": round(answered - started, 1),
        "answers_per_second": round(items / (answered - started), 1),
        "seconds_to_execution_end": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
    }


def measured_in_a_child(items: int, *options: str) -> dict[str, Any]:
    """One measurement in a process of its own (the speedups, once applied, stay)."""
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench.fanout_scale", "--items", str(items), "--child", *options],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING"},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--baseline-items", type=int, default=0, help="also compare at this size")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(WITHOUT_SPEEDUPS, action="store_true", help="moto's executor as it was")
    args = parser.parse_args()
    if args.without_speedups:
        moto_speedups.apply = lambda: None  # type: ignore[assignment]
        access.role_client = access.role_client.__wrapped__  # type: ignore[attr-defined]
    if args.child:
        print(json.dumps(measure(args.items)))
        return
    figures = measured_in_a_child(args.items)
    print(json.dumps(figures, indent=2), flush=True)
    if args.baseline_items:
        with_speedups = measured_in_a_child(args.baseline_items)
        without = measured_in_a_child(args.baseline_items, WITHOUT_SPEEDUPS)
        figures["compared"] = {
            "items": args.baseline_items,
            "with_speedups": with_speedups,
            "without_speedups": without,
            "children_started_per_second_ratio": round(
                with_speedups["children_started_per_second"] / without["children_started_per_second"], 1
            ),
            "seconds_to_execution_end_ratio": round(
                without["seconds_to_execution_end"] / with_speedups["seconds_to_execution_end"], 1
            ),
        }
        print(json.dumps(figures["compared"], indent=2))
    record(f"fanout_scale_{args.items}", figures)


if __name__ == "__main__":
    main()
