"""Approval API Lambda (API Gateway REST proxy): a thin layer over approvals.decision."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from approval_api import pages
from approvals import decision, runtime
from approvals.decision import Delivery, Problem
from approvals.models import utcnow

logger = Logger(service="approval-api")
app = APIGatewayRestResolver()

BODY_LIMIT = 16_384  # a form with a 2,000-character comment fits many times over
CONFIRMATIONS = {
    Delivery.DELIVERED: ("Decision recorded", "Thank you. The workflow has your decision."),
    Delivery.NOT_SETTLED: (
        "Decision recorded",
        "Thank you. Your vote is recorded; the request waits for the other approvers.",
    ),
    Delivery.PENDING: (
        "Decision recorded",
        "Thank you. Your decision is recorded; the workflow will receive it within a few minutes.",
    ),
}


def _wants_json() -> bool:
    return "application/json" in (app.current_event.headers or {}).get("accept", "").lower()


def _respond(status: int, html: str, payload: dict[str, Any]) -> Response[str]:
    if _wants_json():
        return Response(status, "application/json", json.dumps(payload), pages.SECURITY_HEADERS)
    return Response(status, "text/html; charset=utf-8", html, pages.SECURITY_HEADERS)


def _query() -> dict[str, str]:
    return dict(app.current_event.query_string_parameters or {})


def _same_origin() -> None:
    """Refuse a form posted from another site: the browser says where a POST comes from."""
    headers = app.current_event.headers or {}
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise decision.Forbidden("Decisions can only be sent from the approval page itself.")
    origin, host = headers.get("origin"), headers.get("host")
    if origin and origin != "null" and host and urlsplit(origin).netloc != host:
        raise decision.Forbidden("Decisions can only be sent from the approval page itself.")


def _form() -> dict[str, str]:
    event = app.current_event
    _same_origin()
    content_type = (event.headers or {}).get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise decision.Malformed("Send the decision as a form (application/x-www-form-urlencoded).")
    body = event.body or ""
    if len(body) > BODY_LIMIT:
        raise decision.Malformed("The form is too large.")
    try:
        text = event.decoded_body or ""
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict"))
    except (UnicodeDecodeError, ValueError):
        raise decision.Malformed("The form is not valid UTF-8 text.") from None


@app.get("/approvals/<approval_id>")
def show(approval_id: str) -> Response[str]:
    fields = _query()
    now = utcnow()
    seen = decision.view(runtime.from_environment(), approval_id, fields, now)
    html = pages.approval_page(
        seen.approval,
        seen.approver,
        fields,
        now,
        reason_required=runtime.from_environment().settings.reject_needs_reason,
    )
    return _respond(200, html, {"approval_id": approval_id, "status": seen.approval.status.value})


@app.post("/approvals/<approval_id>")
def decide(approval_id: str) -> Response[str]:
    now = utcnow()
    recorded = decision.decide(runtime.from_environment(), approval_id, _form(), now)
    heading, message = CONFIRMATIONS[recorded.delivery]
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


@app.exception_handler(decision.FormIncomplete)  # type: ignore[untyped-decorator]
def form_incomplete(error: decision.FormIncomplete) -> Response[str]:
    """Show the approval page again, with the message and what was typed."""
    services = runtime.from_environment()
    approval = services.store.get(error.claims.approval_id)
    if approval is None or _wants_json():
        return _problem_response(error)
    fields = {"approver": error.claims.approver, "expires": str(error.claims.expires), "sig": _form()["sig"]}
    html = pages.approval_page(
        approval,
        error.claims.approver,
        fields,
        utcnow(),
        reason_required=services.settings.reject_needs_reason,
        notice=error.message,
        comment=error.comment,
    )
    return _respond(error.status, html, {})


@app.not_found
def not_found(_: Exception) -> Response[str]:
    return _problem_response(decision.NotFound("There is nothing at this address."))


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
