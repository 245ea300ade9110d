"""Policy "sequence" against moto: the approvers decide in the listed order, each emailed
once when the one before has approved (by the approval API right after the vote, or by the
sweep if that failed); a vote out of turn is refused by the store's condition; any
rejection rejects; reminders go to whoever's turn it is."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NoReturn

import pytest
from botocore.exceptions import ClientError

from approvals import cli, reassign, runtime
from approvals.links import LinkClaims, link_for
from approvals.models import ApprovalRequest, Outcome, Policy, Reassignment, Status, Vote, timeline, utcnow
from approvals.store import VoteRefusal, VoteRejected
from approvals.sweep import sweep
from tests.conftest import API_URL, Stack, approval_id_of, eventually
from tests.integration.test_approvers_cli import deploy_outputs

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def in_sequence(stack: Stack, title: str, approvers: list[str]) -> tuple[str, str]:
    """Start a sequence and wait until the worker has emailed it; (execution, approval id)."""
    request = ApprovalRequest(
        title=title,
        approvers=approvers,
        policy=Policy.SEQUENCE,
        requester="ci@example.com",
        timeout_seconds=4 * 3600,
    )
    arn = stack.start(request)
    approval_id = approval_id_of(stack.email(approvers[0], title).links[0])
    eventually(lambda: stack.approval(approval_id).emailed, what="the worker to finish")
    return arn, approval_id


def emailed(stack: Stack, title: str) -> list[str]:
    return [e.to for e in stack.emails() if title in e.subject]


def own_link(stack: Stack, approval_id: str, approver: str) -> str:
    """A link signed for ``approver``, as the sweep would email it."""
    expires = int(stack.approval(approval_id).expires_at.timestamp())
    return link_for(API_URL, stack.signing_key, LinkClaims(approval_id, approver, expires))


def test_each_approver_is_emailed_when_the_one_before_has_approved(stack: Stack) -> None:
    title = "Deploy in order"
    arn, approval_id = in_sequence(stack, title, [ALICE, BOB, CAROL])
    services = runtime.from_environment()
    assert emailed(stack, title) == [ALICE]
    assert sweep(services, utcnow())["emailed"] == 0  # Bob waits for Alice

    stack.click(stack.email(ALICE, title).links[0], "approve", "staging is green")
    assert emailed(stack, title) == [ALICE, BOB]  # by the API, right after the vote
    assert sweep(services, utcnow())["emailed"] == 0  # once

    bob_page = stack.get(stack.email(BOB, title).links[0])
    assert "staging is green" in bob_page.body  # who came before, and what they said
    assert "deciding now" in bob_page.body
    stack.click(stack.email(BOB, title).links[0], "approve")
    stack.click(stack.email(CAROL, title).links[0], "approve")
    report = stack.finish(arn)
    assert (report.status, report.output["outcome"]) == ("SUCCEEDED", "approved")
    assert [v["approver"] for v in report.output["votes"]] == [ALICE, BOB, CAROL]
    emails = [(e.kind, e.detail) for e in timeline(stack.approval(approval_id)) if e.kind == "emailed"]
    assert emails == [("emailed", ALICE), ("emailed", BOB), ("emailed", CAROL)]


def test_the_sweep_emails_the_next_approver_when_the_api_could_not(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    title = "Next by the sweep"
    _, approval_id = in_sequence(stack, title, [ALICE, BOB])
    services = runtime.from_environment()
    with monkeypatch.context() as failing:
        failing.setattr(services.sns, "publish_batch", _throttled)
        assert stack.click(stack.email(ALICE, title).links[0], "approve").status == 200  # the vote stands
    assert emailed(stack, title) == [ALICE]
    assert BOB not in stack.approval(approval_id).notified  # given back
    assert sweep(services, utcnow())["emailed"] == 1
    assert sweep(services, utcnow())["emailed"] == 0
    assert emailed(stack, title) == [ALICE, BOB]


def _throttled(**_: Any) -> NoReturn:
    raise ClientError({"Error": {"Code": "Throttling", "Message": "slow down"}}, "PublishBatch")


def test_a_rejection_ends_the_sequence_and_nobody_after_is_asked(stack: Stack) -> None:
    title = "Rejected first"
    arn, _ = in_sequence(stack, title, [ALICE, BOB])
    stack.click(stack.email(ALICE, title).links[0], "reject", "not today")
    report = stack.finish(arn)
    assert (report.status, report.output["outcome"]) == ("SUCCEEDED", "rejected")
    assert sweep(runtime.from_environment(), utcnow())["emailed"] == 0
    assert emailed(stack, title) == [ALICE]


def test_a_vote_out_of_turn_is_refused_by_name_and_changes_nothing(stack: Stack) -> None:
    title = "Out of turn"
    _, approval_id = in_sequence(stack, title, [ALICE, BOB])
    before = stack.raw_item(approval_id)
    with pytest.raises(VoteRejected) as refused:
        runtime.from_environment().store.record_vote(
            approval_id, Vote(approver=BOB, outcome=Outcome.APPROVED, at=utcnow())
        )
    assert refused.value.reason is VoteRefusal.NOT_YOUR_TURN
    assert stack.raw_item(approval_id) == before

    bob = own_link(stack, approval_id, BOB)
    page = stack.get(bob)
    assert page.status == 200
    assert page.form_action is None  # no buttons before his turn
    assert "Your turn has not come yet" in page.body
    answer = stack.post_link(bob, "approve", accept_json=True)
    assert answer.status == 409
    assert answer.json()["message"] == (
        f"It is not your turn yet: the approvers decide in order, and {ALICE} decides before you."
        " You will get an email when it is your turn."
    )
    assert stack.approval(approval_id).votes == {}


def test_reminders_go_only_to_the_approver_whose_turn_it_is(stack: Stack) -> None:
    title = "Remind in turn"
    _, approval_id = in_sequence(stack, title, [ALICE, BOB])
    approval = stack.approval(approval_id)
    assert (
        sweep(runtime.from_environment(), approval.created_at + timedelta(hours=2, seconds=1))["reminded"]
        == 1
    )
    assert [e.to for e in stack.emails() if e.subject.startswith("[Reminder]")] == [ALICE]
    assert stack.approval(approval_id).status is Status.PENDING


DAVE = "dave@example.com"


def reassigned(stack: Stack, approval_id: str, from_: str, to: str) -> None:
    """An operator hands ``from_``'s place to ``to``, who is emailed their link."""
    stack.add_approvers([to])
    services = runtime.from_environment()
    change = Reassignment.model_validate(
        {"from": from_, "to": to, "by": "oncall@example.com", "at": utcnow()}
    )
    approval = reassign.reassign(
        services.store, services.directory, services.keys.signing(), approval_id, change
    )
    key = services.keys.signing()
    settings = services.settings
    assert reassign.email_new_approver(
        services.store, services.sns, settings.topic_arn, settings.api_url, key, approval, to
    )


def test_a_reassigned_place_keeps_its_turn_and_those_after_still_decide(stack: Stack) -> None:
    title = "Hand over mid-sequence"
    arn, approval_id = in_sequence(stack, title, [ALICE, BOB, CAROL])
    assert stack.click(stack.email(ALICE, title).links[0], "approve").status == 200
    reassigned(stack, approval_id, BOB, DAVE)  # Bob's turn, handed to Dave

    assert sweep(runtime.from_environment(), utcnow())["emailed"] == 0  # Dave's email was his turn's
    assert stack.click(stack.email(DAVE, title).links[0], "approve").status == 200
    assert CAROL in emailed(stack, title)  # her turn came
    assert stack.click(stack.email(CAROL, title).links[0], "approve").status == 200
    report = stack.finish(arn)
    assert (report.status, report.output["outcome"]) == ("SUCCEEDED", "approved")
    assert [v["approver"] for v in report.output["votes"]] == [ALICE, DAVE, CAROL]
    assert emailed(stack, title) == [ALICE, BOB, DAVE, CAROL]


def test_a_place_handed_over_before_its_turn_is_decided_in_that_turn_and_by_approvals_decide(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    title = "Hand over ahead"
    arn, approval_id = in_sequence(stack, title, [ALICE, BOB])
    reassigned(stack, approval_id, BOB, DAVE)  # not his turn yet
    with pytest.raises(VoteRejected) as early:
        runtime.from_environment().store.record_vote(
            approval_id, Vote(approver=DAVE, outcome=Outcome.APPROVED, at=utcnow())
        )
    assert early.value.reason is VoteRefusal.NOT_YOUR_TURN
    reassigned(stack, approval_id, ALICE, CAROL)  # the first place, whose turn it is
    deploy_outputs(stack)

    for who in (CAROL, DAVE):
        deployed = ["--stack-name", "Approvals", "--region", "us-east-1"]
        code = cli.main(["decide", approval_id, "approve", "--as", who, "--operator", "oncall", *deployed])
        assert code == 0, capsys.readouterr().err
    report = stack.finish(arn)
    assert (report.status, report.output["outcome"]) == ("SUCCEEDED", "approved")
    assert [v["approver"] for v in report.output["votes"]] == [CAROL, DAVE]
