"""Bulk votes under races, against moto: the same batch submitted twice at once, single
clicks racing it, a sweep expiring the items as it votes. Each item's conditional write
decides: one vote per approver, one answer per task (counted as sent by the domain's
client, and as taken in each execution's history), and every item's result says which
side won."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from approvals import bulk, bulkjob, decision, inboxlinks, shortlinks
from approvals.bulk import Choice, Result
from approvals.models import ApprovalRequest, Outcome, Policy, Status, utcnow
from approvals.runtime import Services
from approvals.sweep import sweep
from tests.conftest import Stack, approval_id_of, eventually
from tests.reliability.faults import Hooks, Response, error, task_succeeded_events

ALICE, BOB = "alice@example.com", "bob@example.com"
T = TypeVar("T")


class Sent:
    """SendTaskSuccess calls the domain's client made, per token."""

    def __init__(self, services: Services) -> None:
        self.by_token: Counter[str] = Counter()
        services.sfn.meta.events.register("provide-client-params.sfn.SendTaskSuccess", self._count)

    def _count(self, params: dict[str, Any], **_: Any) -> None:
        self.by_token[params["taskToken"]] += 1


def asked(
    stack: Stack, count: int, approvers: list[str], policy: Policy = Policy.FIRST_RESPONSE
) -> list[tuple[str, str]]:
    """``count`` requests emailed to ``approvers``: (execution, Alice's short link) each."""
    started = [
        stack.start(
            ApprovalRequest(
                title=f"Item {n}",
                approvers=approvers,
                policy=policy,
                requester="ci@example.com",
                timeout_seconds=3600,
                digest=False,  # each its own email: the races click single links beside the bulk vote
            )
        )
        for n in range(count)
    ]
    return [(arn, stack.email(ALICE, f"Item {n}").links[0]) for n, arn in enumerate(started)]


def at_once(*calls: Callable[[], T]) -> list[T]:
    """Run the calls in threads released together, as separate Lambda environments would."""
    ready = threading.Barrier(len(calls), timeout=30)

    def run(call: Callable[[], T]) -> T:
        ready.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def choices(links: list[str]) -> list[Choice]:
    return [Choice(approval_id_of(link), Outcome.APPROVED, "batch") for link in links]


def rejecting(services: Services, link: str) -> Callable[[], int]:
    """Alice's click on Reject on the page of her link: its HTTP status."""

    def send() -> int:
        token = shortlinks.token_in(link)
        assert token is not None
        form = {"decision": "reject", "comment": "clicked", "approver": ALICE}
        try:
            decision.decide_by_link(services, token, form, utcnow())
        except decision.Problem as refused:
            return refused.status
        return 200

    return send


def answered_once(stack: Stack, sent: Sent, arn: str, approval_id: str) -> Any:
    output = stack.finish(arn).output
    assert task_succeeded_events(stack.sfn, arn) == 1
    assert sent.by_token[stack.approval(approval_id).task_token] == 1
    return output


def test_a_double_submit_votes_once_per_item(stack: Stack, services: Services) -> None:
    items = asked(stack, 5, [ALICE])
    sent = Sent(services)
    batch = choices([link for _, link in items])
    alice = inboxlinks.approver_id(ALICE)

    first, second = at_once(*[lambda: bulk.decide_many(services, alice, batch, utcnow())] * 2)

    for (arn, link), one, other in zip(items, first, second, strict=True):
        assert {one.result, other.result} == {Result.SETTLED, Result.ALREADY_DECIDED}, (one, other)
        output = answered_once(stack, sent, arn, approval_id_of(link))
        assert [v["approver"] for v in output["votes"]] == [ALICE]


def test_single_clicks_racing_the_bulk_vote_settle_each_item_once(stack: Stack, services: Services) -> None:
    items = asked(stack, 4, [ALICE])
    sent = Sent(services)
    batch = choices([link for _, link in items])

    clicks = [rejecting(services, link) for _, link in items]
    results, *statuses = at_once(
        lambda: bulk.decide_many(services, inboxlinks.approver_id(ALICE), batch, utcnow()), *clicks
    )

    assert isinstance(results, list)
    for (arn, link), result, status in zip(items, results, statuses, strict=True):
        output = answered_once(stack, sent, arn, approval_id_of(link))
        if result.result is Result.SETTLED:
            assert (status, output["outcome"]) == (409, "approved")
        else:
            assert (result.result, status, output["outcome"]) == (Result.ALREADY_DECIDED, 200, "rejected")


def test_another_approvers_click_racing_the_bulk_vote_counts_both(stack: Stack, services: Services) -> None:
    """Policy all: Bob's clicks and Alice's bulk vote both count; whichever comes second settles."""
    items = asked(stack, 4, [ALICE, BOB], Policy.ALL)
    sent = Sent(services)
    batch = choices([link for _, link in items])
    bob_links = [stack.email(BOB, f"Item {n}").links[0] for n in range(len(items))]

    def click(link: str) -> Callable[[], None]:
        def send() -> None:
            token = shortlinks.token_in(link)
            assert token is not None
            decision.decide_by_link(services, token, {"decision": "approve", "approver": BOB}, utcnow())

        return send

    results, *_ = at_once(
        lambda: bulk.decide_many(services, inboxlinks.approver_id(ALICE), batch, utcnow()),
        *[click(link) for link in bob_links],
    )

    assert isinstance(results, list)
    assert {r.result for r in results} <= {Result.RECORDED, Result.SETTLED}
    for arn, link in items:
        output = answered_once(stack, sent, arn, approval_id_of(link))
        assert (output["outcome"], sorted(v["approver"] for v in output["votes"])) == (
            "approved",
            [ALICE, BOB],
        )


def test_a_sweep_expiring_the_items_as_they_are_voted_answers_each_at_most_once(
    stack: Stack, services: Services
) -> None:
    """The bulk vote a second before the items expire, the sweep a second after: each item
    is either settled by the vote (its workflow answered once, approved) or expired by the
    sweep (its workflow answered once, expired), and its result says which."""
    items = asked(stack, 6, [ALICE])
    sent = Sent(services)
    ids = [approval_id_of(link) for _, link in items]
    expiries = [stack.approval(approval_id).expires_at for approval_id in ids]
    batch = [Choice(approval_id, Outcome.APPROVED, "batch") for approval_id in ids]

    results, _ = at_once(
        lambda: bulk.decide_many(
            services, inboxlinks.approver_id(ALICE), batch, min(expiries) - timedelta(seconds=1)
        ),
        lambda: sweep(services, max(expiries) + timedelta(seconds=1)),
    )

    assert isinstance(results, list)
    for (arn, _), approval_id, result in zip(items, ids, results, strict=True):
        approval = stack.approval(approval_id)
        if result.result is Result.SETTLED:
            assert answered_once(stack, sent, arn, approval_id)["outcome"] == "approved"
            assert approval.status is Status.APPROVED
        else:
            # The sweep answered the task first (it outlived its links): a vote recorded in
            # time that reached the workflow too late is marked expired, as the workflow saw it.
            assert result.result is Result.EXPIRED, result
            assert approval.status is Status.EXPIRED
            report = stack.finish(arn)
            assert task_succeeded_events(stack.sfn, arn) == 0
            assert report.final_state == "Expired", report


# "All N matching" past one POST's worth: the confirmed POST decides the first ones and a job
# the sweep runs decides the rest (approvals.bulkjob), each vote the same conditional write.


def all_matching() -> dict[str, str]:
    """Alice's confirmed "approve all matching", as the confirmation page posts it."""
    return {"all": "1", "decision": "approve", "comment": "batch", "asof": str(int(utcnow().timestamp()))}


def confirm_all(services: Services, form: dict[str, str]) -> bulkjob.Decided:
    """The confirmed POST's work (approval_api.handler.decide_selected)."""
    alice = inboxlinks.approver_id(ALICE)
    now = utcnow()
    selection = bulk.selected(services, alice, list(form.items()), now)
    choices = bulk.choices_from_form(selection.approval_ids, form)
    return bulkjob.decide_all(services, alice, choices, selection.rest, form, now)


@pytest.fixture
def two_a_post(monkeypatch: pytest.MonkeyPatch) -> None:
    """A POST decides two requests: a handful make a job."""
    monkeypatch.setattr(bulk, "MAX_VOTES", 2)


def in_alices_inbox(stack: Stack, services: Services, count: int) -> list[tuple[str, str]]:
    """``count`` requests to Alice, each in her inbox: (execution, her short link) each."""
    items = asked(stack, count, [ALICE])
    alice = inboxlinks.approver_id(ALICE)
    eventually(
        lambda: len(list(services.store.inbox_entries(alice))) == count or None, what="Alice's inbox entries"
    )
    return items


def jobs(stack: Stack) -> list[dict[str, Any]]:
    items = stack.dynamodb.scan(TableName=stack.resources.table_name)["Items"]
    return [dict(item) for item in items if item["approval_id"]["S"].startswith("bulk#")]


def job_progress(services: Services) -> list[tuple[int, int, dict[str, int]]]:
    shown = bulkjob.progress(services.store, inboxlinks.approver_id(ALICE), utcnow())
    return [(job.decided, job.remaining, job.counts) for job in shown]


def test_a_double_submitted_confirmation_makes_one_job_and_votes_once_per_item(
    stack: Stack, services: Services, two_a_post: None
) -> None:
    items = in_alices_inbox(stack, services, 5)
    sent = Sent(services)
    form = all_matching()

    first, second = at_once(lambda: confirm_all(services, form), lambda: confirm_all(services, form))

    assert len(jobs(stack)) == 1
    assert sorted([len(first.results), len(second.results)]) == [0, 2]  # the second found the job
    sweep(services, utcnow())
    for arn, link in items:
        output = answered_once(stack, sent, arn, approval_id_of(link))
        assert [v["approver"] for v in output["votes"]] == [ALICE]
    assert job_progress(services) == [(5, 0, {"settled": 5})]


def test_single_clicks_racing_the_job_settle_each_item_once(
    stack: Stack, services: Services, two_a_post: None
) -> None:
    items = in_alices_inbox(stack, services, 6)
    sent = Sent(services)
    decided = confirm_all(services, all_matching())
    assert decided.job is not None
    in_background = [link for _, link in items if approval_id_of(link) in decided.job.approval_ids[2:]]

    swept, *statuses = at_once(
        lambda: sweep(services, utcnow()), *[rejecting(services, link) for link in in_background]
    )

    assert isinstance(swept, Counter)
    outcomes = [answered_once(stack, sent, arn, approval_id_of(link))["outcome"] for arn, link in items]
    clicked = statuses.count(200)
    assert outcomes.count("rejected") == clicked
    assert outcomes.count("approved") == 6 - clicked
    ((decided_count, remaining, counts),) = job_progress(services)
    assert (decided_count, remaining) == (6, 0)
    assert counts.get("already_decided", 0) == clicked
    assert counts["settled"] == 6 - clicked


def test_two_sweeps_racing_one_expiring_the_items_answer_each_at_most_once(
    stack: Stack, services: Services, two_a_post: None
) -> None:
    """A sweep a second before the items expire and one a second after, at once: one of them
    runs the job (its lease); each item is settled by its vote or expired by the later sweep,
    its workflow answered once, and the job's results say which. (The later sweep may also
    send a settled item's decision again, before the workflow has noted it: the service
    takes one answer per token.)"""
    items = in_alices_inbox(stack, services, 6)
    ids = [approval_id_of(link) for _, link in items]
    expiries = [stack.approval(approval_id).expires_at for approval_id in ids]
    confirm_all(services, all_matching())

    at_once(
        lambda: sweep(services, min(expiries) - timedelta(seconds=1)),
        lambda: sweep(services, max(expiries) + timedelta(seconds=1)),
    )

    settled = 0
    for (arn, _), approval_id in zip(items, ids, strict=True):
        approval = stack.approval(approval_id)
        if approval.status is Status.APPROVED:
            assert stack.finish(arn).output["outcome"] == "approved"
            assert task_succeeded_events(stack.sfn, arn) == 1
            settled += 1
        else:
            assert approval.status is Status.EXPIRED
            assert stack.finish(arn).final_state == "Expired"
            assert task_succeeded_events(stack.sfn, arn) == 0
    ((decided_count, remaining, counts),) = job_progress(services)
    assert (decided_count, remaining) == (6, 0)
    assert counts["settled"] == settled
    assert counts.get("expired", 0) == 6 - settled


def test_a_job_whose_sweep_dies_midway_is_resumed_by_a_later_sweep(
    stack: Stack, services: Services, hooks: Hooks, two_a_post: None
) -> None:
    """The sweep votes a batch, then cannot note it (as if its function died there): the job
    waits out the lease, and a later sweep votes that batch again (each item now "already
    decided", nothing twice) and the rest."""
    items = in_alices_inbox(stack, services, 6)
    sent = Sent(services)
    confirm_all(services, all_matching())
    dying = [True]

    def checkpoint_lost(params: dict[str, Any], **_: Any) -> Response | None:
        body = json.loads(params["body"])
        noting = body["Key"]["approval_id"]["S"].startswith("bulk#") and ":done" in body["UpdateExpression"]
        return error("ServiceUnavailable", 503) if noting and dying[0] else None

    hooks.on(services.store._db, "before-call.dynamodb.UpdateItem", checkpoint_lost)
    now = utcnow()
    assert sweep(services, now)["failed"] == 1
    dying[0] = False
    assert job_progress(services) == [(2, 4, {"settled": 2})]  # as the confirmed POST left it
    assert "bulk voted" not in sweep(services, now)  # the dead sweep's lease holds
    assert sweep(services, now + bulkjob.HOLD + timedelta(seconds=1))["bulk voted"] == 4

    for arn, link in items:
        output = answered_once(stack, sent, arn, approval_id_of(link))
        assert [(v["approver"], v["outcome"]) for v in output["votes"]] == [(ALICE, "approved")]
    assert job_progress(services) == [(6, 0, {"settled": 4, "already_decided": 2})]
