"""Approver data against moto: the answers a request asks for, checked by the API, carried
by each vote into the decision the workflow gets."""

from __future__ import annotations

from typing import Any

from approvals.models import ApprovalRequest, FieldSpec, Policy
from tests.integration.conftest import Stack, approval_id_of
from tests.unit.samples import DEPLOY_FIELDS

ALICE, BOB = "alice@example.com", "bob@example.com"
GOOD = {"environment": "production", "replicas": "3", "backup_checked": "true", "window": "2026-12-01"}


def started(stack: Stack, title: str, approvers: list[str] | None = None, **extra: Any) -> tuple[str, str]:
    request = ApprovalRequest(
        title=title,
        approvers=approvers or [ALICE],
        requester="ci@example.com",
        fields=[FieldSpec.model_validate(spec) for spec in DEPLOY_FIELDS],
        **extra,
    )
    arn = stack.start(request)
    return arn, stack.email(approvers[0] if approvers else ALICE, title).links[0]


def test_each_vote_in_the_decision_carries_the_answers(stack: Stack) -> None:
    arn, link = started(stack, "Deploy with answers", [ALICE, BOB], policy=Policy.ALL)
    alice = stack.submit(stack.get(link), "approve", "ok", answers=GOOD)
    assert alice.status == 200, alice.body
    assert "production" in alice.body  # the confirmation shows what was recorded
    bob = stack.submit(
        stack.get(stack.email(BOB, "Deploy with answers").links[0]),
        "approve",
        answers={"environment": "staging", "replicas": "", "backup_checked": "true", "ticket": "OPS-7"},
    )
    assert bob.status == 200, bob.body

    report = stack.finish(arn)
    assert report.output["outcome"] == "approved"
    assert {vote["approver"]: vote["data"] for vote in report.output["votes"]} == {
        ALICE: {"environment": "production", "replicas": 3, "backup_checked": True, "window": "2026-12-01"},
        BOB: {"environment": "staging", "backup_checked": True, "ticket": "OPS-7"},
    }
    assert stack.approval(approval_id_of(link)).votes[ALICE].data["replicas"] == 3


def test_a_wrong_value_shows_the_page_again_with_the_message_and_what_was_typed(stack: Stack) -> None:
    arn, link = started(stack, "Deploy, mistyped")
    page = stack.get(link)
    typed = {**GOOD, "replicas": "11", "ticket": "<OPS-7>"}
    again = stack.submit(page, "approve", "my comment", answers=typed)
    assert again.status == 400
    assert "Replicas: at most 10." in again.body
    assert 'id="field-replicas" name="data.replicas" value="11"' in again.body
    assert 'value="&lt;OPS-7&gt;"' in again.body
    assert "<option selected>production</option>" in again.body
    assert "my comment</textarea>" in again.body
    assert stack.approval(approval_id_of(link)).votes == {}
    stack.assert_running(arn)

    fixed = stack.submit(again, "approve", "my comment", answers={**typed, "replicas": "10"})
    assert fixed.status == 200, fixed.body
    assert stack.finish(arn).output["votes"][0]["data"]["replicas"] == 10


def test_a_rejection_may_leave_required_answers_empty(stack: Stack) -> None:
    arn, link = started(stack, "Deploy, rejected")
    page = stack.get(link)
    refused = stack.submit(page, "approve", answers={"environment": ""})
    assert refused.status == 400
    assert "Target environment: required to approve." in refused.body

    rejected = stack.submit(page, "reject", "not this week")
    assert rejected.status == 200, rejected.body
    report = stack.finish(arn)
    assert report.output["outcome"] == "rejected"
    assert report.output["votes"][0]["data"] == {"backup_checked": False}  # the unticked box


def test_a_form_without_the_answers_is_refused_and_records_nothing(stack: Stack) -> None:
    """A form replayed from the link alone carries no answers: the vote's own condition
    refuses it, so a required answer cannot be skipped by leaving the page out."""
    arn, link = started(stack, "Deploy, replayed")
    refused = stack.post_link(link, "approve")
    assert refused.status == 400
    assert "asks for answers the form did not carry" in refused.body
    item = stack.raw_item(approval_id_of(link))
    assert item is not None
    assert (item["votes"], item["approvals"], item["status"]) == ({"M": {}}, {"N": "0"}, {"S": "pending"})
    assert stack.submit(stack.get(link), "approve", answers=GOOD).status == 200
    assert stack.finish(arn).status == "SUCCEEDED"


def test_a_bad_field_definition_fails_the_execution_with_its_cause_named(stack: Stack) -> None:
    request = {
        "title": "Deploy, badly asked",
        "approvers": [ALICE],
        "requester": "ci@example.com",
        "fields": [{"name": "environment", "label": "Target environment", "type": "choice"}],
    }
    stack.add_approvers([ALICE])
    arn = stack.start_raw(request)
    stack.drain()
    report = stack.finish(arn)
    assert (report.status, report.error) == ("FAILED", "Approval.InvalidRequest")
    assert report.cause == "request.fields.0.options: a choice field needs options"
    assert stack.emails() == []
