"""An approver's answers to a request's fields, read from the posted form and checked on the
server: the page's own checks help the approver, but only these decide what is recorded."""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from datetime import date

from approvals.models import DATA_BYTES, Answer, FieldSpec, FieldType, Outcome

FORM_PREFIX = "data."  # form keys "data.NAME", apart from the link's and the decision's own
DEFAULT_TEXT_LENGTH = 200
# What a checkbox sends: the page puts a hidden "false" before it, which a ticked box's
# "true" overrides, so that the form always carries every field.
TRUE, FALSE = "true", "false"


class InvalidAnswer(ValueError):
    """A value the approver must fix; ``field`` names the field (empty for all of them)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def as_form(values: Mapping[str, str]) -> dict[str, str]:
    """Answers by field name as the page's form sends them."""
    return {FORM_PREFIX + name: value for name, value in values.items()}


def typed(specs: list[FieldSpec], form: Mapping[str, str]) -> dict[str, str]:
    """What the approver typed into each field, as sent."""
    return {spec.name: form[FORM_PREFIX + spec.name] for spec in specs if FORM_PREFIX + spec.name in form}


def read(specs: list[FieldSpec], form: Mapping[str, str], outcome: Outcome) -> dict[str, Answer]:
    """The answers to record with a vote. Required fields are required to approve only: a
    rejection may leave them empty. An unticked optional checkbox is ``false``."""
    answers: dict[str, Answer] = {}
    for spec in specs:
        raw = form.get(FORM_PREFIX + spec.name, "").strip()
        if spec.type is FieldType.BOOLEAN:
            if raw not in ("", FALSE, TRUE):
                raise InvalidAnswer(spec.name, f"{spec.label}: tick the box or leave it empty.")
            if raw != TRUE and spec.required and outcome is Outcome.APPROVED:
                raise InvalidAnswer(spec.name, f"{spec.label}: tick the box to approve.")
            answers[spec.name] = raw == TRUE
        elif not raw:
            if spec.required and outcome is Outcome.APPROVED:
                raise InvalidAnswer(spec.name, f"{spec.label}: required to approve.")
        else:
            answers[spec.name] = _value(spec, raw)
    if len(json.dumps(answers)) > DATA_BYTES:
        raise InvalidAnswer("", f"The answers are too long together: at most {DATA_BYTES:,} bytes as JSON.")
    return answers


def _value(spec: FieldSpec, raw: str) -> Answer:
    match spec.type:
        case FieldType.CHOICE:
            if raw not in (spec.options or []):
                raise InvalidAnswer(spec.name, f"{spec.label}: choose one of the options.")
            return raw
        case FieldType.TEXT:
            limit = spec.max_length or DEFAULT_TEXT_LENGTH
            if len(raw) > limit:
                raise InvalidAnswer(
                    spec.name, f"{spec.label}: at most {limit:,} characters, not {len(raw):,}."
                )
            if any(unicodedata.category(c) == "Cc" for c in raw):  # one line: no breaks either
                raise InvalidAnswer(
                    spec.name, f"{spec.label}: contains control characters; please retype it."
                )
            return raw
        case FieldType.NUMBER:
            return _number(spec, raw)
        case FieldType.DATE:
            return _date(spec, raw)
    raise AssertionError(f"no reader for {spec.type}")  # booleans are read by the caller


def _date(spec: FieldSpec, raw: str) -> str:
    try:
        if len(raw) == len("YYYY-MM-DD"):  # fromisoformat also takes 20260131 and 2026-W05
            return date.fromisoformat(raw).isoformat()
    except ValueError:
        pass
    raise InvalidAnswer(spec.name, f"{spec.label}: enter a date as YYYY-MM-DD.")


def _number(spec: FieldSpec, raw: str) -> int | float:
    try:
        number = float(raw)
    except ValueError:
        raise InvalidAnswer(spec.name, f"{spec.label}: enter a number.") from None
    if not math.isfinite(number):
        raise InvalidAnswer(spec.name, f"{spec.label}: enter a number.")
    if spec.min is not None and number < spec.min:
        raise InvalidAnswer(spec.name, f"{spec.label}: at least {spec.min:g}.")
    if spec.max is not None and number > spec.max:
        raise InvalidAnswer(spec.name, f"{spec.label}: at most {spec.max:g}.")
    return int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number
