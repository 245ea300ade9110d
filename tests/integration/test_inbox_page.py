"""The batch page, ``GET /i/<token>``, through the approval API handler against moto: the
approver's requests newest first, in pages, filtered by workflow, with each one's own form
and the bulk form's fields; every bad link answered with its page, never a 500; and a GET
that writes nothing."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import boto3
import pytest

from approvals import inboxlinks, keys, runtime
from approvals.answers import FORM_PREFIX
from approvals.models import FieldSpec, FieldType, utcnow
from approvals.store import ApprovalStore
from tests.integration.conftest import API_URL, Stack
from tests.integration.test_inbox import ALICE, BOB, stored, table_items


def inbox_link(stack: Stack, approver: str = ALICE, hours: float = 24) -> str:
    return inboxlinks.inbox_link(API_URL, stack.signing_key, approver, utcnow() + timedelta(hours=hours))


@dataclass
class Form:
    action: str
    method: str
    id: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)  # hidden inputs, in order
    inputs: list[str] = field(default_factory=list)  # the names of what the approver fills in
    buttons: list[str] = field(default_factory=list)


class PageReader(HTMLParser):
    """The batch page's forms, each with the controls that belong to it (inside it, or
    naming it by their ``form`` attribute), its links, and the ticked boxes."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.by_id: dict[str, Form] = {}
        self.links: list[str] = []
        self.ticked: list[str] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            # A form named by controls before it was met already holds them.
            self._open = self.by_id.get(values.get("id", "")) or Form("", "", values.get("id", ""))
            self._open.action, self._open.method = values.get("action", ""), values.get("method", "get")
            self.forms.append(self._open)
            if self._open.id:
                self.by_id[self._open.id] = self._open
        elif tag == "a":
            self.links.append(values.get("href", ""))
        elif tag in ("input", "textarea", "select", "button"):
            owner = self.by_id.get(values["form"]) if "form" in values else self._open
            if owner is None:  # a control naming a form further down
                owner = self.by_id.setdefault(values["form"], Form("", "", values["form"]))
            if tag == "button":
                owner.buttons.append(values.get("value", ""))
            elif values.get("type") == "hidden":
                owner.fields.append((values["name"], values.get("value", "")))
            else:
                owner.inputs.append(values.get("name", ""))
                if "checked" in values:
                    self.ticked.append(values.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None

    def form(self, form_id: str) -> Form:
        return self.by_id[form_id]


def read(body: str) -> PageReader:
    reader = PageReader()
    reader.feed(body)
    return reader


def fan_out(
    store: ApprovalStore, count: int, workflow_of: Any = lambda i: "refunds", **extra: Any
) -> list[str]:
    """``count`` requests to Alice, one a second; their ids, newest first."""
    start = utcnow() - timedelta(hours=1)
    made = [
        stored(store, f"Refund {i}", start + timedelta(seconds=i), workflow=workflow_of(i), **extra)
        for i in range(count)
    ]
    return [a.approval_id for a in reversed(made)]


def test_the_json_answer_pages_through_every_request_newest_first(stack: Stack) -> None:
    store = runtime.from_environment().store
    ids = fan_out(store, 60, workflow_of=lambda i: "refunds" if i % 2 else "deploys")
    link = inbox_link(stack)

    first = stack.get(link, accept_json=True)
    assert first.status == 200
    body = first.json()
    assert (body["approver"], body["total"], body["workflows"]) == (ALICE, 60, ["deploys", "refunds"])
    assert [item["approval_id"] for item in body["items"]] == ids[:50]
    assert body["items"][0]["title"] == "Refund 59"
    assert body["items"][0]["workflow"] == "refunds"
    second = stack.get(f"{link}?cursor={body['next_cursor']}", accept_json=True).json()
    assert [item["approval_id"] for item in second["items"]] == ids[50:]
    assert second["next_cursor"] is None

    deploys = stack.get(f"{link}?workflow=deploys", accept_json=True).json()
    assert (deploys["workflow"], deploys["total"], len(deploys["items"])) == ("deploys", 30, 30)
    assert {item["workflow"] for item in deploys["items"]} == {"deploys"}


def test_the_page_has_each_request_s_form_and_one_bulk_form_posting_to_the_link(stack: Stack) -> None:
    store = runtime.from_environment().store
    spec = FieldSpec(name="ticket", label="Ticket", type=FieldType.TEXT, required=True)
    ids = fan_out(store, 3, fields=[spec], description="Refund <b>twice</b>")
    link = inbox_link(stack)
    token = urlsplit(link).path.rsplit("/", 1)[-1]

    page = stack.get(link)
    assert page.status == 200
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert page.headers["Cache-Control"] == "no-store"
    assert "Refund &lt;b&gt;twice&lt;/b&gt;" in page.body  # the requester's text, escaped
    reader = read(page.body)
    bulk = reader.form("bulk")
    assert (bulk.method, bulk.action) == ("post", token)
    assert urljoin(link, bulk.action) == link  # the same address: helper B's POST
    assert bulk.inputs.count("approval") == 3
    assert {"all", "comment"} <= set(bulk.inputs)
    assert bulk.buttons == ["approve", "reject"]
    assert reader.ticked == []
    singles = [form for form in reader.forms if form.id != "bulk" and form.method == "post"]
    assert [dict(form.fields)["approval"] for form in singles] == ids
    for form, approval_id in zip(singles, ids, strict=True):
        assert form.action == token
        assert dict(form.fields)["confirmed"] == "1"
        assert form.inputs == [f"{approval_id}.{FORM_PREFIX}ticket", "comment"]
        assert form.buttons == ["approve", "reject"]

    selected = read(stack.get(f"{link}?select=page").body)
    assert sorted(selected.ticked) == sorted(ids)


def test_paging_links_keep_the_filter_and_the_last_page_has_none_further(stack: Stack) -> None:
    store = runtime.from_environment().store
    fan_out(store, 55, workflow_of=lambda i: "refunds" if i < 52 else "deploys")
    link = inbox_link(stack)

    first = read(stack.get(f"{link}?workflow=refunds").body)
    (older,) = [href for href in first.links if "cursor=" in href]  # no other link has one yet
    assert parse_qs(urlsplit(older).query)["workflow"] == ["refunds"]
    last = stack.get(urljoin(link, older))
    assert last.status == 200
    last_page = read(last.body)
    assert "Older requests" not in last.body
    assert "Newest requests" in last.body
    assert last_page.form("bulk").fields == [("workflow", "refunds")]  # "all matching" stays filtered
    assert last_page.form("bulk").inputs.count("approval") == 2
    assert "Select all 52 matching in workflow refunds" in last.body


def test_nothing_waiting_says_so(stack: Stack) -> None:
    page = stack.get(inbox_link(stack, BOB))
    assert page.status == 200
    assert "Nothing waits on you" in page.body
    assert stack.get(inbox_link(stack, BOB), accept_json=True).json()["items"] == []


def test_a_request_to_decide_signed_in_is_listed_by_its_title_only(stack: Stack) -> None:
    store = runtime.from_environment().store
    stored(store, "Delete prod", utcnow(), description="the secret plan", identity="sign-in")
    page = stack.get(inbox_link(stack))
    assert "Delete prod" in page.body
    assert "the secret plan" not in page.body
    assert [form.id for form in read(page.body).forms if form.method == "post"] == ["bulk"]
    (item,) = stack.get(inbox_link(stack), accept_json=True).json()["items"]
    assert (item["sign_in"], item["description"]) == (True, "")


def _altered(link: str) -> str:
    token = link.rsplit("/", 1)[-1]
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[-1] ^= 1
    return link[: -len(token)] + base64.urlsafe_b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (lambda s: inbox_link(s)[:-1], 404, "incomplete or mistyped"),
        (lambda s: inbox_link(s) + "xyz", 404, "incomplete or mistyped"),
        (lambda s: _altered(inbox_link(s)), 403, "altered"),
        (lambda s: inbox_link(s, hours=-1), 410, "expired"),
        (lambda s: inbox_link(s) + "?cursor=nope", 400, "does not exist"),
    ],
    ids=["truncated", "too long", "altered", "expired", "bad cursor"],
)
def test_a_bad_link_gets_its_page_and_changes_nothing(
    stack: Stack, make: Any, status: int, words: str
) -> None:
    fan_out(runtime.from_environment().store, 2)
    before = table_items(stack)
    for accept_json in (False, True):
        answer = stack.get(make(stack), accept_json=accept_json)
        assert answer.status == status, answer.body
        assert words in (answer.json()["message"] if accept_json else answer.body)
    assert table_items(stack) == before


def test_a_get_writes_nothing(stack: Stack) -> None:
    fan_out(runtime.from_environment().store, 3)
    before = table_items(stack)
    assert stack.get(inbox_link(stack)).status == 200
    assert stack.get(inbox_link(stack), accept_json=True).status == 200
    assert table_items(stack) == before


def test_two_key_rotations_revoke_the_inbox_link(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "MAX_AGE_SECONDS", 0.0)  # every container reads the keys again at once
    link = inbox_link(stack)
    secretsmanager = boto3.client("secretsmanager", region_name="us-east-1")
    keys.rotate(secretsmanager, stack.resources.signing_secret_arn)
    assert stack.get(link).status == 200
    keys.rotate(secretsmanager, stack.resources.signing_secret_arn)
    refused = stack.get(link)
    assert refused.status == 403
    assert "newest email" in refused.body
    assert stack.get(inbox_link(stack)).status == 200  # a link under the new key
