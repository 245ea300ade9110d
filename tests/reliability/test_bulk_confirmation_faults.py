"""A bulk vote's delivery confirmations under faults, against moto. The vote answers each
settled item's task, then confirms the deliveries itself, 100 in one TransactWriteItems,
and its decisions tell the workflows not to write their own. Whatever happens to that
write (it fails, an item was closed meanwhile, a conflict, the function stops before it),
every item is answered once and ends confirmed: by the write, or by the sweep, which
repeats the answer (refused) and reads the execution's history, as for any decision left
unconfirmed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from approvals import bulk, inboxlinks
from approvals.bulk import Choice, ItemResult, Result
from approvals.models import REDELIVERY_GRACE, Outcome, Status, utcnow
from approvals.runtime import Services
from approvals.sweep import sweep
from bench.calls import dynamodb_task_calls
from tests.conftest import Stack, approval_id_of
from tests.reliability.faults import Hooks, Response, error, task_succeeded_events
from tests.reliability.test_bulk_races import ALICE, Sent, asked

ITEMS = 3
TRANSACTION = "before-call.dynamodb.TransactWriteItems"


class FunctionStopped(BaseException):
    """The function's process stops (a Lambda timeout): none of its own code runs after it."""


@contextmanager
def answered_once(stack: Stack, services: Services, items: list[tuple[str, str]]) -> Iterator[None]:
    """Around a bulk vote: afterwards each item's workflow has taken its answer, sent once,
    and spent no write of its own (the decisions said the service confirms them)."""
    sent = Sent(services)
    with dynamodb_task_calls() as workflows:
        yield
        for arn, approval_id in items:
            assert stack.finish(arn).output["outcome"] == "approved"
            assert task_succeeded_events(stack.sfn, arn) == 1
            assert sent.by_token[stack.approval(approval_id).task_token] == 1
    assert workflows.take() == {}


def waiting(stack: Stack) -> list[tuple[str, str]]:
    """ITEMS requests waiting on Alice: (execution, approval id) each."""
    return [(arn, approval_id_of(link)) for arn, link in asked(stack, ITEMS, [ALICE])]


def vote(services: Services, items: list[tuple[str, str]]) -> list[ItemResult]:
    picked = [Choice(approval_id, Outcome.APPROVED, "batch") for _, approval_id in items]
    return bulk.decide_many(services, inboxlinks.approver_id(ALICE), picked, utcnow())


def unconfirmed(stack: Stack, items: list[tuple[str, str]]) -> list[bool]:
    return [stack.approval(approval_id).unconfirmed for _, approval_id in items]


def confirmed_by_the_sweep(stack: Stack, services: Services, items: list[tuple[str, str]]) -> None:
    """Left unconfirmed, each is confirmed by the sweep once the grace is over, with a
    repeated answer that the service refuses: no workflow takes a second one."""
    assert unconfirmed(stack, items) == [True] * len(items)
    assert sweep(services, utcnow()) == {}  # within the grace: the vote may still be confirming
    assert sweep(services, utcnow() + REDELIVERY_GRACE) == {"redelivered": len(items)}
    assert unconfirmed(stack, items) == [False] * len(items)
    assert sweep(services, utcnow() + REDELIVERY_GRACE) == {}
    assert [task_succeeded_events(stack.sfn, arn) for arn, _ in items] == [1] * len(items)


def on_transactions(hooks: Hooks, services: Services, fault: Callable[[int], Response | None]) -> list[int]:
    """``fault(n)`` answers the n-th TransactWriteItems sent (from 1) in moto's place, or
    lets it through (None); how many writes each held is listed."""
    sizes: list[int] = []

    def before(params: dict[str, Any], **_: Any) -> Response | None:
        sizes.append(len(json.loads(params["body"])["TransactItems"]))
        return fault(len(sizes))

    hooks.on(services.store._db, TRANSACTION, before, first=True)
    return sizes


def test_the_confirmations_are_written_together_and_the_workflows_write_none(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    items = waiting(stack)
    sizes = on_transactions(hooks, services, lambda _: None)
    with answered_once(stack, services, items):
        vote(services, items)
    assert sizes == [ITEMS]
    assert unconfirmed(stack, items) == [False] * ITEMS
    assert sweep(services, utcnow() + REDELIVERY_GRACE) == {}


def test_a_failed_confirmation_is_left_to_the_sweep(stack: Stack, services: Services, hooks: Hooks) -> None:
    """Throttled (as the SDK gives up after its retries): the votes stand, each item is
    reported settled, and the confirmations are left to the sweep."""
    items = waiting(stack)
    sizes = on_transactions(
        hooks, services, lambda _: error("ProvisionedThroughputExceededException", 400, "throttled")
    )
    with answered_once(stack, services, items):
        assert [item.result for item in vote(services, items)] == [Result.SETTLED] * ITEMS
    assert sizes == [ITEMS]  # a fault is not tried again: the sweep is the retry
    hooks.remove_all()
    confirmed_by_the_sweep(stack, services, items)


def test_an_item_closed_meanwhile_is_left_out_and_the_others_confirmed(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    items = waiting(stack)
    closed = items[1][1]

    def close_one_first(n: int) -> None:
        if n == 1:  # another writer closes it just before the transaction
            stack.dynamodb.update_item(
                TableName=stack.resources.table_name,
                Key={"approval_id": {"S": closed}},
                UpdateExpression="SET #status = :expired",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":expired": {"S": Status.EXPIRED.value}},
            )

    sizes = on_transactions(hooks, services, close_one_first)
    with answered_once(stack, services, items):
        vote(services, items)
    assert sizes == [ITEMS, ITEMS - 1]  # cancelled by its condition, then written without it
    assert unconfirmed(stack, [items[0], items[2]]) == [False, False]
    assert stack.approval(closed).status is Status.EXPIRED
    assert sweep(services, utcnow() + REDELIVERY_GRACE) == {}


def test_a_transaction_in_conflict_is_written_again(stack: Stack, services: Services, hooks: Hooks) -> None:
    items = waiting(stack)

    def conflict_first(n: int) -> Response | None:
        if n > 1:
            return None
        refused = error("TransactionCanceledException", 400, "Transaction cancelled")
        refused[1]["CancellationReasons"] = [
            {"Code": "None"},
            {"Code": "TransactionConflict"},
            {"Code": "None"},
        ]
        return refused

    sizes = on_transactions(hooks, services, conflict_first)
    with answered_once(stack, services, items):
        vote(services, items)
    assert sizes == [ITEMS, ITEMS]
    assert unconfirmed(stack, items) == [False] * ITEMS


def test_a_stop_between_the_answers_and_the_confirmations_is_confirmed_by_the_sweep(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    items = waiting(stack)

    def stop(_: int) -> None:
        raise FunctionStopped

    on_transactions(hooks, services, stop)
    with answered_once(stack, services, items), pytest.raises(FunctionStopped):
        vote(services, items)
    hooks.remove_all()
    confirmed_by_the_sweep(stack, services, items)
