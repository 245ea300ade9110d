"""Sharing a service and wiring it further: senders of other stacks named without a cycle, other
accounts, whose executions are watched, the grants, the metrics, and the alarms' topic."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import Duration, assertions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn

from approvals import metrics
from approvals_cdk import ApprovalService, ApprovalServiceProps, IApprovalService, WatchExecutions
from approvals_cdk.outputs import add_sharing_outputs
from approvals_cdk.packaging import build
from tests.cdk_templates import request_queue, role_statements, synthesize

pytestmark = pytest.mark.xdist_group("infra")

ALICE = "alice@example.com"
OPERATOR_ARN = "arn:aws:iam::123456789012:role/operators"


def service(stack: cdk.Stack, **props: Any) -> ApprovalService:
    return ApprovalService(
        stack, "Approvals", ApprovalServiceProps(approvers=[ALICE], asset=build(), **props)
    )


def grant_and_alarm(stack: cdk.Stack, approvals: IApprovalService) -> None:
    """A team's report function's role, and an alarm of its own on the service's metrics."""
    approvals.grant_read_approvals(
        iam.Role(stack, "Report", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    )
    for name, metric in (
        ("Invalid", approvals.metric_invalid_requests()),
        ("Undelivered", approvals.metric_deliveries_failed(period=Duration.hours(1), statistic="Maximum")),
    ):
        metric.create_alarm(stack, f"{name}Alarm", threshold=1, evaluation_periods=1)


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    app = cdk.App()
    paged = cdk.Stack(app, "Paged")
    pager = sns.Topic(paged, "Pager")
    deploy_role = iam.Role(paged, "DeployRole", assumed_by=iam.ServicePrincipal("states.amazonaws.com"))
    team = sfn.StateMachine(
        paged, "Team", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(paged, "P"))
    )
    approvals = service(
        paged,
        sender_roles=[deploy_role, team, OPERATOR_ARN],
        alarm_topic=pager,
        watch_executions=WatchExecutions.NONE,
    )
    grant_and_alarm(paged, approvals)
    quiet = cdk.Stack(app, "Quiet")
    service(quiet, create_alarms=False, watch_executions=WatchExecutions.ACCOUNT)
    elsewhere = cdk.Stack(app, "Elsewhere")
    imported = ApprovalService.from_attributes(
        elsewhere,
        "Approvals",
        queue_arn="arn:aws:sqs:eu-west-1:111111111111:approvals-queue",
        table_arn="arn:aws:dynamodb:eu-west-1:111111111111:table/approvals",
    )
    grant_and_alarm(elsewhere, imported)
    return {stack.stack_name: synthesize(stack) for stack in (paged, quiet, elsewhere)}


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


def test_sender_roles_take_roles_and_state_machines_of_the_stack_and_arns(
    templates: dict[str, dict[str, Any]],
) -> None:
    template = templates["Paged"]
    queue = request_queue(template)
    (policy,) = (
        r
        for r in of_type(template, "AWS::SQS::QueuePolicy").values()
        if r["Properties"]["Queues"] == [{"Ref": queue}]
    )
    (deny,) = (
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "OnlySendMessageByTheseRoles"
    )
    senders = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"][2:]  # after the service's own two
    roles = of_type(template, "AWS::IAM::Role")
    (deploy_role,) = (lid for lid in roles if lid.startswith("DeployRole"))
    (team_role,) = (lid for lid in roles if lid.startswith("TeamRole"))
    assert senders == [{"Fn::GetAtt": [deploy_role, "Arn"]}, {"Fn::GetAtt": [team_role, "Arn"]}, OPERATOR_ARN]
    assert "StringNotEquals" not in deny["Condition"]  # no other account


def test_a_role_of_another_stack_without_a_name_is_refused_with_what_to_do() -> None:
    app = cdk.App()
    theirs = cdk.Stack(app, "Theirs")
    role = iam.Role(theirs, "Unnamed", assumed_by=iam.ServicePrincipal("states.amazonaws.com"))
    with pytest.raises(
        ValueError, match=r"sender_roles: the role Theirs/Unnamed is in stack Theirs: .*role_name"
    ):
        service(cdk.Stack(app, "Ours"), sender_roles=[role])


def test_a_named_role_of_another_stack_is_named_by_its_arn_with_its_path() -> None:
    app = cdk.App()
    theirs = cdk.Stack(app, "Theirs")
    role = iam.Role(
        theirs,
        "Named",
        role_name="deploy",
        path="/teams/",
        assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
    )
    ours = cdk.Stack(app, "Ours")
    service(ours, sender_roles=[role])
    template = json.dumps(synthesize(ours))
    assert '":iam::", {"Ref": "AWS::AccountId"}, ":role/teams/deploy"' in template
    assert "Fn::ImportValue" not in template


@pytest.mark.parametrize(
    ("accounts", "problem"),
    [
        (["12345"], "allowed_accounts: '12345' is not a 12-digit AWS account id"),
        (["111111111111"], "allowed_accounts: 111111111111 is the service's own account"),
    ],
)
def test_allowed_accounts_are_checked(accounts: list[str], problem: str) -> None:
    stack = cdk.Stack(cdk.App(), "Ours", env=cdk.Environment(account="111111111111", region="eu-west-1"))
    with pytest.raises(ValueError, match=problem):
        service(stack, allowed_accounts=accounts)


@pytest.mark.parametrize("props", [{"alarm_topic": "pager"}, {"create_alarms": False}])
def test_an_alarm_email_needs_the_services_own_alarm_topic(props: dict[str, Any]) -> None:
    stack = cdk.Stack(cdk.App(), "Ours")
    if "alarm_topic" in props:
        props = {"alarm_topic": sns.Topic(stack, "Pager")}
    with pytest.raises(ValueError, match="alarm_email is subscribed to the service's own alarm topic"):
        service(stack, alarm_email="oncall@example.com", **props)


def test_the_alarms_notify_a_topic_of_your_own_or_there_are_none(
    templates: dict[str, dict[str, Any]],
) -> None:
    paged = templates["Paged"]
    (pager,) = (lid for lid in of_type(paged, "AWS::SNS::Topic") if lid.startswith("Pager"))
    service_alarms = {
        lid: r for lid, r in of_type(paged, "AWS::CloudWatch::Alarm").items() if lid.startswith("Approvals")
    }
    assert len(service_alarms) >= 5
    assert all(r["Properties"]["AlarmActions"] == [{"Ref": pager}] for r in service_alarms.values())
    assert not of_type(paged, "AWS::KMS::Key")  # no alarm topic (and key) of the service's own
    quiet = templates["Quiet"]
    assert not of_type(quiet, "AWS::CloudWatch::Alarm")
    assert [r["Properties"].get("DisplayName") for r in of_type(quiet, "AWS::SNS::Topic").values()] == [
        "Approvals"
    ]


def test_whose_executions_are_watched(templates: dict[str, dict[str, Any]]) -> None:
    assert not of_type(templates["Paged"], "AWS::Events::Rule")  # WatchExecutions.NONE
    ((_, rule),) = of_type(templates["Quiet"], "AWS::Events::Rule").items()
    assert rule["Properties"]["EventPattern"]["detail"] == {"status": ["FAILED", "TIMED_OUT", "ABORTED"]}


@pytest.mark.parametrize("stack", ["Paged", "Elsewhere"])
def test_grant_read_approvals_reads_the_table_and_its_indexes_and_writes_nothing(
    templates: dict[str, dict[str, Any]], stack: str
) -> None:
    statements = role_statements(templates[stack], "ReportDefaultPolicy")
    actions = {action for statement in statements for action in statement["Action"]}
    assert {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"} <= actions
    assert all(
        action.split(":")[1].startswith(("Get", "BatchGet", "Query", "Scan", "Describe", "ConditionCheck"))
        for action in actions
    )
    for statement in statements:
        assert statement["Effect"] == "Allow"
        (table, indexes) = statement["Resource"]
        index = {"Fn::Join": ["", [table, "/index/*"]]}
        assert indexes == (f"{table}/index/*" if isinstance(table, str) else index)


@pytest.mark.parametrize("stack", ["Paged", "Elsewhere"])
def test_the_metrics_are_the_counts_the_functions_write(
    templates: dict[str, dict[str, Any]], stack: str
) -> None:
    alarms = of_type(templates[stack], "AWS::CloudWatch::Alarm")
    (invalid,) = (r["Properties"] for lid, r in alarms.items() if lid.startswith("InvalidAlarm"))
    (undelivered,) = (r["Properties"] for lid, r in alarms.items() if lid.startswith("UndeliveredAlarm"))
    assert (invalid["Namespace"], invalid["MetricName"], invalid["Statistic"], invalid["Period"]) == (
        metrics.NAMESPACE,
        metrics.INVALID_REQUESTS,
        "Sum",
        300,
    )
    assert (undelivered["MetricName"], undelivered["Statistic"], undelivered["Period"]) == (
        metrics.DELIVERIES_FAILED,
        "Maximum",
        3600,
    )
    (dimension,) = {json.dumps(alarm["Dimensions"]) for alarm in (invalid, undelivered)}
    assert json.loads(dimension)[0]["Name"] == metrics.DIMENSION
    if stack == "Paged":  # the deployment's table name, as the functions write it
        (table,) = of_type(templates[stack], "AWS::DynamoDB::Table")
        assert json.loads(dimension)[0]["Value"] == {"Ref": table}
    else:
        assert json.loads(dimension)[0]["Value"] == "approvals"


def test_sharing_a_service_that_watches_only_its_own_stack_warns_at_synth() -> None:
    """Exported for other stacks, it would leave their stopped executions' approvals pending."""
    stack = cdk.Stack(cdk.App(), "Ours")
    add_sharing_outputs(stack, service(stack), export_prefix="Ours")
    warnings = assertions.Annotations.from_stack(stack).find_warning("*", assertions.Match.any_value())
    assert ["WatchExecutions.ACCOUNT" in str(w.entry.data) for w in warnings] == [True]
