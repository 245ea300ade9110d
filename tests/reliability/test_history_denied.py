"""A repeat of a decision refused near the expiry, when the execution's history may not be
read (AccessDenied: another account's execution, or a policy): the approval must still
leave the sweep's index, with the status the workflow most likely saw, instead of being
redelivered on every sweep for good."""

from __future__ import annotations

from typing import Any

from approvals import sweep
from approvals.decision import Delivery, deliver
from approvals.models import ApprovalRequest, Status, utcnow
from approvals.runtime import Services
from tests.conftest import Stack, approval_id_of
from tests.reliability.faults import Hooks, Response, error

ALICE = "alice@example.com"


def _history_denied(hooks: Hooks, services: Services) -> None:
    def denied(**_: Any) -> Response:
        return error("AccessDeniedException", 400, "not authorized to perform states:GetExecutionHistory")

    hooks.on(services.sfn, "before-call.sfn.GetExecutionHistory", denied)


def _started(stack: Stack, title: str, **fields: Any) -> tuple[str, str]:
    arn = stack.start(ApprovalRequest(title=title, approvers=[ALICE], requester="ci@example.com", **fields))
    return arn, stack.email(ALICE, title).links[0]


def test_a_decision_whose_delivery_failed_is_too_late_when_the_history_is_denied(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """Alice's vote was never delivered (SendTaskSuccess failed), the task timed out, and the
    repeat is refused: without the history, the failed delivery says the workflow did not
    take it."""

    def unavailable(**_: Any) -> Response:
        return error("ServiceUnavailable", 503)

    hooks.on(services.sfn, "before-call.sfn.SendTaskSuccess", unavailable)
    arn, link = _started(stack, "Denied history", timeout_seconds=6)
    assert stack.post_link(link, "approve").status == 202
    assert stack.finish(arn, timeout=20).output == {"outcome": "expired"}
    hooks.remove_all()
    _history_denied(hooks, services)

    assert sweep.sweep(services, utcnow()) == {"too late": 1}
    approval = stack.approval(approval_id_of(link))
    assert (approval.status, approval.unconfirmed) == (Status.EXPIRED, False)
    assert sweep.sweep(services, utcnow()) == {}  # out of the sweep's index


def test_a_decision_delivered_once_is_confirmed_when_the_history_is_denied(
    stack: Stack, services: Services, hooks: Hooks
) -> None:
    """The first delivery went through; the repeat at the expiry is refused and the history
    may not be read: the delivery that did not fail says the workflow took it."""
    arn, link = _started(stack, "Taken, history denied")
    assert stack.post_link(link, "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"
    settled = stack.approval(approval_id_of(link))
    _history_denied(hooks, services)

    at_expiry = settled.model_copy(update={"expires_at": utcnow()})
    assert deliver(services.store, services.sfn, at_expiry, repeat=True) is Delivery.DELIVERED
    confirmed = stack.approval(settled.approval_id)
    assert (confirmed.status, confirmed.unconfirmed, confirmed.delivery_failed) == (
        Status.APPROVED,
        False,
        False,
    )
