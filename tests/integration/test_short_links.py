"""Short links against moto: what emails carry, the page and the vote through them, what the
table keeps, and the signed links still working beside them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from approvals import keys, runtime, shortlinks
from approvals.models import ApprovalRequest, Policy, timeline
from approvals.sweep import sweep
from tests.integration.conftest import API_URL, Stack, approval_id_of

ALICE, BOB = "alice@example.com", "bob@example.com"
DECISION_KEYS = ("status", "votes", "approvals", "rejections", "decided_at")


def started(stack: Stack, title: str, approvers: list[str] | None = None, **fields: Any) -> tuple[str, str]:
    """An execution waiting on ``title``, and the link emailed to the first approver."""
    approvers = approvers or [ALICE]
    arn = stack.start(ApprovalRequest(title=title, approvers=approvers, requester="ci@example.com", **fields))
    return arn, stack.email(approvers[0], title).links[0]


def test_the_email_carries_only_a_short_link_with_no_personal_data(stack: Stack) -> None:
    _, link = started(stack, "Short email")
    email = stack.email(ALICE, "Short email")
    assert email.links == [link]
    token = shortlinks.token_in(link)
    assert token is not None
    assert link == f"{API_URL}/a/{token}"
    assert len(token) == shortlinks.TOKEN_LENGTH
    assert not urlsplit(link).query
    assert "alice" not in link
    assert "sig=" not in email.body
    assert "approver=" not in email.body


def test_the_table_keeps_the_tokens_hash_bound_to_its_approver_never_the_token(stack: Stack) -> None:
    _, alice_link = started(stack, "Hashed", [ALICE, BOB], policy=Policy.ALL)
    bob_link = stack.email(BOB, "Hashed").links[0]
    item = stack.raw_item(approval_id_of(alice_link))
    assert item is not None
    tokens = [shortlinks.token_in(link) for link in (alice_link, bob_link)]
    assert not any(token and token in str(item) for token in tokens)
    assert stack.approval(approval_id_of(alice_link)).short_links == {
        shortlinks.token_hash(str(tokens[0])): ALICE,
        shortlinks.token_hash(str(tokens[1])): BOB,
    }


def test_view_and_vote_through_the_short_link(stack: Stack) -> None:
    arn, link = started(stack, "Short click")
    page = stack.get(link)
    assert page.status == 200
    assert f"you are <strong>{ALICE}</strong>" in page.body
    assert page.form_action == shortlinks.token_in(link)
    assert page.form_fields == {"approver": ALICE}, "no signature on the page either"
    answer = stack.submit(page, "approve", "ship it", accept_json=True)
    assert answer.status == 200
    assert answer.json()["recorded"]["approver"] == ALICE
    output = stack.finish(arn).output
    assert output["outcome"] == "approved"
    assert [(vote["approver"], vote["comment"]) for vote in output["votes"]] == [(ALICE, "ship it")]


def test_opening_the_short_link_only_notes_the_first_view(stack: Stack) -> None:
    arn, link = started(stack, "Short scan")
    approval_id = approval_id_of(link)
    before = stack.raw_item(approval_id)
    assert before is not None
    for _ in range(3):
        assert stack.get(link).status == 200
        assert stack.get(f"{link}?decision=approve&comment=drive-by").status == 200
    after = stack.raw_item(approval_id)
    assert after is not None
    assert {key: after.get(key) for key in DECISION_KEYS} == {key: before.get(key) for key in DECISION_KEYS}
    approval = stack.approval(approval_id)
    assert list(approval.viewed) == [ALICE]
    assert [event.actor for event in timeline(approval) if event.kind == "viewed"] == [ALICE]
    stack.assert_running(arn)


def test_each_approver_votes_through_their_own_short_link(stack: Stack) -> None:
    arn, alice_link = started(stack, "Two short", [ALICE, BOB], policy=Policy.ALL)
    bob_link = stack.email(BOB, "Two short").links[0]
    assert stack.click(alice_link, "approve").status == 200
    assert stack.click(bob_link, "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"


def test_a_second_vote_through_the_short_link_is_a_conflict(stack: Stack) -> None:
    arn, link = started(stack, "Short twice")
    page = stack.get(link)
    assert stack.submit(page, "approve").status == 200
    again = stack.submit(page, "reject", "changed my mind", accept_json=True)
    assert again.status == 409
    assert again.json()["message"] == "You have already decided on this request."
    assert stack.finish(arn).output["outcome"] == "approved"


def test_the_signed_link_of_the_same_approval_still_works(stack: Stack) -> None:
    """Links emailed before short links keep working until they expire."""
    arn, link = started(stack, "Both kinds", [ALICE, BOB], policy=Policy.ALL)
    signed = stack.signed_link(link, BOB)
    assert "sig=" in signed
    assert stack.click(link, "approve").status == 200
    assert stack.click(signed, "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"


def test_a_form_to_fix_is_shown_again_through_the_short_link(stack: Stack) -> None:
    _, link = started(stack, "Short fix")
    page = stack.get(link)
    again = stack.submit(page, "reject", "")  # a reason is required to reject
    assert again.status == 400
    assert "Say why you reject" in again.body
    assert again.form_action == shortlinks.token_in(link)
    assert again.form_fields == {"approver": ALICE}


def test_a_reminder_carries_the_same_short_link(stack: Stack) -> None:
    _, link = started(stack, "Short reminder", timeout_seconds=4 * 3600)
    approval = stack.approval(approval_id_of(link))
    assert (
        sweep(runtime.from_environment(), approval.created_at + timedelta(hours=2, seconds=1))["reminded"]
        == 1
    )
    reminder = next(e for e in stack.emails() if e.subject.startswith("[Reminder]"))
    assert reminder.links == [link]


def test_after_a_key_rotation_the_short_link_works_and_reminders_carry_a_signed_link(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rotation breaks no short link: the previous key still makes its token. A reminder
    cannot derive the old token under the new key, so it carries a signed link."""
    monkeypatch.setattr(keys, "MAX_AGE_SECONDS", 0.0)  # the sweep reads the new key at once
    arn, link = started(stack, "Rotated", [ALICE, BOB], policy=Policy.ALL, timeout_seconds=4 * 3600)
    services = runtime.from_environment()
    keys.rotate(boto3.client("secretsmanager", region_name="us-east-1"), stack.resources.signing_secret_arn)
    approval = stack.approval(approval_id_of(link))
    assert sweep(services, approval.created_at + timedelta(hours=2, seconds=1))["reminded"] == 2
    reminded = {e.to: e.links[0] for e in stack.emails() if e.subject.startswith("[Reminder]")}
    assert shortlinks.token_in(reminded[BOB]) is None
    assert "sig=" in reminded[BOB]
    assert stack.click(link, "approve").status == 200
    assert stack.click(reminded[BOB], "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"


def test_two_key_rotations_revoke_the_short_link_and_a_reminder_brings_one_that_works(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with signed links: the previous key still makes the link after one rotation; the
    second retires it, and the link is refused (page and vote) with nothing recorded. The
    request stays open: the next reminder carries a link under the new key."""
    monkeypatch.setattr(keys, "MAX_AGE_SECONDS", 0.0)  # every container reads the keys again at once
    arn, link = started(stack, "Revoked", timeout_seconds=4 * 3600)
    approval_id = approval_id_of(link)
    secretsmanager = boto3.client("secretsmanager", region_name="us-east-1")
    keys.rotate(secretsmanager, stack.resources.signing_secret_arn)
    assert stack.get(link).status == 200
    keys.rotate(secretsmanager, stack.resources.signing_secret_arn)
    before = stack.raw_item(approval_id)

    page = stack.get(link)
    assert page.status == 403
    assert "no longer works" in page.body
    assert "newest email" in page.body
    vote = stack.post_link(link, "approve")
    assert vote.status == 403
    assert "no longer works" in vote.body
    assert stack.post_link(link, "maybe").status == 403  # not even a form to fix
    assert stack.raw_item(approval_id) == before

    approval = stack.approval(approval_id)
    assert (
        sweep(runtime.from_environment(), approval.created_at + timedelta(hours=2, seconds=1))["reminded"]
        == 1
    )
    (reminder,) = (e for e in stack.emails() if e.subject.startswith("[Reminder]"))
    assert "sig=" in reminder.links[0]
    assert stack.click(reminder.links[0], "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"


def test_a_short_link_made_under_a_key_newer_than_the_apis_is_honoured(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker signs with a key the API's warm container has not read yet: the API reads
    the keys again rather than refusing the link."""
    monkeypatch.setattr(keys, "REFRESH_SECONDS", 0.0)  # the rotation happens within the test's second
    services = runtime.from_environment()
    services.keys.signing()  # the ring is read now, before the rotation
    keys.rotate(boto3.client("secretsmanager", region_name="us-east-1"), stack.resources.signing_secret_arn)
    new_key = keys.fetch(
        boto3.client("secretsmanager", region_name="us-east-1"), stack.resources.signing_secret_arn
    ).current
    monkeypatch.setattr(services.keys, "signing", lambda: new_key)  # the worker's cold container
    arn, link = started(stack, "Newer key")
    assert stack.click(link, "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"
