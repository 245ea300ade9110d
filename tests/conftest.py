"""Shared fixtures: the product's resources in moto, in this process, with moto running the
real state machines (used by the integration, reliability and security suites).

Each test gets its own ``mock_aws`` (so tests share nothing and run in any order, on any
xdist worker) and drives the real Lambda handlers: the worker through the same queue poller
the local stack uses, the approval API through API Gateway proxy events. A table of many
small cases may share one per module instead (``module_stack``), when each case checks
that it changed nothing.

moto's executor runs each execution in threads of its own, so nothing here assumes that a
state has been reached: every wait polls with a short sleep until a deadline. The sleep
matters: a loop that calls moto without pausing can starve the executor's threads of the
GIL for minutes.
"""

from __future__ import annotations

import functools
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import boto3
import moto
import pytest
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from pydantic import TypeAdapter, ValidationError

import approval_api.handler
import worker.dead_letter
import worker.handler
from approvals import directory, executions, inboxlinks, runtime, shortlinks
from approvals.answers import as_form
from approvals.links import LinkClaims, SigningKey, approval_id_for, link_for
from approvals.local import moto_fixes, moto_speedups
from approvals.local.approver import FormReader, HttpResult, form_headers, replayed_form
from approvals.local.http import proxy_event
from approvals.local.outbox import Outbox, SentEmail
from approvals.local.poller import LambdaContext, QueuePoller
from approvals.local.resources import Resources, provision
from approvals.local.stack import fanout_summary
from approvals.local.template import serve_invocations
from approvals.models import Approval, ApprovalRequest, Email
from approvals.store import approval_from_item, beside_approvals, is_digest

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

API_URL = "https://approvals.example.test/prod"
VISIBILITY_TIMEOUT = 1
MAX_RECEIVES = 2
POLL_INTERVAL = 0.05

T = TypeVar("T")
EMAIL = TypeAdapter(Email)


def pytest_configure(config: pytest.Config) -> None:
    """What every moto stack (one per test) would otherwise do again, done once per process:
    parse the service models of each new boto3 session (the test's and the handlers' own),
    and parse the product's two state machines to check them (moto parses each execution's
    definition anew all the same, so nothing of an execution is shared)."""
    # CDK runs its built-in CloudFormation validation (a WebAssembly rules engine, more than
    # half of a synthesis's CPU) on every synthesis. The tests check it where users meet it,
    # on the product's own `cdk synth` (tests/infra/conftest.py turns it on there), and skip
    # it in the other syntheses: the tests' stacks in this process (its CDK runtime starts
    # later, at collection) and the templates the end-to-end tests deploy.
    os.environ["CDK_VALIDATION"] = "false"
    moto_speedups.share_one_botocore_loader()
    StepFunctionsParserBackend._validate_definition = staticmethod(  # type: ignore[method-assign]
        functools.cache(StepFunctionsParserBackend._validate_definition)
    )


def _xdist_group(item: pytest.Item) -> str | None:
    """The item's xdist group, named as xdist names it."""
    names = {
        str(m.args[0] if m.args else m.kwargs.get("name", "default"))
        for m in item.iter_markers("xdist_group")
    }
    return "_".join(sorted(names)) if names else None


# The order xdist hands groups to workers (`make test` runs `--no-loadscope-reorder`, so
# collection order decides, not the number of tests in a group): first the groups that
# mostly wait (a real schedule's minute, then the local stacks of the end-to-end tests) and
# the synthesized templates' group, so their waits overlap the rest; then the other groups;
# then the single tests, which fill in around them.
_FIRST_GROUPS = ("template-sweep-1m", "infra")


def _start_order(item: pytest.Item) -> int:
    group = _xdist_group(item)
    if group is None:
        return len(_FIRST_GROUPS) + 2
    if group in _FIRST_GROUPS:
        return _FIRST_GROUPS.index(group)
    return len(_FIRST_GROUPS) + (0 if item.get_closest_marker("e2e") else 1)


@pytest.hookimpl(trylast=True)  # once pytest has ordered the items by their fixtures
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups in the order they should start (a stable sort: each group's own order stays),
    and a test marked ``last_in_group`` after the other tests of its xdist group."""
    items.sort(key=_start_order)
    for item in [item for item in items if item.get_closest_marker("last_in_group")]:
        group = _xdist_group(item)
        if group is None:
            continue
        items.remove(item)
        last = max(
            (i for i, other in enumerate(items) if _xdist_group(other) == group), default=len(items) - 1
        )
        items.insert(last + 1, item)


def eventually(probe: Callable[[], T | None], timeout: float = 15, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


class ApiResponse(HttpResult):
    """An answer of the approval handler, read as the approver's browser reads one."""

    @property
    def body(self) -> str:
        return self.text

    def json(self) -> Any:
        assert self.headers.get("Content-Type", "").startswith("application/json"), self.headers
        return super().json()

    @property
    def is_html(self) -> bool:
        return self.headers.get("Content-Type", "").startswith("text/html")


def _api_path(url: str) -> str:
    """The path and query API Gateway hands the function: the stage prefix is not part of it."""
    assert url.startswith(API_URL + "/"), url
    parts = urlsplit(url)
    path = parts.path.removeprefix(urlsplit(API_URL).path)
    return f"{path}?{parts.query}" if parts.query else path


class Stack:
    """The product's resources in moto, the handlers wired to them, and an approver's clicks."""

    def __init__(self, session: boto3.Session, resources: Resources) -> None:
        self.resources = resources
        self.sfn: SFNClient = session.client("stepfunctions")
        self.sqs: SQSClient = session.client("sqs")
        self.dynamodb: DynamoDBClient = session.client("dynamodb")
        self.sns: SNSClient = session.client("sns")
        self.s3: Any = session.client("s3")  # the fan-out's decisions (no stubs for S3 installed)
        self.outbox = Outbox(self.sqs, resources.outbox_queue_url)
        self.worker = QueuePoller(self.sqs, resources.queue_url, worker.handler.lambda_handler, "worker")
        self.dead_letters = QueuePoller(
            self.sqs, resources.dlq_url, worker.dead_letter.lambda_handler, "dead-letter"
        )
        self.responses: list[ApiResponse] = []

    # Workflows -------------------------------------------------------------------------
    # Starting a request first adds its (well-formed) approvers to the directory, as an
    # operator would; ``add_approvers=False`` leaves the directory as it is.

    def add_approvers(self, addresses: Any) -> None:
        """Subscribe each well-formed address (confirmed at once, as the local stack does)."""
        for address in addresses if isinstance(addresses, list) else []:
            try:
                directory.add(self.sns, self.resources.topic_arn, EMAIL.validate_python(address))
            except ValidationError:
                continue

    def start(self, request: ApprovalRequest, add_approvers: bool = True) -> str:
        if add_approvers:
            self.add_approvers([*request.approvers, *request.backups])
        return executions.start(self.sfn, self.resources.state_machine_arn, request)

    def start_raw(self, request: dict[str, Any]) -> str:
        """An execution whose input the model would refuse: what a careless workflow sends."""
        if isinstance(request, dict):
            self.add_approvers(request.get("approvers"))
        return self.sfn.start_execution(
            stateMachineArn=self.resources.state_machine_arn,
            name=str(uuid.uuid4()),
            input=json.dumps({"request": request}),
        )["executionArn"]

    def start_fanout(self, requests: list[dict[str, Any]]) -> str:
        # Each approver once: a batch asks the same few people many times over.
        everyone: list[Any] = []
        for request in requests:
            asked = request.get("approvers") if isinstance(request, dict) else None
            everyone += [a for a in asked if a not in everyone] if isinstance(asked, list) else []
        self.add_approvers(everyone)
        return self.sfn.start_execution(
            stateMachineArn=self.resources.fanout_state_machine_arn,
            name=str(uuid.uuid4()),
            input=json.dumps({"requests": requests}),
        )["executionArn"]

    def status(self, execution_arn: str) -> str:
        return self.sfn.describe_execution(executionArn=execution_arn)["status"]

    def finish(self, execution_arn: str, timeout: float = 15) -> executions.ExecutionReport:
        """The execution's report once it has ended, polling the worker meanwhile."""

        def ended() -> bool:
            self.worker.poll_once()
            return self.status(execution_arn) != "RUNNING"

        eventually(ended, timeout, f"{execution_arn} to end")
        return executions.report(self.sfn, execution_arn)

    def assert_running(self, execution_arn: str, settle: float = 0.3) -> None:
        """Still waiting, after giving the executor a moment to move if it were going to."""
        time.sleep(settle)
        assert self.status(execution_arn) == "RUNNING"

    # The worker and the mailbox ------------------------------------------------------------

    def queued_message(self, timeout: float = 10) -> dict[str, Any]:
        """The next message the state machine queued, taken off the queue for the test to use."""

        def receive() -> dict[str, Any] | None:
            messages = self.sqs.receive_message(
                QueueUrl=self.resources.queue_url,
                MaxNumberOfMessages=1,
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            return dict(messages[0]) if messages else None

        message = eventually(receive, timeout, "a queued message")
        self.sqs.delete_message(QueueUrl=self.resources.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return message

    def drain(self, poller: QueuePoller | None = None, quiet: float = 0.3) -> None:
        """Poll until the queue has been empty for ``quiet`` seconds."""
        poller = poller or self.worker
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < quiet:
            if poller.poll_once():
                idle_since = time.monotonic()
            time.sleep(POLL_INTERVAL)

    def emails(self) -> list[SentEmail]:
        return self.outbox.emails()

    def email(self, to: str, title: str, timeout: float = 15) -> SentEmail:
        """The email to ``to`` about ``title``, running the worker until it has gone out."""

        def find() -> SentEmail | None:
            self.worker.poll_once()
            for email in self.outbox.emails():
                if email.to == to and title in email.subject:
                    return email
            return None

        return eventually(find, timeout, f"an email to {to} about {title!r}")

    # The approval API ------------------------------------------------------------------------

    def call(
        self, method: str, url: str, headers: Mapping[str, str | None] | None = None, body: str | bytes = ""
    ) -> ApiResponse:
        """One request through API Gateway: it always passes the Host; a POST, as a browser
        sends it from the approval page, has the page's Origin. A header given as None is
        left out."""
        browser = form_headers(API_URL) if method == "POST" else {}
        defaults = {"Host": urlsplit(API_URL).netloc, "Origin": browser.get("Origin")}
        sent = {k: v for k, v in {**defaults, **(headers or {})}.items() if v is not None}
        data = body if isinstance(body, bytes) else body.encode()
        event = proxy_event(method, _api_path(url), sent, data, "198.51.100.7")
        # As API Gateway sends it: the stage in the context's path, and the scheme in a header.
        event["requestContext"]["path"] = urlsplit(API_URL).path + event["path"]
        event["headers"].setdefault("X-Forwarded-Proto", "https")
        raw = approval_api.handler.lambda_handler(event, lambda_context("approval-api"))
        assert not raw.get("isBase64Encoded"), "the API answers with text"
        response_headers = {k: v[-1] for k, v in (raw.get("multiValueHeaders") or {}).items()}
        response_headers |= raw.get("headers") or {}
        response = ApiResponse(raw["statusCode"], response_headers, raw.get("body") or "", url)
        if response.is_html and not _api_path(url).startswith(inboxlinks.PATH_PREFIX):
            reader = FormReader()
            reader.feed(response.body)
            assert reader.forms <= 1  # an approval page's (the batch page has one a request)
            response.form_action = reader.action
            response.form_fields = reader.fields
            response.buttons = reader.buttons
        self.responses.append(response)
        return response

    def get(self, link: str, accept_json: bool = False) -> ApiResponse:
        headers = {"Accept": "application/json"} if accept_json else {"Accept": "text/html"}
        return self.call("GET", link, headers)

    def post(self, url: str, fields: dict[str, str], accept_json: bool = False) -> ApiResponse:
        """POST a form to ``url`` (its query string, if any, is dropped as a browser's form does)."""
        target = url.split("?", 1)[0]
        return self.call("POST", target, form_headers(target, accept_json), urlencode(fields))

    def submit(
        self,
        page: ApiResponse,
        decision: str,
        comment: str = "",
        accept_json: bool = False,
        answers: dict[str, str] | None = None,
    ) -> ApiResponse:
        """Press Approve or Reject on an opened page, having filled in ``answers`` (by field name)."""
        assert page.form_action is not None, f"no form on the page ({page.status}): {page.body[:300]}"
        assert decision in page.buttons
        fields = {**page.form_fields, **as_form(answers or {}), "comment": comment, "decision": decision}
        return self.post(urljoin(page.url, page.form_action), fields, accept_json)

    def click(self, link: str, decision: str, comment: str = "", accept_json: bool = False) -> ApiResponse:
        """What an approver does: open the link, then press a button."""
        page = self.get(link)
        assert page.status == 200, page.body
        return self.submit(page, decision, comment, accept_json)

    def post_link(
        self, link: str, decision: str, comment: str = "", accept_json: bool = False
    ) -> ApiResponse:
        """POST the fields of the link's page form, replayed without opening the page: a
        signed link's own, or the address a short link was emailed to."""
        emailed_to = next((email.to for email in self.emails() if link in email.links), "")
        fields = replayed_form(link, emailed_to)
        return self.post(link, {**fields, "decision": decision, "comment": comment}, accept_json)

    # The table -----------------------------------------------------------------------------

    def queue_counts(self, queue_url: str) -> tuple[int, int]:
        """(visible, in flight) messages of a queue."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def raw_item(self, approval_id: str) -> dict[str, Any] | None:
        item = self.dynamodb.get_item(
            TableName=self.resources.table_name,
            Key={"approval_id": {"S": approval_id}},
            ConsistentRead=True,
        ).get("Item")
        return dict(item) if item else None

    def approval(self, approval_id: str) -> Approval:
        item = self.raw_item(approval_id)
        assert item is not None, f"no approval {approval_id}"
        return approval_from_item(item)

    def approvals(self) -> list[Approval]:
        items = self.dynamodb.scan(TableName=self.resources.table_name)["Items"]
        return [approval_from_item(dict(item)) for item in items if not beside_approvals(dict(item))]

    def digests(self) -> list[dict[str, Any]]:
        """The approvers' digest items (approvals.store.digest), as stored."""
        items = self.dynamodb.scan(TableName=self.resources.table_name)["Items"]
        return [dict(item) for item in items if is_digest(dict(item))]

    @property
    def signing_key(self) -> SigningKey:
        return runtime.from_environment().keys.signing()

    def bound_to(self, link: str) -> str | None:
        """The approver the table binds a short link to, if any."""
        token = shortlinks.token_in(link)
        assert token is not None, f"not a short link: {link}"
        return self.approval(approval_id_of(link)).short_links.get(shortlinks.token_hash(token))

    def signed_link(self, link: str, approver: str) -> str:
        """The signed link to the approval of ``link`` for ``approver``: what emails carried
        before short links, which keeps working until it expires."""
        approval = self.approval(approval_id_of(link))
        claims = LinkClaims(approval.approval_id, approver, int(approval.expires_at.timestamp()))
        return link_for(API_URL, self.signing_key, claims)


def lambda_context(function_name: str) -> Any:
    """The context the Lambda runtime hands a function (the local stack's stand-in)."""
    return LambdaContext(function_name)


def approval_id_of(link: str) -> str:
    """The approval a link names: in its path, or inside a short link's token."""
    token = shortlinks.token_in(link)
    return shortlinks.parse(token).approval_id if token else urlsplit(link).path.rsplit("/", 1)[-1]


def token_of(message: dict[str, Any]) -> str:
    token: str = json.loads(message["Body"])["task_token"]
    return token


def approval_id_of_message(message: dict[str, Any]) -> str:
    return approval_id_for(token_of(message))


@contextmanager
def moto_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The product's resources in a fresh ``mock_aws``, and the handlers' environment set to them."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "MOTO_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with moto.mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        moto_fixes.apply()
        session = boto3.Session(region_name="us-east-1")
        resources = provision(session, visibility_timeout=VISIBILITY_TIMEOUT, max_receives=MAX_RECEIVES)
        for name, value in resources.environment(API_URL).items():
            monkeypatch.setenv(name, value)
        runtime.reset()
        stop_serving = serve_invocations({resources.fanout_summary_function: fanout_summary(resources)})
        try:
            yield Stack(session, resources)
        finally:
            stop_serving()
            runtime.reset()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with moto_stack(monkeypatch) as created:
        yield created


@pytest.fixture(scope="module")
def module_stack() -> Iterator[Stack]:
    """One stack for every test of a module: for tables of cases that each change nothing."""
    with pytest.MonkeyPatch.context() as monkeypatch, moto_stack(monkeypatch) as created:
        yield created
