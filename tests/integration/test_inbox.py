"""The approver's inbox against moto: entries written wherever an approver is asked, read
back newest first, paged and filtered, skipping what no longer waits on the approver, in a
few calls, and without writing anything."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest

from approvals import bulk, inbox, runtime
from approvals.inboxlinks import approver_id
from approvals.models import (
    Approval,
    ApprovalRequest,
    Escalation,
    Outcome,
    Policy,
    Reassignment,
    Vote,
    utcnow,
)
from approvals.reassign import reassign
from approvals.store import ApprovalStore, Claim, is_inbox_entry
from approvals.store.items import EXECUTION_INDEX, OPEN_ATTRIBUTE, TELL_ATTRIBUTE
from approvals.sweep import close_for_execution, sweep
from bench.inbox_page import made
from tests.integration.conftest import Stack, approval_id_of, eventually
from tests.integration.test_approvers_cli import deploy_outputs, run

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
HOUR = 3600


def stored(
    store: ApprovalStore,
    title: str,
    created: datetime,
    approvers: list[str] | None = None,
    workflow: str = "refunds",
    **extra: Any,
) -> Approval:
    """An approval as the worker stores it, and its approvers' inbox entries."""
    approval = made(title, created, approvers or [ALICE], workflow, **extra)
    assert store.claim(approval, created, 60).claim is Claim.NEW
    store.add_to_inbox(approval, approval.first_asked)
    return approval


def table_items(stack: Stack) -> list[dict[str, Any]]:
    pages = stack.dynamodb.get_paginator("scan").paginate(TableName=stack.resources.table_name)
    return [dict(item) for page in pages for item in page["Items"]]


@contextmanager
def counted_calls(store: ApprovalStore) -> Iterator[Counter[str]]:
    """The DynamoDB calls made through the store's client, by operation name."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    events = store._db.meta.events
    events.register("before-call.dynamodb", count)
    try:
        yield calls
    finally:
        events.unregister("before-call.dynamodb", count)


def test_the_worker_puts_each_emailed_approver_s_entry_beside_the_approval(stack: Stack) -> None:
    arn = stack.start(ApprovalRequest(title="Refund 1", approvers=[ALICE, BOB], requester="ci@example.com"))
    approval_id = approval_id_of(stack.email(ALICE, "Refund 1").links[0])
    eventually(lambda: stack.approval(approval_id).emailed, what="the worker to finish")

    entries = [item for item in table_items(stack) if is_inbox_entry(item)]
    assert sorted(e["approver"]["S"] for e in entries) == [ALICE, BOB]
    for entry in entries:
        assert entry["approval"]["S"] == approval_id
        assert entry["title"]["S"] == "Refund 1"
        # Out of the sweep's, the canceller's and the requester's indexes.
        assert not {OPEN_ATTRIBUTE, EXECUTION_INDEX, TELL_ATTRIBUTE} & set(entry)
    # Listings of approvals read past them (rather than report them unreadable).
    services = runtime.from_environment()
    assert [a.approval_id for a in services.store.every_item()] == [approval_id]
    assert [a.approval_id for a in stack.approvals()] == [approval_id]
    assert [a.approval_id for a in services.store.for_execution(arn)] == [approval_id]

    shown = inbox.page(services.store, approver_id("Bob@Example.com"), utcnow())
    assert ([a.approval_id for a in shown.items], shown.approver, shown.total) == ([approval_id], BOB, 1)


def test_pages_run_newest_first_with_a_cursor_and_a_workflow_filter(stack: Stack) -> None:
    store = runtime.from_environment().store
    start = utcnow() - timedelta(minutes=10)
    made = [
        stored(store, f"Item {i}", start + timedelta(seconds=i), workflow="refunds" if i % 3 else "deploys")
        for i in range(120)
    ]
    newest_first = [a.approval_id for a in reversed(made)]
    owner, now = approver_id(ALICE), utcnow()

    pages, cursor = [], None
    while True:
        shown = inbox.page(store, owner, now, cursor=cursor)
        pages.append([a.approval_id for a in shown.items])
        if shown.next_cursor is None:
            break
        cursor = shown.next_cursor
    assert [len(p) for p in pages] == [50, 50, 20]
    assert [i for p in pages for i in p] == newest_first
    assert (shown.total, shown.workflows) == (120, ["deploys", "refunds"])

    deploys = inbox.page(store, owner, now, workflow="deploys")
    expected = [a.approval_id for a in reversed(made) if a.workflow == "deploys"]
    assert [a.approval_id for a in deploys.items] == expected  # 40: one page
    assert (deploys.total, deploys.next_cursor) == (40, None)
    assert inbox.matching(store, owner, now, workflow="deploys") == expected
    assert inbox.matching(store, owner, now) == newest_first

    with pytest.raises(inbox.BadCursor):
        inbox.page(store, owner, now, cursor="not a cursor")
    assert inbox.page(store, approver_id(BOB), now).items == []


def test_a_page_reads_only_its_own_approvals_and_counts_the_entries(stack: Stack) -> None:
    store = runtime.from_environment().store
    start = utcnow() - timedelta(minutes=10)
    made = [stored(store, f"Item {i}", start + timedelta(seconds=i)) for i in range(120)]
    newest_first = [a.approval_id for a in reversed(made)]
    owner, now = approver_id(ALICE), utcnow()

    with counted_calls(store) as calls:
        first = inbox.page(store, owner, now)
    assert calls == Counter({"Query": 1, "BatchGetItem": 1})  # the 50 shown, not the 120
    assert ([a.approval_id for a in first.items], first.total) == (newest_first[:50], 120)

    # Requests decided on page two leave the inbox; the page fills from the next entries.
    for approval_id in newest_first[50:55]:
        store.remove_entries([(owner, approval_id)])
    second = inbox.page(store, owner, now, cursor=first.next_cursor)
    assert [a.approval_id for a in second.items] == newest_first[55:105]
    assert second.total == 115


def test_what_no_longer_waits_on_the_approver_is_skipped(stack: Stack) -> None:
    store = runtime.from_environment().store
    now = utcnow()
    open_one = stored(store, "Still waiting", now - timedelta(minutes=5), [ALICE, BOB], policy=Policy.ALL)
    voted = stored(store, "Alice voted", now - timedelta(minutes=4), [ALICE, BOB], policy=Policy.ALL)
    settled = stored(store, "Bob settled it", now - timedelta(minutes=3), [ALICE, BOB])
    expired = stored(store, "Expired", now - timedelta(hours=2), timeout_seconds=HOUR)
    sequence = stored(store, "Bob first", now - timedelta(minutes=2), [BOB, ALICE], policy=Policy.SEQUENCE)
    store.add_to_inbox(sequence, [ALICE])  # as if asked before her turn: it does not wait on her yet
    store.record_vote(voted.approval_id, Vote(approver=ALICE, outcome=Outcome.APPROVED, at=now))
    store.record_vote(settled.approval_id, Vote(approver=BOB, outcome=Outcome.REJECTED, comment="no", at=now))
    before = table_items(stack)

    with counted_calls(store) as calls:
        shown = inbox.page(store, approver_id(ALICE), now)
    assert [a.approval_id for a in shown.items] == [open_one.approval_id]
    assert shown.total == 1
    # One query; the expired entry is not even fetched; nothing written.
    assert calls == Counter({"Query": 1, "BatchGetItem": 1})
    assert table_items(stack) == before
    assert expired.approval_id not in inbox.matching(store, approver_id(ALICE), now)

    store.record_vote(sequence.approval_id, Vote(approver=BOB, outcome=Outcome.APPROVED, at=now))
    later = inbox.matching(store, approver_id(ALICE), now)
    assert later == [sequence.approval_id, open_one.approval_id]


def test_a_sequence_s_next_voter_finds_it_in_their_inbox_once_it_is_their_turn(stack: Stack) -> None:
    title = "In order"
    request = ApprovalRequest(title=title, approvers=[ALICE, BOB], policy=Policy.SEQUENCE, requester="ci")
    stack.start(request)
    link = stack.email(ALICE, title).links[0]
    store = runtime.from_environment().store
    assert inbox.matching(store, approver_id(BOB), utcnow()) == []
    assert stack.click(link, "approve").status == 200
    stack.email(BOB, title)
    assert inbox.matching(store, approver_id(BOB), utcnow()) == [approval_id_of(link)]
    assert inbox.matching(store, approver_id(ALICE), utcnow()) == []


def test_a_backup_finds_it_in_their_inbox_when_the_escalation_asks_them(stack: Stack) -> None:
    title = "Escalate"
    request = ApprovalRequest(
        title=title,
        approvers=[ALICE],
        requester="ci@example.com",
        timeout_seconds=10 * HOUR,
        escalation=[Escalation(after_seconds=HOUR, approvers=[CAROL])],
    )
    stack.start(request)
    approval_id = approval_id_of(stack.email(ALICE, title).links[0])
    eventually(lambda: stack.approval(approval_id).emailed, what="the worker to finish")
    services = runtime.from_environment()
    created = stack.approval(approval_id).created_at
    assert inbox.matching(services.store, approver_id(CAROL), created) == []

    assert sweep(services, created + timedelta(seconds=HOUR))["escalated"] == 1
    later = created + timedelta(seconds=HOUR + 1)
    assert inbox.matching(services.store, approver_id(CAROL), later) == [approval_id]
    assert inbox.matching(services.store, approver_id(ALICE), later) == [approval_id]


def test_a_reassignment_moves_it_to_the_new_approver_s_inbox(stack: Stack) -> None:
    stack.add_approvers([CAROL])
    title = "Hand over"
    stack.start(ApprovalRequest(title=title, approvers=[ALICE, BOB], requester="ci@example.com"))
    approval_id = approval_id_of(stack.email(ALICE, title).links[0])
    eventually(lambda: stack.approval(approval_id).emailed, what="the worker to finish")
    services = runtime.from_environment()
    change = Reassignment.model_validate({"from": ALICE, "to": CAROL, "by": "oncall", "at": utcnow()})

    reassign(services.store, services.directory, services.keys.signing(), approval_id, change)

    now = utcnow()
    assert inbox.matching(services.store, approver_id(CAROL), now) == [approval_id]
    assert inbox.matching(services.store, approver_id(ALICE), now) == []
    assert inbox.matching(services.store, approver_id(BOB), now) == [approval_id]
    assert entries(services.store, ALICE) == set()  # her entry went with her place


def entries(store: ApprovalStore, who: str) -> set[str]:
    return {entry.approval_id for entry in store.inbox_entries(approver_id(who))}


def emailed(stack: Stack, title: str, approvers: list[str], **extra: Any) -> tuple[str, str]:
    """A request emailed to its approvers: its id, and the first approver's link."""
    stack.start(ApprovalRequest(title=title, approvers=approvers, requester="ci@example.com", **extra))
    link = stack.email(approvers[0], title).links[0]
    approval_id = approval_id_of(link)
    eventually(lambda: stack.approval(approval_id).emailed, what="the worker to finish")
    return approval_id, link


def test_a_single_vote_that_settles_takes_the_request_out_of_every_inbox(stack: Stack) -> None:
    store = runtime.from_environment().store
    approval_id, link = emailed(stack, "Settle me", [ALICE, BOB])
    assert entries(store, ALICE) == entries(store, BOB) == {approval_id}

    assert stack.click(link, "approve").status == 200

    assert entries(store, ALICE) == entries(store, BOB) == set()


def test_a_single_vote_that_does_not_settle_takes_it_out_of_the_voter_s_inbox_only(stack: Stack) -> None:
    store = runtime.from_environment().store
    approval_id, link = emailed(stack, "Both must", [ALICE, BOB], policy=Policy.ALL)

    assert stack.click(link, "approve").status == 200

    assert (entries(store, ALICE), entries(store, BOB)) == (set(), {approval_id})


def test_a_bulk_vote_that_settles_takes_the_request_out_of_every_inbox(stack: Stack) -> None:
    services = runtime.from_environment()
    first, _ = emailed(stack, "First response", [ALICE, BOB])
    both, _ = emailed(stack, "Both must", [ALICE, BOB], policy=Policy.ALL)

    chosen = [bulk.Choice(approval_id, Outcome.APPROVED) for approval_id in (first, both)]
    results = bulk.decide_many(services, approver_id(ALICE), chosen, utcnow())

    assert [r.result for r in results] == [bulk.Result.SETTLED, bulk.Result.RECORDED]
    assert (entries(services.store, ALICE), entries(services.store, BOB)) == (set(), {both})


def test_a_cancelled_request_leaves_every_inbox(stack: Stack) -> None:
    store = runtime.from_environment().store
    cancelled = stored(store, "Stopped", utcnow(), [ALICE, BOB])
    kept = stored(store, "Running", utcnow(), [ALICE])

    assert close_for_execution(store, cancelled.execution, utcnow()) == Counter({"cancelled": 1})

    assert (entries(store, ALICE), entries(store, BOB)) == ({kept.approval_id}, set())


def test_a_vote_too_late_for_the_workflow_takes_the_request_out_of_every_inbox(stack: Stack) -> None:
    store = runtime.from_environment().store
    approval_id, link = emailed(stack, "Stopped", [ALICE, BOB])
    approval = stack.approval(approval_id)
    # The execution stops waiting (its message dead-lettered fails it) before anyone votes.
    body = {"task_token": approval.task_token, "execution": approval.execution, "state": "x", "request": {}}
    stack.sqs.send_message(QueueUrl=stack.resources.dlq_url, MessageBody=json.dumps(body))
    stack.drain(stack.dead_letters)
    stack.finish(approval.execution)

    assert stack.post_link(link, "approve").status == 410

    assert entries(store, ALICE) == entries(store, BOB) == set()


def test_entries_are_removed_for_one_approver_only(stack: Stack) -> None:
    store = runtime.from_environment().store
    now = utcnow()
    made = [stored(store, f"Item {i}", now - timedelta(seconds=i), [ALICE, BOB]) for i in range(30)]
    ids = [a.approval_id for a in made]

    store.remove_entries((approver_id(ALICE), approval_id) for approval_id in ids[:27])

    assert inbox.matching(store, approver_id(ALICE), now) == ids[27:]
    assert inbox.matching(store, approver_id(BOB), now) == ids


def test_approvals_inbox_lists_what_waits_on_an_approver(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_outputs(stack)
    store = runtime.from_environment().store
    now = utcnow()
    older = stored(store, "Older refund", now - timedelta(minutes=2), [ALICE, BOB])
    newer = stored(store, "Newer deploy", now - timedelta(minutes=1), [ALICE], workflow="deploys")

    code, out, _ = run(capsys, "inbox", "Alice@Example.com")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"2 waiting on {ALICE}:"
    assert lines[1].split()[:3] == ["ID", "TITLE", "WORKFLOW"]
    assert [line.split()[0] for line in lines[2:]] == [newer.approval_id, older.approval_id]
    code, out, _ = run(capsys, "inbox", ALICE, "--workflow", "refunds")
    assert [line.split()[0] for line in out.splitlines()[2:]] == [older.approval_id]
    assert run(capsys, "inbox", CAROL)[1] == f"Nothing waits on {CAROL}.\n"
    code, _, err = run(capsys, "inbox", "not an address")
    assert (code, err) == (2, "approvals: not valid email addresses: not an address\n")
