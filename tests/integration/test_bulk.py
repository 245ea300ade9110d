"""Bulk votes against moto (approvals.bulk): real executions waiting on their tokens, one
approver deciding many of them at once. Each item keeps all of its own rules and gets its
own result; each settled item's task is answered once."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest

from approvals import bulk, cli, decision, inboxlinks, runtime
from approvals.bulk import Choice, Result
from approvals.models import ApprovalRequest, FieldSpec, FieldType, Outcome, Policy, Status, utcnow
from approvals.runtime import Services
from approvals.signin import Session
from tests.conftest import Stack, approval_id_of, eventually
from tests.integration.test_approvers_cli import deploy_outputs
from tests.integration.test_reassign import hand_over
from tests.reliability.faults import task_succeeded_events

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
TICKET = FieldSpec(name="ticket", label="Ticket", type=FieldType.TEXT, required=True)


def ask(stack: Stack, title: str, approvers: list[str], **extra: Any) -> tuple[str, str]:
    """A request the worker has emailed; its execution and approval id."""
    request = ApprovalRequest(
        title=title, approvers=approvers, requester=extra.pop("requester", "ci@example.com"), **extra
    )
    arn = stack.start(request)
    first = next(who for who in approvers if who != request.requester)
    return arn, approval_id_of(stack.email(first, title).links[0])


def by(results: list[bulk.ItemResult]) -> dict[str, Result]:
    return {item.approval_id: item.result for item in results}


def approve(*approval_ids: str, **data: str) -> list[Choice]:
    return [Choice(approval_id, Outcome.APPROVED, "batch ok", data) for approval_id in approval_ids]


@pytest.fixture
def services(stack: Stack) -> Services:
    return runtime.from_environment()


def test_approve_selected_settles_each_item_and_answers_each_task_once(
    stack: Stack, services: Services
) -> None:
    asked = [ask(stack, f"Refund {n}", [ALICE, BOB]) for n in range(3)]
    results = bulk.decide_many(
        services, inboxlinks.approver_id(ALICE), approve(*(i for _, i in asked)), utcnow()
    )

    assert [r.result for r in results] == [Result.SETTLED] * 3
    assert [r.title for r in results] == ["Refund 0", "Refund 1", "Refund 2"]
    for arn, approval_id in asked:
        output = stack.finish(arn).output
        assert output["outcome"] == "approved"
        assert [(v["approver"], v["comment"]) for v in output["votes"]] == [(ALICE, "batch ok")]
        assert task_succeeded_events(stack.sfn, arn) == 1
        assert stack.approval(approval_id).votes[ALICE].outcome is Outcome.APPROVED


def test_each_item_keeps_its_own_rules_and_gets_its_own_result(stack: Stack, services: Services) -> None:
    _, all_of_them = ask(stack, "All must approve", [ALICE, BOB], policy=Policy.ALL)
    quorum_arn, quorum = ask(stack, "Two of three", [BOB, ALICE, CAROL], policy=Policy.QUORUM, quorum=2)
    stack.click(stack.email(BOB, "Two of three").links[0], "approve")
    _, after_bob = ask(stack, "Bob first", [BOB, ALICE], policy=Policy.SEQUENCE)
    _, own = ask(stack, "Alice's own", [ALICE, BOB], requester=ALICE)
    _, bobs = ask(stack, "Only Bob", [BOB])
    _, handed = ask(stack, "Handed over", [ALICE, BOB], policy=Policy.ALL)
    hand_over(stack, handed, ALICE, CAROL)
    _, decided = ask(stack, "Decided before", [ALICE, BOB], policy=Policy.ALL)
    stack.click(stack.email(ALICE, "Decided before").links[0], "approve")
    _, with_fields = ask(stack, "Needs a ticket", [ALICE], fields=[TICKET])
    unknown = secrets.token_hex(16)

    ids = [all_of_them, quorum, after_bob, own, bobs, handed, decided, with_fields, unknown]
    results = bulk.decide_many(services, inboxlinks.approver_id(ALICE), approve(*ids), utcnow())

    assert by(results) == {
        all_of_them: Result.RECORDED,
        quorum: Result.SETTLED,
        after_bob: Result.NOT_YOUR_TURN,
        own: Result.NOT_YOURS,
        bobs: Result.NOT_YOURS,
        handed: Result.NOT_YOURS,
        decided: Result.ALREADY_DECIDED,
        with_fields: Result.NEEDS_ANSWERS,
        unknown: Result.NOT_FOUND,
    }
    details = {r.approval_id: r.detail for r in results}
    assert "requester may not decide" in details[own]
    assert "reassigned" in details[handed].lower() or "handed your place" in details[handed]
    assert "Ticket" in details[with_fields]
    # Nobody else's request is named in the answer.
    assert {r.approval_id: r.title for r in results}[bobs] is None
    assert stack.finish(quorum_arn).output["outcome"] == "approved"
    assert task_succeeded_events(stack.sfn, quorum_arn) == 1
    for refused in (after_bob, own, bobs, handed, with_fields):
        assert ALICE not in stack.approval(refused).votes

    again = bulk.decide_many(
        services, inboxlinks.approver_id(ALICE), approve(with_fields, ticket="OPS-1"), utcnow()
    )
    assert by(again) == {with_fields: Result.SETTLED}
    assert stack.approval(with_fields).votes[ALICE].data == {"ticket": "OPS-1"}


def test_a_rejection_needs_no_answers_but_a_reason(stack: Stack, services: Services) -> None:
    arn, approval_id = ask(stack, "Reject it", [ALICE], fields=[TICKET])
    with pytest.raises(bulk.InvalidChoice, match="reason is required"):
        bulk.decide_many(
            services, inboxlinks.approver_id(ALICE), [Choice(approval_id, Outcome.REJECTED)], utcnow()
        )
    assert stack.approval(approval_id).votes == {}

    results = bulk.decide_many(
        services, inboxlinks.approver_id(ALICE), [Choice(approval_id, Outcome.REJECTED, "not now")], utcnow()
    )
    assert by(results) == {approval_id: Result.SETTLED}
    assert stack.finish(arn).output["outcome"] == "rejected"


def test_expired_items_are_reported_and_not_recorded(stack: Stack, services: Services) -> None:
    arn, approval_id = ask(stack, "Too late", [ALICE], timeout_seconds=3600)
    later = stack.approval(approval_id).expires_at + timedelta(seconds=1)

    (result,) = bulk.decide_many(services, inboxlinks.approver_id(ALICE), approve(approval_id), later)

    assert result.result is Result.EXPIRED
    assert stack.approval(approval_id).votes == {}
    stack.assert_running(arn)


def test_a_sequence_passes_the_turn_and_emails_the_next_voter(stack: Stack, services: Services) -> None:
    _, approval_id = ask(stack, "In turn", [ALICE, BOB], policy=Policy.SEQUENCE)
    (result,) = bulk.decide_many(services, inboxlinks.approver_id(ALICE), approve(approval_id), utcnow())
    assert result.result is Result.RECORDED
    assert stack.email(BOB, "In turn").links  # by the same call, as a click would


def test_a_request_that_needs_sign_in_is_decided_only_signed_in_as_its_approver(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = "https://id.example.test"  # never called: the session is given as the API would read it
    monkeypatch.setenv("APPROVALS_OIDC_ISSUER", issuer)
    monkeypatch.setenv("APPROVALS_OIDC_CLIENT_ID", "approvals-test")
    runtime.reset()
    services = runtime.from_environment()
    _, approval_id = ask(stack, "Sign in first", [ALICE], identity="sign-in")
    _, signed_in = ask(stack, "Signed in", [ALICE], identity="sign-in")
    later = int((utcnow() + timedelta(minutes=5)).timestamp())
    alice_id = inboxlinks.approver_id(ALICE)

    for session in (None, Session(BOB, issuer, later)):
        (result,) = bulk.decide_many(services, alice_id, approve(approval_id), utcnow(), session)
        assert result.result is Result.SIGN_IN_REQUIRED
        assert "its own page" in result.detail
    assert stack.approval(approval_id).votes == {}
    (result,) = bulk.decide_many(
        services, alice_id, approve(signed_in), utcnow(), Session(ALICE, issuer, later)
    )
    assert result.result is Result.SETTLED
    assert stack.approval(signed_in).votes[ALICE].proof == "sign-in"

    # An operator's vote on the approver's behalf is proven by their own AWS identity.
    (result,) = bulk.decide_many(
        services, inboxlinks.approver_id(ALICE), approve(approval_id), utcnow(), on_behalf_by="oncall"
    )
    assert result.result is Result.SETTLED
    assert stack.approval(approval_id).votes[ALICE].on_behalf_by == "oncall"


def test_more_than_a_hundred_items_are_refused_before_anything_is_recorded(
    stack: Stack, services: Services
) -> None:
    _, approval_id = ask(stack, "One of many", [ALICE])
    choices = approve(approval_id, *(secrets.token_hex(16) for _ in range(bulk.MAX_VOTES)))
    with pytest.raises(bulk.TooManyVotes):
        bulk.decide_many(services, inboxlinks.approver_id(ALICE), choices, utcnow())
    assert stack.approval(approval_id).status is Status.PENDING


def test_an_item_listed_twice_is_voted_once(stack: Stack, services: Services) -> None:
    arn, approval_id = ask(stack, "Twice", [ALICE])
    results = bulk.decide_many(
        services, inboxlinks.approver_id(ALICE), approve(approval_id, approval_id), utcnow()
    )
    assert [(r.approval_id, r.result) for r in results] == [(approval_id, Result.SETTLED)]
    stack.finish(arn)
    assert task_succeeded_events(stack.sfn, arn) == 1


def test_only_approval_ids_are_looked_up(stack: Stack, services: Services) -> None:
    """A form may name anything: what is not an approval id reads nothing of the table."""
    results = bulk.decide_many(
        services,
        inboxlinks.approver_id(ALICE),
        approve(f"inbox#{inboxlinks.approver_id(ALICE)}#x", ""),
        utcnow(),
    )
    assert [r.result for r in results] == [Result.NOT_FOUND, Result.NOT_FOUND]


def test_plan_says_what_a_vote_would_get_and_writes_nothing(stack: Stack, services: Services) -> None:
    _, plain = ask(stack, "Plain", [ALICE])
    _, with_fields = ask(stack, "Fielded", [ALICE], fields=[TICKET])
    _, bobs = ask(stack, "Bob's", [BOB])
    before = {approval_id: stack.raw_item(approval_id) for approval_id in (plain, with_fields, bobs)}

    planned = bulk.plan(services, inboxlinks.approver_id(ALICE), approve(plain, with_fields, bobs), utcnow())

    assert [(p.ready, p.result) for p in planned] == [
        (True, None),
        (False, Result.NEEDS_ANSWERS),
        (False, Result.NOT_YOURS),
    ]
    assert [spec.name for spec in planned[1].needs] == ["ticket"]
    assert bulk.workflows(planned) == {planned[0].workflow: 2}
    assert {approval_id: stack.raw_item(approval_id) for approval_id in before} == before
    with pytest.raises(decision.Malformed):
        bulk.plan(
            services, inboxlinks.approver_id(ALICE), [Choice(plain, Outcome.APPROVED, "\x00")], utcnow()
        )


def test_approvals_decide_decides_every_pending_item_of_a_workflow_on_the_approvers_behalf(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    asked = [ask(stack, f"CLI {n}", [ALICE, BOB], policy=Policy.ALL) for n in range(3)]
    _, bobs = ask(stack, "Bob's alone", [BOB])
    deploy_outputs(stack)
    deployed = ["--stack-name", "Approvals", "--region", "us-east-1", "--operator", "oncall"]

    code = cli.main(["decide", "approve", "--workflow", "approvals-approval", "--approver", ALICE, *deployed])

    out = capsys.readouterr().out
    assert code == 0, out
    assert {f"{approval_id}  recorded" in out for _, approval_id in asked} == {True}
    assert "3 of 3 recorded" in out
    for _, approval_id in asked:
        vote = stack.approval(approval_id).votes[ALICE]
        assert (vote.outcome, vote.on_behalf_by) == (Outcome.APPROVED, "oncall")
    assert stack.approval(bobs).votes == {}


def test_approvals_decide_by_execution_exits_non_zero_when_an_item_is_refused(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    arn, approval_id = ask(stack, "Bob decides first", [BOB, ALICE], policy=Policy.SEQUENCE)
    deploy_outputs(stack)
    deployed = ["--stack-name", "Approvals", "--region", "us-east-1", "--operator", "oncall"]

    code = cli.main(["decide", "approve", "--execution", arn, "--as", ALICE, *deployed])

    out = capsys.readouterr().out
    assert code == 1
    assert f"{approval_id}  not_your_turn" in out
    assert "0 of 1 recorded" in out
    assert stack.approval(approval_id).votes == {}


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (["approve"], "name an approval, or filter"),
        (["0" * 32, "approve", "--workflow", "x"], "not both"),
        (["0" * 32, "maybe"], "say: decide"),
    ],
)
def test_approvals_decide_says_how_it_is_used(
    stack: Stack, capsys: pytest.CaptureFixture[str], words: list[str], says: str
) -> None:
    deploy_outputs(stack)
    code = cli.main(["decide", *words, "--as", ALICE, "--stack-name", "Approvals", "--region", "us-east-1"])
    assert code == 2
    assert says in capsys.readouterr().err


def test_decided_items_leave_the_voters_inbox_and_the_others_stay(stack: Stack, services: Services) -> None:
    _, plain = ask(stack, "Leaves", [ALICE, BOB], policy=Policy.ALL)
    _, with_fields = ask(stack, "Stays", [ALICE], fields=[TICKET])
    alice, bob = inboxlinks.approver_id(ALICE), inboxlinks.approver_id(BOB)
    entries = eventually(
        lambda: {e.approval_id for e in services.store.inbox_entries(alice)} == {plain, with_fields} or None,
        what="Alice's inbox entries",
    )
    assert entries

    bulk.decide_many(services, alice, approve(plain, with_fields), utcnow())

    assert {e.approval_id for e in services.store.inbox_entries(alice)} == {with_fields}
    assert {e.approval_id for e in services.store.inbox_entries(bob)} == {plain}  # Bob's vote still awaited


def test_all_matching_is_what_waited_when_the_approver_confirmed(stack: Stack, services: Services) -> None:
    ids = [ask(stack, f"Matching {n}", [ALICE])[1] for n in range(2)]
    alice = inboxlinks.approver_id(ALICE)
    eventually(lambda: len(list(services.store.inbox_entries(alice))) == 2 or None, what="the inbox entries")
    asof = max(int(stack.approval(approval_id).created_at.timestamp()) for approval_id in ids)
    eventually(lambda: utcnow().timestamp() >= asof + 1 or None, what="the next second")
    _, later = ask(stack, "Arrived later", [ALICE])
    eventually(lambda: len(list(services.store.inbox_entries(alice))) == 3 or None, what="the later entry")

    chosen = bulk.selected(services, alice, [("all", "1"), ("asof", str(asof))], utcnow())
    assert (sorted(chosen.approval_ids), chosen.more) == (sorted(ids), 0)
    everything = bulk.selected(services, alice, [("all", "1")], utcnow())
    assert later in everything.approval_ids
    assert (
        bulk.selected(services, alice, [("all", "1"), ("workflow", "another")], utcnow()).approval_ids == []
    )


def test_the_results_keep_the_order_the_items_were_chosen_in(stack: Stack, services: Services) -> None:
    first, second = secrets.token_hex(16), secrets.token_hex(16)
    results = bulk.decide_many(
        services, inboxlinks.approver_id(ALICE), approve(first, second, first), utcnow()
    )
    assert [r.approval_id for r in results] == [first, second]
