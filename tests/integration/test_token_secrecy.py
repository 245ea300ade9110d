"""The task token never leaves the backend: not in an email, a link, a page, a response, an
error, an execution's output or a log line. A full run with every kind of click is captured
and searched for every token that existed during it."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

import approval_api.handler
import worker.dead_letter
import worker.handler
from approvals import runtime
from approvals.models import ApprovalRequest, Policy
from tests.integration.conftest import Stack, approval_id_of, token_of

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def test_no_task_token_anywhere(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Every line the Powertools loggers write (JSON, to stdout in Lambda), and every record
    # of every logger at any level.
    powertools = io.StringIO()
    for logger in (worker.handler.logger, worker.dead_letter.logger, approval_api.handler.logger):
        monkeypatch.setattr(logger.registered_handler, "stream", powertools)
    for handler in logging.getLogger("approvals").handlers:  # the domain's, through one of those
        if isinstance(handler, logging.StreamHandler):
            monkeypatch.setattr(handler, "stream", powertools)
    caplog.set_level(logging.DEBUG, logger="approvals")
    caplog.set_level(logging.DEBUG, logger="worker")
    caplog.set_level(logging.DEBUG, logger="approval_api")
    caplog.set_level(logging.INFO)

    # Every token the functions hand to Step Functions, besides those in the table.
    tokens: set[str] = set()

    def note_token(params: dict[str, Any], **_: Any) -> None:
        if "taskToken" in params:
            tokens.add(params["taskToken"])

    runtime.from_environment().sfn.meta.events.register("provide-client-params.states", note_token)

    # One approval with every kind of click, one invalid request, one dead letter.
    arn = stack.start(
        ApprovalRequest(
            title="Secret run", approvers=[ALICE, BOB, CAROL], policy=Policy.QUORUM, quorum=2, requester="ci"
        )
    )
    links = {who: stack.email(who, "Secret run").links[0] for who in (ALICE, BOB, CAROL)}
    stack.get(links[ALICE])
    stack.get(links[ALICE], accept_json=True)
    signed = stack.signed_link(links[ALICE], ALICE)  # as emailed before short links
    stack.get(signed)
    stack.get(signed.replace("sig=", "sig=x"))  # forged
    stack.get(signed.split("&sig=")[0])  # incomplete
    stack.get(links[ALICE][:-4] + "AAAA")  # a made-up short link
    stack.click(links[ALICE], "reject")  # no reason: the page again
    stack.click(links[ALICE], "approve", "yes")
    stack.post_link(links[ALICE], "approve")  # double click
    stack.click(links[BOB], "approve", accept_json=True)  # settles
    stack.post_link(links[CAROL], "reject", "late", accept_json=True)  # after settlement
    stack.get(links[CAROL])
    decided = stack.finish(arn)

    invalid = stack.start_raw({"title": "Invalid", "approvers": ["nope"], "requester": "ci"})
    invalid_report = stack.finish(invalid)

    dead = stack.start(ApprovalRequest(title="Dead", approvers=[ALICE], requester="ci"))
    message = stack.queued_message()
    tokens.add(token_of(message))
    stack.sqs.send_message(QueueUrl=stack.resources.dlq_url, MessageBody=message["Body"])
    stack.sqs.send_message(QueueUrl=stack.resources.dlq_url, MessageBody="not an approval message")
    stack.drain(stack.dead_letters)
    dead_report = stack.finish(dead)

    tokens |= {approval.task_token for approval in stack.approvals()}
    assert len(tokens) == 3  # the approval, the invalid request and the dead letter
    assert decided.output["outcome"] == "approved"
    assert invalid_report.error == "Approval.InvalidRequest"
    assert dead_report.error == "Approval.DeliveryFailed"

    captured = capsys.readouterr()
    log_lines = powertools.getvalue().splitlines()
    assert any('"message":"vote recorded"' in line for line in log_lines)
    assert any('"message":"invalid request"' in line for line in log_lines)
    places: dict[str, str] = {
        "powertools log": powertools.getvalue(),
        # moto's own records are the simulated service's, which no function of ours writes.
        "log records": "\n".join(
            f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records if not r.name.startswith("moto")
        ),
        "stdout": captured.out,
        "stderr": captured.err,
        "emails": json.dumps([email.as_dict() for email in stack.emails()]),
        "responses": json.dumps([[r.status, r.headers, r.body, r.url] for r in stack.responses]),
        "execution results": json.dumps(
            [[r.output, r.error, r.cause] for r in (decided, invalid_report, dead_report)]
        ),
    }
    assert len(stack.emails()) == 3  # the dead letter never reached the worker
    assert sorted({r.status for r in stack.responses}) == [200, 400, 403, 404, 409]  # every kind of answer
    for token in tokens:
        assert approval_id_of(links[ALICE]) != token
        for place, text in places.items():
            assert token not in text, f"a task token appears in the {place}"
