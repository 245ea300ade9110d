"""Deciding "all matching" signed in (issue 18): the approver signed in on the inbox
confirms more requests than one POST decides, and those past the first 100 that need
sign-in are decided by the sweep's job with the same proof as the POST's votes
(approvals.bulkjob), against the real oidc-provider-mock. Without the approver's session
they are refused, by the job as by the POST."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from approvals import bulk, inboxlinks, runtime
from approvals.inbox import waiting
from approvals.models import Policy, utcnow
from approvals.sweep import sweep
from tests.conftest import Stack
from tests.integration.test_bulk_api import inbox
from tests.integration.test_inbox import stored
from tests.integration.test_inbox_sign_in import _post, ask, signed_in_from_inbox
from tests.integration.test_sign_in import (  # noqa: F401 (provider, stack: the fixtures)
    ALICE,
    BOB,
    Browser,
    Provider,
    provider,
    stack,
)
from tests.reliability.faults import task_succeeded_events

CAROL = "carol@example.com"
ISSUER_ELSEWHERE = "https://id.elsewhere.example"


@dataclass(frozen=True)
class Asked:
    """Alice's inbox: a POST's worth of newer requests that her vote alone does not settle,
    and after them three with executions, two of which need sign-in."""

    needs: list[tuple[str, str]]  # the execution and approval id of each that needs sign-in
    plain: tuple[str, str]  # one the link alone decides
    link: str  # Alice's inbox
    confirmed: list[tuple[str, str]]  # "approve all matching", confirmed


def asked_of_alice(stack: Stack) -> Asked:  # noqa: F811
    needs = [ask(stack, f"Grant access {n}", "sign-in") for n in range(2)]
    plain = ask(stack, "Refund 12 EUR")
    store = runtime.from_environment().store
    # Newer than those (the inbox lists the newest first), each waiting on Carol too.
    newer = max(stack.approval(approval_id).created_at for _, approval_id in [*needs, plain])
    newer += timedelta(seconds=1)
    # Carol can be emailed: else each sweep would first mark her unreachable on every one.
    stack.add_approvers([CAROL])
    for n in range(bulk.MAX_VOTES):
        stored(store, f"Refund {n}", newer, [ALICE, CAROL], policy=Policy.ALL)
    asof = str(int(newer.timestamp()) + 1)  # what waits when Alice confirms: all of them
    confirmed = [("all", "1"), ("decision", "approve"), ("asof", asof), ("confirmed", "1")]
    return Asked(needs, plain, inbox(stack), confirmed)


def browser_of(stack: Stack, provider: Provider, asked: Asked, who: str | None) -> Browser:  # noqa: F811
    """A browser on Alice's inbox, signed in as ``who`` (None: not signed in)."""
    browser = Browser(stack)
    if who is not None:
        signed_in_from_inbox(browser, provider, asked.link, who)
    return browser


def confirmed_then_swept(browser: Browser, asked: Asked) -> dict[str, int]:
    """Confirm, then run the sweep: the job's results by kind (the POST's included)."""
    done = _post(browser, asked.link, asked.confirmed)
    assert done.status == 200, done.body
    answer = done.json()
    assert answer["counts"] == {"recorded": bulk.MAX_VOTES}
    assert answer["background"]["remaining"] == 3
    services = runtime.from_environment()
    sweep(services, utcnow())
    (job,) = services.store.jobs_of(inboxlinks.approver_id(ALICE), utcnow() - timedelta(hours=1))
    assert job.finished_at is not None
    return dict(job.counts)


def test_signed_in_the_job_decides_the_requests_that_need_it_proven_by_sign_in(
    stack: Stack,  # noqa: F811
    provider: Provider,  # noqa: F811
) -> None:
    asked = asked_of_alice(stack)

    counts = confirmed_then_swept(browser_of(stack, provider, asked, ALICE), asked)

    assert counts == {"recorded": bulk.MAX_VOTES, "settled": 3}
    for arn, _ in [*asked.needs, asked.plain]:
        (vote,) = stack.finish(arn).output["votes"]
        assert (vote["approver"], vote["proof"], vote["issuer"]) == (ALICE, "sign-in", provider.issuer)
        assert task_succeeded_events(stack.sfn, arn) == 1


@pytest.mark.parametrize("signed_in_as", [None, BOB], ids=["not signed in", "signed in as Bob"])
def test_without_alice_s_session_the_job_refuses_the_requests_that_need_it(
    stack: Stack,  # noqa: F811
    provider: Provider,  # noqa: F811
    signed_in_as: str | None,
) -> None:
    asked = asked_of_alice(stack)

    counts = confirmed_then_swept(browser_of(stack, provider, asked, signed_in_as), asked)

    assert counts == {"recorded": bulk.MAX_VOTES, "sign_in_required": 2, "settled": 1}
    for _, approval_id in asked.needs:
        assert stack.approval(approval_id).votes == {}
    plain_arn, _ = asked.plain
    (vote,) = stack.finish(plain_arn).output["votes"]
    assert (vote["proof"], vote.get("issuer")) == ("link", None)
    store, alice = runtime.from_environment().store, inboxlinks.approver_id(ALICE)
    left = {still.approval.approval_id for still in waiting(store, alice, utcnow())}
    assert left >= {approval_id for _, approval_id in asked.needs}  # still in her inbox


def test_a_job_proven_with_an_issuer_the_deployment_no_longer_trusts_refuses_them(
    stack: Stack,  # noqa: F811
    provider: Provider,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proof names its issuer, as a session cookie does: once the deployment signs in
    elsewhere, a job confirmed before proves nothing for the requests that need sign-in."""
    asked = asked_of_alice(stack)
    done = _post(browser_of(stack, provider, asked, ALICE), asked.link, asked.confirmed)
    assert done.status == 200, done.body

    monkeypatch.setenv("APPROVALS_OIDC_ISSUER", ISSUER_ELSEWHERE)
    runtime.reset()
    sweep(runtime.from_environment(), utcnow())

    for _, approval_id in asked.needs:
        assert stack.approval(approval_id).votes == {}
