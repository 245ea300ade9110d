"""The approval step in someone else's state machine, synthesized: the Task it renders (JSONPath
and JSONata), the timeout set on the task and in the message alike, and the one grant."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn

from approvals import statemachine
from approvals.models import QueueMessage
from approvals_cdk import ApprovalErrors, ApprovalService, ApprovalServiceProps
from approvals_cdk.packaging import build
from approvals_cdk.step import ApprovalTask
from tests.cdk_templates import (
    queue_senders,
    request_queue,
    role_arn,
    role_statements,
    state_machine_definition,
    synthesize,
)
from tests.infra.lookup import CONFIRMATION_CONDITIONS
from tests.unit.samples import ENVIRONMENT

pytestmark = pytest.mark.xdist_group("infra")

ALICE, BOB = "alice@example.com", "bob@example.com"
# What a step must ask, for the tests about something else.
ASKED: dict[str, Any] = {"title": "t", "approvers": [ALICE], "requester": "r", "timeout": Duration.hours(1)}


def _steps(stack: cdk.Stack, service: ApprovalService) -> None:
    fixed = service.approval_step(
        stack,
        "ManagerApproval",
        approvers=[ALICE, BOB],
        title="Deploy checkout",
        requester="pipeline",
        policy="all",
        timeout=Duration.hours(4),
        result_path="$.approval",
        fields=[ENVIRONMENT],
        remind_every=Duration.hours(1),
    )
    fixed.add_catch(sfn.Fail(stack, "TooLate"), errors=list(ApprovalErrors.EXPIRY))
    fixed.add_catch(
        sfn.Fail(stack, "CannotAsk"), errors=[ApprovalErrors.INVALID_REQUEST, ApprovalErrors.DELIVERY_FAILED]
    )
    sfn.StateMachine(
        stack,
        "Fixed",
        definition_body=sfn.DefinitionBody.from_chainable(fixed.next(sfn.Succeed(stack, "Ok"))),
    )
    from_state = service.approval_step(
        stack,
        "ReadApproval",
        approvers=sfn.JsonPath.list_at("$.approvers"),
        title=sfn.JsonPath.string_at("$.title"),
        requester=sfn.JsonPath.string_at("$.requester"),
        details=sfn.JsonPath.object_at("$.details"),
        timeout="$.timeout_seconds",
    )
    sfn.StateMachine(stack, "FromState", definition_body=sfn.DefinitionBody.from_chainable(from_state))
    jsonata = service.approval_step(
        stack,
        "JsonataApproval",
        approvers="{% $states.input.approvers %}",
        title="{% $states.input.title %}",
        requester="pipeline",
        policy="quorum",
        quorum=2,
        timeout="{% $states.input.timeout_seconds %}",
        query_language=sfn.QueryLanguage.JSONATA,
        outputs={"approval": "{% $states.result %}"},
    )
    sfn.StateMachine(
        stack,
        "Jsonata",
        definition_body=sfn.DefinitionBody.from_chainable(jsonata),
        query_language=sfn.QueryLanguage.JSONATA,
    )
    confirmed = service.approval_step(
        stack,
        "ConfirmedApproval",
        approvers=[ALICE],
        title="Deploy",
        requester="pipeline",
        timeout=Duration.hours(1),
        result_path="$.approval",
    )
    confirmation = service.confirmation_step(stack, "ConfirmApproval", decision_path="$.approval")
    sfn.StateMachine(
        stack,
        "Confirmed",
        definition_body=sfn.DefinitionBody.from_chainable(
            confirmed.next(confirmation).next(sfn.Succeed(stack, "Done"))
        ),
    )


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    app = cdk.App()
    stack = cdk.Stack(app, "Theirs")
    service = ApprovalService(stack, "Approvals", ApprovalServiceProps(approvers=[ALICE, BOB], asset=build()))
    _steps(stack, service)
    return synthesize(stack)


def test_every_state_machine_with_a_step_may_send_through_the_queues_policy(template: dict[str, Any]) -> None:
    senders = queue_senders(template)
    for machine in ("Fixed", "FromState", "Jsonata", "Confirmed"):
        assert role_arn(template, machine) in senders, machine


def test_grant_send_requests_allows_the_role_and_names_it_in_the_queues_policy() -> None:
    app = cdk.App()
    stack = cdk.Stack(app, "Granted")
    service = ApprovalService(stack, "Approvals", ApprovalServiceProps(approvers=[ALICE], asset=build()))
    sender = iam.Role(stack, "Sender", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    service.grant_send_requests(sender)
    elsewhere = iam.Role.from_role_arn(
        stack, "Elsewhere", "arn:aws:iam::123456789012:role/batch", mutable=False
    )
    service.grant_send_requests(elsewhere)
    sfn.StateMachine(stack, "NoStep", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "P")))
    template = synthesize(stack)
    (role,) = (
        lid
        for lid, r in template["Resources"].items()
        if lid.startswith("Sender") and r["Type"] == "AWS::IAM::Role"
    )
    assert role_statements(template, "SenderDefaultPolicy") == [
        {
            "Action": "sqs:SendMessage",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [request_queue(template), "Arn"]},
        }
    ]
    senders = queue_senders(template)
    assert {"Fn::GetAtt": [role, "Arn"]} in senders
    assert "arn:aws:iam::123456789012:role/batch" in senders
    assert role_arn(template, "NoStep") not in senders, "a state machine without a step sends nothing"


def definition(template: dict[str, Any], machine: str) -> dict[str, Any]:
    """A state machine's definition, with the queue's URL written as QUEUE."""
    return state_machine_definition(template, machine, {"ApprovalsRequestQueue": "QUEUE"})


def test_the_step_sends_the_documented_message_and_waits_for_its_token(template: dict[str, Any]) -> None:
    task = definition(template, "Fixed")["States"]["ManagerApproval"]
    assert task["Resource"] == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
    assert task["Parameters"]["QueueUrl"] == "QUEUE"
    body = task["Parameters"]["MessageBody"]
    assert {name.removesuffix(".$") for name in body} == set(QueueMessage.model_fields)
    assert body["task_token.$"] == "$$.Task.Token"
    assert body["execution.$"] == "$$.Execution.Id"
    assert body["state.$"] == "$$.State.Name"
    assert body["request"] == {
        "title": "Deploy checkout",
        "approvers": [ALICE, BOB],
        "requester": "pipeline",
        "policy": "all",
        "fields": [ENVIRONMENT],
        "remind_every_seconds": 3600,
    }
    assert task["ResultPath"] == "$.approval"


def test_one_timeout_on_the_task_and_in_the_message(template: dict[str, Any]) -> None:
    fixed = definition(template, "Fixed")["States"]["ManagerApproval"]
    assert fixed["TimeoutSeconds"] == fixed["Parameters"]["MessageBody"]["timeout_seconds"] == 4 * 3600
    from_state = definition(template, "FromState")["States"]["ReadApproval"]
    assert from_state["TimeoutSecondsPath"] == "$.timeout_seconds"
    assert from_state["Parameters"]["MessageBody"]["timeout_seconds.$"] == "$.timeout_seconds"
    jsonata = definition(template, "Jsonata")["States"]["JsonataApproval"]
    expression = "{% $states.input.timeout_seconds %}"
    assert jsonata["TimeoutSeconds"] == jsonata["Arguments"]["MessageBody"]["timeout_seconds"] == expression


def test_request_fields_can_be_read_from_the_execution_state(template: dict[str, Any]) -> None:
    body = definition(template, "FromState")["States"]["ReadApproval"]["Parameters"]["MessageBody"]
    assert body["request"] == {
        "approvers.$": "$.approvers",
        "title.$": "$.title",
        "requester.$": "$.requester",
        "details.$": "$.details",
    }


def test_a_jsonata_state_machine_gets_a_jsonata_task(template: dict[str, Any]) -> None:
    machine = definition(template, "Jsonata")
    assert machine["QueryLanguage"] == "JSONata"
    task = machine["States"]["JsonataApproval"]
    assert "Parameters" not in task
    assert "ResultPath" not in task
    body = task["Arguments"]["MessageBody"]
    assert body["task_token"] == "{% $states.context.Task.Token %}"
    assert body["execution"] == "{% $states.context.Execution.Id %}"
    assert body["state"] == "{% $states.context.State.Name %}"
    assert body["request"] == {
        "approvers": "{% $states.input.approvers %}",
        "title": "{% $states.input.title %}",
        "requester": "pipeline",
        "policy": "quorum",
        "quorum": 2,
    }
    assert task["Output"] == {"approval": "{% $states.result %}"}


def test_catches_name_the_approval_errors(template: dict[str, Any]) -> None:
    catches = definition(template, "Fixed")["States"]["ManagerApproval"]["Catch"]
    assert [c["ErrorEquals"] for c in catches] == [
        ["States.Timeout", "Approval.Expired"],
        ["Approval.InvalidRequest", "Approval.DeliveryFailed"],
    ]


@pytest.mark.parametrize("machine", ["Fixed", "FromState", "Jsonata"])
def test_attaching_the_step_grants_send_message_on_the_queue_and_nothing_else(
    template: dict[str, Any], machine: str
) -> None:
    assert role_statements(template, f"{machine}Role") == [
        {
            "Action": "sqs:SendMessage",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [request_queue(template), "Arn"]},
        }
    ]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"timeout": Duration.days(366)}, "timeout: 31622400 seconds is not from 1 second"),
        ({"timeout": "timeout_seconds"}, "is neither a Duration nor a JSONPath"),
        ({"policy": "majority"}, "'majority' is not a valid Policy"),
        ({"approvers": [ALICE, "bob-at-example.com"]}, "approvers.1: not a valid email address"),
        ({"result_path": "$.x", "query_language": sfn.QueryLanguage.JSONATA}, "result_path is JSONPath"),
        ({"fields": [{**ENVIRONMENT, "options": None}]}, "fields.0.options: a choice field needs options"),
        ({"policy": "quorum", "quorum": 2}, "quorum: cannot exceed the number of approvers"),
        ({"policy": "quorum"}, "quorum: required when policy is quorum"),
        ({"outputs": {"a": 1}}, "outputs is JSONata"),
    ],
    ids=[
        "timeout over a year",
        "timeout not a path",
        "unknown policy",
        "bad approver",
        "result_path with JSONata",
        "choice without options",
        "quorum above the approvers",
        "quorum missing",
        "outputs with JSONPath",
    ],
)
def test_a_step_the_service_would_refuse_fails_the_synth(changes: dict[str, Any], problem: str) -> None:
    stack = cdk.Stack(cdk.App(), "Refused")
    fields: dict[str, Any] = {
        "title": "t",
        "approvers": [ALICE],
        "requester": "r",
        "timeout": Duration.hours(1),
        **changes,
    }
    with pytest.raises(ValueError, match=problem):
        ApprovalTask(stack, "Step", queue=sqs.Queue(stack, "Queue"), **fields)  # the step needs only a queue


def test_the_confirmation_step_makes_the_write_of_the_products_own_state_machines(
    template: dict[str, Any],
) -> None:
    states = state_machine_definition(
        template, "Confirmed", {"ApprovalsRequestQueue": "QUEUE", "ApprovalsTable": "TABLE"}
    )["States"]
    assert states["ConfirmedApproval"]["Next"] == "ConfirmApprovalNeeded"
    # Skipped when the service confirms the delivery itself (a bulk vote), read as the
    # product's own Outcome Choice reads it: the field is there only when true.
    flag = f"$.approval.{statemachine.CONFIRMED_BY_SERVICE}"
    assert states["ConfirmApprovalNeeded"] == {
        "Type": "Choice",
        "Choices": [{"Not": {"Variable": flag, "IsPresent": True}, "Next": "ConfirmApproval"}],
        "Default": "ConfirmApprovalByService",
    }
    assert states["ConfirmApprovalByService"] == {"Type": "Pass", "Next": "Done"}
    confirm = states["ConfirmApproval"]
    own = statemachine.approval_definition()["States"]["ConfirmApproved"]
    assert confirm["Resource"].endswith(":states:::dynamodb:updateItem")
    assert confirm["Parameters"] == {
        **own["Parameters"],
        "TableName": "TABLE",
        "Key": {"approval_id": {"S.$": "$.approval.approval_id"}},  # where the step put the decision
    }
    assert confirm["ResultPath"] is None
    assert [r["ErrorEquals"] for r in confirm["Retry"]] == [r["ErrorEquals"] for r in own["Retry"]]
    assert confirm["Retry"][0]["MaxAttempts"] == 0
    # A failed write goes on to the next state all the same: the sweep confirms instead.
    (catch,) = confirm["Catch"]
    assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": "ConfirmApprovalLeftToSweep"}
    assert confirm["Next"] == states["ConfirmApprovalLeftToSweep"]["Next"] == "Done"


def test_attaching_the_confirmation_step_grants_update_item_on_the_table_and_nothing_else(
    template: dict[str, Any],
) -> None:
    (table,) = (lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table")
    statements = role_statements(template, "ConfirmedRole")
    # Narrowed as the product's own ConfirmDelivery write is: the confirmation's attributes
    # only, nothing returned (a changed definition could otherwise read task tokens back).
    assert [s for s in statements if s["Action"] != "sqs:SendMessage"] == [
        {
            "Action": "dynamodb:UpdateItem",
            "Condition": CONFIRMATION_CONDITIONS,
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [table, "Arn"]},
        }
    ]


def test_an_escalation_named_at_synth_is_checked_and_sent_as_the_worker_reads_it() -> None:
    stack = cdk.Stack(cdk.App(), "Escalating")
    step = ApprovalTask.json_path(
        stack,
        "Step",
        sqs.Queue(stack, "Queue"),
        title="t",
        approvers=[ALICE],
        requester="r",
        timeout=Duration.hours(4),
        escalation=[{"after_seconds": 3600, "approvers": ["Lead@Example.com"]}],
    )
    body = stack.resolve(step.to_state_json())["Parameters"]["MessageBody"]
    assert body["request"]["escalation"] == [{"after_seconds": 3600, "approvers": ["lead@example.com"]}]
    with pytest.raises(ValueError, match=r"escalation\.0\.approvers: List should have at least 1 item"):
        ApprovalTask.json_path(
            stack,
            "Refused",
            sqs.Queue(stack, "Other"),
            title="t",
            approvers=[ALICE],
            requester="r",
            timeout=Duration.hours(4),
            escalation=[{"after_seconds": 3600, "approvers": []}],
        )


def test_a_misspelt_option_is_a_type_error_not_ignored() -> None:
    stack = cdk.Stack(cdk.App(), "Misspelt")
    service = ApprovalService(stack, "Approvals", ApprovalServiceProps(approvers=[ALICE], asset=build()))
    with pytest.raises(TypeError, match="reslt_path"):
        service.approval_step(stack, "Step", reslt_path="$.approval", **ASKED)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="reslt_path"):
        ApprovalTask.json_path(stack, "Other", service.queue, reslt_path="$.approval", **ASKED)  # type: ignore[call-arg]


def test_the_state_options_reach_the_state() -> None:
    stack = cdk.Stack(cdk.App(), "Options")
    queue = sqs.Queue(stack, "Queue")
    role = iam.Role(stack, "Other", assumed_by=iam.AccountRootPrincipal())
    step = ApprovalTask.json_path(
        stack,
        "Step",
        queue,
        **ASKED,
        state_name="Approve the release",
        result_path="$.approval",
        result_selector={"outcome.$": "$.outcome"},
        heartbeat_timeout=sfn.Timeout.duration(Duration.minutes(90)),
        credentials=sfn.Credentials(role=sfn.TaskRole.from_role(role)),
    )
    assert isinstance(step, sfn.TaskStateBase)
    assert step.state_id == "Approve the release"
    state = stack.resolve(step.to_state_json())
    assert state["ResultPath"] == "$.approval"
    assert state["ResultSelector"] == {"outcome.$": "$.outcome"}
    assert state["HeartbeatSeconds"] == 5400
    assert state["TimeoutSeconds"] == 3600
    assert state["Credentials"] == {"RoleArn": stack.resolve(role.role_arn)}


def test_the_jsonata_factory_makes_a_jsonata_state() -> None:
    stack = cdk.Stack(cdk.App(), "Jsonata")
    step = ApprovalTask.jsonata(
        stack,
        "Step",
        sqs.Queue(stack, "Queue"),
        **{**ASKED, "title": "{% $states.input.title %}"},
        outputs={"approval": "{% $states.result %}"},
    )
    state = stack.resolve(step.to_state_json())
    assert state["QueryLanguage"] == "JSONata"
    assert state["Arguments"]["MessageBody"]["request"]["title"] == "{% $states.input.title %}"
    assert state["Output"] == {"approval": "{% $states.result %}"}
