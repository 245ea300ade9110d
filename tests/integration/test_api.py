"""The approval API against moto: what each kind of click gets, and what it leaves behind.

These go by signed links, which keep working beside the short links emails now carry
(tests/integration/test_short_links.py), with the same answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from approvals import runtime, sweep
from approvals.links import LinkClaims, link_for
from approvals.models import ApprovalRequest, Policy, utcnow
from tests.integration.conftest import API_URL, ApiResponse, Stack, approval_id_of

ALICE, BOB = "alice@example.com", "bob@example.com"
DECISION_KEYS = ("status", "votes", "approvals", "rejections", "decided_at")


def started(stack: Stack, title: str, approvers: list[str] | None = None, **fields: Any) -> tuple[str, str]:
    """An execution waiting on ``title``, and Alice's signed link."""
    arn = stack.start(
        ApprovalRequest(title=title, approvers=approvers or [ALICE], requester="ci@example.com", **fields)
    )
    return arn, stack.signed_link(stack.email(ALICE, title).links[0], ALICE)


def with_query(link: str, **changes: str) -> str:
    base, query = link.split("?", 1)
    return f"{base}?{urlencode({**dict(parse_qsl(query)), **changes})}"


def decision_state(stack: Stack, link: str) -> dict[str, Any]:
    item = stack.raw_item(approval_id_of(link))
    assert item is not None
    return {key: item.get(key) for key in DECISION_KEYS}


def assert_error(response: ApiResponse, status: int, *words: str) -> None:
    assert response.status == status, response.body[:500]
    assert response.is_html
    assert response.form_action is None
    for word in words:
        assert word in response.body
    assert "Traceback" not in response.body
    assert response.headers["X-Frame-Options"] == "DENY"


def test_get_never_changes_the_decision_state(stack: Stack) -> None:
    """Mail scanners open every link: opening one records a first view for the audit trail
    and nothing else."""
    arn, link = started(stack, "Scanned")
    before = decision_state(stack, link)
    for _ in range(3):
        assert stack.get(link).status == 200
        assert stack.get(link, accept_json=True).json() == {
            "approval_id": approval_id_of(link),
            "status": "pending",
        }
    # A GET that carries a decision is still only a view.
    assert stack.get(with_query(link, decision="approve", comment="drive-by")).status == 200
    assert decision_state(stack, link) == before
    approval = stack.approval(approval_id_of(link))
    assert list(approval.viewed) == [ALICE]
    stack.assert_running(arn)


def test_page_and_responses_carry_the_security_headers(stack: Stack) -> None:
    _, link = started(stack, "Headers")
    for response in (stack.get(link), stack.get(link, accept_json=True), stack.post_link(link, "approve")):
        headers = response.headers
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Cache-Control"] == "no-store"


def test_page_form_posts_the_signed_fields(stack: Stack) -> None:
    _, link = started(stack, "Form")
    page = stack.get(link)
    assert page.form_action == approval_id_of(link)
    assert page.form_fields == dict(parse_qsl(urlsplit(link).query))
    assert page.buttons == ["approve", "reject"]


def test_post_with_accept_json_answers_json(stack: Stack) -> None:
    arn, link = started(stack, "Json")
    response = stack.click(link, "approve", "fine by me", accept_json=True)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["approval_id"] == approval_id_of(link)
    assert body["status"] == "approved"
    assert body["delivery"] == "delivered"
    assert body["recorded"]["approver"] == ALICE
    assert body["recorded"]["outcome"] == "approved"
    assert body["recorded"]["comment"] == "fine by me"
    datetime.fromisoformat(body["recorded"]["at"])
    assert stack.finish(arn).output["outcome"] == "approved"

    again = stack.post_link(link, "approve", accept_json=True)
    assert again.status == 409
    assert again.json() == {
        "error": "Already decided",
        "message": "You have already decided on this request.",
        "status": 409,
    }


def test_double_click_is_a_conflict_and_counts_once(stack: Stack) -> None:
    arn, link = started(stack, "Double click", [ALICE, BOB], policy=Policy.ALL)
    page = stack.get(link)
    assert stack.submit(page, "approve").status == 200
    second = stack.submit(page, "approve")  # the same form, sent again
    assert_error(second, 409, "already decided")
    third = stack.submit(page, "reject", "changed my mind")
    assert_error(third, 409)
    approval = stack.approval(approval_id_of(link))
    assert [(v.approver, v.outcome.value) for v in approval.votes.values()] == [(ALICE, "approved")]
    assert approval.status.value == "pending"
    stack.assert_running(arn)


def test_double_click_after_settling_does_not_answer_twice(stack: Stack) -> None:
    arn, link = started(stack, "Settled twice")
    assert stack.post_link(link, "approve").status == 200
    assert_error(stack.post_link(link, "approve"), 409)
    report = stack.finish(arn)
    assert report.output["outcome"] == "approved"
    assert len(report.output["votes"]) == 1


FORGERIES: dict[str, tuple[dict[str, str], int]] = {
    "signature": ({"sig": "A" * 43}, 403),
    "truncated signature": ({"sig": "A" * 20}, 403),
    "no signature": ({"sig": ""}, 400),
    "other approver": ({"approver": BOB}, 403),
    "stranger": ({"approver": "mallory@example.com"}, 403),
    "later expiry": ({"expires": "9999999999"}, 403),
}


def test_forged_link_is_refused_and_changes_nothing(stack: Stack) -> None:
    arn, link = started(stack, "Forged", [ALICE, BOB])
    before = stack.raw_item(approval_id_of(link))
    for name, (change, status) in FORGERIES.items():
        forged = with_query(link, **change)
        for response in (stack.get(forged), stack.post_link(forged, "approve")):
            assert response.status == status, name
            assert_error(response, status)
    assert stack.raw_item(approval_id_of(link)) == before
    stack.assert_running(arn)


def test_link_for_another_approval_is_forbidden(stack: Stack) -> None:
    _, first = started(stack, "First")
    _, second = started(stack, "Second")
    swapped = f"{API_URL}/approvals/{approval_id_of(second)}?{urlsplit(first).query}"
    assert_error(stack.get(swapped), 403, "altered")
    assert_error(stack.post_link(swapped, "approve"), 403)
    assert stack.approval(approval_id_of(second)).votes == {}


def test_signed_link_for_someone_not_asked_is_forbidden(stack: Stack) -> None:
    """Only a key holder could make this link; even so it gives no vote."""
    _, link = started(stack, "Not asked")
    outsider = stack.signed_link(link, "mallory@example.com")  # validly signed, as a leaked key would allow
    assert_error(stack.get(outsider), 403, "not issued to an approver")


def test_a_vote_signed_for_someone_not_asked_is_refused_by_the_table(stack: Stack) -> None:
    """The vote's conditional update checks who may vote; a valid signature is not enough."""
    arn, link = started(stack, "Outsider vote")
    response = stack.post_link(stack.signed_link(link, "mallory@example.com"), "approve")
    assert_error(response, 403, "not issued to an approver")
    assert stack.approval(approval_id_of(link)).votes == {}
    stack.assert_running(arn)


def test_an_approval_stored_before_voters_were_kept_still_takes_its_approvers_votes(stack: Stack) -> None:
    """Approvals in flight across the upgrade have no ``voters``: their links still work."""
    arn, link = started(stack, "Stored before")
    stack.dynamodb.update_item(
        TableName=stack.resources.table_name,
        Key={"approval_id": {"S": approval_id_of(link)}},
        UpdateExpression="REMOVE voters",
    )
    assert stack.post_link(link, "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"


def test_an_approval_stored_under_the_older_character_caps_is_still_shown_and_decided(stack: Stack) -> None:
    """7,500 emoji were within the 10,000 characters allowed before the caps counted bytes
    (30,000 bytes now): an approval in flight across the upgrade must not become unreadable."""
    arn, link = started(stack, "Stored under older caps")
    key = {"approval_id": {"S": approval_id_of(link)}}
    item = stack.raw_item(approval_id_of(link))
    assert item is not None
    older = {**json.loads(item["request"]["S"]), "description": "😀" * 7_501}
    stack.dynamodb.update_item(
        TableName=stack.resources.table_name,
        Key=key,
        UpdateExpression="SET #request = :request",
        ExpressionAttributeNames={"#request": "request"},
        ExpressionAttributeValues={":request": {"S": json.dumps(older)}},
    )
    assert "😀" in stack.get(link).body
    assert +sweep.sweep(runtime.from_environment(), utcnow()) == {}  # reads it, nothing to do
    assert stack.post_link(link, "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"


def test_a_vote_signed_for_the_excluded_requester_is_refused_by_the_table(stack: Stack) -> None:
    arn = stack.start(ApprovalRequest(title="Self vote", approvers=[ALICE, BOB], requester=BOB))
    link = stack.email(ALICE, "Self vote").links[0]
    response = stack.post_link(stack.signed_link(link, BOB), "approve")
    assert_error(response, 403, "may not decide on their own request")
    assert stack.approval(approval_id_of(link)).votes == {}
    stack.assert_running(arn)


def test_expired_link_is_gone(stack: Stack) -> None:
    _, link = started(stack, "Old link")
    past = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp())
    expired = link_for(API_URL, stack.signing_key, LinkClaims(approval_id_of(link), ALICE, past))
    before = stack.raw_item(approval_id_of(link))
    assert_error(stack.get(expired), 410, "expired")
    assert_error(stack.post_link(expired, "approve"), 410, "expired")
    assert stack.post_link(expired, "approve", accept_json=True).json()["status"] == 410
    assert stack.raw_item(approval_id_of(link)) == before


def test_unknown_approval_is_not_found(stack: Stack) -> None:
    future = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    unknown = link_for(API_URL, stack.signing_key, LinkClaims("0" * 32, ALICE, future))
    assert_error(stack.get(unknown), 404)
    assert_error(stack.post_link(unknown, "approve"), 404)
    assert stack.approvals() == []


def test_malformed_approval_id_is_not_found(stack: Stack) -> None:
    for path in ("/approvals/not-an-id", "/approvals/" + "A" * 32, "/approvals/..%2F..%2Fetc"):
        response = stack.get(f"{API_URL}{path}?approver=a&expires=1&sig=x")
        assert response.status == 404, path
        assert_error(response, 404)


def test_unknown_route_is_not_found(stack: Stack) -> None:
    assert_error(stack.get(f"{API_URL}/admin"), 404)
    response = stack.call("DELETE", f"{API_URL}/approvals/{'0' * 32}")
    assert response.status in (404, 405)
    assert "Traceback" not in response.body


INCOMPLETE = [
    "",
    "approver=alice%40example.com",
    "approver=alice%40example.com&expires=1904000000",
    "expires=1904000000&sig=x",
    "approver=alice%40example.com&expires=soon&sig=x",
    "approver=alice%40example.com&expires=-1&sig=x",
    "approver=alice%40example.com&expires=%C2%B2&sig=x",  # "²": a digit to str.isdigit(), not to int()
    "approver=alice%40example.com&expires=12345678901234&sig=x",
]


def test_incomplete_link_is_a_bad_request(stack: Stack) -> None:
    bare = f"{API_URL}/approvals/{'0' * 32}"  # the link is refused before any lookup
    for query in INCOMPLETE:
        for response in (
            stack.get(f"{bare}?{query}" if query else bare),
            stack.post(bare, {**dict(parse_qsl(query)), "decision": "approve"}),
        ):
            assert response.status == 400, query
            assert_error(response, 400, "Open the link from your email again")


def test_post_must_be_a_form(stack: Stack) -> None:
    _, link = started(stack, "Not a form")
    fields = dict(parse_qsl(urlsplit(link).query)) | {"decision": "approve"}
    url = link.split("?", 1)[0]
    as_json = stack.call("POST", url, {"Content-Type": "application/json"}, str(fields))
    assert_error(as_json, 400, "form")
    oversized = stack.call(
        "POST",
        url,
        {"Content-Type": "application/x-www-form-urlencoded"},
        urlencode(fields) + "&x=" + "a" * 20_000,
    )
    assert_error(oversized, 400, "too large")
    assert stack.approval(approval_id_of(link)).votes == {}


def test_post_without_a_choice_shows_the_page_again(stack: Stack) -> None:
    _, link = started(stack, "No choice")
    fields = dict(parse_qsl(urlsplit(link).query)) | {"comment": "hmm"}
    response = stack.post(link, fields)
    assert response.status == 400
    assert "Choose Approve or Reject" in response.body
    assert response.buttons == ["approve", "reject"]  # the form is there to try again
    assert stack.approval(approval_id_of(link)).votes == {}


def test_reject_needs_a_reason(stack: Stack) -> None:
    arn, link = started(stack, "Reason please")
    refused = stack.click(link, "reject")
    assert refused.status == 400
    assert "reason" in refused.body
    assert stack.approval(approval_id_of(link)).votes == {}
    assert stack.click(link, "reject", "Because").status == 200
    assert stack.finish(arn).output["outcome"] == "rejected"


def test_post_from_another_site_is_forbidden(stack: Stack) -> None:
    _, link = started(stack, "Cross site")
    fields = dict(parse_qsl(urlsplit(link).query)) | {"decision": "approve"}
    response = stack.call(
        "POST",
        link.split("?", 1)[0],
        {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "cross-site"},
        urlencode(fields),
    )
    assert_error(response, 403)
    assert stack.approval(approval_id_of(link)).votes == {}


def test_comment_too_long_is_refused(stack: Stack) -> None:
    _, link = started(stack, "Long comment")
    response = stack.click(link, "approve", "x" * 1001)
    assert response.status == 400
    assert "too long" in response.body
    assert stack.approval(approval_id_of(link)).votes == {}


def test_comment_cap_counts_bytes(stack: Stack) -> None:
    """334 CJK characters are 1,002 bytes: over the cap, though far from 1,000 characters."""
    _, link = started(stack, "Long CJK comment")
    response = stack.click(link, "reject", "却" * 334)
    assert response.status == 400
    assert "at most 1,000 bytes" in response.body
    assert stack.approval(approval_id_of(link)).votes == {}
    assert stack.click(link, "reject", "却" * 333).status == 200


def test_settled_page_shows_the_outcome(stack: Stack) -> None:
    arn, link = started(stack, "Outcome shown")
    stack.click(link, "reject", "Not <b>now</b>")
    stack.finish(arn)
    page = stack.get(link)
    assert page.status == 200
    assert page.form_action is None
    assert page.buttons == []
    assert 'class="badge rejected"' in page.body
    assert "Not &lt;b&gt;now&lt;/b&gt;" in page.body
    assert stack.get(link, accept_json=True).json()["status"] == "rejected"


def test_requester_text_is_escaped_in_the_served_page(stack: Stack) -> None:
    script = "<script>alert(1)</script>"
    stack.start(
        ApprovalRequest(
            title=f"Title {script}",
            description=f"Description {script}",
            approvers=[ALICE],
            requester=f"req {script}",
            details={f"key {script}": f"value {script}"},
        )
    )
    link = stack.email(ALICE, "Title").links[0]
    for response in (stack.get(link), stack.click(link, "approve")):
        assert "<script" not in response.body
        assert "&lt;script&gt;" in response.body


def test_a_comment_with_control_characters_is_refused_and_the_form_shown_again(stack: Stack) -> None:
    stack.start(ApprovalRequest(title="Terminal tricks", approvers=[ALICE], requester="ci@example.com"))
    link = stack.email(ALICE, "Terminal tricks").links[0]
    refused = stack.post_link(link, "approve", "fine\x1b[2J\x07")
    assert refused.status == 400
    assert "control characters" in refused.body
    assert refused.form_action is not None  # the page again, with its form
    assert "\x1b" not in refused.body
    assert stack.approval(approval_id_of(link)).votes == {}
