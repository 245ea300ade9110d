"""Faults in the embedded local stack (in this process, on free ports), where the pollers,
the sweeper and the HTTP server run on their own threads as they do for a user: a message
that keeps failing, SNS failing one entry, SendTaskSuccess failing, and fifty approvers'
clicks racing over HTTP on one request."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import approval_api.handler
from approvals import decision, directory, executions, runtime, shortlinks
from approvals.local import approver
from approvals.local.environments import IN_PROCESS
from approvals.local.outbox import SentEmail
from approvals.local.stack import LocalStack
from approvals.models import ApprovalRequest, Outcome, Policy, Status, utcnow
from approvals.target import Target, for_local
from tests.conftest import eventually
from tests.reliability.faults import (
    Hooks,
    Response,
    SnsFaults,
    dead_letter_receipts,
    error,
    task_succeeded_events,
)

pytestmark = pytest.mark.xdist_group("local-stack")

VISIBILITY_TIMEOUT = 1
MAX_RECEIVES = 2


@pytest.fixture(scope="module")
def local() -> Iterator[LocalStack]:
    stack = LocalStack(
        moto_port=0,
        api_port=0,
        visibility_timeout=VISIBILITY_TIMEOUT,
        max_receives=MAX_RECEIVES,
        sweep_interval=0.5,
        # The faults are hooked on this process's clients: the handlers must use them.
        concurrency=IN_PROCESS,
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def target(local: LocalStack) -> Target:
    assert local.info is not None
    return for_local(local.info)


def start(target: Target, title: str, approvers: list[str], **fields: Any) -> str:
    for address in approvers:
        directory.add(target.sns, target.topic_arn, address)
    request = ApprovalRequest(title=title, approvers=approvers, requester="ci@example.com", **fields)
    return executions.start(target.sfn, target.state_machine_arn, request)


def emails_about(local: LocalStack, title: str) -> list[SentEmail]:
    assert local.outbox is not None
    return [email for email in local.outbox.emails() if title in email.subject]


def links_for(local: LocalStack, title: str, approvers: list[str]) -> dict[str, str]:
    def all_there() -> dict[str, str] | None:
        links = {email.to: email.links[0] for email in emails_about(local, title)}
        return links if set(links) == set(approvers) else None

    return eventually(all_there, timeout=30, what=f"the emails about {title!r}")


def ended(target: Target, arn: str, timeout: float = 30) -> executions.ExecutionReport:
    eventually(
        lambda: target.sfn.describe_execution(executionArn=arn)["status"] != "RUNNING",
        timeout,
        f"{arn} to end",
    )
    return executions.report(target.sfn, arn)


def test_a_message_that_keeps_failing_fails_its_execution(
    local: LocalStack, target: Target, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every publish fails: after MAX_RECEIVES deliveries the message is in the dead-letter
    queue, whose function fails the execution with Approval.DeliveryFailed the first time it
    receives it; the sweeper then closes the approval left pending."""
    SnsFaults(lambda call, _: "InternalError").install(hooks, runtime.from_environment().sns)
    seen = dead_letter_receipts(monkeypatch)
    arn = start(target, "Local dead letter", ["alice@example.com"])
    hooks.wait_fired()
    report = ended(target, arn)
    assert (report.status, report.error, report.final_state) == (
        "FAILED",
        "Approval.DeliveryFailed",
        "Undelivered",
    )
    assert seen == [MAX_RECEIVES + 1]  # handled on its first receipt from the dead-letter queue
    assert emails_about(local, "Local dead letter") == []
    (approval,) = [a for a in target.store.all() if a.execution == arn]
    eventually(
        lambda: target.store.get(approval.approval_id).status is Status.CANCELLED,  # type: ignore[union-attr]
        timeout=30,  # a few sweeps, on a busy machine
        what="the sweeper to close the approval",
    )


def test_an_entry_sns_failed_is_sent_on_the_retry(local: LocalStack, target: Target, hooks: Hooks) -> None:
    """SNS fails Bob's entry once: the retry after one visibility timeout sends Bob's email
    (the worker's claim lasts no longer than that), and nobody gets a second one."""
    failed_once: list[str] = []

    def bob_fails_once(call: int, approvers: list[str]) -> dict[str, str]:
        if "bob@example.com" in approvers and not failed_once:
            failed_once.append("bob@example.com")
            return {"bob@example.com": "InternalError"}
        return {}

    sns = SnsFaults(bob_fails_once).install(hooks, runtime.from_environment().sns)
    approvers = ["alice@example.com", "bob@example.com", "carol@example.com"]
    arn = start(target, "Local partial failure", approvers, policy=Policy.ALL)
    links = links_for(local, "Local partial failure", approvers)
    assert failed_once == ["bob@example.com"]
    for who in approvers:
        assert approver.post_from_link(links[who], "approve", approver=who).status == 200
    report = ended(target, arn)
    assert report.output["outcome"] == "approved"
    assert Counter(e.to for e in emails_about(local, "Local partial failure")) == Counter(approvers)
    assert sorted(sns.published()) == sorted(approvers)


def test_a_decision_sendtasksuccess_failed_is_delivered_by_the_sweeper(
    local: LocalStack, target: Target, hooks: Hooks
) -> None:
    down, refused = [True], []

    def outage(**_: Any) -> Response | None:
        if not down[0]:
            return None
        refused.append("SendTaskSuccess")
        return error("ServiceUnavailable", 503)

    hooks.on(runtime.from_environment().sfn, "before-call.sfn.SendTaskSuccess", outage)
    arn = start(target, "Local outage", ["alice@example.com"])
    link = links_for(local, "Local outage", ["alice@example.com"])["alice@example.com"]
    page = approver.submit(approver.open_link(link), "approve", "ship it")
    hooks.wait_fired()
    assert page.status == 202
    assert "the workflow will receive it within a few minutes" in page.text
    # The sweeper tries again while SendTaskSuccess is still down; the workflow waits.
    eventually(lambda: len(refused) >= 3, what="two sweeps during the outage")
    assert target.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    down[0] = False
    report = ended(target, arn)
    assert report.output["outcome"] == "approved"
    assert task_succeeded_events(target.sfn, arn) == 1


Answer = tuple[int, dict[str, Any]]  # HTTP status, and the JSON answer to a recorded vote


def post_over_http(link: str, who: str, choice: str, comment: str) -> Answer:
    result = approver.post_from_link(link, choice, comment, accept_json=True, approver=who)
    return result.status, result.json() if result.status == 200 else {}


def decide_in_a_thread(link: str, who: str, choice: str, comment: str) -> Answer:
    """As one of many Lambda environments would: the API's domain call, in a thread of its
    own (the local API runs its handler one event at a time, as one environment)."""
    token = shortlinks.token_in(link)
    assert token is not None, "emails carry short links"
    fields = {"approver": who, "decision": choice, "comment": comment}
    try:
        recorded = decision.decide_by_link(runtime.from_environment(), token, fields, utcnow())
    except decision.Problem as problem:
        return problem.status, {}
    return 200, {
        "recorded": {"outcome": recorded.vote.outcome.value},
        "status": recorded.approval.status.value,
        "delivery": recorded.delivery.value,
    }


@pytest.mark.parametrize("send", [post_over_http, decide_in_a_thread], ids=["over HTTP", "in fifty threads"])
def test_fifty_racing_decisions_settle_the_request_once(
    local: LocalStack, target: Target, send: Callable[[str, str, str, str], Answer]
) -> None:
    """Five approvers (three of five to approve) each send ten decisions at once, approve and
    reject mixed: one vote per approver at most, the workflow is answered once with the
    votes recorded, no answer is a 5xx, and each vote recorded is answered 200. Over HTTP
    they race to the API; in threads, their conditional writes race in DynamoDB. Each goes
    through the approver's short link, whose binding the same conditional write checks."""
    title = f"Racing decisions {send.__name__}"
    approvers = [f"racer{i}@example.com" for i in range(5)]
    arn = start(target, title, approvers, policy=Policy.QUORUM, quorum=3)
    links = links_for(local, title, approvers)
    posts = [(who, "approve" if i % 2 else "reject") for i in range(10) for who in approvers]
    ready = threading.Barrier(len(posts), timeout=30)

    def post(click: tuple[str, str]) -> tuple[str, Answer]:
        who, choice = click
        ready.wait()
        return who, send(links[who], who, choice, f"{choice} from {who}")

    with ThreadPoolExecutor(len(posts)) as pool:
        answers = list(pool.map(post, posts))
    report = ended(target, arn)
    (approval,) = [a for a in target.store.all() if a.execution == arn]

    statuses = Counter(status for _, (status, _) in answers)
    assert set(statuses) <= {200, 409}, statuses  # never a 5xx, nor a false "too late"
    # The workflow is answered once, with the votes the table recorded: one per approver at
    # most, and the side that reached its threshold (3 of 5) first.
    assert task_succeeded_events(target.sfn, arn) == 1
    votes = {v["approver"]: v["outcome"] for v in report.output["votes"]}
    assert votes == {who: vote.outcome.value for who, vote in approval.votes.items()}
    outcomes = Counter(votes.values())
    winner = Outcome(report.output["outcome"])
    assert outcomes[winner.value] == 3
    assert outcomes[Outcome.REJECTED.value if winner is Outcome.APPROVED else Outcome.APPROVED.value] < 3

    accepted = [(who, body) for who, (status, body) in answers if status == 200]
    assert {who: body["recorded"]["outcome"] for who, body in accepted} == votes  # one answer each
    settling = [body for _, body in accepted if body["delivery"] == "delivered"]
    assert [body["status"] for body in settling] == [approval.status.value] == [winner.value]
    assert all(body["delivery"] == "not_settled" for _, body in accepted if body not in settling)


def test_two_clicks_at_once_are_each_recorded_on_their_own_request(
    local: LocalStack, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two approvers of two requests press their buttons at the same moment. The handler
    holds its event in module globals (Powertools' resolver), as one Lambda environment
    may; the local API must not serve both at once, or one reads the other's form. Each
    POST here waits, up to a second, for the other to have arrived before reading its form."""
    titles = {"alice@example.com": "Click at once A", "bob@example.com": "Click at once B"}
    arns = {who: start(target, title, [who]) for who, title in titles.items()}
    links = {who: links_for(local, title, [who])[who] for who, title in titles.items()}
    both_in = threading.Barrier(2, timeout=1)
    read_form = approval_api.handler._form

    def form_after_the_other() -> dict[str, str]:
        with contextlib.suppress(threading.BrokenBarrierError):  # the other is not in
            both_in.wait()
        return read_form()

    monkeypatch.setattr(approval_api.handler, "_form", form_after_the_other)
    with ThreadPoolExecutor(2) as pool:
        sent = pool.map(lambda who: post_over_http(links[who], who, "approve", who), titles)
        answers = dict(zip(titles, sent, strict=True))

    assert {who: status for who, (status, _) in answers.items()} == dict.fromkeys(titles, 200)
    for who, arn in arns.items():
        assert [(v["approver"], v["comment"]) for v in ended(target, arn).output["votes"]] == [(who, who)]
