"""Bulk votes under races, against moto: the same batch submitted twice at once, single
clicks racing it, a sweep expiring the items as it votes. Each item's conditional write
decides: one vote per approver, one answer per task (counted as sent by the domain's
client, and as taken in each execution's history), and every item's result says which
side won."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

from approvals import bulk, decision, inboxlinks, shortlinks
from approvals.bulk import Choice, Result
from approvals.models import ApprovalRequest, Outcome, Policy, Status, utcnow
from approvals.runtime import Services
from approvals.sweep import sweep
from tests.conftest import Stack, approval_id_of
from tests.reliability.faults import task_succeeded_events

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

    def click(link: str) -> Callable[[], int]:
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

    clicks = [click(link) for _, link in items]
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
