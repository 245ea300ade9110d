"""The local API Gateway: HTTP requests become REST proxy events for the approval handler;
the outbox is served beside it."""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import ClientError
from jinja2 import Environment, FileSystemLoader, select_autoescape

from approvals.local.outbox import Outbox
from approvals.local.poller import LambdaContext
from approvals.models import Approval, timeline, utcnow

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
BODY_LIMIT = 1_048_576  # API Gateway's own payload limit is 10 MB; nothing here needs more

OUTBOX_PAGE = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(default=True)
).get_template("outbox.html")


def proxy_event(
    method: str, raw_path: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    """The REST API proxy event API Gateway would send for this request."""
    parts = urlsplit(raw_path)
    query = parse_qs(parts.query, keep_blank_values=True)
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {
        "resource": "/{proxy+}",
        "path": parts.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": parts.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": parts.path,
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "accountId": "123456789012",
            "apiId": "local",
            "identity": {"sourceIp": source_ip},
        },
        "body": text or None,
        "isBase64Encoded": encoded,
    }


Page = tuple[int, dict[str, str], bytes]


def _text(status: int, text: str) -> Page:
    return status, {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}, text.encode()


def confirmation_page(sns: SNSClient, query: str) -> Page:
    """What SNS's confirmation page does: confirm, unauthenticated (so not protected)."""
    fields = {k: v[-1] for k, v in parse_qs(query).items()}
    try:
        sns.confirm_subscription(TopicArn=fields.get("TopicArn", ""), Token=fields.get("Token", ""))
    except ClientError as error:
        return _text(400, f"Not confirmed: {error}\n")
    return _text(200, "Subscription confirmed. (`approvals approvers confirm LINK` also protects it.)\n")


def unsubscribe_page(sns: SNSClient, query: str) -> Page:
    """What SNS's unsubscribe page does: an unauthenticated unsubscribe, which a subscription
    confirmed with AuthenticateOnUnsubscribe refuses."""
    arn = {k: v[-1] for k, v in parse_qs(query).items()}.get("SubscriptionArn", "")
    try:
        attributes = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
        if attributes.get("ConfirmationWasAuthenticated") == "true":
            return _text(
                403, "Not unsubscribed: this subscription can only be removed by an authenticated call.\n"
            )
        sns.unsubscribe(SubscriptionArn=arn)
    except ClientError as error:
        return _text(400, f"Not unsubscribed: {error}\n")
    return _text(200, "You have been unsubscribed.\n")


# SNS's own pages, which the local emails' links point at (moto_fixes).
SNS_PAGES = {"/confirmation.html": confirmation_page, "/unsubscribe.html": unsubscribe_page}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a burst of clicks beyond it had connections
    # reset. API Gateway takes bursts; so does the local one.
    request_queue_size = 128


class LocalApi:
    def __init__(
        self,
        handler: Handler,
        outbox: Outbox,
        approvals: Callable[[], list[Approval]],
        host: str,
        port: int,
        sns: SNSClient,
    ) -> None:
        api = self

        class RequestHandler(BaseHTTPRequestHandler):
            server_version = "approvals-local"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:
                log.debug(format, *args)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > BODY_LIMIT:
                    self._send(413, {"Content-Type": "text/plain"}, b"Payload Too Large")
                    return
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                if path.rstrip("/") == "/outbox":
                    self._send(200, *api._outbox_response(self.headers.get("Accept", "")))
                    return
                if path in SNS_PAGES:
                    self._send(*SNS_PAGES[path](api._sns, urlsplit(self.path).query))
                    return
                event = proxy_event(
                    self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
                )
                # Requests arrive at once; the handler's environments take them one each
                # (approvals/local/environments.py).
                response = handler(event, LambdaContext("approval-api"))
                payload = response.get("body") or ""
                data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
                headers = {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}
                headers |= response.get("headers") or {}
                self._send(response["statusCode"], headers, data)

            def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def __getattr__(self, name: str) -> Any:
                # Every method goes to the function, as API Gateway's ANY does: TRACE or
                # PROPFIND get the API's own answer, not the HTTP server's 501.
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

        self._outbox = outbox
        self._approvals = approvals
        self._sns = sns
        self._server = _Server((host, port), RequestHandler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _outbox_response(self, accept: str) -> tuple[dict[str, str], bytes]:
        emails = self._outbox.emails()
        if "application/json" in accept:
            return {"Content-Type": "application/json"}, json.dumps([e.as_dict() for e in emails]).encode()
        now = utcnow()
        rows = []
        for approval in sorted(self._approvals(), key=lambda a: a.created_at, reverse=True):
            rows.append(
                (approval, approval.status_at(now).value, approval.waiting_on(now), timeline(approval))
            )
        page = OUTBOX_PAGE.render(emails=list(reversed(emails)), approvals=rows).encode()
        return {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}, page

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
