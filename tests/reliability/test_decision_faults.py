"""Settling under faults, against moto: SendTaskSuccess failing when a vote settles a
request. The approver is told the truth (recorded, the workflow will have it shortly: 202),
and the decision reaches the workflow exactly once, by the sweep or by the next click."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from moto.dynamodb.exceptions import DynamodbException
from moto.dynamodb.models import DynamoDBBackend

from approvals import sweep
from approvals.decision import Delivery, deliver
from approvals.models import REDELIVERY_GRACE, ApprovalRequest, Policy, Status, timeline, utcnow
from approvals.runtime import Services
from approvals.store.close import CONFIRM_DELIVERY
from tests.conftest import Stack, approval_id_of, eventually
from tests.integration.test_hand_written_tasks import REQUEST, hand_written_machine, run
from tests.reliability.faults import Hooks, Response, error, task_succeeded_events

ALICE, BOB = "alice@example.com", "bob@example.com"
PENDING_PAGE = (
    "Thank you. Your decision is recorded; the workflow will receive it within a few minutes,"
    " unless the request expires first."
)


class TaskSuccessCalls:
    """SendTaskSuccess through the API's and the sweep's client: the first ``failures``
    calls fail as a service outage does (503); every call's result is counted."""

    def __init__(self, hooks: Hooks, services: Services, failures: int) -> None:
        self.failures = failures
        self.results: list[str] = []
        hooks.on(services.sfn, "before-call.sfn.SendTaskSuccess", self._before)
        hooks.on(services.sfn, "after-call.sfn.SendTaskSuccess", self._after)

    def _before(self, **_: Any) -> Response | None:
        if self.failures > 0:
            self.failures -= 1
            self.results.append("injected 503")
            return error("ServiceUnavailable", 503)
        return None

    def _after(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if http_response.status_code == 200:
            self.results.append("delivered")
        elif parsed.get("Error", {}).get("Code") != "ServiceUnavailable":
            self.results.append(parsed.get("Error", {}).get("Code", "error"))


def started(stack: Stack, title: str, approvers: list[str], **fields: Any) -> tuple[str, dict[str, str]]:
    arn = stack.start(ApprovalRequest(title=title, approvers=approvers, requester="ci@example.com", **fields))
    return arn, {who: stack.email(who, title).links[0] for who in approvers}


def test_the_sweep_delivers_a_decision_the_workflow_did_not_take(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    calls = TaskSuccessCalls(hooks, services, failures=2)
    arn, links = started(stack, "Outage", [ALICE])

    page = stack.click(links[ALICE], "approve", "yes")
    assert page.status == 202
    assert "Decision recorded" in page.body
    assert PENDING_PAGE in page.body
    approval = stack.approval(approval_id_of(links[ALICE]))
    assert (approval.status, approval.delivery_failed) == (Status.APPROVED, True)
    stack.assert_running(arn)
    # The link now shows the outcome, not the buttons.
    assert stack.get(links[ALICE]).form_action is None

    assert sweep.sweep(services, utcnow()) == {"redelivered": 1}  # still down: flagged again
    assert stack.approval(approval.approval_id).delivery_failed
    assert sweep.sweep(services, utcnow()) == {"redelivered": 1}  # back: delivered
    report = stack.finish(arn)
    assert report.output["outcome"] == "approved"
    assert [(v["approver"], v["comment"]) for v in report.output["votes"]] == [(ALICE, "yes")]
    assert sweep.sweep(services, utcnow()) == {}  # nothing left to do
    assert not stack.approval(approval.approval_id).delivery_failed
    assert calls.results == ["injected 503", "injected 503", "delivered"]
    assert task_succeeded_events(stack.sfn, arn) == 1


@pytest.mark.parametrize("next_click", [ALICE, BOB], ids=["same approver again", "another approver"])
def test_the_next_click_delivers_a_decision_the_workflow_did_not_take(
    stack: Stack, services: Services, hooks: Hooks, next_click: str
) -> None:
    calls = TaskSuccessCalls(hooks, services, failures=1)
    arn, links = started(stack, "Outage then click", [ALICE, BOB], policy=Policy.FIRST_RESPONSE)
    assert stack.post_link(links[ALICE], "approve", accept_json=True).json()["delivery"] == "pending"

    late = stack.post_link(links[next_click], "reject", "too late")
    assert late.status == 409
    expected = "already decided" if next_click == ALICE else "already approved"
    assert expected in late.body
    report = stack.finish(arn)
    assert report.output["outcome"] == "approved"
    assert [v["approver"] for v in report.output["votes"]] == [ALICE]
    assert not stack.approval(approval_id_of(links[ALICE])).delivery_failed
    assert sweep.sweep(services, utcnow()) == {}
    assert calls.results == ["injected 503", "delivered"]
    assert task_succeeded_events(stack.sfn, arn) == 1


def test_a_decision_stays_delivered_once_whatever_clicks_and_sweeps_follow(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    calls = TaskSuccessCalls(hooks, services, failures=1)
    arn, links = started(stack, "Many retries", [ALICE, BOB], policy=Policy.FIRST_RESPONSE)
    assert stack.post_link(links[BOB], "approve").status == 202
    retries: list[Callable[[], object]] = [
        lambda: sweep.sweep(services, utcnow()),
        lambda: stack.post_link(links[ALICE], "approve"),
        lambda: sweep.sweep(services, utcnow()),
        lambda: stack.post_link(links[BOB], "approve"),
    ]
    for retry in retries:
        retry()
    assert stack.finish(arn).output["outcome"] == "approved"
    assert task_succeeded_events(stack.sfn, arn) == 1
    # The later attempts repeat the answer (Step Functions takes the first one only), and
    # tell the approvers the truth.
    assert calls.results[:2] == ["injected 503", "delivered"]
    assert [r.status for r in stack.responses[-2:]] == [409, 409]


def test_a_crash_between_settling_and_delivering_is_delivered_by_the_sweep(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    arn, links = started(stack, "Crash after settling", [ALICE])

    def crash_after_settling(parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Attributes", {}).get("status", {}).get("S") == "approved":
            raise RuntimeError("the API function was stopped")

    hooks.on(services.store._db, "after-call.dynamodb.UpdateItem", crash_after_settling)
    with pytest.raises(RuntimeError, match="stopped"):
        stack.post_link(links[ALICE], "approve")
    hooks.remove_all()
    approval = stack.approval(approval_id_of(links[ALICE]))
    assert approval.status is Status.APPROVED
    assert sweep.sweep(services, utcnow()) == {}  # the settling request may still be delivering
    stack.assert_running(arn)
    assert sweep.sweep(services, utcnow() + REDELIVERY_GRACE) == {"redelivered": 1}
    assert stack.finish(arn, timeout=3).output["outcome"] == "approved"
    assert not stack.approval(approval.approval_id).unconfirmed
    assert sweep.sweep(services, utcnow() + REDELIVERY_GRACE) == {}


def test_a_late_click_never_overtakes_the_delivery_of_the_vote_that_settles(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """Bob clicks while Alice's settling vote is on its way to Step Functions: Bob is told
    409 without delivering anything himself, and Alice is told the workflow has her
    decision (a repeat delivery could otherwise overtake hers and make it look too late)."""
    arn, links = started(stack, "Overtaken", [ALICE, BOB], policy=Policy.FIRST_RESPONSE)
    settling_call = threading.Event()
    bob_answered = threading.Event()
    calls: list[str] = []

    def settling_call_waits(**_: Any) -> None:
        calls.append("SendTaskSuccess")
        if not settling_call.is_set():  # the settling vote's call waits for Bob's answer
            settling_call.set()
            assert bob_answered.wait(timeout=15)

    hooks.on(services.sfn, "before-call.sfn.SendTaskSuccess", settling_call_waits)
    with ThreadPoolExecutor(1) as pool:
        alice = pool.submit(stack.post_link, links[ALICE], "approve")
        eventually(settling_call.is_set, what="the settling vote's SendTaskSuccess")
        assert stack.post_link(links[BOB], "approve").status == 409
        bob_answered.set()
        assert alice.result().status == 200, alice.result().body[-300:]
    assert stack.finish(arn).output["votes"][0]["approver"] == ALICE
    assert calls == ["SendTaskSuccess"]  # Bob's click sent nothing


def test_a_decision_the_workflow_never_took_before_its_timeout_is_recorded_as_too_late(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """Alice votes shortly before expiry and the first SendTaskSuccess fails; the task times
    out before the sweep repeats it. The service refuses the repeat as it refuses a repeat
    of an answer it took: the record must say the workflow took its timeout path."""
    calls = TaskSuccessCalls(hooks, services, failures=1)
    arn, links = started(stack, "Just too late", [ALICE], timeout_seconds=6)  # room to vote in time
    page = stack.post_link(links[ALICE], "approve")
    assert page.status == 202
    assert PENDING_PAGE in page.body  # not "the workflow has your decision"
    assert stack.finish(arn, timeout=20).output == {"outcome": "expired"}

    history_reads: list[str] = []

    def history_down_once(**_: Any) -> Response | None:
        history_reads.append("read")
        return error("ThrottlingException", 400) if len(history_reads) == 1 else None

    hooks.on(services.sfn, "before-call.sfn.GetExecutionHistory", history_down_once)
    assert sweep.sweep(services, utcnow()) == {"redelivered": 1}  # could not tell: try again
    assert stack.approval(approval_id_of(links[ALICE])).status is Status.APPROVED
    assert sweep.sweep(services, utcnow()) == {"too late": 1}
    approval = stack.approval(approval_id_of(links[ALICE]))
    assert approval.status is Status.EXPIRED
    assert not approval.unconfirmed
    assert [e.detail for e in timeline(approval) if e.kind == "settled"] == [
        "approved, too late for the workflow"
    ]
    assert sweep.sweep(services, utcnow()) == {}
    assert calls.results[0] == "injected 503"
    assert task_succeeded_events(stack.sfn, arn) == 0


def test_a_decision_refused_long_before_the_expiry_is_too_late_if_the_task_ended_first(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """The task ended long before the approval's links expire (a heartbeat timeout: nobody
    sends heartbeats; an execution stopped or failed elsewhere ends it alike) between a
    failed first delivery and the sweep's repeat. The service refuses the repeat as it
    refuses a second answer: the history, not the expiry, says the workflow never took it."""
    calls = TaskSuccessCalls(hooks, services, failures=1)
    message = {"request": REQUEST, "timeout_seconds": 3600}
    arn = run(stack, hand_written_machine(stack, message, task_timeout=3600, heartbeat_seconds=2))
    link = stack.email(ALICE, "Hand-written").links[0]
    assert stack.post_link(link, "approve").status == 202
    assert stack.finish(arn, timeout=20).status == "FAILED"  # the task's heartbeat timed out

    assert sweep.sweep(services, utcnow()) == {"too late": 1}
    approval = stack.approval(approval_id_of(link))
    assert (approval.status, approval.unconfirmed) == (Status.EXPIRED, False)
    assert [e.detail for e in timeline(approval) if e.kind == "settled"] == [
        "approved, too late for the workflow"
    ]
    assert calls.results == ["injected 503", "TaskTimedOut"]
    assert task_succeeded_events(stack.sfn, arn) == 0


def test_a_repeat_refused_after_the_expiry_is_confirmed_by_the_workflows_history(
    stack: Stack, services: Services
) -> None:
    """A repeat refused at or after the expiry could be a timeout or the answer taken: the
    execution's history tells which, and here it holds this approval's answer."""
    arn, links = started(stack, "Taken in time", [ALICE])
    assert stack.post_link(links[ALICE], "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"
    settled = stack.approval(approval_id_of(links[ALICE]))

    at_expiry = settled.model_copy(update={"expires_at": utcnow()})
    assert deliver(services.store, services.sfn, at_expiry, repeat=True) is Delivery.DELIVERED
    confirmed = stack.approval(settled.approval_id)
    assert (confirmed.status, confirmed.unconfirmed) == (Status.APPROVED, False)


def test_a_confirmation_the_workflow_could_not_write_is_made_by_the_sweep(
    stack: Stack, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workflow took the decision but its ConfirmDelivery write keeps failing (throttled
    through its retries): the workflow goes on with the decision all the same, and the
    sweep, once the grace is over, confirms it with a repeated answer the service refuses,
    never a second answer."""
    arn, links = started(stack, "Confirmation throttled", [ALICE])
    refused: list[str] = []
    update_item = DynamoDBBackend.update_item

    def throttled(backend: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("update_expression") == CONFIRM_DELIVERY["UpdateExpression"]:
            refused.append("throttled")
            raise DynamodbException("ProvisionedThroughputExceededException", "injected throttle")
        return update_item(backend, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(DynamoDBBackend, "update_item", throttled)
        assert stack.post_link(links[ALICE], "approve").status == 200
        report = stack.finish(arn, timeout=20)
    assert (report.status, report.output["outcome"]) == ("SUCCEEDED", "approved")
    assert refused == ["throttled"] * 3  # the write and its two retries
    approval = stack.approval(approval_id_of(links[ALICE]))
    assert approval.unconfirmed

    assert sweep.sweep(services, utcnow()) == {}  # within the grace: the workflow may yet write
    assert sweep.sweep(services, utcnow() + REDELIVERY_GRACE) == {"redelivered": 1}
    assert not stack.approval(approval.approval_id).unconfirmed
    assert sweep.sweep(services, utcnow() + REDELIVERY_GRACE) == {}
    assert task_succeeded_events(stack.sfn, arn) == 1
