"""The local engine's speedups (approvals/local/moto_speedups.py, and the executor's clients
in approvals/local/access.py) change how fast moto runs a Map, never what it does: each
test here checks what the patch keeps, and what it spares where that can be counted."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from moto.sqs.models import Queue
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor import (  # noqa: E501
    DistributedItemProcessor,
)
from moto.stepfunctions.parser.asl.utils import json_path

from approvals.local import access
from approvals.local.resources import LOCAL_ROLE
from bench.fanout_output import answer_all, ended, refund
from tests.conftest import Stack

CHILDREN = 50  # enough to run many children at once


def distributed_map(item_processor: dict[str, Any], **map_fields: Any) -> dict[str, Any]:
    return {
        "Type": "Map",
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            **item_processor,
        },
        **map_fields,
    }


def run(stack: Stack, definition: dict[str, Any], execution_input: dict[str, Any]) -> Any:
    machine = stack.sfn.create_state_machine(
        name=f"speedups-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=LOCAL_ROLE
    )["stateMachineArn"]
    arn = stack.sfn.start_execution(stateMachineArn=machine, input=json.dumps(execution_input))[
        "executionArn"
    ]
    execution = ended(stack.sfn, arn, timeout=60)
    assert execution["status"] == "SUCCEEDED", execution
    return json.loads(execution["output"])


def workers_counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each worker a Distributed Map makes, as it is made (by the Map's own thread)."""
    made: list[int] = []
    create_worker = DistributedItemProcessor._create_worker

    def counted(self: DistributedItemProcessor, *args: Any, **kwargs: Any) -> Any:
        made.append(1)
        return create_worker(self, *args, **kwargs)

    monkeypatch.setattr(DistributedItemProcessor, "_create_worker", counted)
    return made


@pytest.mark.parametrize(("max_concurrency", "workers"), [(10_000, 3), (2, 2)])
def test_a_map_starts_no_more_workers_than_items(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, max_concurrency: int, workers: int
) -> None:
    made = workers_counted(monkeypatch)
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": distributed_map(
                {"StartAt": "Double", "States": {"Double": {"Type": "Pass", "End": True}}},
                ItemsPath="$.items",
                MaxConcurrency=max_concurrency,
                End=True,
            )
        },
    }
    assert run(stack, definition, {"items": [1, 2, 3]}) == [1, 2, 3]
    assert len(made) == workers


def test_children_run_at_once_share_nothing_through_the_map_input(stack: Stack) -> None:
    """Each child writes into what its ItemSelector took from the Map state's input (which
    the children no longer copy whole): no child sees another's write, nor does the Map."""
    child = {
        "StartAt": "Mark",
        "States": {
            "Mark": {
                "Type": "Pass",
                "Parameters": {"value.$": "$.item"},
                "ResultPath": "$.common.mine",
                "Next": "Report",
            },
            "Report": {
                "Type": "Pass",
                "Parameters": {"mine.$": "$.common.mine.value", "common.$": "$.common"},
                "End": True,
            },
        },
    }
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": distributed_map(
                child,
                ItemsPath="$.items",
                ItemSelector={"common.$": "$.common", "item.$": "$$.Map.Item.Value"},
                ResultPath="$.results",
                End=True,
            )
        },
    }
    output = run(stack, definition, {"common": {"n": 0}, "items": list(range(CHILDREN))})
    assert output["common"] == {"n": 0}
    assert output["items"] == list(range(CHILDREN))
    assert output["results"] == [
        {"mine": i, "common": {"n": 0, "mine": {"value": i}}} for i in range(CHILDREN)
    ]


def test_a_parsed_jsonpath_is_kept_and_finds_in_each_document_its_own(stack: Stack) -> None:
    parse = json_path.parse  # type: ignore[attr-defined]
    assert parse("$.request.title") is parse("$.request.title")
    assert json_path.extract_json("$.request.title", {"request": {"title": "one"}}) == "one"
    assert json_path.extract_json("$.request.title", {"request": {"title": "two"}}) == "two"


def test_a_send_to_a_standard_queue_counts_none_of_its_messages(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = stack.sqs.create_queue(QueueName="speedups")["QueueUrl"]
    for n in range(3):
        stack.sqs.send_message(QueueUrl=url, MessageBody=f"waiting {n}")
    counted: list[int] = []
    count_messages = Queue.approximate_number_of_messages

    def counting(self: Queue) -> int:
        counted.append(1)
        return count_messages.fget(self)  # type: ignore[attr-defined,no-any-return]

    monkeypatch.setattr(Queue, "approximate_number_of_messages", property(counting))
    stack.sqs.send_message(
        QueueUrl=url,
        MessageBody="delayed",
        DelaySeconds=60,
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "late"}},
    )
    stack.sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "batched"}])
    assert counted == []
    attributes = stack.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "4"
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"


def test_a_fifo_queue_still_deduplicates_by_content(stack: Stack) -> None:
    url = stack.sqs.create_queue(
        QueueName="speedups.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    for _ in range(2):
        stack.sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    received = stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in received] == ["same"]


def test_the_executor_makes_a_client_per_service_not_per_task(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions: list[str] = []
    session = access.Credentials.session

    def counted(self: access.Credentials, region: str) -> Any:
        sessions.append(region)
        return session(self, region)

    monkeypatch.setattr(access.Credentials, "session", counted)
    arn = stack.start_fanout([refund(n) for n in range(5)])
    answer_all(stack.sqs, stack.sfn, stack.resources.queue_url, 5)
    assert ended(stack.sfn, arn)["status"] == "SUCCEEDED"
    # Five SQS tasks, a result writer and a summary: one client each for SQS, S3 and Lambda.
    assert len(sessions) <= 3
