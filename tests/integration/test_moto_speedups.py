"""The local engine's speedups (approvals/local/moto_speedups.py, and the executor's clients
in approvals/local/access.py) change how fast moto runs a Map, never what it does: each
test here checks what the patch keeps, and what it spares where that can be counted."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import backends
from moto.core.serialize import BaseJSONSerializer
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sqs.models import Queue, sqs_backends
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor import (  # noqa: E501
    DistributedItemProcessor,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor_worker import (  # noqa: E501
    DistributedItemProcessorWorker,
)
from moto.stepfunctions.parser.asl.component.state.state_pass.state_pass import StatePass
from moto.stepfunctions.parser.asl.utils import json_path

from approvals.local import access
from approvals.local.resources import ACCOUNT, LOCAL_ROLE
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


def items_passed(**map_fields: Any) -> dict[str, Any]:
    """A Distributed Map over ``$.items`` whose children pass each item on as it is."""
    child = {"StartAt": "Same", "States": {"Same": {"Type": "Pass", "End": True}}}
    return {
        "StartAt": "Each",
        "States": {"Each": distributed_map(child, ItemsPath="$.items", End=True, **map_fields)},
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
    assert run(stack, items_passed(MaxConcurrency=max_concurrency), {"items": [1, 2, 3]}) == [1, 2, 3]
    assert len(made) == workers


def test_a_child_program_runs_in_its_workers_thread(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program without TimeoutSeconds runs in the thread that evaluates it (moto started
    one more for each): the worker that took the item runs the child's states itself."""
    workers: dict[int, int] = {}  # item: the thread of the worker that took it
    states: dict[int, int] = {}  # item: the thread its Pass state ran in
    eval_job = DistributedItemProcessorWorker._eval_job
    eval_state = StatePass._eval_state

    def job_recorded(self: DistributedItemProcessorWorker, env: Any, job: Any) -> None:
        workers[job.job_index] = threading.get_ident()
        eval_job(self, env, job)

    def state_recorded(self: StatePass, env: Any) -> None:
        states[env.states.context_object.context_object_data["Map"]["Item"]["Index"]] = threading.get_ident()
        eval_state(self, env)

    monkeypatch.setattr(DistributedItemProcessorWorker, "_eval_job", job_recorded)
    monkeypatch.setattr(StatePass, "_eval_state", state_recorded)
    assert run(stack, items_passed(), {"items": ["a", "b", "c"]}) == ["a", "b", "c"]
    assert states == workers


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


def test_sends_and_receives_on_a_standard_queue_count_none_of_its_messages(
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
    received = stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
    assert counted == []
    assert [m["Body"] for m in received] == ["waiting 0", "waiting 1"]
    attributes = stack.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "2"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "2"
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"


def test_a_message_past_its_queue_retention_is_still_not_received(stack: Stack) -> None:
    url = stack.sqs.create_queue(QueueName="speedups-retention", Attributes={"MessageRetentionPeriod": "60"})[
        "QueueUrl"
    ]
    for body in ("new", "old"):
        stack.sqs.send_message(QueueUrl=url, MessageBody=body)
    queue = sqs_backends[ACCOUNT]["us-east-1"].get_queue("speedups-retention")
    old = next(m for m in queue._messages if m.body == "old")
    old.sent_timestamp = int(old.sent_timestamp or 0) - 61_000  # type: ignore[assignment]  # 61 s ago
    received = stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in received] == ["new"]


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


def table_with_items(stack: Stack, name: str, range_key: bool) -> list[dict[str, Any]]:
    keys: list[Any] = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes: list[Any] = [{"AttributeName": "pk", "AttributeType": "S"}]
    if range_key:
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "S"})
    stack.dynamodb.create_table(
        TableName=name, KeySchema=keys, AttributeDefinitions=attributes, BillingMode="PAY_PER_REQUEST"
    )
    for key in ("a", "c", "d"):
        item = {"pk": {"S": key}, "n": {"N": "1"}} | ({"sk": {"S": "0"}} if range_key else {})
        stack.dynamodb.put_item(TableName=name, Item=item)
    return sorted(stack.dynamodb.scan(TableName=name)["Items"], key=str)


def key(name: str, range_key: bool) -> dict[str, Any]:
    return {"pk": {"S": name}} | ({"sk": {"S": "0"}} if range_key else {})


@pytest.mark.parametrize("range_key", [True, False])
def test_a_cancelled_transaction_leaves_every_item_as_it_was(stack: Stack, range_key: bool) -> None:
    table = f"speedups-{range_key}"
    before = table_with_items(stack, table, range_key)
    two = {":two": {"N": "2"}}
    new = "attribute_not_exists(pk)"  # d exists
    writes: list[Any] = [
        {"Update": {"TableName": table, "Key": key("a", range_key), "UpdateExpression": "SET n = :two",
                    "ExpressionAttributeValues": two}},
        {"Put": {"TableName": table, "Item": key("b", range_key) | {"n": {"N": "1"}}}},
        {"Delete": {"TableName": table, "Key": key("c", range_key)}},
        {"Put": {"TableName": table, "Item": key("d", range_key), "ConditionExpression": new}},
    ]  # fmt: skip
    with pytest.raises(ClientError) as cancelled:
        stack.dynamodb.transact_write_items(TransactItems=writes)
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert sorted(stack.dynamodb.scan(TableName=table)["Items"], key=str) == before
    # Two writes to one item: refused whole, the first one undone.
    with pytest.raises(ClientError) as refused:
        stack.dynamodb.transact_write_items(TransactItems=[writes[1], writes[1]])
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert sorted(stack.dynamodb.scan(TableName=table)["Items"], key=str) == before
    # Without the failing condition, every write is made.
    stack.dynamodb.transact_write_items(TransactItems=writes[:3])
    after = {item["pk"]["S"]: item["n"]["N"] for item in stack.dynamodb.scan(TableName=table)["Items"]}
    assert after == {"a": "2", "b": "1", "d": "1"}


def test_a_transaction_copies_no_table_whole(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    table_with_items(stack, "speedups-copies", range_key=True)
    copied: list[Table] = []

    def counted(self: Table, memo: dict[int, Any]) -> Table:
        copied.append(self)
        return self  # the transaction succeeds: moto would not use its copy

    monkeypatch.setattr(Table, "__deepcopy__", counted, raising=False)
    puts = [{"Put": {"TableName": "speedups-copies", "Item": key(f"new{n}", True)}} for n in range(5)]
    stack.dynamodb.transact_write_items(TransactItems=puts)  # type: ignore[arg-type]
    assert copied == []


def test_the_server_finds_each_hosts_service_once(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local stack's server answers each request's host as moto does, looking it up
    once: moto listed its package directory and matched every URL pattern each time."""
    application = DomainDispatcherApplication(create_backend_app)
    listings: list[int] = []
    list_modules = backends.list_of_moto_modules

    def counted() -> Any:
        listings.append(1)
        return list_modules()

    monkeypatch.setattr(backends, "list_of_moto_modules", counted)
    hosts = ["dynamodb", "sqs.us-east-1.amazonaws.com", "states.us-east-1.amazonaws.com", "s3.amazonaws.com"]
    first = [application.get_backend_for_host(host) for host in hosts]
    looked_up = len(listings)
    again = [application.get_backend_for_host(host) for host in hosts]
    assert first == again == ["dynamodb", "sqs", "stepfunctions", "s3"]
    assert looked_up  # moto's own lookup, the first time
    assert len(listings) == looked_up


ATTRIBUTE_VALUES: dict[str, Any] = {
    "text": {"S": "題 a title"},
    "number": {"N": "12.50"},
    "flag": {"BOOL": False},
    "nothing": {"NULL": True},
    "tags": {"SS": ["a", "b"]},
    "sizes": {"NS": ["1", "2"]},
    "votes": {"L": [{"M": {"by": {"S": "alice@example.com"}, "at": {"N": "1"}}}, {"NULL": True}]},
    "raw": {"B": b"\x00\xffbytes"},
    "raws": {"BS": [b"\x01", b"\x02"]},
    "nested raw": {"M": {"inner": {"L": [{"B": b"\x03"}]}}},
}


def test_dynamodb_answers_carry_every_attribute_type_as_moto_writes_them(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attribute values are written out as they are held (DynamoDB JSON), except binary,
    which goes through moto's own walk (base64): an item reads back the same either way."""
    key = {"approval_id": {"S": f"speedups-{uuid.uuid4().hex[:8]}"}}
    stack.dynamodb.put_item(TableName=stack.resources.table_name, Item={**key, **ATTRIBUTE_VALUES})
    walked: list[str] = []
    walk = BaseJSONSerializer._serialize_type_structure

    def counted(self: Any, serialized: Any, value: Any, shape: Any, name: str) -> None:
        if shape.name == "AttributeValue":
            walked.append(next(iter(value)))
        walk(self, serialized, value, shape, name)

    monkeypatch.setattr(BaseJSONSerializer, "_serialize_type_structure", counted)
    item = stack.dynamodb.get_item(TableName=stack.resources.table_name, Key=key)["Item"]
    assert item == {**key, **ATTRIBUTE_VALUES}
    # Walked: the three binary values, and the map and list that hold the nested one.
    assert sorted(walked) == ["B", "B", "BS", "L", "M"]


# In a process of its own: the tests' processes share the loader from the start (conftest).
ONE_LOADER = """
import boto3
from approvals.local import moto_fixes
moto_fixes.apply()
loaders = {id(boto3.Session()._session.get_component("data_loader")) for _ in range(3)}
print(len(loaders))
"""


def test_the_local_stacks_boto3_sessions_read_botocore_s_data_once() -> None:
    """Deploying a template made a session per resource made through the API, and each read
    the endpoints and the service models anew: half of the deployment's CPU."""
    done = subprocess.run([sys.executable, "-c", ONE_LOADER], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"
