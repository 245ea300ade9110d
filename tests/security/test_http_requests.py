"""Hostile and malformed requests to the approval API, each with its exact answer (status,
page heading and message, and the same as JSON), and nothing changed: not the table, not
the mailbox, not the executions. Then what a requester or approver writes, `<script>` and
unicode in every field, shown as text."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest

from approval_api.pages import SECURITY_HEADERS
from approvals.links import LinkClaims, link_for
from approvals.models import ApprovalRequest, Policy
from tests.conftest import API_URL, ApiResponse, Stack, approval_id_of

ALICE, BOB = "alice@example.com", "bob@example.com"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
HOST = urlsplit(API_URL).netloc

NOT_FOUND, NO_APPROVAL, NOTHING_HERE = (
    "No such approval",
    "There is no approval at this address.",
    ("There is nothing at this address."),
)
INCOMPLETE = "This link or form is incomplete"
OPEN_AGAIN = "Open the link from your email again."
MISSING_FIELDS = f"the link is incomplete: it needs approver, expires and sig. {OPEN_AGAIN}"
NOT_A_TIME = f"the link's expiry is not a time. {OPEN_AGAIN}"
NOT_VALID = "This link is not valid"
ALTERED = f"The link was altered or was not issued for you. {OPEN_AGAIN}"
CROSS_SITE = "Decisions can only be sent from the approval page itself."
NOT_A_FORM = "Send the decision as a form (application/x-www-form-urlencoded)."
CLOSED = "This approval is closed"
EXPIRED_LINK = "This link has expired; the request can no longer be decided."
MISTYPED = "This link is incomplete or mistyped. Open the link from your email again, all of it."
COMPLETE_IT = "Please complete the form"


@dataclass(frozen=True)
class Site:
    """One request waiting on Alice and Bob (both must approve), one already approved."""

    pending: dict[str, str]  # approver: signed link (what emails carried before short links)
    settled: dict[str, str]
    short: dict[str, str]  # approver: the short link emailed, of the pending request
    short_settled: dict[str, str]
    executions: list[str]

    @property
    def alice(self) -> str:
        return self.pending[ALICE]

    @property
    def alice_short(self) -> str:
        return self.short[ALICE]


@pytest.fixture(scope="module")
def site(module_stack: Stack) -> Site:
    stack = module_stack
    pending_arn = stack.start(
        ApprovalRequest(
            title="Security table",
            approvers=[ALICE, BOB],
            policy=Policy.ALL,
            requester="ci@example.com",
            digest=False,  # each request's own email and link, read below
        )
    )
    settled_arn = stack.start(
        ApprovalRequest(
            title="Already settled", approvers=[ALICE, BOB], requester="ci@example.com", digest=False
        )
    )
    short = {who: stack.email(who, "Security table").links[0] for who in (ALICE, BOB)}
    short_settled = {who: stack.email(who, "Already settled").links[0] for who in (ALICE, BOB)}
    pending = {who: stack.signed_link(link, who) for who, link in short.items()}
    settled = {who: stack.signed_link(link, who) for who, link in short_settled.items()}
    assert stack.click(settled[ALICE], "approve").status == 200
    assert stack.finish(settled_arn).output["outcome"] == "approved"
    for link in (*pending.values(), *settled.values(), *short.values(), *short_settled.values()):
        assert stack.get(link).status == 200  # first views noted now: later ones change nothing
    return Site(pending, settled, short, short_settled, [pending_arn, settled_arn])


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    headers: Mapping[str, str | None] = field(default_factory=dict)  # None: left out
    body: str | bytes = ""


def fields_of(link: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(link).query))


def address(link: str) -> str:
    return link.split("?", 1)[0]


def with_query(link: str, **changes: str) -> str:
    return f"{address(link)}?{urlencode({**fields_of(link), **changes})}"


def get(url: str) -> Call:
    return Call("GET", url)


def post(
    link: str, extra: dict[str, str] | None = None, headers: Mapping[str, str | None] | None = None
) -> Call:
    """A form post of the link's signed fields and ``extra`` (a decision by default)."""
    form = {**fields_of(link), **(extra if extra is not None else {"decision": "approve"})}
    return Call("POST", address(link), {**FORM, **(headers or {})}, urlencode(form))


def post_short(
    link: str, extra: dict[str, str] | None = None, headers: Mapping[str, str | None] | None = None
) -> Call:
    """A form post to a short link, as its page sends it for Alice, with ``extra``."""
    form = {"approver": ALICE, **(extra if extra is not None else {"decision": "approve"})}
    return Call("POST", link, {**FORM, **(headers or {})}, urlencode(form))


def spliced(site: Site) -> str:
    """The pending request's id with the secret half of another approval's short link."""
    return site.alice_short[:-21] + site.short_settled[ALICE][-21:]


def signed(approval_id: str, approver: str, expires: datetime) -> Callable[[Stack], str]:
    def build(stack: Stack) -> str:
        return link_for(
            API_URL, stack.signing_key, LinkClaims(approval_id, approver, int(expires.timestamp()))
        )

    return build


def posted_as(link: str, approver: str, decision: str) -> Callable[[Site, Stack], Call]:
    """A short link's form naming ``approver``, posted to Alice's link or to a made-up one."""

    def build(site: Site, _: Stack) -> Call:
        url = f"{API_URL}/a/{'B' * 43}" if link == "made-up" else site.alice_short
        return post_short(url, {"approver": approver, "decision": decision})

    return build


@dataclass(frozen=True)
class Refusal:
    name: str
    build: Callable[[Site, Stack], Call]
    status: int
    title: str  # the page's heading (the request's own title for a form shown again)
    message: str
    json_title: str = ""  # the JSON "error", when the page heading is the request's title


def flip_last(signature: str) -> str:
    return signature[:-1] + ("A" if signature[-1] != "A" else "B")


SOON = datetime.now(UTC) + timedelta(hours=2)
PAST = datetime.now(UTC) - timedelta(minutes=5)

REFUSALS = [
    Refusal(
        "unknown approval id",
        lambda site, stack: get(signed("0" * 32, ALICE, SOON)(stack)),
        404,
        NOT_FOUND,
        NO_APPROVAL,
    ),
    Refusal(
        "unknown approval id, POST",
        lambda site, stack: post(signed("0" * 32, ALICE, SOON)(stack)),
        404,
        NOT_FOUND,
        NO_APPROVAL,
    ),
    Refusal(
        "malformed approval id",
        lambda site, stack: get(f"{API_URL}/approvals/not-an-id?{urlsplit(site.alice).query}"),
        404,
        NOT_FOUND,
        NO_APPROVAL,
    ),
    Refusal(
        "tampered signature",
        lambda site, stack: get(with_query(site.alice, sig=flip_last(fields_of(site.alice)["sig"]))),
        403,
        NOT_VALID,
        ALTERED,
    ),
    Refusal(
        "tampered signature, POST",
        lambda site, stack: post(with_query(site.alice, sig=flip_last(fields_of(site.alice)["sig"]))),
        403,
        NOT_VALID,
        ALTERED,
    ),
    Refusal(
        "truncated signature",
        lambda site, stack: get(with_query(site.alice, sig=fields_of(site.alice)["sig"][:20])),
        403,
        NOT_VALID,
        ALTERED,
    ),
    Refusal(
        "signature of another approval",
        lambda site, stack: get(f"{address(site.settled[BOB])}?{urlsplit(site.alice).query}"),
        403,
        NOT_VALID,
        ALTERED,
    ),
    Refusal(
        "signature of another approval, POST",
        lambda site, stack: post(f"{address(site.settled[BOB])}?{urlsplit(site.alice).query}"),
        403,
        NOT_VALID,
        ALTERED,
    ),
    Refusal(
        "expired link",
        lambda site, stack: get(signed(approval_id_of(site.alice), ALICE, PAST)(stack)),
        410,
        CLOSED,
        EXPIRED_LINK,
    ),
    Refusal(
        "expired link, POST",
        lambda site, stack: post(signed(approval_id_of(site.alice), ALICE, PAST)(stack)),
        410,
        CLOSED,
        EXPIRED_LINK,
    ),
    Refusal(
        "expiry moved later",
        lambda site, stack: get(with_query(site.alice, expires="9999999999")),
        403,
        NOT_VALID,
        ALTERED,
    ),
    Refusal(
        "wrong approver",
        lambda site, stack: get(with_query(site.alice, approver=BOB)),
        403,
        NOT_VALID,
        ALTERED,
    ),
    Refusal(
        "wrong approver, POST",
        lambda site, stack: post(with_query(site.alice, approver=BOB)),
        403,
        NOT_VALID,
        ALTERED,
    ),
    Refusal(
        "a look-alike approver (Cyrillic a)",
        lambda site, stack: get(with_query(site.alice, approver="\u0430lice@example.com")),
        403,
        NOT_VALID,
        ALTERED,
    ),
    Refusal(
        "approver given twice",
        lambda site, stack: get(f"{site.alice}&approver={quote(BOB)}"),
        403,
        NOT_VALID,
        ALTERED,
    ),
    Refusal(
        "replay after settlement",
        lambda site, stack: post(site.settled[ALICE]),
        409,
        "Already decided",
        "You have already decided on this request.",
    ),
    Refusal(
        "another approver after settlement",
        lambda site, stack: post(site.settled[BOB], {"decision": "reject", "comment": "no"}),
        409,
        "Already decided",
        "This request is already approved.",
    ),
    Refusal(
        "POST without the signed fields",
        lambda site, stack: Call("POST", address(site.alice), FORM, "decision=approve"),
        400,
        INCOMPLETE,
        MISSING_FIELDS,
    ),
    Refusal(
        "POST without the expiry",
        lambda site, stack: post(site.alice, {"expires": "", "decision": "approve"}),
        400,
        INCOMPLETE,
        MISSING_FIELDS,
    ),
    Refusal(
        "POST with an empty body",
        lambda site, stack: Call("POST", address(site.alice), FORM),
        400,
        INCOMPLETE,
        MISSING_FIELDS,
    ),
    Refusal(
        "POST with the signed fields in the query string only",
        lambda site, stack: Call("POST", site.alice, FORM, "decision=approve"),
        400,
        INCOMPLETE,
        MISSING_FIELDS,
    ),
    Refusal(
        "POST from a foreign origin",
        lambda site, stack: post(site.alice, headers={"Origin": "https://evil.example", "Host": HOST}),
        403,
        NOT_VALID,
        CROSS_SITE,
    ),
    Refusal(
        "POST from another site (Sec-Fetch-Site)",
        lambda site, stack: post(site.alice, headers={"Sec-Fetch-Site": "cross-site"}),
        403,
        NOT_VALID,
        CROSS_SITE,
    ),
    Refusal(
        "POST from a sibling site (same-site)",
        lambda site, stack: post(site.alice, headers={"Sec-Fetch-Site": "same-site"}),
        403,
        NOT_VALID,
        CROSS_SITE,
    ),
    Refusal(
        "POST with neither Origin nor Sec-Fetch-Site (not from a browser on the page)",
        lambda site, stack: post(site.alice, headers={"Origin": None}),
        403,
        NOT_VALID,
        CROSS_SITE,
    ),
    Refusal(
        "POST with Origin: null (what a no-referrer page or a sandboxed frame sends)",
        lambda site, stack: post(site.alice, headers={"Origin": "null"}),
        403,
        NOT_VALID,
        CROSS_SITE,
    ),
    Refusal(
        "POST from a host that only begins like the API's",
        lambda site, stack: post(site.alice, headers={"Origin": f"https://{HOST}.evil.example"}),
        403,
        NOT_VALID,
        CROSS_SITE,
    ),
    Refusal(
        "POST from a foreign origin without the signed fields",
        lambda site, stack: Call(
            "POST", address(site.alice), {**FORM, "Origin": "https://evil.example", "Host": HOST}
        ),
        403,
        NOT_VALID,
        CROSS_SITE,
    ),
    Refusal(
        "an oversized body (200 KB)",
        lambda site, stack: post(site.alice, {"decision": "approve", "padding": "x" * 200_000}),
        400,
        INCOMPLETE,
        "The form is too large.",
    ),
    Refusal(
        "a comment over 1,000 bytes",
        lambda site, stack: post(site.alice, {"decision": "approve", "comment": "x" * 2001}),
        400,
        "Security table",
        "The comment is too long: at most 1,000 bytes"
        " (1,000 Latin letters, about 330 Chinese or Japanese characters).",
        COMPLETE_IT,
    ),
    Refusal(
        "a JSON body",
        lambda site, stack: Call(
            "POST",
            address(site.alice),
            {"Content-Type": "application/json"},
            json.dumps({**fields_of(site.alice), "decision": "approve"}),
        ),
        400,
        INCOMPLETE,
        NOT_A_FORM,
    ),
    Refusal(
        "a JSON list",
        lambda site, stack: Call("POST", address(site.alice), {"Content-Type": "application/json"}, "[1, 2]"),
        400,
        INCOMPLETE,
        NOT_A_FORM,
    ),
    Refusal(
        "a multipart body without a boundary",
        lambda site, stack: Call("POST", address(site.alice), {"Content-Type": "multipart/form-data"}, "x"),
        400,
        INCOMPLETE,
        NOT_A_FORM,
    ),
    Refusal(
        "a multipart form with the signed fields",
        lambda site, stack: Call(
            "POST",
            address(site.alice),
            {"Content-Type": "multipart/form-data; boundary=b"},
            "".join(
                f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                for k, v in {**fields_of(site.alice), "decision": "approve"}.items()
            )
            + "--b--\r\n",
        ),
        400,
        INCOMPLETE,
        NOT_A_FORM,
    ),
    Refusal(
        "a text/plain body",
        lambda site, stack: Call("POST", address(site.alice), {"Content-Type": "text/plain"}, "approve"),
        400,
        INCOMPLETE,
        NOT_A_FORM,
    ),
    Refusal(
        "no content type",
        lambda site, stack: Call("POST", address(site.alice), {}, urlencode(fields_of(site.alice))),
        400,
        INCOMPLETE,
        NOT_A_FORM,
    ),
    Refusal(
        "invalid UTF-8 in the form",
        lambda site, stack: Call("POST", address(site.alice), FORM, b"decision=approve&comment=\xff\xfe"),
        400,
        INCOMPLETE,
        "The form is not valid UTF-8 text.",
    ),
    Refusal(
        "invalid UTF-8 escaped in the form",
        lambda site, stack: Call(
            "POST", address(site.alice), FORM, urlencode(fields_of(site.alice)) + "&comment=%ED%B2%80"
        ),
        400,
        INCOMPLETE,
        "The form is not valid UTF-8 text.",
    ),
    Refusal(
        "invalid UTF-8 escaped in the link",
        lambda site, stack: get(f"{site.alice}&approver=alice%ED%B2%80%40example.com"),
        403,
        NOT_VALID,
        ALTERED,
    ),
    Refusal(
        "a decision that is neither",
        lambda site, stack: post(site.alice, {"decision": "maybe"}),
        400,
        "Security table",
        "Choose Approve or Reject.",
        COMPLETE_IT,
    ),
    Refusal(
        "a rejection without a reason",
        lambda site, stack: post(site.alice, {"decision": "reject", "comment": "   "}),
        400,
        "Security table",
        "Say why you reject: a reason is required to reject.",
        COMPLETE_IT,
    ),
    Refusal(
        "expiry that is text",
        lambda site, stack: get(with_query(site.alice, expires="soon")),
        400,
        INCOMPLETE,
        NOT_A_TIME,
    ),
    Refusal(
        "expiry of 13 digits",
        lambda site, stack: get(with_query(site.alice, expires="1" * 13)),
        400,
        INCOMPLETE,
        NOT_A_TIME,
    ),
    Refusal(
        "expiry in other digits (²)",
        lambda site, stack: get(with_query(site.alice, expires="²")),
        400,
        INCOMPLETE,
        NOT_A_TIME,
    ),
    Refusal(
        "PUT",
        lambda site, stack: Call("PUT", site.alice, FORM, "decision=approve"),
        404,
        NOT_FOUND,
        NOTHING_HERE,
    ),
    Refusal("DELETE", lambda site, stack: Call("DELETE", site.alice), 404, NOT_FOUND, NOTHING_HERE),
    Refusal(
        "PATCH",
        lambda site, stack: Call("PATCH", site.alice, FORM, "decision=approve"),
        404,
        NOT_FOUND,
        NOTHING_HERE,
    ),
    Refusal(
        "path traversal (..)",
        lambda site, stack: get(
            f"{API_URL}/approvals/../approvals/{approval_id_of(site.alice)}?{urlsplit(site.alice).query}"
        ),
        404,
        NOT_FOUND,
        NOTHING_HERE,
    ),
    Refusal(
        "path traversal (encoded)",
        lambda site, stack: get(f"{API_URL}/approvals/..%2F..%2Fetc%2Fpasswd?{urlsplit(site.alice).query}"),
        404,
        NOT_FOUND,
        NO_APPROVAL,
    ),
    Refusal(
        "a path below an approval",
        lambda site, stack: get(f"{address(site.alice)}/votes?{urlsplit(site.alice).query}"),
        404,
        NOT_FOUND,
        NOTHING_HERE,
    ),
    Refusal(
        "a NUL in the path",
        lambda site, stack: get(
            f"{API_URL}/approvals/{approval_id_of(site.alice)}%00?{urlsplit(site.alice).query}"
        ),
        404,
        NOT_FOUND,
        NO_APPROVAL,
    ),
    Refusal(
        "a 10,000-character approval id",
        lambda site, stack: get(f"{API_URL}/approvals/{'a' * 10_000}?{urlsplit(site.alice).query}"),
        404,
        NOT_FOUND,
        NO_APPROVAL,
    ),
    Refusal(
        "header injection in the approver",
        lambda site, stack: get(with_query(site.alice, approver=f"{ALICE}\r\nSet-Cookie: session=stolen")),
        403,
        NOT_VALID,
        ALTERED,
    ),
    Refusal(
        "short link one character short",
        lambda site, stack: get(site.alice_short[:-1]),
        404,
        NOT_FOUND,
        MISTYPED,
    ),
    Refusal(
        "short link one character long",
        lambda site, stack: get(site.alice_short + "A"),
        404,
        NOT_FOUND,
        MISTYPED,
    ),
    Refusal(
        "short link with a character outside its alphabet",
        lambda site, stack: get(site.alice_short[:-1] + "~"),
        404,
        NOT_FOUND,
        MISTYPED,
    ),
    Refusal(
        "short link in standard base64 (+)",
        lambda site, stack: get(site.alice_short[:-1] + "%2B"),
        404,
        NOT_FOUND,
        MISTYPED,
    ),
    Refusal(
        "short link, malformed, POST",
        lambda site, stack: post_short(site.alice_short[:-1]),
        404,
        NOT_FOUND,
        MISTYPED,
    ),
    Refusal(
        "short link with a made-up secret",
        lambda site, stack: get(
            site.alice_short[:-6] + ("AAAAAA" if site.alice_short[-6:] != "AAAAAA" else "BBBBBB")
        ),
        404,
        NOT_FOUND,
        NO_APPROVAL,
    ),
    Refusal(
        "short link with the secret of another approval's link",
        lambda site, stack: get(spliced(site)),
        404,
        NOT_FOUND,
        NO_APPROVAL,
    ),
    Refusal(
        "short link with the secret of another approval's link, POST",
        lambda site, stack: post_short(spliced(site)),
        404,
        NOT_FOUND,
        NO_APPROVAL,
    ),
    Refusal(
        "short link with the secret of another approval's link, a form to fix",
        lambda site, stack: post_short(spliced(site), {"decision": "maybe"}),
        404,
        NOT_FOUND,
        NO_APPROVAL,
    ),
    Refusal(
        "short link of an unknown approval",
        lambda site, stack: get(f"{API_URL}/a/{'A' * 22}{site.alice_short[-21:]}"),
        404,
        NOT_FOUND,
        NO_APPROVAL,
    ),
    Refusal(
        "short link POST naming another approver",
        lambda site, stack: post_short(site.alice_short, {"approver": BOB, "decision": "approve"}),
        403,
        NOT_VALID,
        "The form was altered: this link was issued to another approver.",
    ),
    Refusal(
        "short link POST naming another approver, a form to fix",
        lambda site, stack: post_short(site.alice_short, {"approver": BOB, "decision": "maybe"}),
        404,
        NOT_FOUND,
        NO_APPROVAL,
    ),
    Refusal(
        "short link POST without the approver",
        lambda site, stack: Call("POST", site.alice_short, FORM, "decision=approve"),
        400,
        INCOMPLETE,
        "The link or form is incomplete.",
    ),
    Refusal(
        "short link POST with an empty approver",
        lambda site, stack: post_short(site.alice_short, {"approver": "", "decision": "approve"}),
        400,
        INCOMPLETE,
        "The form is incomplete. Open the link from your email again.",
    ),
    *(
        Refusal(
            f"{link} short link POST with an approver that is no address: {approver!r}",
            posted_as(link, approver, decision),
            400,
            INCOMPLETE,
            "The form is incomplete. Open the link from your email again.",
        )
        for link, approver, decision in [
            ("made-up", "not-an-email", "approve"),
            ("made-up", "a\x00@example.com", "approve"),
            ("made-up", "a" * 300 + "@example.com", "reject"),
            ("real", "not-an-email", "approve"),
            ("real", "not-an-email", "maybe"),  # a form to fix, for nobody
        ]
    ),
    Refusal(
        "short link POST with the signed fields of the same approver",
        lambda site, stack: Call(
            "POST",
            site.alice_short,
            FORM,
            urlencode({**fields_of(site.alice), "approver": "", "decision": "approve"}),
        ),
        400,
        INCOMPLETE,
        "The form is incomplete. Open the link from your email again.",
    ),
    Refusal(
        "short link POST from a foreign origin",
        lambda site, stack: post_short(
            site.alice_short, headers={"Origin": "https://evil.example", "Host": HOST}
        ),
        403,
        NOT_VALID,
        CROSS_SITE,
    ),
    Refusal(
        "short link POST from another site (Sec-Fetch-Site)",
        lambda site, stack: post_short(site.alice_short, headers={"Sec-Fetch-Site": "cross-site"}),
        403,
        NOT_VALID,
        CROSS_SITE,
    ),
    Refusal(
        "short link POST as JSON",
        lambda site, stack: Call(
            "POST", site.alice_short, {"Content-Type": "application/json"}, json.dumps({"approver": ALICE})
        ),
        400,
        INCOMPLETE,
        NOT_A_FORM,
    ),
    Refusal(
        "short link replay after settlement",
        lambda site, stack: post_short(site.short_settled[ALICE]),
        409,
        "Already decided",
        "You have already decided on this request.",
    ),
    Refusal(
        "short link of another approver after settlement",
        lambda site, stack: Call(
            "POST",
            site.short_settled[BOB],
            FORM,
            urlencode({"approver": BOB, "decision": "reject", "comment": "no"}),
        ),
        409,
        "Already decided",
        "This request is already approved.",
    ),
    Refusal(
        "a path below a short link",
        lambda site, stack: get(f"{site.alice_short}/votes"),
        404,
        NOT_FOUND,
        NOTHING_HERE,
    ),
    Refusal(
        "header injection in the Origin",
        lambda site, stack: post(
            site.alice, headers={"Origin": "https://evil.example\r\nSet-Cookie: a=b", "Host": HOST}
        ),
        403,
        NOT_VALID,
        CROSS_SITE,
    ),
]


class _Reader(HTMLParser):
    """The heading and the notice of a page, as a person reads them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.heading = self.notice = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "h1":
            self._in = "heading"
        elif tag == "p" and "notice" in classes:
            self._in = "notice"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "p"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            setattr(self, self._in, getattr(self, self._in) + data)


def read(response: ApiResponse) -> tuple[str, str]:
    reader = _Reader()
    reader.feed(response.body)
    return reader.heading, reader.notice


def snapshot(stack: Stack, site: Site) -> tuple[Any, ...]:
    table = sorted(
        json.dumps(item, sort_keys=True)
        for item in stack.dynamodb.scan(TableName=stack.resources.table_name)["Items"]
    )
    return table, len(stack.emails()), [stack.status(arn) for arn in site.executions]


def send(stack: Stack, call: Call, accept: str) -> ApiResponse:
    return stack.call(call.method, call.url, {**call.headers, "Accept": accept}, call.body)


@pytest.fixture
def unchanged(module_stack: Stack, site: Site) -> Iterator[None]:
    before = snapshot(module_stack, site)
    yield
    assert snapshot(module_stack, site) == before, "a refused request changed something"


@pytest.mark.parametrize("case", REFUSALS, ids=lambda case: case.name)
@pytest.mark.usefixtures("unchanged")
@pytest.mark.filterwarnings("ignore:Received multipart/form-data without base64:UserWarning")
def test_a_hostile_request_gets_its_exact_answer_and_changes_nothing(
    module_stack: Stack, site: Site, case: Refusal
) -> None:
    call = case.build(site, module_stack)
    page = send(module_stack, call, "text/html")
    assert page.status == case.status, page.body[-500:]
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert read(page) == (case.title, case.message)
    assert "Traceback" not in page.body
    if case.json_title:  # a fixable form: the page again, with what was typed
        assert page.buttons == ["approve", "reject"]
    else:
        assert page.form_action is None
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value
    assert "Set-Cookie" not in page.headers

    answer = send(module_stack, call, "application/json")
    assert answer.status == case.status
    assert answer.json() == {
        "error": case.json_title or case.title,
        "message": case.message,
        "status": case.status,
    }


def test_a_get_that_carries_a_decision_is_only_a_view(module_stack: Stack, site: Site) -> None:
    before = snapshot(module_stack, site)
    page = module_stack.get(with_query(site.alice, decision="approve", comment="drive-by"))
    assert page.status == 200
    assert read(page)[0] == "Security table"
    assert page.buttons == ["approve", "reject"]
    assert snapshot(module_stack, site) == before


SCRIPT = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"


def test_script_in_every_text_field_is_shown_as_text(module_stack: Stack) -> None:
    stack = module_stack
    arn = stack.start(
        ApprovalRequest(
            title=f"T {SCRIPT}",
            description=f"D {SCRIPT}",
            approvers=[ALICE, BOB],
            requester=f"R {SCRIPT}",
            details={f"K {SCRIPT}": f"V {SCRIPT}", "nested": {"list": [SCRIPT]}},
            policy=Policy.ALL,
        )
    )
    alice, bob = (stack.email(who, "T <script>").links[0] for who in (ALICE, BOB))
    email = stack.email(ALICE, "T <script>")
    assert SCRIPT in email.body  # plain text: nothing there is markup
    page = stack.get(alice)
    confirmation = stack.click(alice, "approve", f"C {SCRIPT}")
    bobs_page = stack.get(bob)  # shows Alice's comment
    for response in (page, confirmation, bobs_page):
        assert response.status == 200
        assert "<script" not in response.body
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    # Shown as text: the title (twice: <title> and <h1>), requester, description, detail
    # name and value; and the nested detail, as JSON text.
    assert page.body.count(ESCAPED) == 6
    assert unescape(page.body).count(SCRIPT) == 6
    assert '{"list": ["<script>alert(\\"x\\")</script>"]}' in unescape(page.body)
    assert confirmation.body.count(ESCAPED) == 3  # title, requester, comment
    assert f"C {ESCAPED}" in bobs_page.body
    # The JSON answer carries the comment as a JSON string, not as a page.
    done = stack.click(bob, "approve", f"C2 {SCRIPT}", accept_json=True)
    assert done.headers["Content-Type"] == "application/json"
    assert done.json()["recorded"]["comment"] == f"C2 {SCRIPT}"
    output = stack.finish(arn).output
    assert [v["comment"] for v in output["votes"]] == [f"C {SCRIPT}", f"C2 {SCRIPT}"]


UNICODE: dict[str, Any] = {
    "title": "Déploiement 🚀 — 日本語 Ωmega",
    "description": "עברית · العربية · Ελληνικά\nline two\twith a tab · \u202eRTL override",
    "requester": "Zoë Ångström",
    "details": {"clé": "valeur 值", "emoji 🙂": ["√", "∞"]},
    "comment": "✓ d’accord — 好的",
}


def test_unicode_in_every_field_is_kept_and_shown(module_stack: Stack) -> None:
    stack = module_stack
    arn = stack.start(
        ApprovalRequest(
            title=UNICODE["title"],
            description=UNICODE["description"],
            approvers=[ALICE],
            requester=UNICODE["requester"],
            details=UNICODE["details"],
        )
    )
    email = stack.email(ALICE, UNICODE["title"])
    assert email.subject == f"[Approval needed] {UNICODE['title']} (from {UNICODE['requester']})"
    assert UNICODE["description"] in email.body
    page = stack.get(email.links[0])
    assert page.status == 200
    shown = unescape(page.body)
    for text in (
        UNICODE["title"],
        UNICODE["requester"],
        UNICODE["description"],
        "clé",
        "valeur 值",
        "emoji 🙂",
    ):
        assert text in shown
    assert '["√", "∞"]' in shown
    done = stack.click(email.links[0], "approve", UNICODE["comment"], accept_json=True)
    assert done.status == 200
    assert done.json()["recorded"]["comment"] == UNICODE["comment"]
    assert UNICODE["comment"] in unescape(stack.get(email.links[0]).body)
    assert stack.finish(arn).output["votes"][0]["comment"] == UNICODE["comment"]


def test_a_short_link_of_an_expired_approval_is_gone_and_changes_nothing(module_stack: Stack) -> None:
    stack = module_stack
    stack.start(ApprovalRequest(title="Expired short", approvers=[ALICE], requester="ci@example.com"))
    link = stack.email(ALICE, "Expired short").links[0]
    approval_id = approval_id_of(link)
    past = int((datetime.now(UTC) - timedelta(seconds=1)).timestamp())
    stack.dynamodb.update_item(  # its time has run out, as it would have a day later
        TableName=stack.resources.table_name,
        Key={"approval_id": {"S": approval_id}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(past)}},
    )
    before = stack.raw_item(approval_id)
    page = stack.get(link)
    assert page.status == 410
    assert read(page) == (CLOSED, EXPIRED_LINK)
    assert stack.get(link, accept_json=True).json() == {
        "error": CLOSED,
        "message": EXPIRED_LINK,
        "status": 410,
    }
    vote = stack.post_link(link, "approve", accept_json=True)
    assert vote.json() == {
        "error": CLOSED,
        "message": "This request expired before it was decided.",
        "status": 410,
    }
    assert stack.raw_item(approval_id) == before
