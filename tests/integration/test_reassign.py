"""Reassignment against moto: an operator hands an approver's place to someone else; the
new approver gets a link, the old link stops working, the decision records the change."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from approvals import cli, reassign, runtime, shortlinks
from approvals.links import LinkClaims, link_for
from approvals.models import ApprovalRequest, Escalation, Policy, Reassignment, Status, timeline, utcnow
from approvals.store import ReassignRefusal, ReassignRejected
from approvals.store.items import UnreadableItem, reassignment_item, write_id
from approvals.sweep import sweep
from tests.integration.conftest import API_URL, Stack, approval_id_of
from tests.integration.test_approvers_cli import deploy_outputs

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
        services.store,
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


LEAD, BOSS = "lead@example.com", "boss@example.com"
HOUR = 3600


def escalating(stack: Stack, title: str, **extra: object) -> tuple[str, str]:
    """Alice and Bob must both approve; the lead is asked after an hour, the boss after two."""
    stack.add_approvers([CAROL])
    return waiting(
        stack,
        title,
        [ALICE, BOB],
        policy=Policy.ALL,
        timeout_seconds=4 * HOUR,
        escalation=[
            Escalation(after_seconds=HOUR, approvers=[LEAD]),
            Escalation(after_seconds=2 * HOUR, approvers=[BOSS]),
        ],
        **extra,
    )


@pytest.mark.parametrize(("to", "joined"), [(LEAD, False), (BOSS, False), (LEAD, True)])
def test_a_backup_cannot_take_a_place_whether_or_not_their_step_has_come(
    stack: Stack, capsys: pytest.CaptureFixture[str], to: str, joined: bool
) -> None:
    _, approval_id = escalating(stack, f"Backup {to} {joined}")
    services = runtime.from_environment()
    if joined:
        assert sweep(services, stack.approval(approval_id).created_at + timedelta(seconds=HOUR))["escalated"]
    before = stack.raw_item(approval_id)

    with pytest.raises(reassign.ReassignError) as refused:
        reassign.reassign(
            services.store, services.directory, services.keys.signing(), approval_id, change(ALICE, to)
        )
    if joined:
        assert refused.value.reason == "ALREADY_ASKED"
        assert str(refused.value) == f"{to} is already an approver of this request"
    else:
        assert refused.value.reason == "BACKUP"
        step = 1 if to == LEAD else 2
        assert str(refused.value) == f"{to} is a backup of this request (escalation step {step})"
    # The store refuses it too, whoever calls it: the item must stay readable.
    with pytest.raises(ReassignRejected) as rejected:
        services.store.reassign(approval_id, change(ALICE, to))
    assert rejected.value.reason is (ReassignRefusal.ALREADY_ASKED if joined else ReassignRefusal.BACKUP)
    deploy_outputs(stack)
    command = ["reassign", approval_id, "--from", ALICE, "--to", to, "--operator", OPERATOR]
    assert cli.main([*command, "--stack-name", "Approvals", "--region", "us-east-1"]) == 2
    assert capsys.readouterr().err == f"approvals: {refused.value}\n"  # one line
    assert stack.raw_item(approval_id) == before
    stack.approval(approval_id)


def test_the_new_approver_is_emailed_after_an_escalation_and_the_request_settles(stack: Stack) -> None:
    title = "Reassigned after escalating"
    arn, approval_id = escalating(stack, title)
    created = stack.approval(approval_id).created_at
    assert sweep(runtime.from_environment(), created + timedelta(seconds=HOUR))["emailed"] == 1  # the lead

    hand_over(stack, approval_id, ALICE, CAROL)

    email = stack.email(CAROL, title)
    assert f"in place of {ALICE}" in email.body
    assert [e.to for e in stack.emails() if title in e.subject].count(
        LEAD
    ) == 1  # the lead is not emailed again
    for who in (CAROL, BOB, LEAD):  # policy all: everyone asked, the lead included
        link = stack.email(who, title).links[0]
        assert stack.click(link, "approve").status == 200
    output = stack.finish(arn).output
    assert output["outcome"] == "approved"
    assert [v["approver"] for v in output["votes"]] == [CAROL, BOB, LEAD]


def poison(stack: Stack, approval_id: str, backup: str) -> None:
    """The write a reassignment to a backup made before it was refused: the item no longer reads."""
    stack.dynamodb.update_item(
        TableName=stack.resources.table_name,
        Key={"approval_id": {"S": approval_id}},
        UpdateExpression="SET reassigned = :change",
        ExpressionAttributeValues={":change": {"L": [reassignment_item(change(ALICE, backup), write_id())]}},
    )


def test_an_unreadable_item_stops_neither_a_sweep_nor_a_listing_and_its_pages_say_so(
    stack: Stack, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_title = "Payroll for the Lisbon office"
    # The unreadable one expires first, so the sweep (in order of expiry) meets it first.
    _, bad_id = escalating(stack, secret_title, description="nobody may read this in a log")
    stack.add_approvers([LEAD])
    poison(stack, bad_id, LEAD)
    with pytest.raises(UnreadableItem):
        stack.approval(bad_id)
    _, good_id = waiting(stack, "Readable", [ALICE], timeout_seconds=5 * HOUR)
    caplog.set_level(logging.INFO, logger="approvals")
    caplog.clear()

    done = sweep(runtime.from_environment(), utcnow() + timedelta(seconds=5 * HOUR + 1))

    assert (done["unreadable"], done["expired"]) == (1, 1)
    assert stack.approval(good_id).status is Status.EXPIRED  # the item after it was still swept
    named = [r for r in caplog.records if getattr(r, "approval_id", None) == bad_id]
    assert {(r.name, r.levelno) for r in named} >= {("approvals.sweep", logging.ERROR)}
    logged = caplog.text + json.dumps([r.__dict__ for r in named], default=str)
    token = stack.raw_item(bad_id)["task_token"]["S"]  # type: ignore[index]
    for secret in (secret_title, "nobody may read", token):
        assert secret not in logged

    deploy_outputs(stack)
    assert cli.main(["list", "--stack-name", "Approvals", "--region", "us-east-1"]) == 0
    listed = capsys.readouterr().out
    assert f"{bad_id}  unreadable" in listed
    assert good_id in listed
    assert secret_title not in listed
    assert cli.main(["show", bad_id, "--stack-name", "Approvals", "--region", "us-east-1"]) == 2
    assert capsys.readouterr().err.startswith(f"approvals: approval {bad_id} cannot be read: request: ")

    link = stack.email(ALICE, secret_title).links[0]
    expires = int(stack.raw_item(bad_id)["expires_at"]["N"])  # type: ignore[index]
    signed = link_for(API_URL, stack.signing_key, LinkClaims(bad_id, BOB, expires))
    pages = (
        stack.get(link),
        stack.post_link(link, "approve"),
        stack.post_link(link, "maybe"),
        stack.get(signed),
    )
    for answer in pages:
        assert answer.status == 500
        assert "This request cannot be shown" in answer.body
        assert secret_title not in answer.body
