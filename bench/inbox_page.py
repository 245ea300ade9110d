"""AWS calls per inbox page view, with N requests waiting on one approver: the first page, the
next page (by its cursor), a page filtered by workflow, and the whole inbox read with every
request checked (what each page view cost before, and what `approvals inbox` and "select all
N matching" still read). Counted by botocore's ``before-call`` event on the store's client.

The approvals and their inbox entries are written straight into the table (as the worker
stores them: one ``PutItem`` per approval, entries 25 to a ``BatchWriteItem``), on moto in
this process, whose ``Query`` pages by 1 MB of items read as DynamoDB does.

    .venv/bin/python -m bench.inbox_page --entries 1000 10000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import boto3

from approvals import inbox, runtime
from approvals.inboxlinks import approver_id
from approvals.links import approval_id_for
from approvals.local.resources import provision
from approvals.models import Approval, ApprovalRequest, utcnow
from approvals.store import ApprovalStore
from bench.calls import API_URL, CallCounter, on_moto
from bench.results import record

APPROVER = "approver@example.com"
WORKFLOWS = ("refunds", "deploys")  # alternate requests: the filter shows half


def made(title: str, created: datetime, approvers: list[str], workflow: str, **extra: Any) -> Approval:
    """An approval as the worker makes it from a queue message (the token made up)."""
    token = str(uuid.uuid4())
    request = ApprovalRequest(title=title, approvers=approvers, requester="ci@example.com", **extra)
    return Approval(
        approval_id=approval_id_for(token),
        task_token=token,
        execution=f"arn:aws:states:us-east-1:123456789012:execution:{workflow}:{uuid.uuid4()}",
        state="Approve",
        request=request,
        created_at=created,
        expires_at=created + timedelta(seconds=request.timeout_seconds),
    )


def fill(store: ApprovalStore, entries: int) -> None:
    """``entries`` approvals waiting on the approver, one second apart, and their entries."""
    start = utcnow() - timedelta(seconds=entries + 60)
    approvals = []
    for n in range(entries):
        created = start + timedelta(seconds=n)
        approval = made(f"Refund {n}", created, [APPROVER], WORKFLOWS[n % 2])
        store.claim(approval, created, 60)
        approvals.append(approval)
    store._write_batches(  # the entries as the worker's transactions write them, fewer calls
        [{"PutRequest": {"Item": store._entry(approval, APPROVER)}} for approval in approvals]
    )


def measure(entries: int) -> dict[str, Any]:
    session = boto3.Session(region_name="us-east-1")
    resources = provision(session, visibility_timeout=30)
    os.environ.update(resources.environment(API_URL, 0))
    runtime.reset()
    store = runtime.from_environment().store
    fill(store, entries)
    owner, now = approver_id(APPROVER), utcnow()
    counter = CallCounter(store._db)

    def calls(view: Any) -> tuple[Any, dict[str, float]]:
        counter.take()
        begin = time.perf_counter()
        shown = view()
        seconds = time.perf_counter() - begin
        taken: Counter[str] = counter.take()
        return shown, {
            **dict(sorted(taken.items())),
            "total": sum(taken.values()),
            "seconds": round(seconds, 2),
        }

    first, first_calls = calls(lambda: inbox.page(store, owner, now))
    assert first.total == entries
    assert len(first.items) == min(entries, inbox.PAGE_SIZE)
    _, next_calls = calls(lambda: inbox.page(store, owner, now, cursor=first.next_cursor))
    _, filtered_calls = calls(lambda: inbox.page(store, owner, now, workflow=WORKFLOWS[1]))
    everything, whole_calls = calls(lambda: inbox.waiting(store, owner, now))
    assert len(everything) == entries
    return {
        "entries": entries,
        "first_page": first_calls,
        "next_page": next_calls,
        "filtered_page": filtered_calls,
        "whole_inbox_checked": whole_calls,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    figures = {}
    for entries in args.entries:
        with on_moto():
            measured = measure(entries)
        figures[str(entries)] = measured
        print(f"{entries} requests waiting on one approver: AWS calls (and seconds on moto)")
        for view in ("first_page", "next_page", "filtered_page", "whole_inbox_checked"):
            print(f"  {view:20} {measured[view]}")
    record("inbox_page", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
