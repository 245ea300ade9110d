"""Starting approval executions and reading what became of them."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from approvals.models import ApprovalRequest

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


@dataclass(frozen=True)
class ExecutionReport:
    arn: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    states: list[str]  # the states entered, in order

    @property
    def final_state(self) -> str:
        return self.states[-1] if self.states else ""


def start(sfn: SFNClient, state_machine_arn: str, request: ApprovalRequest, name: str | None = None) -> str:
    payload = {"request": request.model_dump(mode="json", exclude_none=True)}
    return sfn.start_execution(
        stateMachineArn=state_machine_arn, name=name or str(uuid.uuid4()), input=json.dumps(payload)
    )["executionArn"]


def start_fanout(sfn: SFNClient, state_machine_arn: str, requests: list[ApprovalRequest]) -> str:
    payload = {"requests": [r.model_dump(mode="json", exclude_none=True) for r in requests]}
    return sfn.start_execution(
        stateMachineArn=state_machine_arn, name=str(uuid.uuid4()), input=json.dumps(payload)
    )["executionArn"]


def report(sfn: SFNClient, execution_arn: str) -> ExecutionReport:
    described = sfn.describe_execution(executionArn=execution_arn)
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    states = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    output = described.get("output")
    return ExecutionReport(
        arn=execution_arn,
        status=described["status"],
        output=json.loads(output) if output else None,
        error=described.get("error"),
        cause=described.get("cause"),
        states=states,
    )


def wait(sfn: SFNClient, execution_arn: str, timeout: float = 60, interval: float = 0.2) -> ExecutionReport:
    deadline = time.monotonic() + timeout
    while True:
        status = sfn.describe_execution(executionArn=execution_arn)["status"]
        if status != "RUNNING" or time.monotonic() > deadline:
            return report(sfn, execution_arn)
        time.sleep(interval)
