"""What only AWS would refuse at run time, read from a service synthesized in process: policies
that let the services call each other, limits that keep bursts from dead-lettering good
requests, and names that let a stack be deployed again after it was destroyed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_

from approvals.store.close import CONFIRM_DELIVERY
from approvals_cdk import ApprovalService, ApprovalServiceProps, packaging
from approvals_cdk.config import DEFAULT_WORKER_MAX_CONCURRENCY, ConfigError, from_context
from approvals_cdk.packaging import build
from tests.cdk_templates import synthesize

pytestmark = pytest.mark.xdist_group("infra")

ALICE = "alice@example.com"


def _service(props: ApprovalServiceProps, synthesizer: cdk.IStackSynthesizer | None = None) -> dict[str, Any]:
    app = cdk.App()
    stack = cdk.Stack(app, "Service", synthesizer=synthesizer)
    ApprovalService(stack, "Approvals", props)
    return synthesize(stack)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return _service(ApprovalServiceProps(approvers=[ALICE], alarm_email="oncall@example.com", asset=build()))


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


def _topic_policy(template: dict[str, Any], topic_prefix: str) -> list[dict[str, Any]]:
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in _resources(template, "AWS::SNS::TopicPolicy").values()
        if any(t["Ref"].startswith(topic_prefix) for t in p["Properties"]["Topics"])
    ]
    return list(policy)


def test_cloudwatch_of_this_account_may_publish_to_the_alarm_topic(template: dict[str, Any]) -> None:
    """The topic's policy replaces SNS's default one: without this Allow, every alarm action
    fails (seen only in the alarm's history), whatever the key policy allows."""
    (topic,) = (lid for lid in _resources(template, "AWS::SNS::Topic") if "AlarmTopic" in lid)
    allowed = [s for s in _topic_policy(template, topic) if s["Effect"] == "Allow"]
    assert allowed == [
        {
            "Sid": "CloudWatchAlarmsOfThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": {"Ref": topic},
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        }
    ]


OPERATORS = "arn:aws:iam::123456789012:role/approvals-operators"


def _deny_exempts(statements: list[dict[str, Any]], action: str) -> list[Any]:
    (deny,) = [
        s
        for s in statements
        if s["Effect"] == "Deny" and s["Action"] == action and "ArnNotEquals" in s.get("Condition", {})
    ]
    exempt = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    return exempt if isinstance(exempt, list) else [exempt]


def test_operators_may_add_approvers_and_email_the_one_a_reassignment_names() -> None:
    """`approvals approvers add` subscribes and `approvals reassign` publishes the new
    approver's email, both with the operator's own credentials: the email topic's Denies
    must exempt the operators' roles from both, or either command is refused on AWS."""
    template = _service(ApprovalServiceProps(approvers=[ALICE], operator_roles=[OPERATORS], asset=build()))
    (topic,) = (lid for lid in _resources(template, "AWS::SNS::Topic") if "EmailTopic" in lid)
    statements = _topic_policy(template, topic)
    assert OPERATORS in _deny_exempts(statements, "sns:Subscribe")
    assert OPERATORS in _deny_exempts(statements, "sns:Publish")


def test_a_burst_waits_in_the_queue_instead_of_using_up_its_receives(template: dict[str, Any]) -> None:
    """A fan-out may queue 10,000 requests at once. Uncapped, the mapping scales past a new
    account's concurrency quota (10), throttled invocations return their batches, and each
    return is a receive: after 3, good requests were dead-lettered. Capped, the rest wait
    unreceived; and AWS's guidance for SQS with Lambda is 5 receives or more."""
    (queue,) = (
        r
        for lid, r in _resources(template, "AWS::SQS::Queue").items()
        if lid.startswith("ApprovalsRequestQueue")
    )
    assert queue["Properties"]["RedrivePolicy"]["maxReceiveCount"] >= 5
    (worker,) = (
        r
        for r in _resources(template, "AWS::Lambda::EventSourceMapping").values()
        if "RequestQueue" in json.dumps(r["Properties"]["EventSourceArn"])
    )
    assert worker["Properties"]["ScalingConfig"] == {"MaximumConcurrency": DEFAULT_WORKER_MAX_CONCURRENCY}
    assert (
        2 <= DEFAULT_WORKER_MAX_CONCURRENCY <= 10 // 2
    )  # half a new account's quota, the least a mapping takes


def test_the_worker_s_concurrency_is_a_setting() -> None:
    assert from_context({"workerMaxConcurrency": "50"}).worker_max_concurrency == 50
    with pytest.raises(ConfigError, match="workerMaxConcurrency: '1' is not a whole number of invocations"):
        from_context({"workerMaxConcurrency": "1"})
    template = _service(ApprovalServiceProps(worker_max_concurrency=50, asset=build()))
    (worker,) = (
        r
        for r in _resources(template, "AWS::Lambda::EventSourceMapping").values()
        if "RequestQueue" in json.dumps(r["Properties"]["EventSourceArn"])
    )
    assert worker["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 50}


def _statements_of(template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in _resources(template, "AWS::IAM::Policy").values()
        if any(role["Ref"].startswith(role_prefix) for role in policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


@pytest.mark.parametrize("role", ["ApprovalsApiFunctionRole", "ApprovalsSweeperFunctionRole"])
def test_the_history_of_any_workflow_that_asks_may_be_read(template: dict[str, Any], role: str) -> None:
    """A repeat decision refused near the expiry is judged by the execution's history. The
    executions that ask are mostly teams' own workflows and Distributed Map children
    (``execution:Machine/MapRun:child``), not the product's two state machines: the grant
    names every execution of the account and region."""
    (read,) = [s for s in _statements_of(template, role) if s["Action"] == "states:GetExecutionHistory"]
    every_execution = [
        "arn:", {"Ref": "AWS::Partition"}, ":states:", {"Ref": "AWS::Region"}, ":",
        {"Ref": "AWS::AccountId"}, ":execution:*",
    ]  # fmt: skip
    assert read["Resource"] == {"Fn::Join": ["", every_execution]}


def _attributes_written_by_the_confirmation() -> set[str]:
    """Every top-level attribute the ConfirmDelivery write names: its key, the attributes its
    update removes, and those its condition reads."""
    update = CONFIRM_DELIVERY["UpdateExpression"]
    assert update.startswith("REMOVE ")
    removed = {name.strip() for name in update.removeprefix("REMOVE ").split(",")}
    return {"approval_id", *removed, *CONFIRM_DELIVERY["ExpressionAttributeNames"].values()}


def test_the_state_machines_confirmation_may_write_only_its_own_attributes_and_read_nothing(
    template: dict[str, Any],
) -> None:
    """The ConfirmDelivery state's UpdateItem: a changed definition must not be able to read
    task tokens back (ReturnValues) or rewrite votes and approvers with the same grant."""
    for machine in ("ApprovalsApprovalStateMachineRole", "ApprovalsFanoutStateMachineRole"):
        (write,) = [s for s in _statements_of(template, machine) if s["Action"] == "dynamodb:UpdateItem"]
        assert write["Condition"] == {
            "ForAllValues:StringEquals": {
                "dynamodb:Attributes": sorted(_attributes_written_by_the_confirmation())
            },
            "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"},
        }


def test_the_definitions_name_the_stack_s_partition(template: dict[str, Any]) -> None:
    """A service integration's ARN names the partition: `arn:aws:` fails in China and GovCloud."""
    for machine in _resources(template, "AWS::StepFunctions::StateMachine").values():
        parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
        assert not any(
            "arn:aws:" in part or "${Partition}" in part for part in parts if isinstance(part, str)
        )
        partitions = [i for i, part in enumerate(parts) if part == {"Ref": "AWS::Partition"}]
        assert partitions
        assert all(
            parts[i - 1].endswith('"arn:') and parts[i + 1].startswith(":states:::") for i in partitions
        )


def test_a_destroyed_stack_can_be_deployed_again(template: dict[str, Any]) -> None:
    """Log groups are retained when the stack is destroyed: one with a fixed name would make
    the next deploy fail ("already exists"). A named one carries the stack's own id, which
    a new stack does not share."""
    for lid, group in _resources(template, "AWS::Logs::LogGroup").items():
        assert group["DeletionPolicy"] == "Retain", lid
        name = group["Properties"].get("LogGroupName")
        assert name is None or '{"Ref": "AWS::StackId"}' in json.dumps(name), (lid, name)


def _subscribe_deny(template: dict[str, Any]) -> dict[str, Any]:
    (topic,) = (lid for lid in _resources(template, "AWS::SNS::Topic") if "EmailTopic" in lid)
    (deny,) = [
        s for s in _topic_policy(template, topic) if s["Effect"] == "Deny" and s["Action"] == "sns:Subscribe"
    ]
    return deny


def test_the_deployment_s_own_subscriptions_are_let_through_whatever_the_synthesizer() -> None:
    """The approvers named at deploy time are subscribed by CloudFormation: with the default
    synthesizer as its execution role; with a synthesizer that has none (CLI credentials,
    legacy) as whoever deploys, whose calls CloudFormation makes (aws:CalledVia)."""
    own = _service(ApprovalServiceProps(approvers=[ALICE], asset=build()))
    assert "cdk-hnb659fds-cfn-exec-role" in json.dumps(_subscribe_deny(own)["Condition"]["ArnNotEquals"])
    # A synthesizer passed to the stack is bound as a copy whose role ARN Python cannot read
    # (jsii): the execution roles of the bootstrap, any qualifier, are named by pattern.
    qualified = _service(
        ApprovalServiceProps(approvers=[ALICE], asset=build()), cdk.DefaultStackSynthesizer(qualifier="team1")
    )
    assert _subscribe_deny(qualified)["Condition"] == {
        "ArnNotEquals": {
            "aws:PrincipalArn": [
                {
                    "Fn::Join": [
                        "",
                        [
                            "arn:", {"Ref": "AWS::Partition"}, ":iam::", {"Ref": "AWS::AccountId"},
                            ":role/cdk-*-cfn-exec-role-", {"Ref": "AWS::AccountId"},
                            "-", {"Ref": "AWS::Region"},
                        ],
                    ]
                }
            ]
        }
    }  # fmt: skip
    cli = _service(
        ApprovalServiceProps(approvers=[ALICE], asset=build()), cdk.CliCredentialsStackSynthesizer()
    )
    assert _subscribe_deny(cli)["Condition"] == {
        "ForAllValues:StringNotEquals": {"aws:CalledVia": "cloudformation.amazonaws.com"},
    }


def test_a_team_may_bring_its_own_lambda_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A team that builds the functions' package its own way (in CI, from its own lock file)
    passes it as any `lambda_.Code`: nothing is then built, nor is pip run."""

    def no_build(*_: Any, **__: Any) -> packaging.Asset:
        raise AssertionError("built although code was given")

    monkeypatch.setattr(packaging, "build", no_build)
    (tmp_path / "handler.py").write_text("# the team's own build\n")
    code = lambda_.Code.from_asset(str(tmp_path))
    template = _service(ApprovalServiceProps(approvers=[ALICE], code=code))
    keys = {f["Properties"]["Code"]["S3Key"] for f in _resources(template, "AWS::Lambda::Function").values()}
    assert len(keys) == 1  # one asset, the team's: every function runs it


# The table's indexes in the last release (0.2.0): what an update of a deployed stack starts from.
RELEASED_INDEXES = {"open", "execution", "tell"}


def test_an_update_of_the_last_release_adds_at_most_one_index(template: dict[str, Any]) -> None:
    # CloudFormation creates or deletes one global secondary index per table update (the
    # update fails otherwise), so a release that added two would fail on every deployed stack.
    ((_, table),) = _resources(template, "AWS::DynamoDB::Table").items()
    indexes = {index["IndexName"] for index in table["Properties"]["GlobalSecondaryIndexes"]}
    assert indexes >= RELEASED_INDEXES
    assert len(indexes - RELEASED_INDEXES) <= 1, sorted(indexes - RELEASED_INDEXES)
