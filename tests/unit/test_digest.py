"""One email per approver: a request's own email, or a digest of several with one inbox link."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from approvals import inboxlinks
from approvals.digest import compose
from approvals.links import KeyRing, SigningKey
from approvals.models import Approval
from approvals.notify import DIGEST_LISTED, digest_email
from tests.unit.samples import sample_approval

KEY = SigningKey(b"unit-test-signing-key-of-32-bytes")
API_URL = "https://api.example.test/prod"
CREATED = datetime(2030, 3, 4, 5, 6, 7, tzinfo=UTC)
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def numbered(number: int, approvers: list[str] | None = None, hours: int = 2) -> Approval:
    return sample_approval(
        CREATED,
        timedelta(hours=hours + number),
        {
            "title": f"Refund {number:02}",
            "approvers": approvers or [ALICE, BOB],
            "requester": f"r{number}@x.io",
        },
        approval_id=f"{number:032x}",
        task_token=f"secret-task-token-{number:02}",
    )


def test_a_single_request_gets_its_own_approval_email() -> None:
    email = compose(ALICE, [numbered(1)], API_URL, KEY)
    assert email.subject.startswith("[Approval needed] Refund 01")
    assert "/i/" not in email.body


def test_a_digest_says_how_many_wait_and_lists_the_first_with_their_details() -> None:
    approvals = [numbered(n) for n in range(12)]
    email = compose(ALICE, approvals, API_URL, KEY)
    assert email.to == ALICE
    assert email.subject == "[Approvals needed] 12 requests wait for your decision"
    listed = re.findall(r"^- (Refund \d\d)$", email.body, re.MULTILINE)
    assert listed == [f"Refund {n:02}" for n in range(DIGEST_LISTED)]  # soonest to expire first
    assert "from r0@x.io, workflow approvals, decide before 2030-03-04 07:06 UTC" in email.body
    assert "... and 2 more" in email.body


def test_a_digest_carries_one_inbox_link_bound_to_the_approver_until_the_latest_expiry() -> None:
    approvals = [numbered(n) for n in range(3)]
    email = compose(BOB, approvals, API_URL, KEY)
    [link] = re.findall(r"https://\S+", email.body)
    assert link.startswith(f"{API_URL}/i/")
    token = inboxlinks.verify(KeyRing(current=KEY), link.rsplit("/", 1)[-1], CREATED)
    assert token.approver_id == inboxlinks.approver_id(BOB)
    assert token.expires_at == max(a.expires_at for a in approvals)


def test_a_digest_never_names_another_approvers_request() -> None:
    mine, theirs = numbered(1, [ALICE]), numbered(2, [CAROL])
    with pytest.raises(ValueError, match=f"{2:032x}"):
        digest_email(ALICE, [mine, theirs], f"{API_URL}/i/x")
    with pytest.raises(ValueError, match="not asked"):
        compose(ALICE, [mine, theirs], API_URL, KEY)


def test_no_task_token_in_a_digest() -> None:
    approvals = [numbered(n) for n in range(DIGEST_LISTED + 2)]
    email = compose(ALICE, approvals, API_URL, KEY)
    for approval in approvals:
        assert approval.task_token not in email.body
        assert approval.task_token not in email.subject


def test_a_reminder_digest_says_so() -> None:
    email = digest_email(ALICE, [numbered(1), numbered(2)], f"{API_URL}/i/x", reminder=True)
    assert email.subject == "[Reminder] 2 requests wait for your decision"
    assert email.body.startswith("A reminder: 2 requests still wait for your decision.")
