"""One approval to show, for the unit tests of what shows it (emails, pages), and the
questions a deploy asks its approvers (``fields``), for every layer's tests of them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from approvals.links import approval_id_for
from approvals.models import Approval, ApprovalRequest

TOKEN = "the-task-token-that-must-stay-server-side"


def sample_approval(
    created_at: datetime, lifetime: timedelta, request: dict[str, Any] | None = None, **changes: Any
) -> Approval:
    """An approval asked of Alice and Bob by ci@example.com; ``request`` changes the
    request's fields, ``changes`` the approval's."""
    fields: dict[str, Any] = {
        "title": "Deploy checkout 2.4",
        "description": "Faster checkout.\nNew invoices page.",
        "approvers": ["alice@example.com", "bob@example.com"],
        "requester": "ci@example.com",
        "details": {"service": "checkout", "version": 24},
        **(request or {}),
    }
    return Approval.model_validate(
        {
            "approval_id": approval_id_for(TOKEN),
            "task_token": TOKEN,
            "execution": "arn:aws:states:us-east-1:123456789012:execution:approvals:run-1",
            "state": "RequestApproval",
            "request": ApprovalRequest.model_validate(fields),
            "created_at": created_at,
            "expires_at": created_at + lifetime,
            **changes,
        }
    )


# What a deploy asks its approvers, one field of each type.
ENVIRONMENT: dict[str, Any] = {
    "name": "environment",
    "label": "Target environment",
    "type": "choice",
    "options": ["staging", "production"],
    "required": True,
}
DEPLOY_FIELDS: list[dict[str, Any]] = [
    ENVIRONMENT,
    {"name": "replicas", "label": "Replicas", "type": "number", "min": 1, "max": 10},
    {"name": "backup_checked", "label": "Backup checked", "type": "boolean", "required": True},
    {"name": "window", "label": "Change window", "type": "date"},
    {"name": "ticket", "label": "Ticket", "type": "text", "max_length": 20},
]
