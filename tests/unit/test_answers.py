"""Approver data: the request's field definitions, and the answers read from a posted form."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from approvals import answers
from approvals.answers import InvalidAnswer
from approvals.models import (
    DATA_BYTES,
    MAX_FIELDS,
    ApprovalRequest,
    FieldSpec,
    Outcome,
    describe_validation_error,
)
from tests.unit.samples import ENVIRONMENT

BASE: dict[str, Any] = {"title": "Deploy", "approvers": ["alice@example.com"], "requester": "ci@example.com"}
SPECS = [
    FieldSpec.model_validate(ENVIRONMENT),
    FieldSpec.model_validate({"name": "ticket", "label": "Ticket", "type": "text", "max_length": 12}),
    FieldSpec.model_validate(
        {"name": "replicas", "label": "Replicas", "type": "number", "min": 1, "max": 10}
    ),
    FieldSpec.model_validate({"name": "backup_checked", "label": "Backup checked", "type": "boolean"}),
    FieldSpec.model_validate({"name": "window", "label": "Window", "type": "date"}),
]


def refusal(fields: list[dict[str, Any]]) -> str:
    with pytest.raises(ValidationError) as caught:
        ApprovalRequest.model_validate({**BASE, "fields": fields})
    return describe_validation_error(caught.value)


def form(**values: str) -> dict[str, str]:
    return answers.as_form(values)


def test_a_request_with_fields_round_trips_through_json() -> None:
    request = ApprovalRequest.model_validate({**BASE, "fields": [ENVIRONMENT]})
    assert ApprovalRequest.model_validate_json(request.model_dump_json()) == request
    assert request.fields[0].options == ["staging", "production"]
    assert ApprovalRequest.model_validate(BASE).fields == []


@pytest.mark.parametrize(
    ("fields", "cause"),
    [
        ([{**ENVIRONMENT, "options": None}], "request.fields.0.options: a choice field needs options"),
        (
            [{**ENVIRONMENT, "options": ["a", "a"]}],
            "request.fields.0.options: each option may be listed once",
        ),
        ([{**ENVIRONMENT, "options": []}], "request.fields.0.options: List should have at least 1 item"),
        ([{**ENVIRONMENT, "type": "colour"}], "request.fields.0.type: Input should be 'choice', 'text'"),
        ([{**ENVIRONMENT, "name": "Env ironment"}], "request.fields.0.name: String should match pattern"),
        ([{**ENVIRONMENT, "label": ""}], "request.fields.0.label: String should have at least 1 character"),
        ([{**ENVIRONMENT, "max_length": 5}], "request.fields.0.max_length: not allowed for a choice field"),
        (
            [{"name": "n", "label": "N", "type": "number", "min": 5, "max": 1}],
            "request.fields.0.min: must not",
        ),
        (
            [{"name": "n", "label": "N", "type": "text", "max_length": 1_001}],
            "request.fields.0.max_length: Input",
        ),
        (
            [{"name": "n", "label": "N", "type": "boolean", "options": ["x"]}],
            "request.fields.0.options: not allowed",
        ),
        ([ENVIRONMENT, ENVIRONMENT], "request.fields: each field name may be used once"),
        (
            [{**ENVIRONMENT, "name": f"f{i}"} for i in range(MAX_FIELDS + 1)],
            "request.fields: List should have",
        ),
        ([{**ENVIRONMENT, "colour": "red"}], "request.fields.0.colour: Extra inputs are not permitted"),
    ],
)
def test_a_bad_field_definition_is_refused_with_its_cause_named(
    fields: list[dict[str, Any]], cause: str
) -> None:
    assert refusal(fields).startswith(cause)


def test_every_answer_is_read_as_its_type() -> None:
    sent = form(
        environment="production", ticket=" OPS-42 ", replicas="3", backup_checked="true", window="2026-12-01"
    )
    assert answers.read(SPECS, sent, Outcome.APPROVED) == {
        "environment": "production",
        "ticket": "OPS-42",
        "replicas": 3,
        "backup_checked": True,
        "window": "2026-12-01",
    }
    assert answers.read(SPECS, {**sent, "data.replicas": "2.5"}, Outcome.APPROVED)["replicas"] == 2.5


def test_empty_optional_fields_are_left_out_and_an_unticked_box_is_false() -> None:
    sent = form(environment="staging", ticket="", replicas="", backup_checked="false", window="")
    assert answers.read(SPECS, sent, Outcome.APPROVED) == {"environment": "staging", "backup_checked": False}


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"environment": ""}, "environment", "Target environment: required to approve."),
        ({"environment": "prod"}, "environment", "Target environment: choose one of the options."),
        ({"ticket": "x" * 13}, "ticket", "Ticket: at most 12 characters, not 13."),
        ({"ticket": "a\x07b"}, "ticket", "Ticket: contains control characters"),
        ({"ticket": "a\x85b"}, "ticket", "Ticket: contains control characters"),
        ({"replicas": "three"}, "replicas", "Replicas: enter a number."),
        ({"replicas": "nan"}, "replicas", "Replicas: enter a number."),
        ({"replicas": "11"}, "replicas", "Replicas: at most 10."),
        ({"replicas": "0.5"}, "replicas", "Replicas: at least 1."),
        ({"backup_checked": "yes"}, "backup_checked", "Backup checked: tick the box"),
        ({"window": "2026-02-30"}, "window", "Window: enter a date as YYYY-MM-DD."),
        ({"window": "20261201"}, "window", "Window: enter a date as YYYY-MM-DD."),
    ],
)
def test_a_wrong_value_names_its_field(values: dict[str, str], field: str, message: str) -> None:
    with pytest.raises(InvalidAnswer) as refused:
        answers.read(SPECS, form(**{"environment": "staging", **values}), Outcome.APPROVED)
    assert refused.value.field == field
    assert refused.value.message.startswith(message)


def test_a_rejection_may_omit_required_fields_but_not_send_wrong_values() -> None:
    required_box = FieldSpec.model_validate(
        {"name": "ok", "label": "Backup checked", "type": "boolean", "required": True}
    )
    specs = [*SPECS, required_box]
    assert answers.read(specs, form(ok="false"), Outcome.REJECTED) == {"backup_checked": False, "ok": False}
    with pytest.raises(InvalidAnswer, match="tick the box to approve"):
        answers.read(specs, form(environment="staging", ok="false"), Outcome.APPROVED)
    with pytest.raises(InvalidAnswer, match="choose one of the options"):
        answers.read(specs, form(environment="prod"), Outcome.REJECTED)


def test_the_answers_together_stay_within_their_byte_cap_counted_as_escaped_json() -> None:
    """A CJK character is six bytes as \\uXXXX: the cap counts what the state will hold."""
    specs = [
        FieldSpec.model_validate({"name": f"t{i}", "label": "T", "type": "text", "max_length": 1_000})
        for i in range(3)
    ]
    within = form(t0="字" * 50, t1="字" * 50, t2="字" * 50)  # 3 × 300 bytes, and the JSON around
    assert len(json.dumps(answers.read(specs, within, Outcome.APPROVED))) <= DATA_BYTES
    with pytest.raises(InvalidAnswer) as refused:
        answers.read(specs, form(t0="字" * 60, t1="字" * 60, t2="字" * 60), Outcome.APPROVED)
    assert (refused.value.field, refused.value.message) == (
        "",
        "The answers are too long together: at most 1,000 bytes as JSON.",
    )


def test_what_was_typed_is_kept_as_sent_for_the_page_shown_again() -> None:
    sent = {**form(environment="prod", replicas="eleven"), "comment": "x", "data.unknown": "y"}
    assert answers.typed(SPECS, sent) == {"environment": "prod", "replicas": "eleven"}
