"""Reassignment against moto: an operator hands an approver's place to someone else; the
new approver gets a link, the old link stops working, the decision records the change."""

from __future__ import annotations

from datetime import timedelta

import pytest

from approvals import reassign, runtime, shortlinks
from approvals.models import ApprovalRequest, Policy, Reassignment, timeline, utcnow
from tests.integration.conftest import Stack, approval_id_of

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
OPERATOR = "oncall@example.com"


def change(from_: str, to: str) -> Reassignment:
    return Reassignment.model_validate({"from": from_, "to": to, "by": OPERATOR, "at": utcnow()})


def waiting(stack: Stack, title: str, approvers: list[str], **extra: object) -> tuple[str, str]:
    """A request emailed to ``approvers``; its execution and id."""
    arn = stack.start(ApprovalRequest(title=title, approvers=approvers, requester="ci@example.com", **extra))
    return arn, approval_id_of(stack.email(approvers[0], title).links[0])


def hand_over(stack: Stack, approval_id: str, from_: str, to: str) -> None:
    services = runtime.from_environment()
    approval = reassign.reassign(
        services.store, services.directory, services.keys.signing(), approval_id, change(from_, to)
    )
    sent = reassign.email_new_approver(
        services.sns,
        services.settings.topic_arn,
        services.settings.api_url,
        services.keys.signing(),
        approval,
        to,
    )
    assert sent


def test_the_new_approver_decides_and_the_old_link_says_it_was_reassigned(stack: Stack) -> None:
    stack.add_approvers([CAROL])
    arn, approval_id = waiting(stack, "Hand over", [ALICE, BOB], policy=Policy.ALL)
    old_link = stack.email(ALICE, "Hand over").links[0]

    hand_over(stack, approval_id, ALICE, CAROL)

    email = stack.email(CAROL, "Hand over")
    assert f"in place of {ALICE}" in email.body
    assert shortlinks.token_in(email.links[0])  # a short link of their own, bound in the same write
    for answer in (stack.get(old_link), stack.post_link(old_link, "approve")):
        assert answer.status == 410
        assert "This request was reassigned" in answer.body
        assert CAROL not in answer.body  # who took the place is not told to the old link
    assert stack.click(email.links[0], "approve").status == 200
    assert stack.click(stack.email(BOB, "Hand over").links[0], "approve").status == 200

    output = stack.finish(arn).output
    assert [v["approver"] for v in output["votes"]] == [CAROL, BOB]
    (recorded,) = output["reassigned"]
    assert (recorded["from"], recorded["to"], recorded["by"]) == (ALICE, CAROL, OPERATOR)
    events = timeline(stack.approval(approval_id))
    (event,) = [e for e in events if e.kind == "reassigned"]
    assert (event.actor, event.detail) == (OPERATOR, f"{ALICE} -> {CAROL}")
    assert next(e for e in events if e.kind == "emailed").detail == f"{ALICE}, {BOB}"  # as first asked


def test_a_decision_without_reassignments_carries_no_such_field(stack: Stack) -> None:
    arn, _ = waiting(stack, "Plain", [ALICE])
    assert stack.click(stack.email(ALICE, "Plain").links[0], "approve").status == 200
    assert "reassigned" not in stack.finish(arn).output


@pytest.mark.parametrize(
    ("from_", "to", "reason", "message"),
    [
        (CAROL, "dave@example.com", "NOT_ASKED", f"{CAROL} is not an approver of this request"),
        (ALICE, BOB, "ALREADY_ASKED", f"{BOB} is already an approver of this request"),
        (BOB, "dave@example.com", "ALREADY_VOTED", f"{BOB} has already decided (approved)"),
        (ALICE, "ci@example.com", "REQUESTER", "ci@example.com requested this approval and may not decide"),
        (
            ALICE,
            "nobody@example.com",
            "UNREACHABLE",
            "nobody@example.com cannot be emailed (no subscription)",
        ),
    ],
)
def test_each_refusal_names_its_cause_and_changes_nothing(
    stack: Stack, from_: str, to: str, reason: str, message: str
) -> None:
    stack.add_approvers(["dave@example.com", "ci@example.com"])
    _, approval_id = waiting(stack, "Refusals", [ALICE, BOB], policy=Policy.ALL)
    assert stack.click(stack.email(BOB, "Refusals").links[0], "approve").status == 200
    services = runtime.from_environment()
    before = stack.raw_item(approval_id)

    with pytest.raises(reassign.ReassignError) as refused:
        reassign.reassign(
            services.store, services.directory, services.keys.signing(), approval_id, change(from_, to)
        )
    assert refused.value.reason == reason
    assert message in str(refused.value)
    assert stack.raw_item(approval_id) == before


def test_unknown_settled_and_expired_requests_are_refused(stack: Stack) -> None:
    services = runtime.from_environment()
    stack.add_approvers([CAROL])
    with pytest.raises(reassign.ReassignError, match="no such approval") as unknown:
        reassign.reassign(
            services.store, services.directory, services.keys.signing(), "0" * 32, change(ALICE, CAROL)
        )
    assert unknown.value.reason == "UNKNOWN"

    _, approval_id = waiting(stack, "Settled", [ALICE, BOB])
    assert stack.click(stack.email(BOB, "Settled").links[0], "approve").status == 200
    with pytest.raises(reassign.ReassignError, match="already settled: nothing is left") as settled:
        reassign.reassign(
            services.store, services.directory, services.keys.signing(), approval_id, change(ALICE, CAROL)
        )
    assert settled.value.reason == "SETTLED"

    _, approval_id = waiting(stack, "Expired", [ALICE], timeout_seconds=60)
    late = change(ALICE, CAROL).model_copy(update={"at": utcnow() + timedelta(seconds=61)})
    with pytest.raises(reassign.ReassignError, match="the request has expired") as expired:
        reassign.reassign(services.store, services.directory, services.keys.signing(), approval_id, late)
    assert expired.value.reason == "EXPIRED"
    assert stack.approval(approval_id).reassigned == []


def test_the_same_change_again_sends_the_link_again_and_records_once(stack: Stack) -> None:
    stack.add_approvers([CAROL])
    _, approval_id = waiting(stack, "Again", [ALICE])
    hand_over(stack, approval_id, ALICE, CAROL)
    hand_over(stack, approval_id, ALICE, CAROL)  # say its email had failed
    assert [e.to for e in stack.emails() if "Again" in e.subject] == [ALICE, CAROL, CAROL]
    assert len(stack.approval(approval_id).reassigned) == 1


def test_a_place_handed_on_twice_follows_each_change(stack: Stack) -> None:
    stack.add_approvers([CAROL, "dave@example.com"])
    arn, approval_id = waiting(stack, "Twice", [ALICE])
    hand_over(stack, approval_id, ALICE, CAROL)
    hand_over(stack, approval_id, CAROL, "dave@example.com")
    assert stack.get(stack.email(CAROL, "Twice").links[0]).status == 410
    assert stack.click(stack.email("dave@example.com", "Twice").links[0], "approve").status == 200
    output = stack.finish(arn).output
    assert [(r["from"], r["to"]) for r in output["reassigned"]] == [
        (ALICE, CAROL),
        (CAROL, "dave@example.com"),
    ]
    assert stack.approval(approval_id).originally_asked() == [ALICE]
