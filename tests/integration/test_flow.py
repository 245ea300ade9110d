"""Whole approvals through real executions of the real state machines: the worker emails,
approvers click, the workflow ends where the policy says."""

from __future__ import annotations

import json
import time
from typing import Any

from approvals import fanout
from approvals.models import ApprovalRequest, Policy, Status, timeline
from tests.integration.conftest import Stack, approval_id_of

ALICE, BOB, CAROL, DAN = (f"{name}@example.com" for name in ("alice", "bob", "carol", "dan"))


def request(title: str, approvers: list[str], **fields: Any) -> ApprovalRequest:
    # Each on its own (digest: false): the tests click each request's own email, which two
    # requests to one approver in one worker batch would otherwise share as a digest.
    return ApprovalRequest(
        title=title, approvers=approvers, requester="ci@example.com", digest=False, **fields
    )


def test_approved(stack: Stack) -> None:
    arn = stack.start(
        request("Deploy checkout 2.4", [ALICE], description="Faster checkout", details={"version": "2.4"})
    )
    email = stack.email(ALICE, "Deploy checkout 2.4")
    assert email.subject == "[Approval needed] Deploy checkout 2.4 (from ci@example.com)"
    assert len(email.links) == 1

    page = stack.get(email.links[0])
    assert page.status == 200
    assert "Deploy checkout 2.4" in page.body
    assert "Faster checkout" in page.body
    assert page.buttons == ["approve", "reject"]

    done = stack.submit(page, "approve", "Looks good")
    assert done.status == 200
    assert "Decision recorded" in done.body

    report = stack.finish(arn)
    assert report.status == "SUCCEEDED"
    assert report.states == [
        "CheckTimeout",
        "ReadTimeout",
        "CheckTimeoutRange",
        "RequestApproval",
        "Outcome",
        "ConfirmApproved",
        "Approved",
    ]
    output = report.output
    assert output["outcome"] == "approved"
    assert [(v["approver"], v["outcome"], v["comment"]) for v in output["votes"]] == [
        (ALICE, "approved", "Looks good")
    ]
    assert set(output) == {"approval_id", "outcome", "votes", "decided_at"}
    assert output["approval_id"] == approval_id_of(email.links[0])
    assert set(output["votes"][0]) == {"approver", "outcome", "comment", "at", "data", "proof"}
    assert output["votes"][0]["data"] == {}  # the request asked for no answers

    approval = stack.approval(approval_id_of(email.links[0]))
    assert approval.status.value == "approved"
    assert approval.decided_at is not None


def test_rejected(stack: Stack) -> None:
    arn = stack.start(request("Refund order 1187", [ALICE, BOB]))
    email = stack.email(BOB, "Refund order 1187")
    assert stack.click(email.links[0], "reject", "Over the limit").status == 200
    report = stack.finish(arn)
    assert report.status == "SUCCEEDED"  # a rejection is an answer, not a failure
    assert report.final_state == "Rejected"
    assert report.output["outcome"] == "rejected"
    assert [(v["approver"], v["comment"]) for v in report.output["votes"]] == [(BOB, "Over the limit")]


def test_first_response_settles_with_the_first_vote(stack: Stack) -> None:
    arn = stack.start(request("First wins", [ALICE, BOB], policy=Policy.FIRST_RESPONSE))
    alice, bob = stack.email(ALICE, "First wins"), stack.email(BOB, "First wins")
    assert stack.click(bob.links[0], "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"

    late = stack.get(alice.links[0])
    assert late.status == 200
    assert late.form_action is None  # the outcome, not buttons
    assert "approved" in late.body
    refused = stack.post_link(alice.links[0], "reject", "too late")
    assert refused.status == 409
    assert "already approved" in refused.body
    assert len(stack.approval(approval_id_of(alice.links[0])).votes) == 1


def test_all_waits_for_every_approver(stack: Stack) -> None:
    arn = stack.start(request("Everyone", [ALICE, BOB, CAROL], policy=Policy.ALL))
    links = {who: stack.email(who, "Everyone").links[0] for who in (ALICE, BOB, CAROL)}

    first = stack.click(links[ALICE], "approve", accept_json=True)
    assert first.status == 200
    assert first.json()["delivery"] == "not_settled"
    assert first.json()["status"] == "pending"
    stack.click(links[BOB], "approve")
    stack.assert_running(arn)

    assert stack.click(links[CAROL], "approve").status == 200
    report = stack.finish(arn)
    assert report.output["outcome"] == "approved"
    assert sorted(v["approver"] for v in report.output["votes"]) == [ALICE, BOB, CAROL]


def test_all_is_rejected_by_any_rejection(stack: Stack) -> None:
    arn = stack.start(request("Everyone or nobody", [ALICE, BOB, CAROL], policy=Policy.ALL))
    links = {who: stack.email(who, "Everyone or nobody").links[0] for who in (ALICE, BOB, CAROL)}
    stack.click(links[ALICE], "approve")
    assert stack.click(links[BOB], "reject", "Not this week").status == 200
    report = stack.finish(arn)
    assert report.output["outcome"] == "rejected"
    assert [v["outcome"] for v in report.output["votes"]] == ["approved", "rejected"]
    # Carol is too late: the page shows the outcome, a post is refused.
    assert stack.get(links[CAROL]).form_action is None
    assert stack.post_link(links[CAROL], "approve").status == 409


def test_quorum_is_approved_at_the_quorum(stack: Stack) -> None:
    arn = stack.start(request("Two of three", [ALICE, BOB, CAROL], policy=Policy.QUORUM, quorum=2))
    links = {who: stack.email(who, "Two of three").links[0] for who in (ALICE, BOB, CAROL)}
    stack.click(links[ALICE], "reject", "I would rather not")
    stack.click(links[BOB], "approve")
    stack.assert_running(arn)
    stack.click(links[CAROL], "approve")
    report = stack.finish(arn)
    assert report.output["outcome"] == "approved"
    assert len(report.output["votes"]) == 3


def test_quorum_is_rejected_once_it_cannot_be_reached(stack: Stack) -> None:
    """Two of four: two rejections still leave two approvers who could make the quorum;
    the third rejection leaves only one, and settles it."""
    approvers = [ALICE, BOB, CAROL, DAN]
    arn = stack.start(request("Two of four", approvers, policy=Policy.QUORUM, quorum=2))
    links = {who: stack.email(who, "Two of four").links[0] for who in approvers}
    stack.click(links[ALICE], "reject", "no")
    stack.click(links[BOB], "reject", "no")
    stack.assert_running(arn)
    assert stack.click(links[CAROL], "reject", "no").status == 200
    report = stack.finish(arn)
    assert report.output["outcome"] == "rejected"
    assert len(report.output["votes"]) == 3
    assert stack.post_link(links[DAN], "approve").status == 409


def test_timeout_expires(stack: Stack) -> None:
    # The links expire a whole second early at worst (the queue's send time counts in whole
    # seconds): with 1 s a loaded machine's worker met the request expired and, rightly, emailed
    # nobody. 3 s leaves it at least 2 s to email first.
    arn = stack.start(request("Nobody answers", [ALICE], timeout_seconds=3))
    stack.email(ALICE, "Nobody answers")
    report = stack.finish(arn, timeout=15)
    assert report.status == "SUCCEEDED"
    assert report.states == ["CheckTimeout", "ReadTimeout", "CheckTimeoutRange", "RequestApproval", "Expired"]
    assert report.output == {"outcome": "expired"}


def test_late_click_after_timeout_is_gone(stack: Stack) -> None:
    # Long enough for the email and the first page view on a loaded 2-core machine (2 s was
    # not): the 410 below must be the timeout's doing, so the page is seen in time first.
    arn = stack.start(request("Too slow", [ALICE], timeout_seconds=6))
    link = stack.email(ALICE, "Too slow").links[0]
    assert stack.get(link).status == 200  # in time, the page is there
    assert stack.finish(arn, timeout=20).output == {"outcome": "expired"}
    expires = stack.approval(approval_id_of(link)).expires_at.timestamp()
    while time.time() < expires + 1:  # the API's clock counts whole seconds
        time.sleep(0.1)

    page = stack.get(link)
    assert page.status == 410
    assert page.form_action is None
    vote = stack.post_link(link, "approve", accept_json=True)
    assert vote.status == 410
    assert vote.json()["status"] == 410
    approval = stack.approval(approval_id_of(link))
    assert approval.votes == {}
    assert approval.decided_at is None


def test_a_decision_after_the_workflow_stopped_waiting_is_gone(stack: Stack) -> None:
    """The link is still valid, but the execution no longer waits (here its message went to
    the dead-letter queue and failed it): SendTaskSuccess finds the token gone -> 410."""
    arn = stack.start(request("Stopped", [ALICE]))
    link = stack.email(ALICE, "Stopped").links[0]
    approval = stack.approval(approval_id_of(link))
    body = json.dumps(
        {"task_token": approval.task_token, "execution": approval.execution, "state": "x", "request": {}}
    )
    stack.sqs.send_message(QueueUrl=stack.resources.dlq_url, MessageBody=body)
    stack.drain(stack.dead_letters)
    report = stack.finish(arn)
    assert (report.status, report.error) == ("FAILED", "Approval.DeliveryFailed")

    response = stack.post_link(link, "approve")
    assert response.status == 410
    assert "stopped waiting" in response.body
    assert "Traceback" not in response.body
    # The record does not claim an outcome the workflow never saw.
    closed = stack.approval(approval_id_of(link))
    assert closed.status is Status.EXPIRED
    assert closed.decision() is None
    settled = [e for e in timeline(closed) if e.kind == "settled"]
    assert [e.detail for e in settled] == ["approved, too late for the workflow"]


def test_a_request_that_is_not_an_object_is_refused_by_name(stack: Stack) -> None:
    arn = stack.sfn.start_execution(
        stateMachineArn=stack.resources.state_machine_arn,
        name="not-an-object",
        input=json.dumps({"request": "deploy"}),
    )["executionArn"]
    stack.drain()
    report = stack.finish(arn)
    assert (report.status, report.error) == ("FAILED", "Approval.InvalidRequest")
    assert report.cause == "request: Input should be a valid dictionary"


def test_fanout_with_mixed_outcomes(stack: Stack) -> None:
    requests: list[dict[str, Any]] = [
        request("Fan A approve", [ALICE, BOB], policy=Policy.QUORUM, quorum=2).model_dump(exclude_none=True),
        request("Fan B reject", [CAROL]).model_dump(exclude_none=True),
        request("Fan C expire", [DAN], timeout_seconds=5).model_dump(exclude_none=True),
        {"title": "Fan D invalid", "approvers": ["not-an-address"], "requester": "ci@example.com"},
        {"title": "Fan E bad timeout", "approvers": [ALICE], "requester": "ci", "timeout_seconds": 0},
        request("Fan F approve", [DAN]).model_dump(exclude_none=True),
    ]
    arn = stack.start_fanout(requests)

    for who in (ALICE, BOB):
        assert stack.click(stack.email(who, "Fan A approve").links[0], "approve").status == 200
    assert stack.click(stack.email(CAROL, "Fan B reject").links[0], "reject", "No").status == 200
    assert stack.click(stack.email(DAN, "Fan F approve").links[0], "approve").status == 200
    stack.email(DAN, "Fan C expire")  # emailed, and nobody answers

    report = stack.finish(arn, timeout=20)
    assert report.status == "SUCCEEDED"
    # A summary: the counts by outcome, and where the decisions are (S3).
    assert set(report.output) == {"map_run", "decisions", "counts"}
    decisions = fanout.decisions(stack.s3, report.output)
    assert [d["outcome"] for d in decisions] == [
        "approved",
        "rejected",
        "expired",
        "invalid",
        "invalid",
        "approved",
    ]
    assert sorted(v["approver"] for v in decisions[0]["votes"]) == [ALICE, BOB]
    assert decisions[1]["votes"][0]["comment"] == "No"
    assert decisions[2] == {"outcome": "expired"}
    assert decisions[3]["error"] == "request.approvers.0: not a valid email address"
    assert decisions[4]["error"].startswith("request.timeout_seconds: ")
    assert decisions[5]["votes"][0]["approver"] == DAN
    # The invalid ones were never emailed.
    assert not [e for e in stack.emails() if "Fan D" in e.subject or "Fan E" in e.subject]
