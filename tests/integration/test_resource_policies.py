"""The local stack evaluates the Deny statements of the product's queue and topic policies
against the caller (approvals/local/access.py), where moto evaluates none: a missing grant
fails here as it fails on AWS."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from approvals.local import identities
from approvals.local.access import LOCAL_IDENTITY, denied
from approvals.local.resources import LOCAL_ROLE, only_senders
from approvals.tasks import HistoryDenied, took_answer
from tests.integration.conftest import Stack

OTHER_ROLE = "arn:aws:iam::123456789012:role/someone-else"
WORKER_ROLE = "arn:aws:iam::123456789012:role/worker"


def as_role(stack: Stack, role_arn: str) -> boto3.Session:
    credentials = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=role_arn, RoleSessionName="test"
    )["Credentials"]
    return boto3.Session(
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def refused(call: Any, code: str = "AccessDenied") -> str:
    """The refusal's message, once its code is the one the service answers with."""
    with pytest.raises(ClientError) as raised:
        call()
    assert raised.value.response["Error"]["Code"] == code, raised.value.response
    return str(raised.value)


def queue_arn(stack: Stack) -> str:
    return stack.sqs.get_queue_attributes(QueueUrl=stack.resources.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]


def restrict_queue(stack: Stack) -> None:
    policy = only_senders(queue_arn(stack), [LOCAL_ROLE])
    stack.sqs.set_queue_attributes(
        QueueUrl=stack.resources.queue_url, Attributes={"Policy": json.dumps(policy)}
    )


def test_only_the_roles_the_queues_policy_names_may_send(stack: Stack) -> None:
    restrict_queue(stack)
    url = stack.resources.queue_url
    as_role(stack, LOCAL_ROLE).client("sqs").send_message(QueueUrl=url, MessageBody="from the state machines")
    other = as_role(stack, OTHER_ROLE).client("sqs")
    message = refused(lambda: other.send_message(QueueUrl=url, MessageBody="x"))
    assert f"User: {OTHER_ROLE} is not authorized to perform: sqs:SendMessage" in message
    assert "explicit deny in a resource-based policy" in message
    refused(lambda: other.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "x"}]))
    refused(lambda: stack.sqs.send_message(QueueUrl=url, MessageBody="x"))  # the CLI's identity
    stack.sqs.receive_message(QueueUrl=url)  # what the Deny does not name is left to moto


def test_the_topics_deny_statements_hold_for_publish_and_subscribe(stack: Stack) -> None:
    topic = stack.resources.topic_arn

    def deny_unless(action: str, principals: list[str]) -> dict[str, Any]:
        return {
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": action,
            "Resource": topic,
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": principals}},
        }

    tls = {  # AWS's endpoints are HTTPS: the local one stands for them
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["sns:Publish", "sns:Subscribe"],
        "Resource": topic,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    policy = {
        "Statement": [
            deny_unless("sns:Publish", [WORKER_ROLE]),
            deny_unless("sns:Subscribe", [LOCAL_IDENTITY]),
            tls,
        ]
    }
    stack.sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(policy))
    worker = as_role(stack, WORKER_ROLE).client("sns")
    worker.publish(TopicArn=topic, Message="an email")
    worker.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[{"Id": "1", "Message": "an email"}])
    refused(lambda: stack.sns.publish(TopicArn=topic, Message="the CLI's own"))
    stack.sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="dana@example.com")  # the operator
    refused(lambda: worker.subscribe(TopicArn=topic, Protocol="email", Endpoint="eve@example.com"))


def test_a_state_machine_whose_role_the_queue_does_not_name_fails_its_step(stack: Stack) -> None:
    """moto's executor sends the step's message with the state machine's role, as Step
    Functions does: the queue's Deny refuses it."""
    restrict_queue(stack)
    definition = json.dumps(
        {
            "StartAt": "Ask",
            "States": {
                "Ask": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage",
                    "Parameters": {"QueueUrl": stack.resources.queue_url, "MessageBody": "hello"},
                    "End": True,
                }
            },
        }
    )
    outcomes = {}
    for name, role in (("named", LOCAL_ROLE), ("unnamed", OTHER_ROLE)):
        machine = stack.sfn.create_state_machine(name=name, definition=definition, roleArn=role)[
            "stateMachineArn"
        ]
        execution = stack.sfn.start_execution(stateMachineArn=machine)["executionArn"]
        deadline = time.monotonic() + 15
        while (described := stack.sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            assert time.monotonic() < deadline, "the execution did not end"
            time.sleep(0.1)
        outcomes[name] = described
    assert outcomes["named"]["status"] == "SUCCEEDED"
    assert outcomes["unnamed"]["status"] == "FAILED"
    assert "explicit deny" in outcomes["unnamed"].get("cause", ""), outcomes["unnamed"]


@pytest.mark.parametrize(
    ("condition", "principal", "refused_to"),
    [
        ({"ArnNotEquals": {"aws:PrincipalArn": [LOCAL_ROLE]}}, OTHER_ROLE, True),
        ({"ArnNotEquals": {"aws:PrincipalArn": [LOCAL_ROLE]}}, LOCAL_ROLE, False),
        (
            {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/approvals-*"}},
            LOCAL_ROLE,
            False,
        ),
        (
            {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/approvals-*"}},
            OTHER_ROLE,
            True,
        ),
        ({"StringNotEquals": {"aws:PrincipalArn": LOCAL_ROLE}}, OTHER_ROLE, True),
        ({"Bool": {"aws:SecureTransport": "false"}}, OTHER_ROLE, False),
        # A condition the local stack does not evaluate: the statement is left out, not guessed.
        ({"StringNotEquals": {"aws:SourceAccount": "123456789012"}}, OTHER_ROLE, False),
    ],
)
def test_which_conditions_are_evaluated(condition: dict[str, Any], principal: str, refused_to: bool) -> None:
    resource = "arn:aws:sqs:us-east-1:123456789012:requests"
    statement = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sqs:*",
        "Resource": resource,
        "Condition": condition,
    }
    assert denied({"Statement": [statement]}, "sqs:SendMessage", resource, principal) is refused_to


def test_once_set_up_an_assumed_role_may_make_only_the_calls_its_policies_allow(stack: Stack) -> None:
    """moto's own IAM evaluation, for callers with a role's session (the template's functions,
    the state machines' tasks), with the resource of each call named."""
    resources = stack.resources
    iam = boto3.client("iam", region_name="us-east-1")
    trust = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    }
    role = iam.create_role(RoleName="worker", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    table = stack.dynamodb.describe_table(TableName=resources.table_name)["Table"]["TableArn"]
    allowed = [
        ("sqs:SendMessage", queue_arn(stack)),
        ("sns:Publish", resources.topic_arn),
        ("dynamodb:PutItem", table),
        ("states:StartExecution", resources.state_machine_arn),
        ("dynamodb:BatchWriteItem", table),  # a batch call names its table in its requests
    ]
    iam.put_role_policy(
        RoleName="worker",
        PolicyName="own-calls",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": action, "Resource": arn} for action, arn in allowed
                ],
            }
        ),
    )
    worker = as_role(stack, role)
    identities.apply()
    stop = identities.enforce()
    try:
        sqs, sns, dynamodb = worker.client("sqs"), worker.client("sns"), worker.client("dynamodb")
        sfn = worker.client("stepfunctions")
        sqs.send_message(QueueUrl=resources.queue_url, MessageBody="granted")
        refused(lambda: sqs.send_message(QueueUrl=resources.dlq_url, MessageBody="not granted"))
        sns.publish_batch(  # IAM authorizes PublishBatch as sns:Publish
            TopicArn=resources.topic_arn, PublishBatchRequestEntries=[{"Id": "1", "Message": "an email"}]
        )
        dynamodb.put_item(TableName=resources.table_name, Item={"approval_id": {"S": "a"}})
        item = {"approval_id": {"S": "a"}}
        # Each service's own code (moto's XML refusal read as "403" by a JSON service's client).
        refused(lambda: dynamodb.get_item(TableName=resources.table_name, Key=item), "AccessDeniedException")
        key = {"approval_id": {"S": "b"}}
        dynamodb.batch_write_item(RequestItems={resources.table_name: [{"PutRequest": {"Item": key}}]})
        refused(
            lambda: dynamodb.batch_get_item(RequestItems={resources.table_name: {"Keys": [key]}}),
            "AccessDeniedException",
        )
        # A transaction is authorized write by write, each as its single call.
        put: Any = {"Put": {"TableName": resources.table_name, "Item": {"approval_id": {"S": "c"}}}}
        dynamodb.transact_write_items(TransactItems=[put])
        set_n = {"UpdateExpression": "SET n = :n", "ExpressionAttributeValues": {":n": {"N": "1"}}}
        update: Any = {"Update": {"TableName": resources.table_name, "Key": item, **set_n}}
        refused(lambda: dynamodb.transact_write_items(TransactItems=[put, update]), "AccessDeniedException")
        execution = sfn.start_execution(stateMachineArn=resources.state_machine_arn)["executionArn"]
        refused(lambda: sfn.describe_execution(executionArn=execution), "AccessDeniedException")
        with pytest.raises(HistoryDenied):  # what the product makes of it
            took_answer(sfn, execution, "a")
        stack.sqs.send_message(
            QueueUrl=resources.dlq_url, MessageBody="the operator's"
        )  # not an assumed role
    finally:
        stop()
    sqs.send_message(QueueUrl=resources.dlq_url, MessageBody="once stopped, nothing is checked")
