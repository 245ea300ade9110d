"""Least privilege: each role holds exactly the calls its code makes, on its own resources."""

from __future__ import annotations

import json
from typing import Any

import pytest

from approvals.store.close import CONFIRM_DELIVERY_ATTRIBUTES
from tests.infra.conftest import OPERATOR_ROLE, TEAM_WORKFLOW_ROLE, Synthesis
from tests.infra.lookup import HANDLERS, email_topic, function, only, queues

pytestmark = pytest.mark.xdist_group("infra")

RECEIVE = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
}
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}

# Whether a refused repeat of an answer was taken or timed out: the history of the execution,
# any workflow's of the account and region (teams' own, Distributed Map children).
READ_HISTORY = {("states:GetExecutionHistory", "every execution")}

# (action, resource) per function; resources by role: "table", "table/index/<name>",
# "topic", "secret", "queue", "dead-letter-queue", "own-logs", or "*".
EXPECTED_CALLS: dict[str, set[tuple[str, str]]] = {
    "worker": {
        ("dynamodb:PutItem", "table"),
        ("dynamodb:UpdateItem", "table"),  # alone or in TransactWriteItems: the batch's marks
        ("dynamodb:BatchGetItem", "table"),  # the approvers' digests, and what waits in them
        ("sns:Publish", "topic"),
        ("sns:ListSubscriptionsByTopic", "topic"),
        ("sns:GetSubscriptionAttributes", "*"),
        ("states:SendTaskFailure", "*"),
        *((action, "queue") for action in RECEIVE),
    },
    "api": {
        ("dynamodb:GetItem", "table"),
        ("dynamodb:UpdateItem", "table"),  # alone or in TransactWriteItems: a bulk vote's confirmations
        ("dynamodb:Query", "table/index/inbox"),  # the batch page
        ("dynamodb:BatchGetItem", "table"),  # its approvals, 100 at a time
        ("dynamodb:BatchWriteItem", "table"),  # a sequence's next voter's entry; a bulk vote's removal
        ("states:SendTaskSuccess", "*"),
        ("sns:Publish", "topic"),  # a sequence's next voter, right after the vote
        *READ_HISTORY,
    },
    "sweeper": {
        ("dynamodb:Query", "table/index/open"),
        ("dynamodb:Query", "table/index/tell"),  # requesters still to be told the outcome
        ("dynamodb:UpdateItem", "table"),
        ("dynamodb:BatchGetItem", "table"),  # what waits in those digests
        ("dynamodb:BatchWriteItem", "table"),  # backups and next voters into their inboxes
        ("sns:Publish", "topic"),
        ("sns:ListSubscriptionsByTopic", "topic"),
        ("sns:GetSubscriptionAttributes", "*"),
        ("states:SendTaskSuccess", "*"),
        ("states:SendTaskFailure", "*"),  # Approval.Expired or .DeliveryFailed, from the sweep
        *READ_HISTORY,
    },
    "execution_ended": {
        ("dynamodb:Query", "table/index/execution"),
        ("dynamodb:UpdateItem", "table"),
    },
    "dead_letter": {
        ("states:SendTaskFailure", "*"),
        *((action, "dead-letter-queue") for action in RECEIVE),
    },
    # A map run's manifest and result files, under the results prefix of the fan-out bucket.
    "fanout_summary": {("s3:GetObject", "fan-out results")},
}
# Every function writes its own logs; those that sign or verify links read the key.
for name, expected in EXPECTED_CALLS.items():
    expected |= {(action, "own-logs") for action in LOGS}
    if name in ("worker", "api", "sweeper"):
        expected.add(("secretsmanager:GetSecretValue", "secret"))

# The only calls that may name "*": those IAM cannot scope to a resource.
STAR_ONLY = {
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "sns:GetSubscriptionAttributes",  # subscriptions are not an IAM resource type
    # Added by CDK to state machines for logging and X-Ray: no resource-level permissions.
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(synthesis: Synthesis, role: str) -> list[dict[str, Any]]:
    found = []
    for policy in synthesis.resources("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    for inline in synthesis.template["Resources"][role]["Properties"].get("Policies", []):
        found += inline["PolicyDocument"]["Statement"]
    return found


def calls(synthesis: Synthesis, name: str) -> set[tuple[str, str]]:
    """The role's (action, resource) pairs, each resource named by what it is."""
    _, fn = function(synthesis, name)
    request, dead_letter = queues(synthesis)
    table, _ = only(synthesis.resources("AWS::DynamoDB::Table"))
    topic, _ = email_topic(synthesis)
    secret, _ = only(synthesis.resources("AWS::SecretsManager::Secret"))
    own_logs = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    names = {
        json.dumps({"Fn::GetAtt": [table, "Arn"]}): "table",
        json.dumps({"Ref": topic}): "topic",
        json.dumps({"Ref": secret}): "secret",
        json.dumps({"Fn::GetAtt": [request, "Arn"]}): "queue",
        json.dumps({"Fn::GetAtt": [dead_letter, "Arn"]}): "dead-letter-queue",
        json.dumps({"Fn::GetAtt": [own_logs, "Arn"]}): "own-logs",
        json.dumps("*"): "*",
    }
    every_execution = [
        "arn:", {"Ref": "AWS::Partition"}, ":states:", {"Ref": "AWS::Region"}, ":",
        {"Ref": "AWS::AccountId"}, ":execution:*",
    ]  # fmt: skip
    names[json.dumps({"Fn::Join": ["", every_execution]})] = "every execution"
    (bucket,) = synthesis.resources("AWS::S3::Bucket")
    names[json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/fanout/*"]]})] = "fan-out results"
    for index in ("open", "execution", "tell", "inbox"):
        names[json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [table, "Arn"]}, f"/index/{index}"]]})] = (
            f"table/index/{index}"
        )
    found = set()
    for statement in statements(synthesis, fn["Properties"]["Role"]["Fn::GetAtt"][0]):
        assert statement["Effect"] == "Allow"
        assert "Condition" not in statement
        for action in _as_list(statement["Action"]):
            for resource in _as_list(statement["Resource"]):
                found.add((action, names.get(json.dumps(resource), json.dumps(resource))))
    return found


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_each_function_can_make_exactly_its_own_calls(synthesis: Synthesis, name: str) -> None:
    assert calls(synthesis, name) == EXPECTED_CALLS[name]


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_each_function_has_its_own_role_without_managed_policies(synthesis: Synthesis, name: str) -> None:
    _, fn = function(synthesis, name)
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    others = [
        f["Properties"]["Role"]["Fn::GetAtt"][0]
        for f in synthesis.resources("AWS::Lambda::Function").values()
        if f is not fn
    ]
    assert role not in others
    assert "ManagedPolicyArns" not in synthesis.template["Resources"][role]["Properties"]


def test_no_policy_grants_a_wildcard_action(synthesis: Synthesis) -> None:
    for role in synthesis.resources("AWS::IAM::Role"):
        for statement in statements(synthesis, role):
            for action in _as_list(statement["Action"]):
                assert "*" not in action, (role, action)


def test_only_calls_without_resource_level_permissions_name_every_resource(synthesis: Synthesis) -> None:
    for role in synthesis.resources("AWS::IAM::Role"):
        for statement in statements(synthesis, role):
            if "*" in _as_list(statement["Resource"]):
                assert set(_as_list(statement["Action"])) <= STAR_ONLY, (role, statement["Action"])


def test_state_machines_can_only_send_confirm_run_their_own_children_and_use_their_bucket(
    synthesis: Synthesis,
) -> None:
    request, _ = queues(synthesis)
    table, _ = only(synthesis.resources("AWS::DynamoDB::Table"))
    send = {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": {"Fn::GetAtt": [request, "Arn"]}}
    # The confirmation states' one write (ConfirmDelivery): the approval leaves the sweep's index.
    confirm = {
        "Action": "dynamodb:UpdateItem",
        "Condition": {
            "ForAllValues:StringEquals": {"dynamodb:Attributes": sorted(CONFIRM_DELIVERY_ATTRIBUTES)},
            "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"},
        },
        "Effect": "Allow",
        "Resource": {"Fn::GetAtt": [table, "Arn"]},
    }
    (bucket,) = synthesis.resources("AWS::S3::Bucket")

    def objects(prefix: str) -> dict[str, Any]:
        return {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, prefix]]}

    summary, _ = function(synthesis, "fanout_summary")
    for lid, machine in synthesis.resources("AWS::StepFunctions::StateMachine").items():
        role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        scoped = [s for s in statements(synthesis, role) if s["Resource"] != "*"]
        if "ItemProcessor" not in json.dumps(machine["Properties"]["DefinitionString"]):
            assert scoped == [send, confirm]
            continue
        # The fan-out's Distributed Map starts a child execution of itself per request.
        children = {
            "Fn::Join": [
                "",
                [
                    "arn:", {"Ref": "AWS::Partition"}, ":states:", {"Ref": "AWS::Region"}, ":",
                    {"Ref": "AWS::AccountId"}, ":execution:", {"Fn::GetAtt": [lid, "Name"]}, "/*",
                ],
            ]
        }  # fmt: skip
        assert sorted(scoped, key=str) == sorted(
            [
                send,
                confirm,
                # Its ResultWriter's files, under one prefix; its ItemReader's requests, under another.
                {
                    "Action": ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:PutObject"],
                    "Effect": "Allow",
                    "Resource": objects("/fanout/*"),
                },
                {"Action": "s3:GetObject", "Effect": "Allow", "Resource": objects("/requests/*")},
                # Its Summary task: the function that counts the outcomes, and no other.
                {
                    "Action": "lambda:InvokeFunction",
                    "Effect": "Allow",
                    "Resource": {"Fn::GetAtt": [summary, "Arn"]},
                },
                {"Action": "states:StartExecution", "Effect": "Allow", "Resource": {"Ref": lid}},
                {
                    "Action": ["states:DescribeExecution", "states:StopExecution"],
                    "Effect": "Allow",
                    "Resource": children,
                },
            ],
            key=str,
        )


def test_nothing_can_send_heartbeats_or_start_other_executions(synthesis: Synthesis) -> None:
    machine_of = {
        machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]: lid
        for lid, machine in synthesis.resources("AWS::StepFunctions::StateMachine").items()
    }
    for role in synthesis.resources("AWS::IAM::Role"):
        for statement in statements(synthesis, role):
            actions = set(_as_list(statement["Action"]))
            assert "states:SendTaskHeartbeat" not in actions, role
            if "states:StartExecution" in actions:  # the fan-out, of its own children only
                assert statement["Resource"] == {"Ref": machine_of.get(role)}, role


def test_scheduler_role_can_only_invoke_the_sweeper(synthesis: Synthesis) -> None:
    sweeper, _ = function(synthesis, "sweeper")
    _, schedule = only(synthesis.resources("AWS::Scheduler::Schedule"))
    role = schedule["Properties"]["Target"]["RoleArn"]["Fn::GetAtt"][0]
    trust = synthesis.template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust[0]["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    for statement in statements(synthesis, role):
        assert statement["Action"] == "lambda:InvokeFunction"
        assert sweeper in json.dumps(statement["Resource"])


def deny_unless(policy: dict[str, Any], action: str) -> list[Any]:
    """The principals a resource policy lets make ``action``: those its Deny exempts."""
    (statement,) = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s["Action"] == action and "ArnNotEquals" in s["Condition"]
    ]
    assert statement["Principal"] == {"AWS": "*"}
    assert set(statement["Condition"]) == {"ArnNotEquals"}
    return _as_list(statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])


def role_of(resource: dict[str, Any]) -> dict[str, Any]:
    return {"Fn::GetAtt": [resource["Properties"]["RoleArn"]["Fn::GetAtt"][0], "Arn"]}


def test_only_the_state_machines_and_named_workflows_may_send_to_the_queue(synthesis: Synthesis) -> None:
    """A wildcard sqs:SendMessage elsewhere in the account must not reach the queue: it
    would let any principal have real approvers emailed with text of its choosing."""
    request, _ = queues(synthesis)
    (policy,) = [
        p["Properties"]
        for p in synthesis.resources("AWS::SQS::QueuePolicy").values()
        if {"Ref": request} in p["Properties"]["Queues"]
    ]
    machines = synthesis.resources("AWS::StepFunctions::StateMachine").values()
    assert sorted(map(json.dumps, deny_unless(policy, "sqs:SendMessage"))) == sorted(
        map(json.dumps, [*(role_of(m) for m in machines), TEAM_WORKFLOW_ROLE])
    )


def test_only_the_mailing_functions_and_operators_publish_and_only_the_deployment_and_operators_subscribe(
    synthesis: Synthesis,
) -> None:
    """A wildcard sns:Subscribe elsewhere must not add an unfiltered subscription that
    receives every approver's link."""
    topic, _ = email_topic(synthesis)
    (policy,) = [
        p["Properties"]
        for p in synthesis.resources("AWS::SNS::TopicPolicy").values()
        if {"Ref": topic} in p["Properties"]["Topics"]
    ]
    senders = [function(synthesis, name)[1]["Properties"]["Role"] for name in ("worker", "sweeper", "api")]
    assert deny_unless(policy, "sns:Publish") == [*senders, OPERATOR_ROLE]  # operators: a reassignment
    subscribers = deny_unless(policy, "sns:Subscribe")
    assert subscribers[1:] == [OPERATOR_ROLE]
    assert "cfn-exec-role" in json.dumps(subscribers[0])  # the bootstrap role CloudFormation deploys with
