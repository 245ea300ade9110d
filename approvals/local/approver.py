"""An approver's clicks over HTTP, as a browser without JavaScript makes them: open the
link (GET), read the form, submit it (POST with the form's fields)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

from approvals.answers import as_form
from approvals.shortlinks import token_in
from approvals.signin import COOKIE


class FormReader(HTMLParser):
    """What a browser without JavaScript sees of the approval form."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.forms = 0
        self.fields: dict[str, str] = {}
        self.buttons: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms += 1
            self.action = values.get("action", "")
        elif tag == "input" and values.get("type") == "hidden":
            self.fields[values["name"]] = values.get("value", "")
        elif tag == "button" and values.get("name") == "decision":
            self.buttons.append(values.get("value", ""))


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    text: str
    url: str
    form_action: str | None = None
    form_fields: dict[str, str] = field(default_factory=dict)
    buttons: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.text)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the redirect is the answer (with its cookie), not followed


_NOT_FOLLOWING = urllib.request.build_opener(_NoRedirects)


def request(
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
    follow_redirects: bool = True,
) -> HttpResult:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)  # noqa: S310
    opener = urllib.request.urlopen if follow_redirects else _NOT_FOLLOWING.open
    try:
        with opener(req, timeout=30) as response:
            status, hdrs, body = response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        status, hdrs, body = error.code, dict(error.headers.items()), error.read()
    result = HttpResult(status, hdrs, body.decode("utf-8", "replace"), url)
    if hdrs.get("Content-Type", "").startswith("text/html"):
        reader = FormReader()
        reader.feed(result.text)
        result.form_action = reader.action
        result.form_fields = reader.fields
        result.buttons = reader.buttons
    return result


def form_headers(url: str, accept_json: bool = False) -> dict[str, str]:
    """What a browser sends with a form posted from a page of ``url``'s site: the page's
    origin (the approval page allows it: ``Referrer-Policy: same-origin``)."""
    parts = urlsplit(url)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Origin": f"{parts.scheme}://{parts.netloc}",
    }
    if accept_json:
        headers["Accept"] = "application/json"
    return headers


def open_link(link: str, session: str = "") -> HttpResult:
    """GET the link's page; ``session``: the sign-in cookie :func:`sign_in` gave."""
    return request(link, headers={"Cookie": session} if session else {})


def sign_in(page: HttpResult, subject: str) -> str:
    """On a page that asks for sign-in (a request with ``"identity": "sign-in"``, on
    ``approvals local --sign-in``): press its sign-in button, sign in as ``subject`` at the
    local OpenID Connect provider (its page asks for a subject), and come back. The session
    cookie, for :func:`open_link` and :func:`submit`."""
    button = page.text.index('class="button" href="') + len('class="button" href="')
    href = page.text[button : page.text.index('"', button)].replace("&amp;", "&")
    started = request(urljoin(page.url, href), follow_redirects=False)
    authorize = started.headers["Location"]
    chosen = request(authorize, urlencode({"sub": subject}).encode(), method="POST", follow_redirects=False)
    back = request(
        urljoin(authorize, chosen.headers["Location"]),
        headers={"Cookie": _cookie(started)},
        follow_redirects=False,
    )
    if back.status != 302 or not _cookie(back):
        raise ValueError(f"signing in as {subject} failed ({back.status}): {back.text[:200]}")
    return _cookie(back)


def _cookie(response: HttpResult) -> str:
    """The sign-in cookie a response sets, as a request sends it back."""
    set_cookie = response.headers.get("Set-Cookie", "")
    return set_cookie.split(";", 1)[0] if set_cookie.startswith(f"{COOKIE}=") else ""


def post_from_link(
    link: str, decision: str, comment: str = "", accept_json: bool = False, approver: str = ""
) -> HttpResult:
    """POST a decision with the fields of the link's page form, as a replayed or scripted
    request would, without opening the page first: a signed link's own fields, or, for a
    short link, the ``approver`` it was emailed to (what its page's form carries)."""
    address = link.partition("?")[0]
    fields = {**replayed_form(link, approver), "decision": decision, "comment": comment}
    return request(address, urlencode(fields).encode(), form_headers(address, accept_json), "POST")


def replayed_form(link: str, approver: str = "") -> dict[str, str]:
    """The fields the page of ``link`` puts in its form: a signed link's query, or the
    approver a short link was emailed to."""
    if token_in(link) is not None:
        return {"approver": approver}
    return dict(parse_qsl(urlsplit(link).query))


def submit(
    page: HttpResult,
    decision: str,
    comment: str = "",
    accept_json: bool = False,
    answers: Mapping[str, str] | None = None,
    session: str = "",
) -> HttpResult:
    """Press Approve or Reject on a page opened with :func:`open_link`, having filled in
    ``answers`` (by field name, as typed)."""
    if page.form_action is None:
        raise ValueError(f"the page at {page.url} has no decision form (status {page.status})")
    fields = {**page.form_fields, **as_form(answers or {}), "comment": comment, "decision": decision}
    action = urljoin(page.url, page.form_action)
    headers = {**form_headers(action, accept_json), **({"Cookie": session} if session else {})}
    return request(action, urlencode(fields).encode(), headers, "POST")
