"""The service limits moto leaves out, as the local stack adds them (approvals.local.moto_fixes),
so that a request that would fail in AWS fails here first; and the one moto keeps."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from approvals import runtime
from approvals.decision import COMMENT_BYTES
from approvals.local.approver import replayed_form
from approvals.models import DATA_BYTES, MAX_APPROVERS, REQUEST_BYTES, ApprovalRequest, FieldSpec, Policy
from tests.integration.conftest import Stack, eventually

if TYPE_CHECKING:
    from mypy_boto3_sns.type_defs import PublishBatchRequestEntryTypeDef

KIB = 1024


def test_publish_batch_refuses_more_than_256_kib_in_all(stack: Stack) -> None:
    sns = runtime.from_environment().sns
    entries: list[PublishBatchRequestEntryTypeDef] = [
        {"Id": str(i), "Message": "字" * 10_000} for i in range(9)
    ]  # 30,000 bytes each
    with pytest.raises(ClientError) as refused:
        sns.publish_batch(TopicArn=stack.resources.topic_arn, PublishBatchRequestEntries=entries)
    assert refused.value.response["Error"]["Code"] == "BatchRequestTooLong"
    assert stack.emails() == []
    fits = sns.publish_batch(TopicArn=stack.resources.topic_arn, PublishBatchRequestEntries=entries[:8])
    assert len(fits["Successful"]) == 8


def test_an_update_that_grows_an_item_past_400_kb_is_refused_and_changes_nothing(stack: Stack) -> None:
    """moto checks the size of an item written whole, not of one grown by a nested update
    (a vote is one: ``SET votes.#approver = :vote``)."""
    db, table = stack.dynamodb, stack.resources.table_name
    key = {"approval_id": {"S": "big"}}
    db.put_item(TableName=table, Item={**key, "request": {"S": "r" * 300 * KIB}, "votes": {"M": {}}})
    with pytest.raises(ClientError) as refused:
        db.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET votes.#approver = :vote",
            ExpressionAttributeNames={"#approver": "alice@example.com"},
            ExpressionAttributeValues={":vote": {"S": "c" * 120 * KIB}},
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Item size to update has exceeded the maximum allowed size" in str(refused.value)
    assert stack.raw_item("big") == {**key, "request": {"S": "r" * 300 * KIB}, "votes": {"M": {}}}


def test_a_state_past_256_kib_fails_the_execution_with_data_limit_exceeded(stack: Stack) -> None:
    """moto keeps this limit itself: a task result that makes the state too large fails the
    execution, as in AWS."""
    definition = {
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {
                    "QueueUrl": stack.resources.queue_url,
                    "MessageBody": {"token.$": "$$.Task.Token"},
                },
                "ResultPath": "$.decision",
                "End": True,
            }
        },
    }
    machine = stack.sfn.create_state_machine(
        name="limits", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/limits"
    )["stateMachineArn"]
    arn = stack.sfn.start_execution(stateMachineArn=machine, input=json.dumps({"request": "r" * 200 * KIB}))[
        "executionArn"
    ]
    token = json.loads(stack.queued_message()["Body"])["token"]
    stack.sfn.send_task_success(taskToken=token, output=json.dumps({"comment": "c" * 60 * KIB}))
    eventually(lambda: stack.status(arn) != "RUNNING", what="the execution to end")
    ended = stack.sfn.describe_execution(executionArn=arn)
    assert (ended["status"], ended.get("error")) == ("FAILED", "States.DataLimitExceeded")


def test_the_largest_request_and_decision_the_caps_allow_fit_every_limit(stack: Stack) -> None:
    """50 approvers of a 64 KiB request each approve with a 1,000-byte comment that JSON
    escapes to twice its size, and answers as long as their cap allows: the votes fit the
    table's item, the decision fits the execution's state, and the workflow gets every vote."""
    approvers = [f"approver{i:02}@example.com" for i in range(MAX_APPROVERS)]
    fields = {"title": "題" * 200, "description": "説" * 10_000, "approvers": approvers}
    note = FieldSpec.model_validate({"name": "note", "label": "Note", "type": "text", "max_length": 1_000})
    request = ApprovalRequest(
        **fields, policy=Policy.ALL, requester="ci@example.com", details={"padding": ""}, fields=[note]
    )
    room = REQUEST_BYTES - len(request.model_dump_json().encode())
    request = request.model_copy(update={"details": {"padding": "d" * room}})
    assert len(request.model_dump_json().encode()) == REQUEST_BYTES
    ApprovalRequest.model_validate(request.model_dump())  # still within the cap

    arn = stack.start(request)
    links = {who: stack.email(who, "題題題").links[0] for who in approvers}
    comment = '"\\' * (COMMENT_BYTES // 2)
    answer = '"\\' * ((DATA_BYTES - len('{"note": ""}')) // 4)  # each pair escapes to four bytes
    assert len(json.dumps({"note": answer}).encode()) == DATA_BYTES
    for who in approvers:
        form = {**replayed_form(links[who], who), "decision": "approve", "comment": comment}
        assert stack.post(links[who], {**form, "data.note": answer}).status == 200
    report = stack.finish(arn, timeout=30)
    assert report.status == "SUCCEEDED", report.cause
    assert len(report.output["votes"]) == MAX_APPROVERS
    assert {vote["comment"] for vote in report.output["votes"]} == {comment}
    assert {vote["data"]["note"] for vote in report.output["votes"]} == {answer}
