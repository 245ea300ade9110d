"""One answer per task token, as Step Functions takes them (approvals.local.moto_fixes): a
task already answered, timed out, or whose execution ended refuses every further answer
with ``TaskTimedOut``; a token never issued is ``InvalidToken``; an answer taken is in the
execution's history once the call returns. moto took a second answer silently, so a
product that trusts a refused repeat could pass here and fail in AWS."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

from approvals.local.resources import LOCAL_ROLE
from tests.integration.conftest import Stack, eventually

GONE = "Task Timed Out: 'Provided task does not exist anymore'"


def waiting_task(stack: Stack, name: str, timeout_seconds: int = 60) -> dict[str, Any]:
    """A task that sends its token to the queue and waits for it."""
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": stack.resources.queue_url, "MessageBody": {"token.$": "$$.Task.Token"}},
        "TimeoutSeconds": timeout_seconds,
        "ResultPath": f"$.{name}",
    }


def run(stack: Stack, states: dict[str, Any], start_at: str) -> str:
    machine = stack.sfn.create_state_machine(
        name=f"answers-{uuid.uuid4().hex[:8]}",
        definition=json.dumps({"StartAt": start_at, "States": states}),
        roleArn=LOCAL_ROLE,
    )["stateMachineArn"]
    return stack.sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]


def next_token(stack: Stack) -> str:
    token: str = json.loads(stack.queued_message()["Body"])["token"]
    return token


def taken(stack: Stack, arn: str) -> list[str]:
    """The answers the execution's history shows taken."""
    events = stack.sfn.get_execution_history(executionArn=arn)["events"]
    return [e["taskSucceededEventDetails"]["output"] for e in events if e["type"] == "TaskSucceeded"]


def refusal(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    return error["Code"], error["Message"]


def test_a_task_takes_one_answer_and_refuses_the_rest_while_its_execution_runs_on(stack: Stack) -> None:
    sfn = stack.sfn
    arn = run(
        stack,
        {
            "First": {**waiting_task(stack, "first"), "Next": "Second"},
            "Second": {**waiting_task(stack, "second"), "End": True},
        },
        "First",
    )
    first = next_token(stack)
    sfn.send_task_success(taskToken=first, output='{"answer": 1}')
    second = next_token(stack)  # the execution moved on, and still runs

    assert refusal(lambda: sfn.send_task_success(taskToken=first, output='{"answer": 2}')) == (
        "TaskTimedOut",
        GONE,
    )
    assert refusal(lambda: sfn.send_task_failure(taskToken=first, error="Late")) == ("TaskTimedOut", GONE)

    sfn.send_task_success(taskToken=second, output='{"answer": 3}')
    assert stack.finish(arn).output == {"first": {"answer": 1}, "second": {"answer": 3}}


def test_a_task_that_timed_out_refuses_its_answer_while_its_execution_runs_on(stack: Stack) -> None:
    sfn = stack.sfn
    timing_out = waiting_task(stack, "first", timeout_seconds=1)
    caught = {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.timed_out", "Next": "Second"}
    states = {
        "First": {**timing_out, "Catch": [caught], "Next": "Second"},
        "Second": {**waiting_task(stack, "second"), "End": True},
    }
    arn = run(stack, states, "First")
    first = next_token(stack)
    second = next_token(stack)  # after the first timed out

    assert refusal(lambda: sfn.send_task_success(taskToken=first, output="{}")) == ("TaskTimedOut", GONE)
    sfn.send_task_success(taskToken=second, output='{"answer": 2}')
    report = stack.finish(arn)
    assert (report.status, report.output["second"]) == ("SUCCEEDED", {"answer": 2})


def test_an_ended_execution_refuses_every_answer_and_an_unknown_token_is_invalid(stack: Stack) -> None:
    sfn = stack.sfn
    arn = run(stack, {"Only": {**waiting_task(stack, "only"), "End": True}}, "Only")
    token = next_token(stack)
    sfn.send_task_failure(taskToken=token, error="Refused", cause="no")
    eventually(lambda: stack.status(arn) == "FAILED", what="the execution to fail")

    assert refusal(lambda: sfn.send_task_success(taskToken=token, output="{}")) == ("TaskTimedOut", GONE)
    assert refusal(lambda: sfn.send_task_failure(taskToken=token, error="Again")) == ("TaskTimedOut", GONE)
    never_issued = "not-a-token-of-any-task"
    assert refusal(lambda: sfn.send_task_success(taskToken=never_issued, output="{}"))[0] == "InvalidToken"
    assert stack.finish(arn).error == "Refused"


def test_an_answer_taken_is_in_the_history_once_the_call_returns(stack: Stack) -> None:
    """What a refused repeat relies on to tell whether an answer was taken. (moto's executor
    recorded it a moment after the call returned: about one time in three here.)"""
    states = {
        "Only": {**waiting_task(stack, "only"), "Next": "Then"},
        "Then": {"Type": "Wait", "Seconds": 5, "End": True},
    }
    for answer in range(10):
        arn = run(stack, states, "Only")
        stack.sfn.send_task_success(taskToken=next_token(stack), output=json.dumps({"answer": answer}))
        assert taken(stack, arn) == [json.dumps({"answer": answer})]


def test_an_answer_is_taken_while_another_execution_is_still_starting(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fan-out starts executions while others are answered: one whose executor has not
    yet made its environment must not break the answer to another. (CI's 2-core runner
    caught the answer looking inside it: AttributeError.)"""
    starting = threading.Event()
    release = threading.Event()
    parse = ExecutionWorker._get_evaluation_entrypoint

    def held_parse(self: ExecutionWorker) -> Any:
        if not starting.is_set():  # the first execution only: it is looked in first
            starting.set()
            release.wait(30)
        return parse(self)

    monkeypatch.setattr(ExecutionWorker, "_get_evaluation_entrypoint", held_parse)
    try:
        held = run(stack, {"Done": {"Type": "Pass", "End": True}}, "Done")
        assert starting.wait(30)
        arn = run(stack, {"Only": {**waiting_task(stack, "only"), "End": True}}, "Only")
        stack.sfn.send_task_success(taskToken=next_token(stack), output='{"answer": 1}')
    finally:
        release.set()

    assert taken(stack, arn) == ['{"answer": 1}']
    eventually(lambda: stack.status(held) == "SUCCEEDED", what="the held execution to go on")
