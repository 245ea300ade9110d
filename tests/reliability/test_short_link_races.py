"""Short links under races, against moto: many clicks at once through an approver's short
link and the signed link of the same approval, as many Lambda environments would send them
(the API's domain calls, each in a thread). The vote's conditional write decides: one vote
per approver, one answer to the workflow."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl, urlsplit

from approvals import decision, shortlinks
from approvals.models import ApprovalRequest, Policy, utcnow
from approvals.runtime import Services
from tests.conftest import Stack, approval_id_of
from tests.reliability.faults import task_succeeded_events

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def click(services: Services, link: str, approver: str, choice: str) -> int:
    """One POST's domain call: by the short link's token, or by the signed link's fields."""
    form = {"decision": choice, "comment": f"{choice} by {approver}"}
    token = shortlinks.token_in(link)
    try:
        if token is not None:
            decision.decide_by_link(services, token, {**form, "approver": approver}, utcnow())
        else:
            fields = dict(parse_qsl(urlsplit(link).query))
            decision.decide(services, approval_id_of(link), {**fields, **form}, utcnow())
    except decision.Problem as problem:
        return problem.status
    return 200


def test_racing_clicks_through_short_and_signed_links_settle_once(stack: Stack, services: Services) -> None:
    """Three approvers, first response: each clicks ten times at once through their short
    link and ten through their signed link, approve and reject mixed."""
    approvers = [ALICE, BOB, CAROL]
    arn = stack.start(
        ApprovalRequest(
            title="Short race", approvers=approvers, policy=Policy.FIRST_RESPONSE, requester="ci@example.com"
        )
    )
    short = {who: stack.email(who, "Short race").links[0] for who in approvers}
    signed = {who: stack.signed_link(link, who) for who, link in short.items()}
    clicks = [
        (links[who], who, "approve" if i % 2 else "reject")
        for i in range(10)
        for who in approvers
        for links in (short, signed)
    ]
    ready = threading.Barrier(len(clicks), timeout=30)

    def send(one: tuple[str, str, str]) -> int:
        ready.wait()
        return click(services, *one)

    with ThreadPoolExecutor(len(clicks)) as pool:
        statuses = Counter(pool.map(send, clicks))

    assert statuses == {200: 1, 409: len(clicks) - 1}, statuses
    output = stack.finish(arn).output
    assert task_succeeded_events(stack.sfn, arn) == 1
    (vote,) = output["votes"]
    assert vote["approver"] in approvers
    assert list(stack.approval(approval_id_of(short[ALICE])).votes) == [vote["approver"]]


def test_a_short_link_posted_as_its_approver_and_as_another_at_once_votes_once(
    stack: Stack, services: Services
) -> None:
    """Alice's short link, posted at once naming Alice and naming Bob (a tampered form):
    Alice's vote counts once, the tampered ones are refused, Bob has not voted."""
    arn = stack.start(
        ApprovalRequest(
            title="Tamper race", approvers=[ALICE, BOB], policy=Policy.ALL, requester="ci@example.com"
        )
    )
    link = stack.email(ALICE, "Tamper race").links[0]
    clicks = [(link, who, "approve") for _ in range(10) for who in (ALICE, BOB)]
    ready = threading.Barrier(len(clicks), timeout=30)

    def send(one: tuple[str, str, str]) -> tuple[str, int]:
        ready.wait()
        return one[1], click(services, *one)

    with ThreadPoolExecutor(len(clicks)) as pool:
        answers = Counter(pool.map(send, clicks))

    assert answers == {(ALICE, 200): 1, (ALICE, 409): 9, (BOB, 403): 10}, answers
    assert list(stack.approval(approval_id_of(link)).votes) == [ALICE]
    stack.assert_running(arn)
