"""`approvals demo`: the whole flow on the local stack, narrated.

The approvers are added to the directory first (email subscriptions on the topic); a
request naming someone never added is refused at once. Then one request with two
approvers that both approve, answering the questions it asks (their answers are in the
decision), whose requester, in the directory too, is emailed the outcome; one whose
approver is away, so an operator reassigns her place and the stand-in rejects it; and a
fan-out of three requests decided three ways. Every email is read from the outbox, every click is
an HTTP GET of the page followed by the POST its form makes, and each execution must end
in the state its votes call for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from approvals import directory, executions, fanout
from approvals.local import approver
from approvals.local.info import LocalInfo
from approvals.local.stack import LocalStack
from approvals.models import ApprovalRequest, FieldSpec, FieldType, Policy, Reassignment, utcnow
from approvals.target import Target, for_local

Say = Callable[[str], None]
STAND_IN = "judy@example.com"


@dataclass(frozen=True)
class Click:
    approver: str
    decision: str
    comment: str = ""
    answers: dict[str, str] = field(default_factory=dict)  # typed into the request's fields
    sign_in: bool = False  # the request asks for it: sign in at the local provider first


def wait_for_email(info: LocalInfo, to: str, title: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        emails = approver.request(info.outbox_url, headers={"Accept": "application/json"}).json()
        for email in emails:
            if email["to"] == to and title in email["subject"]:
                return dict(email)
        time.sleep(0.2)
    raise TimeoutError(f"no email to {to} about {title!r} within {timeout}s")


def click(info: LocalInfo, title: str, choice: Click, say: Say) -> int:
    email = wait_for_email(info, choice.approver, title)
    say(f"  ✉ to {email['to']}: {email['subject']}")
    for line in email["body"].splitlines():
        say(f"  │ {line}")
    page = approver.open_link(email["links"][0])
    session = ""
    if choice.sign_in:
        say(f"  → GET the link: {page.status}, a page that asks to sign in first (nothing of the request)")
        session = approver.sign_in(page, choice.approver)
        page = approver.open_link(email["links"][0], session)
        say(f"  → signed in as {choice.approver} at {info.identity_provider_url}, back to the page")
    say(f"  → GET the link: {page.status}, buttons {page.buttons}")
    result = approver.submit(page, choice.decision, choice.comment, answers=choice.answers, session=session)
    answered = f", answering {choice.answers}" if choice.answers else ""
    say(f"  → POST {choice.decision} as {choice.approver}{answered}: {result.status}")
    return result.status


def run(say: Say = print) -> bool:
    # The functions' own log lines would drown the story; `approvals local` shows them.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    # With a local OpenID Connect provider: one request below must be decided signed in.
    stack = LocalStack(moto_port=0, api_port=0, visibility_timeout=2, sign_in=True)
    info = stack.start()
    target = for_local(info)
    ok = True
    try:
        say(f"Local stack up: API {info.api_url}, outbox {info.outbox_url}\n")
        singles = [
            (
                ApprovalRequest(
                    title="Deploy v2.4 to production",
                    description="Release notes: faster checkout, new invoices page.",
                    approvers=["alice@example.com", "bob@example.com"],
                    policy=Policy.ALL,
                    requester="ci@example.com",
                    details={"service": "checkout", "version": "2.4.0"},
                    fields=[
                        FieldSpec(
                            name="environment",
                            label="Target environment",
                            type=FieldType.CHOICE,
                            options=["staging", "production"],
                            required=True,
                        ),
                        FieldSpec(name="replicas", label="Replicas", type=FieldType.NUMBER, min=1, max=10),
                    ],
                ),
                [
                    Click("alice@example.com", "approve", "Looks good", {"environment": "production"}),
                    Click(
                        "bob@example.com", "approve", answers={"environment": "production", "replicas": "4"}
                    ),
                ],
                "Approved",
            ),
            (
                ApprovalRequest(
                    title="Grant kim access to the production database",
                    approvers=["kim@example.com"],
                    requester="ci@example.com",
                    identity="sign-in",  # a link alone does not decide: kim signs in
                ),
                [Click("kim@example.com", "approve", "Approved for the incident", sign_in=True)],
                "Approved",
            ),
        ]
        refund = ApprovalRequest(
            title="Refund order 1187 (EUR 2,400)",
            approvers=["carol@example.com", "dan@example.com"],
            requester="support@example.com",
            details={"order": 1187, "amount": "EUR 2,400"},
        )
        batch = [
            ApprovalRequest(
                title="Delete customer archive 2019",
                approvers=["erin@example.com", "frank@example.com", "grace@example.com"],
                policy=Policy.QUORUM,
                quorum=2,
                requester="data@example.com",
            ),
            ApprovalRequest(
                title="Rotate the payments API key",
                approvers=["heidi@example.com"],
                requester="sec@example.com",
            ),
            ApprovalRequest(
                title="Open port 22 to the world",
                approvers=["ivan@example.com"],
                requester="ops@example.com",
                timeout_seconds=3,
            ),
        ]
        # The deploy's requester is told the outcome: they are in the directory too.
        approvers = sorted(
            {a for request in [*(r for r, _, _ in singles), refund, *batch] for a in request.approvers}
            | {STAND_IN, singles[0][0].requester}
        )
        say(f"▶ Adding {len(approvers)} approvers: SNS email subscriptions, each filtered to its address")
        for address in approvers:
            directory.add(target.sns, target.topic_arn, address)
        held = directory.read(target.sns, target.topic_arn)
        say(f"  {', '.join(f'{a} ({held[a].reach.value})' for a in approvers)}\n")

        stranger = ApprovalRequest(
            title="Wire EUR 90,000", approvers=["mallory@example.com"], requester="finance@example.com"
        )
        say(f"▶ {stranger.title}, naming {stranger.approvers[0]}, who was never added")
        result = executions.wait(target.sfn, executions.start(target.sfn, target.state_machine_arn, stranger))
        say(f"  {result.error}: {result.cause}")
        ok &= show(say, result, "InvalidRequest")

        for request, clicks, expected in singles:
            say(f"▶ {request.title} ({request.policy.value}, {len(request.approvers)} approvers)")
            arn = executions.start(target.sfn, target.state_machine_arn, request)
            for choice in clicks:
                ok &= click(info, request.title, choice, say) == 200
            result = executions.wait(target.sfn, arn)
            ok &= show(say, result, expected)
            votes = (result.output or {}).get("votes", [])
            if request.fields:
                ok &= all(vote.get("data") for vote in votes)
            signed_in = request.identity == "sign-in"
            ok &= all((vote.get("proof") == "sign-in") == signed_in for vote in votes)
            told = wait_for_email(info, request.requester, request.title)
            say(f"  ✉ to the requester {told['to']}: {told['subject']}")
            for line in told["body"].splitlines():
                say(f"  │ {line}")
            say("")

        ok &= reassigned(info, target, refund, say)

        say(f"▶ Fan-out of {len(batch)} requests through one Map state")
        arn = executions.start_fanout(target.sfn, target.fanout_state_machine_arn, batch)
        ok &= click(info, batch[0].title, Click("erin@example.com", "approve"), say) == 200
        ok &= (
            click(
                info, batch[0].title, Click("grace@example.com", "approve", "Retention period is over"), say
            )
            == 200
        )
        ok &= (
            click(info, batch[1].title, Click("heidi@example.com", "reject", "Not during the freeze"), say)
            == 200
        )
        say(f"  (nobody answers “{batch[2].title}”: it expires after 3 s)")
        result = executions.wait(target.sfn, arn)
        ok &= show(say, result, "Summary")
        outcomes = [d.get("outcome") for d in fanout.decisions(target.client("s3"), result.output or {})]
        say(f"  decisions in request order: {outcomes}")
        ok &= outcomes == ["approved", "rejected", "expired"]
    finally:
        stack.stop()
    say("\nDemo " + ("passed: every workflow ended where its votes said." if ok else "FAILED."))
    return ok


def reassigned(info: LocalInfo, target: Target, request: ApprovalRequest, say: Say) -> bool:
    """Carol is away: an operator hands her place to a stand-in, who decides; her link closes."""
    say(f"▶ {request.title} ({request.policy.value}): Carol is away, so an operator reassigns her place")
    arn = executions.start(target.sfn, target.state_machine_arn, request)
    old_link = wait_for_email(info, "carol@example.com", request.title)["links"][0]
    (approval,) = target.store.for_execution(arn)
    change = Reassignment.model_validate(
        {"from": "carol@example.com", "to": STAND_IN, "by": "oncall@example.com", "at": utcnow()}
    )
    target.hand_over(approval.approval_id, change)
    say(f"  approvals reassign {approval.approval_id} --from carol@example.com --to {STAND_IN}")
    closed = approver.open_link(old_link)
    say(f"  → GET Carol's old link: {closed.status} (this request was reassigned)")
    status = click(
        info, request.title, Click(STAND_IN, "reject", "Over the limit without a manager's note"), say
    )
    return closed.status == 410 and status == 200 and show(say, executions.wait(target.sfn, arn), "Rejected")


def show(say: Say, result: executions.ExecutionReport, expected_final: str) -> bool:
    say(f"  execution {result.status}, states: {' → '.join(result.states)}")
    for vote in (result.output or {}).get("votes", []):
        answers = ", ".join(f"{name}={value}" for name, value in vote.get("data", {}).items())
        comment = f" “{vote['comment']}”" if vote["comment"] else ""
        say(
            f"  vote: {vote['approver']} {vote['outcome']}{comment}"
            + (f", answers {answers}" if answers else "")
        )
    for change in (result.output or {}).get("reassigned", []):
        say(f"  reassigned: {change['from']} → {change['to']} by {change['by']}")
    if result.output is not None:
        say(f"  output: {result.output}")
    good = result.final_state == expected_final
    say(f"  {'✔' if good else '✘'} ended in {result.final_state!r} (expected {expected_final!r})\n")
    return good
