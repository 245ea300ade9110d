"""Fixtures of the reliability suite: fault hooks (tests/reliability/faults.py), and the
worker's claim set to one visibility timeout, as the deployed stack sets it."""

from __future__ import annotations

import time

import pytest

from approvals import runtime
from approvals.models import utcnow
from approvals.runtime import Services
from tests.conftest import POLL_INTERVAL, VISIBILITY_TIMEOUT, Stack
from tests.reliability.faults import hooks

__all__ = ["hooks"]


@pytest.fixture
def services(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Services:
    """The handlers' services, with the claim lasting one visibility timeout (as in AWS:
    APPROVALS_CLAIM_SECONDS is the queue's visibility timeout)."""
    monkeypatch.setenv("APPROVALS_CLAIM_SECONDS", str(VISIBILITY_TIMEOUT))
    runtime.reset()
    return runtime.from_environment()


def wait_for_claims_to_lapse(stack: Stack) -> None:
    """Until no approval is held by a worker's claim: what a redelivery after a failure needs
    to be taken as a retry (in AWS the visibility timeout and the claim are one length)."""
    items = stack.dynamodb.scan(TableName=stack.resources.table_name)["Items"]
    held = max((int(item["claim_until"]["N"]) for item in items if "claim_until" in item), default=0)
    while utcnow().timestamp() <= held:
        time.sleep(POLL_INTERVAL)
