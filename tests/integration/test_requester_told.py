"""The requester told, against moto: a requester in the approver directory gets one email
when the request ends (settled, expired), with the outcome, the votes, the comments and the
answers; anyone else gets none. The sweep takes the time, so no test waits for a clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from approvals import runtime
from approvals.models import ApprovalRequest, FieldSpec, FieldType, Policy, timeline
from approvals.store import TELL_ATTRIBUTE
from approvals.sweep import sweep
from tests.integration.conftest import Stack, approval_id_of

ALICE, BOB = "alice@example.com", "bob@example.com"
REQUESTER = "requester@example.com"
ENVIRONMENT = FieldSpec(name="environment", label="Environment", type=FieldType.TEXT, required=True)


def waiting(stack: Stack, title: str, requester: str = REQUESTER, **extra: Any) -> str:
    request = ApprovalRequest(title=title, approvers=[ALICE, BOB], requester=requester, **extra)
    stack.start(request)
    return approval_id_of(stack.email(ALICE, title).links[0])


def told(stack: Stack, title: str) -> list[str]:
    return [e.body for e in stack.emails() if e.to == REQUESTER and title in e.subject]


def test_the_requester_is_told_once_with_votes_comments_and_answers(stack: Stack) -> None:
    stack.add_approvers([REQUESTER])
    approval_id = waiting(stack, "Tell me", policy=Policy.ALL, fields=[ENVIRONMENT])
    services = runtime.from_environment()
    for who, comment in ((ALICE, "fine by me"), (BOB, "")):
        page = stack.get(stack.email(who, "Tell me").links[0])
        assert stack.submit(page, "approve", comment, answers={"environment": "production"}).status == 200
    assert told(stack, "Tell me") == []  # off the click path: the sweep tells

    now = stack.approval(approval_id).decided_at
    assert now is not None
    assert sweep(services, now)["requester told"] == 1
    assert sweep(services, now + timedelta(minutes=5))["requester told"] == 0
    (body,) = told(stack, "Tell me")
    assert body.startswith("Your request was approved:")
    assert f"- {ALICE} approved at" in body
    assert "“fine by me”" in body
    assert body.count("environment: production") == 2
    (email,) = [e for e in stack.emails() if e.to == REQUESTER]
    assert email.subject.startswith("[Approved] Tell me")
    assert [e.kind for e in timeline(stack.approval(approval_id))][-1] == "told"


def test_an_expired_request_is_told_as_expired(stack: Stack) -> None:
    stack.add_approvers([REQUESTER])
    waiting(stack, "Rejected at once", timeout_seconds=120)
    stack.click(stack.email(ALICE, "Rejected at once").links[0], "reject", "no")  # first_response: settles
    approval_id = waiting(stack, "Nobody came", timeout_seconds=120)
    expires_at = stack.approval(approval_id).expires_at
    services = runtime.from_environment()

    assert sweep(services, expires_at - timedelta(seconds=30))["requester told"] == 1  # the rejection
    assert told(stack, "Nobody came") == []  # still pending: not yet
    done = sweep(services, expires_at + timedelta(seconds=1))
    assert (done["expired"], done["requester told"]) == (1, 1)
    (body,) = told(stack, "Nobody came")
    assert body.startswith("Your request expired before it was settled:")
    assert "Nobody voted." in body
    (rejected,) = told(stack, "Rejected at once")
    assert rejected.startswith("Your request was rejected:")
    assert "“no”" in rejected


def test_a_requester_outside_the_directory_or_not_an_address_is_not_told(stack: Stack) -> None:
    services = runtime.from_environment()
    outside = waiting(stack, "Outside")  # REQUESTER was never added
    plain = waiting(stack, "Plain name", requester="nightly build")
    assert TELL_ATTRIBUTE not in (stack.raw_item(plain) or {})  # nothing to tell from the start
    for title in ("Outside", "Plain name"):
        stack.click(stack.email(ALICE, title).links[0], "approve")
    assert "requester told" not in sweep(services, stack.approval(outside).expires_at - timedelta(minutes=1))
    assert [e for e in stack.emails() if "[Approved]" in e.subject] == []
    assert TELL_ATTRIBUTE not in (stack.raw_item(outside) or {})  # looked up once, then left alone
