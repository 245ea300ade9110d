"""The integration fixtures live in tests/conftest.py, shared with the reliability and
security suites; the names the integration tests import are kept here."""

from __future__ import annotations

from tests.conftest import (
    API_URL,
    MAX_RECEIVES,
    POLL_INTERVAL,
    VISIBILITY_TIMEOUT,
    ApiResponse,
    Stack,
    approval_id_of,
    approval_id_of_message,
    eventually,
    lambda_context,
    token_of,
)

__all__ = [
    "API_URL",
    "MAX_RECEIVES",
    "POLL_INTERVAL",
    "VISIBILITY_TIMEOUT",
    "ApiResponse",
    "Stack",
    "approval_id_of",
    "approval_id_of_message",
    "eventually",
    "lambda_context",
    "token_of",
]
