"""The contracts: what a valid approval request is, and how a bad one is described."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from approvals.models import (
    DEFAULT_TIMEOUT_SECONDS,
    DESCRIPTION_BYTES,
    MAX_APPROVERS,
    MAX_TIMEOUT_SECONDS,
    REQUEST_BYTES,
    Approval,
    ApprovalRequest,
    Decision,
    Outcome,
    Policy,
    QueueMessage,
    Status,
    Vote,
    describe_validation_error,
    recurring_reminder_due,
    timeline,
)
from tests.unit.samples import sample_approval

VALID: dict[str, Any] = {
    "title": "Deploy v2 to production",
    "approvers": ["alice@example.com", "bob@example.com"],
    "requester": "ci@example.com",
}
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def problems(**overrides: Any) -> str:
    """The one-line description of what is wrong with VALID changed by ``overrides``."""
    data = {**VALID, **overrides}
    with pytest.raises(ValidationError) as caught:
        ApprovalRequest.model_validate(data)
    return describe_validation_error(caught.value)


def test_minimal_request_gets_the_documented_defaults() -> None:
    request = ApprovalRequest.model_validate(VALID)
    assert request.description == ""
    assert request.policy is Policy.FIRST_RESPONSE
    assert request.quorum is None
    assert request.timeout_seconds == DEFAULT_TIMEOUT_SECONDS == 86_400
    assert request.details == {}
    assert request.approvers == ["alice@example.com", "bob@example.com"]


def test_full_request_round_trips_through_json() -> None:
    request = ApprovalRequest(
        title="Refund",
        description="Line one\nLine two\twith a tab\r\n",
        approvers=["a@example.com", "b@example.com", "c@example.com"],
        policy=Policy.QUORUM,
        quorum=2,
        timeout_seconds=MAX_TIMEOUT_SECONDS,
        requester="support",
        details={"order": 1187, "nested": {"a": [1, 2]}, "note": None},
    )
    assert ApprovalRequest.model_validate_json(request.model_dump_json()) == request


def test_request_is_immutable() -> None:
    request = ApprovalRequest.model_validate(VALID)
    with pytest.raises(ValidationError):
        request.title = "changed"  # type: ignore[misc]


def test_emails_are_stripped_and_lowercased() -> None:
    request = ApprovalRequest.model_validate(
        {**VALID, "approvers": ["  Alice@Example.COM ", "BOB@example.com"]}
    )
    assert request.approvers == ["alice@example.com", "bob@example.com"]


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"title": ""}, "request.title", "at least 1 character"),
        ({"title": "字" * 201}, "request.title", "at most 600 bytes of UTF-8, not 603"),
        ({"title": 42}, "request.title", "valid string"),
        ({"description": "字" * 10_001}, "request.description", f"at most {DESCRIPTION_BYTES:,} bytes"),
        ({"description": "😀" * 7_501}, "request.description", "not 30,004"),
        ({"approvers": []}, "request.approvers", "at least 1"),
        ({"approvers": "alice@example.com"}, "request.approvers", "valid list"),
        ({"approvers": ["alice@example.com", "not-an-email"]}, "request.approvers.1", "not a valid email"),
        ({"approvers": ["alice@localhost"]}, "request.approvers.0", "not a valid email"),
        ({"approvers": ["Alice <alice@example.com>"]}, "request.approvers.0", "not a valid email"),
        ({"approvers": ["a b@example.com"]}, "request.approvers.0", "not a valid email"),
        ({"approvers": [f"{'a' * 250}@example.com"]}, "request.approvers.0", "not a valid email"),
        (
            {"approvers": [f"user{i}@example.com" for i in range(MAX_APPROVERS + 1)]},
            "request.approvers",
            "at most 50",
        ),
        ({"policy": "majority"}, "request.policy", "'first_response', 'all', 'quorum' or 'sequence'"),
        ({"policy": "quorum"}, "request.quorum", "required when policy is quorum"),
        ({"policy": "quorum", "quorum": 3}, "request.quorum", "cannot exceed the number of approvers"),
        ({"policy": "quorum", "quorum": 0}, "request.quorum", "greater than or equal to 1"),
        ({"policy": "all", "quorum": 1}, "request.quorum", "only allowed when policy is quorum"),
        ({"quorum": 1}, "request.quorum", "only allowed when policy is quorum"),
        ({"timeout_seconds": 0}, "request.timeout_seconds", "greater than or equal to 1"),
        ({"timeout_seconds": -5}, "request.timeout_seconds", "greater than or equal to 1"),
        (
            {"timeout_seconds": MAX_TIMEOUT_SECONDS + 1},
            "request.timeout_seconds",
            f"less than or equal to {MAX_TIMEOUT_SECONDS}",
        ),
        ({"timeout_seconds": 1.5}, "request.timeout_seconds", "valid integer"),
        ({"requester": ""}, "request.requester", "at least 1 character"),
        ({"requester": "字" * 201}, "request.requester", "at most 600 bytes"),
        (
            {"details": {f"k{i}": "字" * 500 for i in range(50)}},
            "request",
            f"at most {REQUEST_BYTES:,} bytes as JSON, not 75,",
        ),
        ({"details": ["not", "a", "mapping"]}, "request.details", "valid dictionary"),
        ({"details": {f"k{i}": i for i in range(51)}}, "request.details", "at most 50"),
        ({"colour": "red"}, "request.colour", "Extra inputs are not permitted"),
        ({"remind_every_seconds": 59}, "request.remind_every_seconds", "greater than or equal to 60"),
        (
            {"remind_every_seconds": 3600, "timeout_seconds": 3600},
            "request.remind_every_seconds",
            "must be shorter than timeout_seconds, or it never fires",
        ),
    ],
)
def test_each_bad_field_is_named(overrides: dict[str, Any], field: str, fragment: str) -> None:
    described = problems(**overrides)
    assert described.startswith(f"{field}: "), described
    assert fragment in described


def test_text_caps_count_bytes_so_long_non_latin_text_within_them_is_accepted() -> None:
    request = ApprovalRequest.model_validate(
        {**VALID, "title": "字" * 200, "description": "字" * 10_000, "details": {"説明": "字" * 5_000}}
    )
    assert len(request.model_dump_json().encode()) <= REQUEST_BYTES


@pytest.mark.parametrize("missing", ["title", "approvers", "requester"])
def test_required_fields_are_named_when_missing(missing: str) -> None:
    data = {k: v for k, v in VALID.items() if k != missing}
    with pytest.raises(ValidationError) as caught:
        ApprovalRequest.model_validate(data)
    assert describe_validation_error(caught.value) == f"request.{missing}: Field required"


def test_every_problem_is_listed_on_one_line() -> None:
    described = problems(title="", approvers=["nope"], timeout_seconds=0)
    parts = described.split("; ")
    assert [part.split(":", 1)[0] for part in parts] == [
        "request.title",
        "request.approvers.0",
        "request.timeout_seconds",
    ]
    assert "\n" not in described


def test_prefix_is_configurable() -> None:
    with pytest.raises(ValidationError) as caught:
        QueueMessage.model_validate(
            {"execution": "arn", "state": "Ask", "request": {}, "timeout_seconds": 60}
        )
    assert describe_validation_error(caught.value, prefix="message") == "message.task_token: Field required"


@pytest.mark.parametrize(
    "approvers",
    [
        ["alice@example.com", "alice@example.com"],
        ["alice@example.com", "ALICE@example.com"],
        ["alice@example.com", " alice@example.com"],
    ],
)
def test_duplicate_approvers_are_refused(approvers: list[str]) -> None:
    assert problems(approvers=approvers) == "request.approvers: each approver may be listed once"


@pytest.mark.parametrize("policy", ["first_response", "all"])
def test_quorum_is_only_for_the_quorum_policy(policy: str) -> None:
    assert ApprovalRequest.model_validate({**VALID, "policy": policy}).quorum is None


@pytest.mark.parametrize("quorum", [1, 2])
def test_quorum_up_to_the_number_of_approvers(quorum: int) -> None:
    request = ApprovalRequest.model_validate({**VALID, "policy": "quorum", "quorum": quorum})
    assert request.quorum == quorum


@pytest.mark.parametrize("field", ["title", "description", "requester"])
@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85"])
def test_control_characters_are_refused(field: str, char: str) -> None:
    described = problems(**{field: f"before{char}after"})
    assert described == f"request.{field}: must not contain control characters"


def test_control_characters_in_detail_keys_are_refused() -> None:
    described = problems(details={"key\x1b[31m": "red"})
    assert described.startswith("request.details.")
    assert "must not contain control characters" in described


@pytest.mark.parametrize("text", ["two\nlines", "tab\tseparated", "windows\r\nline", "émoji ✅ ünïcode"])
def test_newlines_tabs_and_unicode_are_prose(text: str) -> None:
    request = ApprovalRequest.model_validate({**VALID, "description": text, "title": text})
    assert request.description == text


def test_queue_message_ignores_unknown_fields_and_keeps_request_raw() -> None:
    message = QueueMessage.model_validate(
        {
            "task_token": "t",
            "execution": "arn:x",
            "state": "Ask",
            "request": {"anything": 1},
            "timeout_seconds": 60,
            "extra": True,
        }
    )
    assert message.request == {"anything": 1}


@pytest.mark.parametrize(
    "body",
    [
        {"execution": "e", "state": "s", "request": {}},
        {"task_token": "", "execution": "e", "state": "s", "request": {}},
        {"task_token": "t" * 1025, "execution": "e", "state": "s", "request": {}},
        {"task_token": 5, "execution": "e", "state": "s", "request": {}},
        {"task_token": "t", "execution": "e", "state": "s"},
    ],
)
def test_queue_message_envelope_is_checked(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        QueueMessage.model_validate(body)


def _approval(**overrides: Any) -> Approval:
    base: dict[str, Any] = {
        "approval_id": "0" * 32,
        "task_token": "secret-token",
        "execution": "arn:aws:states:us-east-1:123456789012:execution:m:e",
        "state": "RequestApproval",
        "request": ApprovalRequest.model_validate(VALID),
        "created_at": NOW,
        "expires_at": NOW + timedelta(hours=1),
    }
    return Approval.model_validate({**base, **overrides})


def test_pending_approval_has_no_decision() -> None:
    assert _approval().decision() is None


def test_decision_lists_votes_in_time_order() -> None:
    late = Vote(approver="bob@example.com", outcome=Outcome.APPROVED, at=NOW + timedelta(minutes=5))
    early = Vote(approver="alice@example.com", outcome=Outcome.APPROVED, comment="ok", at=NOW)
    approval = _approval(
        status=Status.APPROVED,
        votes={"bob@example.com": late, "alice@example.com": early},
        decided_at=NOW + timedelta(minutes=5),
    )
    decision = approval.decision()
    assert decision is not None
    assert decision.outcome is Outcome.APPROVED
    assert [v.approver for v in decision.votes] == ["alice@example.com", "bob@example.com"]


def test_only_a_decision_whose_sender_confirms_its_delivery_says_so() -> None:
    """A single click's decision is as it was; a bulk vote's tells the workflow to skip its
    own confirmation (the state machines' ConfirmationNeeded Choice)."""
    approval = _approval(status=Status.APPROVED, decided_at=NOW)
    plain, confirmed = approval.decision(), approval.decision(confirmed_by_service=True)
    assert plain is not None
    assert confirmed is not None
    assert "confirmed_by_service" not in plain.model_dump(mode="json", exclude_none=True)
    assert confirmed.model_dump(mode="json", exclude_none=True)["confirmed_by_service"] is True


def test_decision_contract_shape() -> None:
    vote = Vote(
        approver="alice@example.com",
        outcome=Outcome.REJECTED,
        comment="no",
        at=NOW,
        data={"environment": "staging"},
    )
    decision = Decision(approval_id="a" * 32, outcome=Outcome.REJECTED, votes=[vote], decided_at=NOW)
    assert decision.model_dump(mode="json", exclude_none=True) == {
        "approval_id": "a" * 32,
        "outcome": "rejected",
        "votes": [
            {
                "approver": "alice@example.com",
                "outcome": "rejected",
                "comment": "no",
                "at": "2030-01-02T03:04:05Z",
                "data": {"environment": "staging"},
                "proof": "link",
            }
        ],
        "decided_at": "2030-01-02T03:04:05Z",
    }


def test_a_vote_proven_by_sign_in_names_its_issuer_in_the_decision_and_the_timeline() -> None:
    vote = Vote(
        approver="alice@example.com",
        outcome=Outcome.APPROVED,
        at=NOW,
        proof="sign-in",
        issuer="https://login.example.com",
    )
    approval = _approval(status=Status.APPROVED, votes={"alice@example.com": vote}, decided_at=NOW)
    decision = approval.decision()
    assert decision is not None
    recorded = decision.model_dump(mode="json", exclude_none=True)["votes"][0]
    assert (recorded["proof"], recorded["issuer"]) == ("sign-in", "https://login.example.com")
    voted = [e.detail for e in timeline(approval) if e.kind == "voted"]
    assert voted == ["approved (signed in with https://login.example.com)"]


def test_a_request_may_ask_for_sign_in_and_asks_for_the_link_by_default() -> None:
    assert ApprovalRequest.model_validate(VALID).identity == "link"
    assert ApprovalRequest.model_validate({**VALID, "identity": "sign-in"}).identity == "sign-in"
    with pytest.raises(ValidationError):
        ApprovalRequest.model_validate({**VALID, "identity": "password"})


@pytest.mark.parametrize(
    ("status", "offset", "expired"),
    [
        (Status.PENDING, timedelta(minutes=-1), False),
        (Status.PENDING, timedelta(0), True),
        (Status.PENDING, timedelta(minutes=1), True),
        (Status.APPROVED, timedelta(minutes=1), False),
        (Status.EXPIRED, timedelta(minutes=-1), True),
    ],
)
def test_expiry(status: Status, offset: timedelta, expired: bool) -> None:
    approval = _approval(status=status)
    assert approval.is_expired(approval.expires_at + offset) is expired


def test_task_token_is_not_in_the_approval_repr() -> None:
    approval = _approval()
    assert "secret-token" not in repr(approval)
    assert "secret-token" not in str(approval)


@pytest.mark.parametrize("field", ["timeout_seconds", "quorum", "remind_every_seconds"])
def test_true_is_not_a_number(field: str) -> None:
    fields: dict[str, Any] = {"title": "t", "approvers": ["a@example.com"], "requester": "r"}
    fields |= {"policy": "quorum", "quorum": 1} if field == "quorum" else {}
    with pytest.raises(ValidationError) as refused:
        ApprovalRequest.model_validate({**fields, field: True})
    assert describe_validation_error(refused.value) == f"request.{field}: must be a number, not true or false"


def test_a_view_reads_as_the_link_being_opened_perhaps_by_a_mail_scanner() -> None:
    """A GET is all a view is: mail scanners open every link, so the timeline must not
    claim a person read the request."""
    approval = sample_approval(NOW, timedelta(hours=1), viewed={"alice@example.com": NOW})
    [viewed] = [event for event in timeline(approval) if event.kind == "viewed"]
    assert (viewed.actor, viewed.detail) == ("alice@example.com", "link opened (perhaps by a mail scanner)")


def test_docs_queue_message_schema_is_the_models_own() -> None:
    document = Path(__file__).resolve().parents[2] / "docs" / "queue-message.schema.json"
    assert json.loads(document.read_text()) == QueueMessage.json_schema(), (
        "run: approvals queue-schema > docs/queue-message.schema.json"
    )


def test_queue_message_schema_takes_what_the_worker_takes_and_requires_the_timeout() -> None:
    validator = Draft202012Validator(QueueMessage.json_schema())
    request = {"title": "Deploy", "approvers": ["alice@example.com"], "requester": "ci", "policy": "all"}
    message = {
        "task_token": "t",
        "execution": "arn:aws:states:us-east-1:123456789012:execution:theirs:run-1",
        "state": "Approve",
        "request": request,
        "timeout_seconds": 3600,
    }
    assert list(validator.iter_errors(message)) == []
    QueueMessage.model_validate(message)
    ApprovalRequest.model_validate(request)
    missing = {name: value for name, value in message.items() if name != "timeout_seconds"}
    assert [error.message for error in validator.iter_errors(missing)] == [
        "'timeout_seconds' is a required property"
    ]
    bad_request = {**message, "request": {**request, "policy": "majority"}}
    assert len(list(validator.iter_errors(bad_request))) == 1


@pytest.mark.parametrize(
    ("execution", "workflow", "state_machine"),
    [
        (
            "arn:aws:states:us-east-1:123456789012:execution:deploy-pipeline:run-1",
            "deploy-pipeline",
            "arn:aws:states:us-east-1:123456789012:stateMachine:deploy-pipeline",
        ),
        (  # a Distributed Map's child execution
            "arn:aws:states:eu-west-1:123456789012:execution:refunds/EachRefund:4f1c",
            "refunds",
            "arn:aws:states:eu-west-1:123456789012:stateMachine:refunds",
        ),
        (
            "arn:aws:states:us-east-1:123456789012:express:quick:run-1:start",
            "quick",
            "arn:aws:states:us-east-1:123456789012:stateMachine:quick",
        ),
        ("not-an-arn", "not-an-arn", None),
    ],
    ids=["standard", "distributed map child", "express", "not an ARN"],
)
def test_the_workflow_is_the_state_machine_of_the_execution(
    execution: str, workflow: str, state_machine: str | None
) -> None:
    approval = sample_approval(datetime(2030, 1, 1, tzinfo=UTC), timedelta(hours=1), execution=execution)
    assert (approval.workflow, approval.state_machine_arn) == (workflow, state_machine)


def test_the_timeline_shows_the_answers_a_vote_carried() -> None:
    vote = Vote(
        approver="alice@example.com", outcome=Outcome.APPROVED, comment="go", at=NOW, data={"env": "prod"}
    )
    voted = [e for e in timeline(_approval(votes={"alice@example.com": vote})) if e.kind == "voted"]
    assert [e.detail for e in voted] == ["approved: go (env=prod)"]


def test_one_recurring_reminder_is_due_per_period_begun_however_late_the_sweep() -> None:
    approval = _approval(request=ApprovalRequest.model_validate({**VALID, "remind_every_seconds": 600}))
    start = approval.created_at
    assert recurring_reminder_due(approval, start + timedelta(seconds=599)) is None
    assert recurring_reminder_due(approval, start + timedelta(seconds=600)) == 1
    assert recurring_reminder_due(approval, start + timedelta(seconds=3_000)) == 5
    sent = approval.model_copy(update={"recurring_reminder": 5})
    assert recurring_reminder_due(sent, start + timedelta(seconds=3_599)) is None
    assert recurring_reminder_due(sent, start + timedelta(seconds=3_600)) == 6
    assert recurring_reminder_due(_approval(), start + timedelta(days=1)) is None  # none asked for
