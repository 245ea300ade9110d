"""Hypothesis against the two gates every input passes: the link verifier and the request
model. tests/unit fuzzes the verifier with random fields; here every near miss of a real
link (one field nudged) is refused, through the verifier and through the API itself, and
any JSON a workflow could put in a request is either refused with named fields or becomes
a request that keeps every rule."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from approvals import request as worker_logic
from approvals import shortlinks
from approvals.links import KeyRing, LinkClaims, LinkError, SigningKey, approval_id_for, link_for, verify
from approvals.models import (
    MAX_APPROVERS,
    MAX_TIMEOUT_SECONDS,
    ApprovalRequest,
    Policy,
    describe_validation_error,
)
from tests.conftest import API_URL, Stack, approval_id_of

KEY = SigningKey(b"k" * 64)
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
CLAIMS = LinkClaims(
    approval_id_for("a token"), "alice@example.com", int((NOW + timedelta(days=1)).timestamp())
)
LINK_FIELDS = {
    "approver": CLAIMS.approver,
    "expires": str(CLAIMS.expires),
    "kid": KEY.key_id,
    "sig": link_for("", KEY, CLAIMS)[-43:],
}

# Characters a forger would try: look-alikes, case, separators, invisible ones, base64's own.
# Only what UTF-8 can encode (no lone surrogate): a link is UTF-8 on the wire.
NEAR = st.sampled_from(list("aAlLeE0O1I-_=+/.@ \t\n\u0430\u00e9\u200b\uff11\ufeff%")) | st.characters(
    codec="utf-8"
)


@st.composite
def nudged(draw: st.DrawFn, text: str) -> str:
    """``text`` with one small change: a character replaced, dropped, added, or the case,
    the end or the normalization changed."""
    kind = draw(st.sampled_from(["replace", "drop", "insert", "truncate", "case", "append", "nfkd", "pad"]))
    at = draw(st.integers(min_value=0, max_value=max(len(text) - 1, 0)))
    match kind:
        case "replace":
            return text[:at] + draw(NEAR) + text[at + 1 :]
        case "drop":
            return text[:at] + text[at + 1 :]
        case "insert":
            return text[:at] + draw(NEAR) + text[at:]
        case "truncate":
            return text[:at]
        case "case":
            return text.swapcase()
        case "append":
            return text + draw(NEAR)
        case "nfkd":
            return unicodedata.normalize("NFKD", text.replace("a", "\u00e1"))
        case _:
            return text + "="


@given(data=st.data(), target=st.sampled_from(["approval_id", "approver", "expires", "kid", "sig"]))
@example(data=None, target="none")  # the untouched link verifies
@settings(max_examples=300)
def test_no_near_miss_of_a_real_link_verifies(data: Any, target: str) -> None:
    approval_id, fields = CLAIMS.approval_id, dict(LINK_FIELDS)
    if target == "approval_id":
        approval_id = data.draw(nudged(approval_id))
    elif target != "none":
        fields[target] = data.draw(nudged(fields[target]))
    # The key id only chooses the key; an emptied one (a link from before key ids) tries each.
    if (approval_id, {**fields, "kid": fields["kid"] or KEY.key_id}) == (CLAIMS.approval_id, LINK_FIELDS):
        assert verify(KeyRing(KEY), approval_id, fields, NOW) == CLAIMS
        return
    with pytest.raises(LinkError):
        verify(KeyRing(KEY), approval_id, fields, NOW)


@pytest.fixture(scope="module")
def pending_short_link(module_stack: Stack) -> str:
    module_stack.start(ApprovalRequest(title="Fuzzed", approvers=["alice@example.com"], requester="ci"))
    link = module_stack.email("alice@example.com", "Fuzzed").links[0]
    assert module_stack.get(link).status == 200  # the first view is noted now
    return link


@pytest.fixture(scope="module")
def pending_link(module_stack: Stack, pending_short_link: str) -> str:
    """The signed link of the same approval (as emailed before short links)."""
    link = module_stack.signed_link(pending_short_link, "alice@example.com")
    assert module_stack.get(link).status == 200
    return link


@given(
    data=st.data(),
    target=st.sampled_from(["path", "approver", "expires", "sig"]),
    method=st.sampled_from(["GET", "POST"]),
)
@settings(max_examples=120, deadline=None)
def test_no_near_miss_of_a_real_link_gets_past_the_api(
    module_stack: Stack, pending_link: str, data: Any, target: str, method: str
) -> None:
    approval_id = approval_id_of(pending_link)
    fields = dict(parse_qsl(urlsplit(pending_link).query))
    path_id, changed = approval_id, dict(fields)
    if target == "path":
        path_id = data.draw(nudged(approval_id))
    else:
        changed[target] = data.draw(nudged(fields[target]))
    if (path_id, changed) == (approval_id, fields):
        return
    before = module_stack.raw_item(approval_id)
    url = f"{API_URL}/approvals/{quote(path_id, safe='') or '%20'}"
    if method == "GET":
        response = module_stack.call("GET", f"{url}?{urlencode(changed)}", {"Accept": "application/json"})
    else:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        response = module_stack.call("POST", url, headers, urlencode({**changed, "decision": "approve"}))
    event(f"{method} {target}: {response.status}")
    assert response.status in (400, 403, 404), response.body
    assert set(response.json()) == {"error", "message", "status"}
    assert module_stack.raw_item(approval_id) == before


@given(data=st.data(), method=st.sampled_from(["GET", "POST"]))
@settings(max_examples=80, deadline=None)
def test_no_near_miss_of_a_real_short_link_gets_past_the_api(
    module_stack: Stack, pending_short_link: str, data: Any, method: str
) -> None:
    token = shortlinks.token_in(pending_short_link)
    assert token is not None
    near = data.draw(nudged(token))
    if near == token:
        return
    approval_id = approval_id_of(pending_short_link)
    before = module_stack.raw_item(approval_id)
    url = f"{API_URL}/a/{quote(near, safe='') or '%20'}"
    if method == "GET":
        response = module_stack.call("GET", url, {"Accept": "application/json"})
    else:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        form = {"approver": "alice@example.com", "decision": "approve"}
        response = module_stack.call("POST", url, headers, urlencode(form))
    event(f"{method}: {response.status}")
    assert response.status == 404, response.body
    assert set(response.json()) == {"error", "message", "status"}
    assert module_stack.raw_item(approval_id) == before


# Requests ---------------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
ADDRESSES = (
    st.emails()
    | st.text(max_size=30)
    | st.sampled_from(
        ["alice@example.com", "ALICE@Example.com", " bob@example.com ", "x@y", "a@b.c\n", "jörg@example.com"]
    )
)
FIELDS: dict[str, Any] = {
    "title": st.text(max_size=210) | JSON,
    "description": st.text(max_size=50) | st.just("d" * 10_001) | JSON,
    "approvers": st.lists(ADDRESSES, max_size=5)
    | st.lists(st.just("a@example.com"), min_size=MAX_APPROVERS + 1)
    | JSON,
    "policy": st.sampled_from([*Policy, "majority", ""]) | JSON,
    "quorum": st.integers(-1, 7) | JSON,
    "timeout_seconds": st.integers(-2, 3)
    | st.sampled_from([MAX_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS + 1])
    | JSON,
    "requester": st.text(max_size=30) | st.sampled_from(["ci@example.com", "alice@example.com"]) | JSON,
    "details": st.dictionaries(st.text(max_size=8), JSON, max_size=4) | JSON,
    "unknown": JSON,
}
REQUESTS = st.fixed_dictionaries({}, optional=FIELDS) | JSON
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
EMAIL = re.compile(r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-z0-9-]+(\.[a-z0-9-]+)+$")


@given(REQUESTS)
@settings(max_examples=400)
def test_any_request_is_refused_by_name_or_keeps_every_rule(raw: Any) -> None:
    refusal: ValidationError | None = None
    try:
        request = ApprovalRequest.model_validate(raw)
    except ValidationError as error:
        refusal = error
    if refusal is not None:
        # Each problem names a field of the request, or the unknown key it is about.
        known = set(ApprovalRequest.model_fields) | (set(raw) if isinstance(raw, dict) else set())
        for problem in refusal.errors():
            assert not problem["loc"] or problem["loc"][0] in known, problem
        assert describe_validation_error(refusal).startswith("request")
        return
    assert 1 <= len(request.approvers) <= MAX_APPROVERS
    assert len(set(request.approvers)) == len(request.approvers)
    assert all(EMAIL.match(a) and len(a) <= 254 for a in request.approvers)
    assert (request.quorum is not None) == (request.policy is Policy.QUORUM)
    assert request.quorum is None or 1 <= request.quorum <= len(request.approvers)
    assert 1 <= request.timeout_seconds <= MAX_TIMEOUT_SECONDS
    for text in (request.title, request.description, request.requester, *request.details):
        assert not CONTROL.search(text)
    # It can be stored and read back unchanged.
    assert ApprovalRequest.model_validate_json(request.model_dump_json()) == request


@given(
    st.text(max_size=200)
    | JSON.map(json.dumps)
    | REQUESTS.map(lambda r: json.dumps({"task_token": "t", "execution": "e", "state": "s", "request": r}))
)
@settings(max_examples=300)
def test_any_queue_body_is_a_message_or_a_named_refusal(body: str) -> None:
    try:
        message = worker_logic.parse_message(body)
    except worker_logic.InvalidEnvelope as error:
        problem: str | None = str(error)
    else:
        problem = None
        assert message.task_token
    assert problem is None or problem.startswith("message")
