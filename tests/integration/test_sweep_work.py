"""The local stack's sweeper runs a sweep only when there is work for it
(approvals/local/sweep_work.py): the sweep finds all its work in the open and tell indexes,
so while both are empty an idle stack makes no call every two seconds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from approvals import runtime
from approvals.local.stack import sweep_if_any_work
from approvals.local.sweep_work import SWEPT_INDEXES, nothing_to_sweep
from approvals.models import ApprovalRequest, Status, utcnow
from approvals.sweep import sweep
from tests.integration.conftest import Stack, approval_id_of

ALICE, REQUESTER = "alice@example.com", "ci@example.com"

Call = tuple[str, str]  # the operation and the index it reads, if any


@pytest.fixture
def calls(stack: Stack) -> Iterator[list[Call]]:
    """Every AWS call the sweep's clients make (the handlers' own, in this process)."""
    made: list[Call] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        made.append((model.name, params.get("IndexName", "")))

    services = runtime.from_environment()
    clients = (services.store._db, services.sns, services.sfn, services.secrets)
    for client in clients:
        client.meta.events.register("provide-client-params", record)
    yield made
    for client in clients:
        client.meta.events.unregister("provide-client-params", record)


def idle(stack: Stack) -> bool:
    return nothing_to_sweep(stack.resources.table_name, stack.resources.region)


def test_a_sweep_with_both_indexes_empty_only_reads_them(stack: Stack, calls: list[Call]) -> None:
    """What lets the local stack skip it: the sweep has nowhere else to find work."""
    assert idle(stack)
    assert not sweep(runtime.from_environment(), utcnow(), check_executions=True)
    assert calls
    assert {index for operation, index in calls if operation == "Query"} <= set(SWEPT_INDEXES)
    assert {operation for operation, _ in calls} <= {"Query", "GetSecretValue"}  # the keys, read once


def test_an_idle_table_is_not_swept_and_a_pending_request_is(stack: Stack, calls: list[Call]) -> None:
    sweep_if_any_work(stack.resources.table_name, stack.resources.region)
    assert calls == []

    title = "Work for the sweep"
    stack.add_approvers([REQUESTER])
    stack.start(ApprovalRequest(title=title, approvers=[ALICE], requester=REQUESTER, timeout_seconds=3600))
    stack.email(ALICE, title)  # stored, and emailed
    assert not idle(stack)
    calls.clear()
    sweep_if_any_work(stack.resources.table_name, stack.resources.region)
    assert ("Query", "open") in calls


def test_a_decision_keeps_the_table_busy_until_the_requester_is_told(stack: Stack) -> None:
    title = "Tell the requester"
    stack.add_approvers([REQUESTER])
    arn = stack.start(ApprovalRequest(title=title, approvers=[ALICE], requester=REQUESTER))
    link = stack.email(ALICE, title).links[0]
    assert stack.click(link, "approve").status == 200
    assert stack.approval(approval_id_of(link)).status is Status.APPROVED
    # The workflow confirms the decision's delivery as it ends: until then the decision is
    # open work of its own (a sweep that ran before would find it undelivered).
    assert stack.finish(arn, timeout=30).status == "SUCCEEDED"
    assert not idle(stack)  # the requester is still to be told

    assert sweep(runtime.from_environment(), utcnow())["requester told"] == 1
    assert idle(stack)
