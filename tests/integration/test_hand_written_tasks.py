"""Approval Tasks written by hand (SAM, Terraform, the console), against moto: the message must
carry the task's timeout, and a task that outlives its links is answered by the sweep."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

from approvals import runtime
from approvals.local.resources import LOCAL_ROLE
from approvals.models import REDELIVERY_GRACE, Status, utcnow
from approvals.sweep import sweep
from bench.calls import CallCounter
from tests.integration.conftest import Stack

ALICE = "alice@example.com"
REQUEST = {"title": "Hand-written", "approvers": [ALICE], "requester": "ci@example.com"}


def hand_written_machine(
    stack: Stack, message: dict[str, Any], task_timeout: int, heartbeat_seconds: int | None = None
) -> str:
    """A state machine of someone else's: one approval Task with the given message body
    (and, if given, a heartbeat timeout: the service sends no heartbeats)."""
    definition = {
        "StartAt": "Approve",
        "States": {
            "Approve": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {
                    "QueueUrl": stack.resources.queue_url,
                    "MessageBody": {
                        "task_token.$": "$$.Task.Token",
                        "execution.$": "$$.Execution.Id",
                        "state.$": "$$.State.Name",
                        **message,
                    },
                },
                "TimeoutSeconds": task_timeout,
                **({"HeartbeatSeconds": heartbeat_seconds} if heartbeat_seconds else {}),
                "End": True,
            }
        },
    }
    return stack.sfn.create_state_machine(
        name=f"theirs-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=LOCAL_ROLE
    )["stateMachineArn"]


def run(stack: Stack, machine: str) -> str:
    stack.add_approvers([ALICE])  # as an operator does before a workflow names them
    return stack.sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        ({"request": REQUEST}, "message.timeout_seconds: Field required"),
        ({"timeout_seconds": 3600}, "message.request: Field required"),
        (
            {"request": REQUEST, "timeout_seconds": "3600"},
            "message.timeout_seconds: Input should be a valid integer",
        ),
    ],
    ids=["no timeout", "no request", "timeout as text"],
)
def test_a_message_missing_a_field_is_refused_at_once_by_name(
    stack: Stack, message: dict[str, Any], cause: str
) -> None:
    machine = hand_written_machine(stack, message, task_timeout=3600)
    report = stack.finish(run(stack, machine))
    assert (report.status, report.error, report.cause) == ("FAILED", "Approval.InvalidRequest", cause)
    assert stack.emails() == []


def test_a_request_timeout_other_than_the_tasks_is_refused(stack: Stack) -> None:
    message = {"request": {**REQUEST, "timeout_seconds": 60}, "timeout_seconds": 3600}
    report = stack.finish(run(stack, hand_written_machine(stack, message, task_timeout=3600)))
    assert (report.status, report.error) == ("FAILED", "Approval.InvalidRequest")
    assert report.cause == (
        "request.timeout_seconds: 60 differs from message.timeout_seconds (3600, the task's own"
        " timeout); the links must expire with the task"
    )


def test_each_refusal_is_counted_for_the_alarm_whatever_the_workflow(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    machine = hand_written_machine(stack, {"request": REQUEST}, task_timeout=3600)
    stack.finish(run(stack, machine))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (counted,) = [line for line in lines if "InvalidRequests" in line]
    assert counted["InvalidRequests"] == [1.0]
    assert counted["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "StepFunctionsApprovals"


def test_the_sweep_answers_a_task_that_outlived_its_links(stack: Stack) -> None:
    # The Task waits an hour, but its message says the links last a minute.
    machine = hand_written_machine(stack, {"request": REQUEST, "timeout_seconds": 60}, task_timeout=3600)
    arn = run(stack, machine)
    stack.email(ALICE, "Hand-written")
    (approval,) = stack.approvals()

    done = sweep(runtime.from_environment(), approval.expires_at + timedelta(seconds=1))

    assert done["expired"] == 1
    report = stack.finish(arn)
    assert (report.status, report.error) == ("FAILED", "Approval.Expired")
    assert stack.approval(approval.approval_id).status is Status.EXPIRED


def test_the_sweep_leaves_a_task_that_has_its_links(stack: Stack) -> None:
    machine = hand_written_machine(stack, {"request": REQUEST, "timeout_seconds": 60}, task_timeout=60)
    arn = run(stack, machine)
    stack.email(ALICE, "Hand-written")
    (approval,) = stack.approvals()

    assert sweep(runtime.from_environment(), approval.expires_at - timedelta(seconds=1))["expired"] == 0
    stack.assert_running(arn)


def test_a_task_without_the_confirmation_state_is_confirmed_by_the_sweep(stack: Stack) -> None:
    """The product's state machines confirm delivery themselves (ConfirmDelivery); a Task
    written by hand does not, so the sweep, once the grace is over, repeats the answer (the
    service refuses it; the execution's history shows the workflow has it) and takes the
    approval off its index: three calls, once."""
    machine = hand_written_machine(stack, {"request": REQUEST, "timeout_seconds": 3600}, task_timeout=3600)
    arn = run(stack, machine)
    link = stack.email(ALICE, "Hand-written").links[0]
    assert stack.click(link, "approve").status == 200
    assert stack.finish(arn).output["outcome"] == "approved"
    (approval,) = stack.approvals()
    assert approval.unconfirmed

    services = runtime.from_environment()
    counter = CallCounter(services.store._db, services.sfn)
    assert sweep(services, utcnow()) == {}  # within the grace
    assert sweep(services, utcnow() + REDELIVERY_GRACE) == {"redelivered": 1}
    # Each sweep queries the open index (approvals, bulk jobs due, digests due) and the tell
    # index: 2 sweeps, 8 queries. One UpdateItem takes the approval off the open index; one off the
    # tell index, as its requester is not in the approver directory (nobody to tell).
    assert counter.take() == {"Query": 8, "SendTaskSuccess": 1, "GetExecutionHistory": 1, "UpdateItem": 2}
    assert not stack.approval(approval.approval_id).unconfirmed
    assert sweep(services, utcnow() + REDELIVERY_GRACE) == {}
