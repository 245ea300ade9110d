"""Approval API Lambda (API Gateway REST proxy): a thin layer over approvals.decision.

The routes declare their parameters (``Query`` / ``Form``) so that Powertools can describe
the API as an OpenAPI document (approval_api.openapi) and check that the signed fields are
there. Every answer is still the API's own: a request Powertools finds incomplete gets the
same page (or JSON) the API gives for any incomplete link, never Powertools' 422.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Form, Path, Query
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from aws_lambda_powertools.utilities.typing import LambdaContext

from approval_api import pages
from approvals import answers, bulk, bulkjob, decision, inbox, inboxlinks, links, runtime, shortlinks, signin
from approvals.decision import Delivery, Problem, Recorded, Viewing
from approvals.models import Inbox, Outcome, utcnow
from approvals.store import UnreadableItem

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

logger = Logger(service="approval-api")
# The domain's records (approvals.*) as JSON through this logger: Lambda's default format
# would drop their fields, the approval id among them.
copy_config_to_registered_loggers(source_logger=logger, include={"approvals"})
app = APIGatewayRestResolver(enable_validation=True)

BODY_LIMIT = 16_384  # a form with a 1,000-byte comment fits many times over, even percent-encoded
# A bulk vote's form: a hundred ids, a comment and some items' answers.
BULK_BODY_LIMIT = 65_536
CONFIRMATIONS = {
    Delivery.DELIVERED: ("Decision recorded", "Thank you. The workflow has your decision."),
    Delivery.NOT_SETTLED: (
        "Decision recorded",
        "Thank you. Your vote is recorded; the request waits for the other approvers.",
    ),
    Delivery.PENDING: (
        "Decision recorded",
        "Thank you. Your decision is recorded; the workflow will receive it within a few minutes,"
        " unless the request expires first.",
    ),
}

# The signed fields of a link, in its query string (GET) or in the form it shows (POST).
_APPROVER = "The approver the link was issued to (signed)."
_EXPIRES = "When the link expires, in seconds since the epoch (signed)."
_KID = "Which signing key signed the link (absent from links made before keys rotated)."
_SIG = "HMAC-SHA256 of the approval id, the approver and the expiry (unpadded URL-safe base64)."
_TOKEN = (
    f"A short link's token: {shortlinks.TOKEN_LENGTH} URL-safe characters (the approval id, then"
    " 128 secret bits); the table keeps only its SHA-256."
)
_SHORT_APPROVER = "The approver the page was shown to; the vote is taken only if the link is theirs."


_STRING = {"type": "string"}
_STATUS = {"enum": ["pending", "approved", "rejected", "expired", "cancelled"]}
_VOTE = {
    "type": "object",
    "required": ["approver", "outcome", "comment", "at"],
    "properties": {
        "approver": _STRING,
        "outcome": {"enum": ["approved", "rejected"]},
        "comment": _STRING,
        "at": {"type": "string", "format": "date-time"},
        "on_behalf_by": {"type": ["string", "null"]},
        "data": {"type": "object", "description": "The answers to the request's fields"},
    },
}


def _page(description: str, json_fields: dict[str, Any]) -> OpenAPIResponse:
    """An OpenAPI response: an HTML page, or JSON with these fields for ``Accept: application/json``."""
    response = {
        "description": description,
        "content": {
            "text/html": {"schema": _STRING},
            "application/json": {
                "schema": {"type": "object", "required": list(json_fields), "properties": json_fields}
            },
        },
    }
    return cast("OpenAPIResponse", response)


def _problem(description: str) -> OpenAPIResponse:
    """A refusal: its title, the words for the person, and the HTTP status again."""
    return _page(description, {"error": _STRING, "message": _STRING, "status": {"type": "integer"}})


def _recorded(description: str) -> OpenAPIResponse:
    fields = {
        "approval_id": _STRING,
        "recorded": _VOTE,
        "status": _STATUS,
        "delivery": {"enum": [delivery.value for delivery in Delivery]},
    }
    return _page(description, fields)


_REFUSALS = {
    400: _problem("The link or form is incomplete or malformed; a fixable form shows the page again."),
    401: _problem(
        "The request must be decided signed in (the request or the deployment says so), and this"
        " browser is not signed in as the approver: the page says why, and links to sign in."
    ),
    403: _problem(
        "The link was altered, not issued for this approver, or made under a key that two"
        " rotations retired; or the form came from another site; or the browser is signed in"
        " as someone else than the approver."
    ),
    404: _problem("No such approval."),
    410: _problem(
        "The link expired, or the request expired, was cancelled or no longer waits, or the"
        " approver's place was reassigned to someone else."
    ),
}


_DECISION_RESPONSES: dict[int, OpenAPIResponse] = {
    200: _recorded("The decision is recorded."),
    202: _recorded("The decision is recorded; the workflow gets it by a retry."),
    **_REFUSALS,
    409: _problem(
        "This approver has already decided, the request is already settled, or (policy sequence)"
        " an approver listed earlier has not yet approved."
    ),
}
# The form's own fields, the same from either page.
_DECISION = Form(
    alias="decision",
    description="approve or reject; anything else shows the form again",
    json_schema_extra={"enum": ["approve", "reject"]},
)
_COMMENT = Form(
    description=f"Optional; required to reject by default; at most {decision.COMMENT_BYTES:,} bytes of UTF-8."
)


def _wants_json() -> bool:
    return "application/json" in (app.current_event.headers or {}).get("accept", "").lower()


def _respond(status: int, html: str, payload: dict[str, Any]) -> Response[str]:
    if _wants_json():
        return Response(status, "application/json", json.dumps(payload), pages.SECURITY_HEADERS)
    return Response(status, "text/html; charset=utf-8", html, pages.SECURITY_HEADERS)


def _last_segment() -> str:
    """The approval id or short link token of the path: also the form's action, relative to its page."""
    return app.current_event.path.rstrip("/").rsplit("/", 1)[-1]


def _short_link() -> bool:
    return app.current_event.path.startswith(shortlinks.PATH_PREFIX)


def _query() -> dict[str, str]:
    return dict(app.current_event.query_string_parameters or {})


def _same_origin() -> None:
    """Refuse a form not posted from the approval page itself.

    Browsers send ``Origin`` with every POST, and the page's ``Referrer-Policy:
    same-origin`` lets it name the page's own origin (``no-referrer`` made it ``null``).
    So the origin must be the API's own host, which also covers browsers that send no
    ``Sec-Fetch-Site``; where that header is sent, it must say the same.
    """
    headers = app.current_event.headers or {}
    origin, host = headers.get("origin") or "", headers.get("host") or ""
    cross_site = headers.get("sec-fetch-site", "same-origin") != "same-origin"
    if cross_site or not host or urlsplit(origin).netloc != host:
        raise decision.Forbidden("Decisions can only be sent from the approval page itself.")


def _form() -> dict[str, str]:
    """The posted form, read strictly: from the page itself, as a form, small, UTF-8."""
    return dict(_form_fields(BODY_LIMIT))


def _form_fields(limit: int) -> list[tuple[str, str]]:
    """The posted form's fields in order, repeated ones too; read as :func:`_form` reads it."""
    event = app.current_event
    _same_origin()
    content_type = (event.headers or {}).get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise decision.Malformed("Send the decision as a form (application/x-www-form-urlencoded).")
    body = event.body or ""
    if len(body) > limit:
        raise decision.Malformed("The form is too large.")
    try:
        text = event.decoded_body or ""
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise decision.Malformed("The form is not valid UTF-8 text.") from None


@app.get(
    "/approvals/<approval_id>",
    summary="The approval page: the request, and Approve / Reject buttons while it is pending",
    description="Opening a link changes nothing (mail scanners open every link); it notes the first view.",
    responses={200: _page("The approval page.", {"approval_id": _STRING, "status": _STATUS}), **_REFUSALS},
)
def show(
    approval_id: str,
    approver: Annotated[str, Query(description=_APPROVER)],
    expires: Annotated[str, Query(description=_EXPIRES)],
    sig: Annotated[str, Query(description=_SIG)],
    kid: Annotated[str, Query(description=_KID)] = "",
) -> Response[str]:
    fields = {"approver": approver, "expires": expires, "kid": kid, "sig": sig}
    now = utcnow()
    return _page_response(decision.view(runtime.from_environment(), approval_id, fields, now), fields, now)


@app.get(
    "/a/<token>",
    summary="The approval page of a short link",
    description=(
        "What an email links to: the same page, for the approver the link is bound to, with no"
        " address or signature in the URL. Opening it changes nothing; it notes the first view."
    ),
    responses={200: _page("The approval page.", {"approval_id": _STRING, "status": _STATUS}), **_REFUSALS},
)
def show_by_link(token: Annotated[str, Path(description=_TOKEN)]) -> Response[str]:
    now = utcnow()
    seen = decision.view_by_link(runtime.from_environment(), token, now)
    return _page_response(seen, {"approver": seen.approver}, now, action=token)


_INBOX_TOKEN = (
    f"An inbox link's token: {inboxlinks.TOKEN_LENGTH} URL-safe characters (the approver's id, the"
    " link's expiry, and 128 bits only the signing key makes); nothing is stored for it."
)


@app.get(
    f"{inboxlinks.PATH_PREFIX}<token>",
    summary="The approver's batch page: every request waiting on them, newest first",
    description=(
        "What a digest email links to. Pages of 50, filtered by workflow; each request with its"
        ' details, fields and its own Approve / Reject; "Approve selected" and "Reject selected"'
        " post the ticked ones (or `all=1`: every one matching) to the same address, which asks to"
        " confirm. Opening it changes nothing. A request to be decided signed in is listed by its"
        " title only, with a link to sign in, unless this browser is signed in as the approver:"
        " then it is shown in full and decided with the others, each vote proven by sign-in."
    ),
    responses={
        200: {
            "description": "One page of the inbox.",
            "content": {"text/html": {"schema": _STRING}, "application/json": {"model": Inbox}},
        },
        400: _REFUSALS[400],
        403: _problem(
            "The link was altered, or made under a key that two rotations retired; or the browser is"
            " signed in as someone else than the approver while some request needs sign-in."
        ),
        404: _problem("The link is incomplete or mistyped."),
        410: _problem("The link expired."),
    },
)
def show_inbox(
    token: Annotated[str, Path(description=_INBOX_TOKEN)],
    workflow: Annotated[str, Query(description="Only this workflow's requests")] = "",
    cursor: Annotated[str, Query(description="The page after another: its next_cursor")] = "",
    select: Annotated[str, Query(description="`page`: every request on the page ticked")] = "",
) -> Response[str]:
    now = utcnow()
    services = runtime.from_environment()
    opened = inbox.open_inbox(services, token, now)
    chosen = workflow or None
    shown = inbox.page(services.store, opened.approver_id, now, workflow=chosen, cursor=cursor or None)
    signed_in = inbox.signed_in(shown, opened, services.settings, decision.session(services, _cookie(), now))
    jobs = bulkjob.progress(services.store, opened.approver_id, now)
    answer = inbox.as_answer(shown, opened, chosen, services.settings, signed_in, bulk_votes=jobs)
    if _wants_json():  # no template is loaded for it
        return _respond(200, "", answer.model_dump(mode="json"))
    html = pages.inbox_page(
        answer,
        now,
        action=token,
        reason_required=services.settings.reject_needs_reason,
        cursor=cursor,
        select_page=select == "page",
    )
    return _respond(200, html, {})


def _page_response(seen: Viewing, fields: dict[str, str], now: datetime, action: str = "") -> Response[str]:
    services = runtime.from_environment()
    session = decision.session(services, _cookie(), now)
    # A request that needs sign-in is shown only to its approver, signed in.
    proven = decision.proof(services.settings, seen.approval.request.identity, seen.approver, session)
    html = pages.approval_page(
        seen.approval,
        seen.approver,
        fields,
        now,
        reason_required=services.settings.reject_needs_reason,
        action=action,
        signed_in=seen.approver if proven.kind == "sign-in" else "",
    )
    payload = {"approval_id": seen.approval.approval_id, "status": seen.approval.status.value}
    return _respond(200, html, payload)


@app.post(
    "/approvals/<approval_id>",
    summary="Record the approver's decision, and settle the request when the policy says so",
    description=(
        "The form of the approval page: the link's signed fields, the decision, a comment, and"
        " `data.<name>` for each of the request's fields (a wrong answer shows the page again)."
        " Only from the page itself (its Origin is the API's host; Sec-Fetch-Site, if sent, same-origin),"
        " at most 16 KB."
    ),
    responses=_DECISION_RESPONSES,
)
def decide(
    approval_id: str,
    approver: Annotated[str, Form(description=_APPROVER)],
    expires: Annotated[str, Form(description=_EXPIRES)],
    sig: Annotated[str, Form(description=_SIG)],
    kid: Annotated[str, Form(description=_KID)] = "",
    decision_: Annotated[str, _DECISION] = "",
    comment: Annotated[str, _COMMENT] = "",
) -> Response[str]:
    # Powertools has checked that the signed fields are there; the form is read again,
    # strictly (origin, size, UTF-8), for what is recorded.
    now = utcnow()
    services = runtime.from_environment()
    session = decision.session(services, _cookie(), now)
    return _recorded_response(decision.decide(services, approval_id, _form(), now, session), now)


@app.post(
    "/a/<token>",
    summary="Record the decision sent from a short link's page",
    description=(
        "The form of a short link's page: the approver it was shown to, the decision, a comment and"
        " `data.<name>` answers, under the same rules as the signed form (same origin, at most 16 KB)."
    ),
    responses=_DECISION_RESPONSES,
)
def decide_by_link(
    token: Annotated[str, Path(description=_TOKEN)],
    approver: Annotated[str, Form(description=_SHORT_APPROVER)],
    decision_: Annotated[str, _DECISION] = "",
    comment: Annotated[str, _COMMENT] = "",
) -> Response[str]:
    now = utcnow()
    services = runtime.from_environment()
    session = decision.session(services, _cookie(), now)
    return _recorded_response(decision.decide_by_link(services, token, _form(), now, session), now)


@app.post(
    f"{inboxlinks.PATH_PREFIX}<token>",
    summary="Decide many approvals at once from the approver's inbox: confirm, then record",
    description=(
        f"The inbox page's form: up to {bulk.MAX_VOTES} `approval` ids, one `decision` and one"
        " `comment` for all, and each item's answers as `<approval id>.data.<name>`. Without"
        " `confirmed=1` it records nothing and answers the confirmation (how many items, from which"
        " workflows, which cannot be decided as they stand); with it, each item's vote is its own"
        " conditional write under that item's rules, and the answer gives each item's result."
        f" With `all=1` past the first {bulk.MAX_VOTES}, the rest are decided in the background"
        " (the answer's `background`; the inbox's `bulk_votes` says how far it got)."
        f" Only from the page itself (as the other forms), at most {BULK_BODY_LIMIT // 1024} KB."
    ),
    responses={
        200: {
            "description": "The confirmation (without `confirmed=1`) or each item's result (with it).",
            "content": {
                "text/html": {"schema": _STRING},
                "application/json": {"model": bulk.BulkPlan | bulk.BulkResults},
            },
        },
        400: _problem(
            f"No decision or no item chosen, more than {bulk.MAX_VOTES} items, or a comment to fix."
        ),
        403: _problem("The link was altered or made under retired keys, or the form came from another site."),
        404: _problem("The link is incomplete or mistyped."),
        410: _problem("The link expired."),
    },
)
def decide_selected(
    token: Annotated[str, Path(description=_INBOX_TOKEN)],
    approval: Annotated[list[str] | None, Form(description="An approval to decide; repeated")] = None,
    decision_: Annotated[str, _DECISION] = "",
    comment: Annotated[str, _COMMENT] = "",
    confirmed: Annotated[str, Form(description="1 once the approver has confirmed")] = "",
) -> Response[str]:
    now = utcnow()
    services = runtime.from_environment()
    fields = _form_fields(BULK_BODY_LIMIT)
    owner = inbox.open_inbox(services, token, now)
    form = dict(fields)
    selection = bulk.selected(services, owner.approver_id, fields, now)
    choices = bulk.choices_from_form(selection.approval_ids, form)
    outcome = choices[0].outcome
    verb = "approve" if outcome is Outcome.APPROVED else "reject"
    session = decision.session(services, _cookie(), now)
    if form.get("confirmed") != "1":
        planned = bulk.plan(services, owner.approver_id, choices, now, session)
        carried = _carried(fields, planned)
        if form.get("all") == "1" and "asof" not in form:  # all matching now, not what comes later
            carried.append(("asof", str(int(now.timestamp()))))
        html = pages.bulk_confirmation_page(
            planned,
            outcome,
            carried,
            form.get("comment", ""),
            more=selection.more,
            action=token,
            reason_required=services.settings.reject_needs_reason,
        )
        plan = bulk.BulkPlan(
            decision=verb,
            count=len(planned) + selection.more,
            ready=sum(item.ready for item in planned),
            workflows=bulk.workflows(planned),
            items=planned,
            more=selection.more,
        )
        return _respond(200, html, plan.model_dump(mode="json"))
    decided = bulkjob.decide_all(services, owner.approver_id, choices, selection.rest, form, now, session)
    background = bulkjob.progress_of(decided.job) if decided.job else None
    logger.info("bulk vote", outcome=outcome.value, items=len(decided.results), more=selection.more)
    done = bulk.BulkResults(
        decision=verb,
        counts=Counter(item.result for item in decided.results),
        items=decided.results,
        background=background,
    )
    html = pages.bulk_results_page(decided.results, outcome, background=background, action=token)
    return _respond(200, html, done.model_dump(mode="json"))


def _carried(fields: list[tuple[str, str]], planned: list[bulk.PlannedItem]) -> list[tuple[str, str]]:
    """The fields the confirmation posts again as they were: not the comment, nor the answers
    it asks for (it shows inputs for both)."""
    asked = {
        f"{item.approval_id}.{answers.FORM_PREFIX}{spec.name}" for item in planned for spec in item.needs
    }
    return [
        (name, value) for name, value in fields if name not in ("comment", "confirmed") and name not in asked
    ]


def _cookie() -> str:
    """This browser's sign-in cookie (the flow while signing in, then the session), or ""."""
    for part in (app.current_event.headers or {}).get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == signin.COOKIE:
            return value
    return ""


def _api_base() -> tuple[str, str]:
    """The API's own base URL and path, from the request: API Gateway's stage (or a custom
    domain's base path) is in the request context's path, not in the event's."""
    event = app.current_event
    full = str(event.raw_event.get("requestContext", {}).get("path") or event.path)
    prefix = full[: len(full) - len(event.path)] if full.endswith(event.path) else ""
    headers = event.headers or {}
    scheme = headers.get("x-forwarded-proto", "http")  # API Gateway sets https; the local stack, nothing
    return f"{scheme}://{headers.get('host', '')}{prefix}", prefix


def _redirect_uri() -> str:
    return f"{_api_base()[0]}{signin.CALLBACK_PATH}"


def _sign_in_cookie(value: str, max_age: int) -> Cookie:
    # HttpOnly: no script reads it; Secure: never over plain HTTP (browsers let localhost
    # have it); Lax: sent on the provider's redirect back, never with another site's POST.
    return Cookie(
        signin.COOKIE,
        value,
        path=_api_base()[1] + "/",
        secure=True,
        http_only=True,
        max_age=max_age,
        same_site=SameSite.LAX_MODE,
    )


def _redirect(location: str, cookie: Cookie) -> Response[str]:
    return Response(302, "text/plain", "", {**pages.SECURITY_HEADERS, "Location": location}, cookies=[cookie])


_RETURN_TO = (
    "The page to come back to, relative to the API: approvals/ID?SIGNED-FIELDS, a/TOKEN, or an"
    " inbox, i/TOKEN with its workflow and cursor."
)


_SIGN_IN_REFUSALS = {
    403: _problem(
        "The sign-in does not hold: a stale or foreign state, a token refused, another site's page."
    ),
    404: _problem("Sign-in is not set up here."),
    502: _problem("The identity provider cannot be reached just now."),
}


@app.get(
    signin.START_PATH,
    summary="Sign in with the deployment's OpenID Connect provider, then come back to an approval page",
    description=(
        "Redirects to the provider (authorization code with PKCE, state and nonce); the flow's"
        " secrets go in a sealed, HttpOnly cookie. Writes nothing: a scanner following it decides nothing."
    ),
    responses={302: {"description": "To the identity provider"}, **_SIGN_IN_REFUSALS},
)
def sign_in(to: Annotated[str, Query(description=_RETURN_TO)] = "") -> Response[str]:
    started = decision.start_sign_in(runtime.from_environment(), to, _redirect_uri(), utcnow())
    return _redirect(started.authorize_url, _sign_in_cookie(started.cookie, signin.FLOW_SECONDS))


@app.get(
    signin.CALLBACK_PATH,
    summary="Where the identity provider sends the browser back",
    description=(
        "Checks the state against the flow's cookie, exchanges the code, checks the ID token"
        " (the issuer's keys, iss, aud, exp, nonce, a verified email), then replaces the flow"
        " with a session of a few minutes and goes back to the approval page."
    ),
    responses={302: {"description": "Back to the approval page"}, **_SIGN_IN_REFUSALS},
)
def sign_in_callback(
    state: Annotated[str, Query(description="The flow's state")] = "",
    code: Annotated[str, Query(description="The authorization code")] = "",
    error: Annotated[str, Query(description="The provider's error, if it refused")] = "",
) -> Response[str]:
    services = runtime.from_environment()
    query = {"state": state, "code": code, "error": error}
    finished = decision.finish_sign_in(services, _cookie(), query, _redirect_uri(), utcnow())
    session = _sign_in_cookie(finished.cookie, services.settings.session_seconds)
    return _redirect(f"{_api_base()[0]}/{finished.return_to}", session)


@app.get(
    signin.SIGN_OUT_PATH,
    summary="Sign out: forget this browser's sign-in session",
    responses={200: _page("Signed out.", {"signed_out": {"type": "boolean"}})},
)
def sign_out() -> Response[str]:
    html = pages.message_page(
        "Signed out", "You are signed out of the approval pages. You can close this page."
    )
    response = _respond(200, html, {"signed_out": True})
    response.cookies.append(_sign_in_cookie("", 0))
    return response


def _return_to() -> str:
    """The approval page being shown or posted from, relative to the API."""
    if _short_link():
        return f"a/{_last_segment()}"
    fields = _form() if app.current_event.http_method == "POST" else _query()
    return (
        f"approvals/{_last_segment()}?{urlencode({name: fields.get(name, '') for name in links.LINK_FIELDS})}"
    )


@app.exception_handler(decision.SignInRequired)  # type: ignore[untyped-decorator]
def sign_in_required(error: decision.SignInRequired) -> Response[str]:
    return _sign_in_response(error)


def _sign_in_response(error: decision.SignInRequired) -> Response[str]:
    logger.info("sign-in required", status=error.status)
    href = f"../signin?to={quote(_return_to(), safe='')}"
    html = pages.sign_in_page(error.title, error.message, href, "Sign in with your company account")
    return _respond(
        error.status, html, {"error": error.title, "message": error.message, "status": error.status}
    )


@app.exception_handler(decision.SomeoneElse)  # type: ignore[untyped-decorator]
def someone_else(error: decision.SomeoneElse) -> Response[str]:
    return _someone_else_response(error)


def _someone_else_response(error: decision.SomeoneElse) -> Response[str]:
    logger.info("signed in as someone else", status=error.status)
    html = pages.sign_in_page(error.title, error.message, "../signout", "Sign out", kind="error")
    return _respond(
        error.status, html, {"error": error.title, "message": error.message, "status": error.status}
    )


def _recorded_response(recorded: Recorded, now: datetime) -> Response[str]:
    heading, message = CONFIRMATIONS[recorded.delivery]
    approval_id = recorded.approval.approval_id
    logger.info("vote recorded", approval_id=approval_id, outcome=recorded.vote.outcome.value)
    html = pages.message_page(heading, message, approval=recorded.approval, vote=recorded.vote, now=now)
    status = 202 if recorded.delivery is Delivery.PENDING else 200
    payload = {
        "approval_id": approval_id,
        "recorded": recorded.vote.model_dump(mode="json"),
        "status": recorded.approval.status.value,
        "delivery": recorded.delivery.value,
    }
    return _respond(status, html, payload)


@app.exception_handler(Problem)  # type: ignore[untyped-decorator]
def problem(error: Problem) -> Response[str]:
    return _problem_response(error)


def _problem_response(error: Problem) -> Response[str]:
    logger.info("refused", status=error.status, reason=error.title)
    html = pages.message_page(error.title, error.message, kind="error", approval=error.approval, now=utcnow())
    payload = {"error": error.title, "message": error.message, "status": error.status}
    return _respond(error.status, html, payload)


@app.exception_handler(UnreadableItem)  # type: ignore[untyped-decorator]
def unreadable(error: UnreadableItem) -> Response[str]:
    return _unreadable_response(error)


def _unreadable_response(error: UnreadableItem) -> Response[str]:
    logger.error("approval unreadable", approval_id=error.approval_id, problem=error.problem)
    return _problem_response(decision.Unreadable())


# Powertools reads the body before the route runs, and lets a ValueError out of its own
# parsing (a multipart body without a boundary, or not UTF-8): those requests are refused
# here as well. A ValueError from a request the API's checks accept is a fault: it is raised.
@app.exception_handler([RequestValidationError, RequestUnsupportedContentType, ValueError])  # type: ignore[untyped-decorator]
def incomplete(error: Exception) -> Response[str]:
    """What Powertools refuses (a signed field missing, a body it cannot read) gets the
    answer the API's own checks give, in their order: the form's origin, type, size and
    encoding first, then the link's fields. Those checks refuse everything Powertools
    does, before anything is looked up or written."""
    last = _last_segment()
    now = utcnow()
    try:
        fields = _form() if app.current_event.http_method == "POST" else _query()
        if _short_link():
            decision.check_short_link(last)
        elif app.current_event.path.startswith(inboxlinks.PATH_PREFIX):
            inbox.open_inbox(runtime.from_environment(), last, now)
        else:
            decision.check_link(runtime.from_environment(), last, fields, now)
    except Problem as refusal:
        return _problem_response(refusal)
    if isinstance(error, ValueError):
        raise error
    return _problem_response(decision.Malformed("The link or form is incomplete."))


@app.exception_handler(decision.FormIncomplete)  # type: ignore[untyped-decorator]
def form_incomplete(error: decision.FormIncomplete) -> Response[str]:
    """Show the approval page again, with the message and what was typed."""
    services = runtime.from_environment()
    now = utcnow()
    try:
        approval = decision.form_again(services, error.voter, now, decision.session(services, _cookie(), now))
    except decision.SignInRequired as not_signed_in:  # raised in a handler: no other handler takes it
        return _sign_in_response(not_signed_in)
    except decision.SomeoneElse as someone:
        return _someone_else_response(someone)
    except Problem as refusal:
        return _problem_response(refusal)
    except UnreadableItem as broken:  # raised in a handler: no other handler takes it
        return _unreadable_response(broken)
    if _wants_json():
        return _problem_response(error)
    form = _form()  # its signed fields hold (or, by short link, form_again found it bound)
    names = shortlinks.FORM_FIELDS if error.voter.token_hash else links.LINK_FIELDS
    html = pages.approval_page(
        approval,
        error.voter.approver,
        {name: form.get(name, "") for name in names},
        now,
        reason_required=services.settings.reject_needs_reason,
        notice=error.message,
        comment=error.comment,
        typed=answers.typed(approval.request.fields, form),
        invalid_field=error.field,
        action=_last_segment(),
    )
    return _respond(error.status, html, {})


@app.not_found
def not_found(_: Exception) -> Response[str]:
    if app.current_event.path in (signin.START_PATH, signin.CALLBACK_PATH, signin.SIGN_OUT_PATH):
        # No parameter there might name nothing: another method is answered as what it is.
        headers = {**pages.SECURITY_HEADERS, "Allow": "GET"}
        return Response(405, "text/plain; charset=utf-8", "Method Not Allowed", headers)
    return _problem_response(decision.NotFound("There is nothing at this address."))


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


# With SnapStart (-c snapStart=true), Lambda snapshots the environment once this import is done
# and restores the snapshot at each cold start: what the first request would otherwise make
# (the AWS clients, the page templates) is made now, into the snapshot. Not the signing keys:
# they are read at their first use, after the restore, so a snapshot never holds a key that a
# later rotation retired. Nothing else is made at import (approvals.runtime, approvals.keys).
if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start":
    from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]  # Lambda's

    runtime.from_environment()
    pages.load_templates()
    # Restored environments would all draw the same pseudo-random numbers (botocore's retry
    # jitter): each reseeds from the OS. Ids and keys come from os.urandom, unique after a restore.
    register_after_restore(random.seed)
