"""Several execution environments per function (`approvals local --concurrency 2`): the
races between Lambda environments, run for real between processes that share nothing but
the services. Each environment says when it starts (INIT_REPORT in the stack's output)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from approvals.demo import wait_for_email
from approvals.local import approver
from approvals.local.resources import LOCAL_ROLE
from tests.conftest import eventually
from tests.e2e.conftest import APPROVERS, BOTH_MODES, PROVISIONED, TEMPLATE, RunningStack, running_local_stack

pytestmark = pytest.mark.e2e
CONCURRENCY = 2


@pytest.fixture(scope="module")
def local_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    options = ["--concurrency", str(CONCURRENCY)]
    if request.param == TEMPLATE:
        options += ["--template", str(request.getfixturevalue("product_template"))]
    with running_local_stack(tmp_path_factory.mktemp(f"environments-{request.param}"), *options) as stack:
        stack.add_approvers(*APPROVERS)
        yield stack


def as_state_machines(stack: RunningStack) -> boto3.Session:
    """A session of the state machines' role: the queue's policy lets only them send."""
    sts = boto3.client(
        "sts",
        endpoint_url=stack.info.endpoint_url,
        region_name=stack.info.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    credentials = sts.assume_role(RoleArn=LOCAL_ROLE, RoleSessionName="e2e")["Credentials"]
    return boto3.Session(
        region_name=stack.info.region,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def environments_started(stack: RunningStack, function: str) -> set[str]:
    """The environments (process ids) of the function whose name holds ``function``
    (approval-worker here, ...-WorkerFunction... from the template)."""
    started = set()
    for line in (stack.workdir / "local.log").read_text().splitlines():
        if line.startswith("INIT_REPORT Function: ") and function in line.split()[2].lower():
            started.add(line.split()[4])
    return started


def two_started(stack: RunningStack, function: str) -> set[str]:
    return eventually(
        lambda: started if len(started := environments_started(stack, function)) == CONCURRENCY else None,
        timeout=30,
        what=f"{CONCURRENCY} environments of {function}",
    )


@BOTH_MODES
def test_two_api_environments_take_clicks_on_one_approval_and_it_is_answered_once(
    local_stack: RunningStack,
) -> None:
    """Both API environments warm, then eight clicks at once, approve and reject mixed, on a
    first-response request: each answered 200 or 409 (never 5xx), and the workflow gets one
    SendTaskSuccess with the one vote that was recorded."""
    title = "Two environments race"
    arn = local_stack.start(title, ["alice@example.com", "bob@example.com"], "e2e@example.com")
    links = {
        who: wait_for_email(local_stack.info, who, title)["links"][0]
        for who in ("alice@example.com", "bob@example.com")
    }
    with ThreadPoolExecutor(8) as pool:  # a page view each: both environments start
        pages = list(pool.map(approver.open_link, [links["alice@example.com"], links["bob@example.com"]] * 4))
    assert {page.status for page in pages} == {200}
    assert len(two_started(local_stack, "api")) == CONCURRENCY

    clicks = [(page, "approve" if "alice" in page.url else "reject") for page in pages]
    with ThreadPoolExecutor(len(clicks)) as pool:
        answers = list(pool.map(lambda click: approver.submit(click[0], click[1], "race"), clicks))

    assert {a.status for a in answers} <= {200, 409}, [a.status for a in answers]
    assert [a.status for a in answers].count(200) == 1  # one vote settles a first-response request
    described = local_stack.ended(arn)
    assert described["status"] == "SUCCEEDED"
    history = local_stack.history(arn)
    answers_taken = [
        e
        for e in history
        if e["type"] == "TaskSucceeded" and e["taskSucceededEventDetails"]["resourceType"] == "sqs"
    ]  # the workflow's own ConfirmDelivery write (a DynamoDB task) succeeds too: it is no answer
    assert len(answers_taken) == 1
    (won,) = [click for click, answer in zip(clicks, answers, strict=True) if answer.status == 200]
    output = json.loads(described["output"])
    assert output["outcome"] == {"approve": "approved", "reject": "rejected"}[won[1]]
    assert len(output["votes"]) == 1


# Provisioned only: a copy that finds another environment's claim comes back after the queue's
# visibility timeout, five seconds here but minutes in the product's template, and the test
# waits until every copy has been handled.
@pytest.mark.parametrize("local_stack", [PROVISIONED], indirect=True)
def test_duplicate_deliveries_to_two_worker_environments_send_one_email(local_stack: RunningStack) -> None:
    """SQS delivers at least once: ten copies of each of five messages, sent at once, are
    taken by both worker environments, and each request is emailed exactly once."""
    sqs = as_state_machines(local_stack).client("sqs", endpoint_url=local_stack.info.endpoint_url)
    titles = [f"Duplicate delivery {uuid.uuid4().hex[:8]}" for _ in range(5)]
    for title in titles:
        body = json.dumps(
            {
                "task_token": f"token-{uuid.uuid4()}",  # never answered: the worker only emails
                "execution": "arn:aws:states:us-east-1:123456789012:execution:approval:duplicates",
                "state": "Approve",
                "request": {
                    "title": title,
                    "approvers": ["carol@example.com"],
                    "requester": "e2e@example.com",
                },
                "timeout_seconds": 3600,
            }
        )
        with ThreadPoolExecutor(10) as pool:
            list(
                pool.map(
                    lambda copy: sqs.send_message(QueueUrl=local_stack.info.queue_url, MessageBody=copy),
                    [body] * 10,
                )
            )

    def all_emailed() -> list[dict[str, object]] | None:
        emails = approver.request(local_stack.info.outbox_url, headers={"Accept": "application/json"}).json()
        about = [e for e in emails if any(title in e["subject"] for title in titles)]
        return about if len({e["subject"] for e in about}) == len(titles) else None

    eventually(all_emailed, timeout=60, what="an email about each request")
    assert len(two_started(local_stack, "worker")) == CONCURRENCY
    eventually(  # every copy handled: none left in the queue or in flight
        lambda: all(
            value == "0"
            for value in sqs.get_queue_attributes(
                QueueUrl=local_stack.info.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"].values()
        ),
        timeout=60,
        what="every copy to be handled",
    )
    emails = all_emailed()
    assert emails is not None
    assert sorted(str(e["subject"]) for e in emails) == sorted({str(e["subject"]) for e in emails})
