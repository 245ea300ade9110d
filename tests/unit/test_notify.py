"""Approval emails: plain text, one per approver, each with the approver's own link."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from approvals.links import KeyRing, SigningKey, approval_id_for, verify
from approvals.models import Approval, Policy
from approvals.notify import PUBLISH_BATCH_BYTES, SUBJECT_LIMIT, Email, approval_email, batches, emails_for
from tests.unit.samples import TOKEN, sample_approval

KEY = SigningKey(b"unit-test-signing-key-of-32-bytes")
API_URL = "https://api.example.test/prod"
CREATED = datetime(2030, 3, 4, 5, 6, 7, tzinfo=UTC)


def approval(**request: Any) -> Approval:
    return sample_approval(CREATED, timedelta(hours=2), request)


def link_fields(link: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(link)
    return parts.path.rsplit("/", 1)[-1], dict(parse_qsl(parts.query))


def test_one_email_per_approver_each_with_their_own_link() -> None:
    emails = emails_for(approval(), API_URL, KEY)
    assert [e.to for e in emails] == ["alice@example.com", "bob@example.com"]
    for email in emails:
        links = [line for line in email.body.splitlines() if line.startswith("https://")]
        assert len(links) == 1
        approval_id, fields = link_fields(links[0])
        claims = verify(KeyRing(KEY), approval_id, fields, CREATED)
        assert claims.approver == email.to
        assert claims.approval_id == approval_id_for(TOKEN)
        assert claims.expires == int((CREATED + timedelta(hours=2)).timestamp())
        assert links[0].startswith(f"{API_URL}/approvals/{approval_id}?")


def test_only_those_named_are_emailed() -> None:
    emails = emails_for(approval(), API_URL, KEY, to=["bob@example.com"])
    assert [e.to for e in emails] == ["bob@example.com"]


def test_subject_and_body_name_the_request_the_requester_and_the_deadline() -> None:
    email = emails_for(approval(), API_URL, KEY)[0]
    assert email.subject == "[Approval needed] Deploy checkout 2.4 (from ci@example.com)"
    lines = email.body.splitlines()
    assert lines[0] == "ci@example.com asks for your approval:"
    assert "  Deploy checkout 2.4" in lines
    assert "Faster checkout." in lines
    assert "New invoices page." in lines
    assert "Decide before 2030-03-04 07:06 UTC:" in lines
    assert "Also asked: bob@example.com (policy: first_response)." in lines
    assert "do not forward it" in email.body


def test_single_approver_is_not_told_about_others() -> None:
    email = emails_for(approval(approvers=["alice@example.com"], description=""), API_URL, KEY)[0]
    assert "Also asked" not in email.body
    assert "\n\n\n" not in email.body  # no empty description paragraph


def test_policy_is_named() -> None:
    email = emails_for(approval(policy=Policy.QUORUM, quorum=1), API_URL, KEY)[1]
    assert "Also asked: alice@example.com (policy: quorum)." in email.body


def test_plain_text_keeps_what_the_requester_wrote_verbatim() -> None:
    """Plain text is never interpreted as markup, so nothing is escaped or stripped."""
    markup = '<script>alert("x")</script> & <b>bold</b>'
    email = emails_for(approval(title=markup, description=markup, requester="<i>eve</i>"), API_URL, KEY)[0]
    assert markup in email.body
    assert "<i>eve</i> asks for your approval:" in email.body
    assert "&lt;" not in email.body
    assert "&amp;" not in email.body
    assert "<html" not in email.body.lower()
    assert "<a " not in email.body


def test_subject_is_one_line() -> None:
    email = approval_email(approval(title="Line one\nline\ttwo\r\nthree"), "alice@example.com", "https://x")
    assert email.subject == "[Approval needed] Line one line two three (from ci@example.com)"
    assert "\n" not in email.subject


@pytest.mark.parametrize("title_length", [60, 79, 80, 81, 200])
def test_subject_fits_the_limit(title_length: int) -> None:
    """SNS takes subjects "less than 100 characters long"."""
    email = approval_email(approval(title="x" * title_length), "alice@example.com", "https://x")
    assert len(email.subject) <= SUBJECT_LIMIT < 100
    full = f"[Approval needed] {'x' * title_length} (from ci@example.com)"
    if len(full) <= SUBJECT_LIMIT:
        assert email.subject == full
    else:
        assert email.subject.endswith("…")
        assert email.subject[:-1] == full[: SUBJECT_LIMIT - 1]


def test_no_token_in_any_email() -> None:
    for email in emails_for(approval(), API_URL, KEY):
        assert TOKEN not in email.subject
        assert TOKEN not in email.body


def test_batches_hold_at_most_ten_emails_and_256_kib() -> None:
    small = [Email(to=f"a{i}@example.com", subject="s", body="b") for i in range(23)]
    assert [len(batch) for batch in batches(small)] == [10, 10, 3]
    cjk = [Email(to=f"a{i}@example.com", subject="s", body="字" * 10_000) for i in range(10)]
    sizes = [sum(email.size for email in batch) for batch in batches(cjk)]
    assert [len(batch) for batch in batches(cjk)] == [8, 2]
    assert max(sizes) <= PUBLISH_BATCH_BYTES
    assert [email for batch in batches(cjk) for email in batch] == cjk  # in order, none lost


def test_the_email_names_the_workflow_and_step_that_ask() -> None:
    email = approval_email(approval(), "alice@example.com", f"{API_URL}/approvals/x")
    assert "Asked by the workflow approvals, at its step RequestApproval." in email.body
