"""POST /i/<token> against moto: an approver's inbox link decides many approvals at once,
through a confirmation step; the answer (a page, or JSON) gives each item's result. A
stranger's POST gets a 4xx and changes nothing."""

from __future__ import annotations

import base64
import html
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from approvals import bulk, inboxlinks, keys, runtime
from approvals.local.approver import form_headers
from approvals.models import ApprovalRequest, FieldSpec, FieldType, Status, utcnow
from approvals.sweep import sweep
from bench.calls import CallCounter
from tests.conftest import API_URL, ApiResponse, Stack, approval_id_of, eventually
from tests.reliability.faults import task_succeeded_events

ALICE, BOB = "alice@example.com", "bob@example.com"
TICKET = FieldSpec(name="ticket", label="Ticket", type=FieldType.TEXT, required=True)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


def ask(stack: Stack, title: str, approvers: list[str], **extra: Any) -> tuple[str, str]:
    arn = stack.start(ApprovalRequest(title=title, approvers=approvers, requester="ci@example.com", **extra))
    return arn, approval_id_of(stack.email(approvers[0], title).links[0])


def inbox(stack: Stack, approver: str = ALICE, days: int = 7) -> str:
    return inboxlinks.inbox_link(API_URL, stack.signing_key, approver, utcnow() + timedelta(days=days))


def post(
    stack: Stack, link: str, fields: list[tuple[str, str]], accept_json: bool = False, **headers: str | None
) -> ApiResponse:
    return stack.call("POST", link, {**form_headers(link, accept_json), **headers}, urlencode(fields))


def hidden(page: ApiResponse) -> list[tuple[str, str]]:
    """The hidden fields of the page's form, repeated ones too, as a browser posts them."""
    return [(html.unescape(name), html.unescape(value)) for name, value in HIDDEN.findall(page.body)]


def test_the_approver_confirms_then_each_item_is_decided_once(stack: Stack) -> None:
    asked = [ask(stack, f"Refund {n}", [ALICE]) for n in range(2)]
    fielded_arn, fielded = ask(stack, "Needs a ticket", [ALICE], fields=[TICKET])
    _, bobs = ask(stack, "Bob's own", [BOB])
    link = inbox(stack)
    ids = [approval_id for _, approval_id in asked] + [fielded, bobs]

    page = post(stack, link, [*(("approval", i) for i in ids), ("decision", "approve"), ("comment", "ok")])

    assert page.status == 200, page.body
    assert "Approve 4 requests?" in page.body
    assert "approvals-approval</strong> (3)" in page.body  # Bob's request is not named
    assert f'name="{fielded}.data.ticket"' in page.body
    assert "not asked of you" in page.body
    assert all(stack.approval(i).status is Status.PENDING for i in ids[:3])  # nothing recorded yet
    carried = hidden(page)
    assert [value for name, value in carried if name == "approval"] == ids
    assert ("confirmed", "1") in carried

    done = post(stack, link, [*carried, ("comment", "ok"), (f"{fielded}.data.ticket", "OPS-9")])

    assert done.status == 200, done.body
    assert done.body.count("<strong>settled</strong>") == 3
    assert done.body.count("<strong>not yours</strong>") == 1
    for arn in [*(arn for arn, _ in asked), fielded_arn]:
        assert stack.finish(arn).output["outcome"] == "approved"
        assert task_succeeded_events(stack.sfn, arn) == 1
    assert stack.approval(fielded).votes[ALICE].data == {"ticket": "OPS-9"}
    assert stack.approval(bobs).votes == {}

    again = post(stack, link, [*carried, ("comment", "ok")])  # a double submit
    assert again.status == 200
    assert again.body.count("<strong>already decided</strong>") == 3


def test_the_answers_are_json_too(stack: Stack) -> None:
    _, one = ask(stack, "JSON one", [ALICE])
    _, fielded = ask(stack, "JSON fielded", [ALICE], fields=[TICKET])
    link = inbox(stack)
    fields = [("approval", one), ("approval", fielded), ("decision", "approve")]

    planned = bulk.BulkPlan.model_validate(post(stack, link, fields, accept_json=True).json())
    assert (planned.count, planned.ready) == (2, 1)
    assert [spec.name for spec in planned.items[1].needs] == ["ticket"]

    answer = post(stack, link, [*fields, ("confirmed", "1")], accept_json=True)
    done = bulk.BulkResults.model_validate(answer.json())
    assert done.counts == {bulk.Result.SETTLED: 1, bulk.Result.NEEDS_ANSWERS: 1}
    assert [item.result for item in done.items] == [bulk.Result.SETTLED, bulk.Result.NEEDS_ANSWERS]


def test_a_rejection_without_the_reason_the_deployment_requires_is_refused_whole(stack: Stack) -> None:
    _, approval_id = ask(stack, "Reject", [ALICE])
    fields = [("approval", approval_id), ("decision", "reject"), ("confirmed", "1")]
    answer = post(stack, inbox(stack), fields)
    assert answer.status == 400
    assert "reason is required" in answer.body
    assert stack.approval(approval_id).votes == {}


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("forged", 403),
        ("another approver's id", 403),
        ("expired", 410),
        ("mistyped", 404),
        ("from another site", 403),
        ("no origin", 403),
        ("not a form", 400),
        ("too many items", 400),
        ("no decision", 400),
        ("no item", 400),
        ("too large", 400),
    ],
)
def test_a_strangers_post_is_refused_and_changes_nothing(stack: Stack, case: str, status: int) -> None:
    _, approval_id = ask(stack, f"Refused {case}", [ALICE])
    link = inbox(stack)
    token = link.rsplit("/", 1)[1]
    fields = [("approval", approval_id), ("decision", "approve"), ("confirmed", "1")]
    headers: dict[str, str | None] = {}
    body = urlencode(fields)
    match case:
        case "forged":
            link = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
        case "another approver's id":
            # Alice's secret part under Bob's id: the HMAC binds the id.
            named, secret = inboxlinks.parse(token)
            raw = bytes.fromhex(inboxlinks.approver_id(BOB)) + named.expires.to_bytes(4, "big") + secret
            link = f"{API_URL}/i/{base64.urlsafe_b64encode(raw).decode()}"
        case "expired":
            link = inboxlinks.inbox_link(API_URL, stack.signing_key, ALICE, utcnow() - timedelta(seconds=1))
        case "mistyped":
            link = link[:-1]
        case "from another site":
            headers = {"Origin": "https://evil.example"}
        case "no origin":
            headers = {"Origin": None}
        case "not a form":
            headers = {"Content-Type": "application/json"}
        case "too many items":
            body = urlencode([*fields, *(("approval", "0" * 32),) * bulk.MAX_VOTES])
        case "no decision":
            body = urlencode([("approval", approval_id), ("confirmed", "1")])
        case "no item":
            body = urlencode([("decision", "approve"), ("confirmed", "1")])
        case "too large":
            body = urlencode([*fields, ("comment", "x" * 70_000)])
    before = stack.raw_item(approval_id)

    answer = stack.call("POST", link, {**form_headers(link), **headers}, body)

    assert answer.status == status, answer.body
    assert answer.is_html
    assert stack.raw_item(approval_id) == before


def test_two_key_rotations_revoke_the_inbox_link(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "MAX_AGE_SECONDS", 0.0)  # every container reads the keys again at once
    _, approval_id = ask(stack, "Rotated", [ALICE])
    link = inbox(stack)
    secretsmanager = boto3.client("secretsmanager", region_name="us-east-1")
    fields = [("approval", approval_id), ("decision", "approve")]

    keys.rotate(secretsmanager, stack.resources.signing_secret_arn)
    assert post(stack, link, fields).status == 200
    keys.rotate(secretsmanager, stack.resources.signing_secret_arn)
    refused = post(stack, link, [*fields, ("confirmed", "1")])

    assert refused.status == 403
    assert "newest email" in refused.body
    assert stack.approval(approval_id).votes == {}


def test_all_matching_is_confirmed_once_then_decided_now_and_in_the_background(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past one POST's worth, the confirmed POST decides the first ones and the sweep the
    rest: the results page has nothing more to send, and the inbox shows how far it got."""
    monkeypatch.setattr(bulk, "MAX_VOTES", 2)  # five requests: two now, three in the background
    asked = [ask(stack, f"All {n}", [ALICE]) for n in range(5)]
    link = inbox(stack)
    alice = inboxlinks.approver_id(ALICE)
    services = runtime.from_environment()
    store = services.store
    eventually(lambda: len(list(store.inbox_entries(alice))) == 5 or None, what="Alice's inbox")

    page = post(stack, link, [("all", "1"), ("decision", "approve"), ("comment", "all of them")])

    assert page.status == 200, page.body
    assert "Approve 5 requests?" in page.body
    assert "other 3 in the background" in page.body
    carried = hidden(page)
    assert ("all", "1") in carried
    assert any(name == "asof" for name, _ in carried)

    done = post(stack, link, [*carried, ("comment", "all of them")])
    assert done.status == 200, done.body
    assert done.body.count("<strong>settled</strong>") == 2
    assert "Approving 5 requests: 2 decided, 3 still going." in done.body
    assert hidden(done) == []  # nothing more to send
    _, later = ask(stack, "Arrived after the confirmation", [ALICE])
    eventually(lambda: len(list(store.inbox_entries(alice))) == 4 or None, what="the later entry")
    shown = stack.get(link, accept_json=True).json()["bulk_votes"]
    assert [(job["decided"], job["remaining"], job["counts"]) for job in shown] == [(2, 3, {"settled": 2})]
    assert "2 decided, 3 still going" in stack.get(link).body

    assert sweep(services, utcnow())["bulk voted"] == 3  # the schedule's next sweep

    for arn, approval_id in asked:
        assert stack.finish(arn).output["outcome"] == "approved"
        assert task_succeeded_events(stack.sfn, arn) == 1
        assert stack.approval(approval_id).votes[ALICE].comment == "all of them"
    assert stack.approval(later).votes == {}  # asked after the approver confirmed
    assert [entry.approval_id for entry in store.inbox_entries(alice)] == [later]
    (finished,) = stack.get(link, accept_json=True).json()["bulk_votes"]
    assert (finished["decided"], finished["remaining"], finished["counts"]) == (5, 0, {"settled": 5})
    assert finished["finished_at"] is not None
    assert "done, all 5 decided. 5 settled." in stack.get(link).body
    assert "bulk voted" not in sweep(services, utcnow())


def test_calls_for_a_bulk_vote(stack: Stack) -> None:
    """The confirmation reads the items in one BatchGetItem; the vote reads them again, then
    per item one conditional update and one SendTaskSuccess, the inbox entries leave in
    one BatchWriteItem (25 a call) and the deliveries are confirmed in one
    TransactWriteItems (100 a call, in place of each workflow's own write): about 2 calls
    an item, against a budget of 4."""
    services = runtime.from_environment()
    asked = [ask(stack, f"Budget {n}", [ALICE]) for n in range(3)]
    link = inbox(stack)
    fields = [*(("approval", approval_id) for _, approval_id in asked), ("decision", "approve")]
    counter = CallCounter(services.store._db, services.sns, services.sfn)

    assert post(stack, link, fields).status == 200
    assert counter.take() == {"BatchGetItem": 1}
    assert post(stack, link, [*fields, ("confirmed", "1")]).status == 200
    assert counter.take() == {
        "BatchGetItem": 1,
        "UpdateItem": 3,
        "SendTaskSuccess": 3,
        "BatchWriteItem": 1,
        "TransactWriteItems": 1,
    }
