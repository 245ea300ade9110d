"""The emails say when the link will ask the approver to sign in: no surprise on a phone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from approvals.models import Approval
from approvals.notify import approval_email, digest_email, reminder_email
from approvals.settings import Settings
from tests.unit.samples import sample_approval

ALICE = "alice@example.com"
CREATED = datetime(2030, 3, 4, 5, 6, 7, tzinfo=UTC)
LINK = "https://api.example.test/prod/i/x"


def asked(number: int, identity: str = "link") -> Approval:
    return sample_approval(
        CREATED,
        timedelta(hours=2 + number),
        {"title": f"Grant {number}", "identity": identity},
        approval_id=f"{number:032x}",
    )


def test_a_digest_says_how_many_of_its_requests_ask_to_sign_in() -> None:
    mixed = [asked(1, "sign-in"), asked(2), asked(3, "sign-in"), asked(4, "sign-in")]
    body = digest_email(ALICE, mixed, LINK).body
    assert "3 of these ask you to sign in with your company account" in body
    every = digest_email(ALICE, [asked(1, "sign-in"), asked(2, "sign-in")], LINK, reminder=True).body
    assert "Each asks you to sign in with your company account" in every


def test_a_digest_with_none_to_sign_in_for_says_nothing_of_it() -> None:
    assert "sign in" not in digest_email(ALICE, [asked(1), asked(2)], LINK).body


def test_a_request_s_own_email_says_the_link_asks_to_sign_in() -> None:
    for email in (approval_email, reminder_email):
        assert "asks you to sign in with your company account" in email(asked(1, "sign-in"), ALICE, LINK).body
        assert "sign in" not in email(asked(1), ALICE, LINK).body


def test_where_the_deployment_asks_sign_in_of_every_request_the_emails_say_so() -> None:
    everywhere = Settings(table_name="t", signing_secret_id="s", identity="sign-in").needs_sign_in
    body = digest_email(ALICE, [asked(1), asked(2)], LINK, needs_sign_in=everywhere).body
    assert "Each asks you to sign in with your company account" in body
    own = approval_email(asked(1), ALICE, LINK, needs_sign_in=everywhere).body
    assert "asks you to sign in with your company account" in own
