"""The state machine definitions' shape: what the CDK stack and the local stack both deploy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from approvals.models import DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS, Decision, QueueMessage
from approvals.statemachine import (
    CONFIRMED_BY_SERVICE,
    DELIVERY_FAILED,
    EXPIRED,
    INVALID_REQUEST,
    PARTITION_PLACEHOLDER,
    QUEUE_URL_PLACEHOLDER,
    TABLE_NAME_PLACEHOLDER,
    TIMEOUT,
    approval_definition,
    fanout_definition,
    fanout_map,
    render,
)
from approvals.store import OPEN_ATTRIBUTE

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/approvals-requests"
TABLE_NAME = "approvals-table"


def item_states() -> dict[str, Any]:
    states: dict[str, Any] = fanout_definition()["States"]["ApproveEach"]["ItemProcessor"]["States"]
    return states


def all_state_sets() -> list[dict[str, Any]]:
    return [approval_definition()["States"], item_states()]


def reachable(states: dict[str, Any], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = states[name]
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", [])]
        targets += [c["Next"] for c in state.get("Catch", [])]
        todo += [t for t in targets if t]
    return seen


@pytest.mark.parametrize("states", all_state_sets(), ids=["single", "fanout-item"])
def test_approval_task(states: dict[str, Any]) -> None:
    task = states["RequestApproval"]
    assert task["Type"] == "Task"
    assert task["Resource"] == f"arn:{PARTITION_PLACEHOLDER}:states:::sqs:sendMessage.waitForTaskToken"
    assert task["Parameters"]["QueueUrl"] == QUEUE_URL_PLACEHOLDER
    body = task["Parameters"]["MessageBody"]
    # Every field of the worker's contract, each taken from the execution by a path.
    assert {name.removesuffix(".$") for name in body} == set(QueueMessage.model_fields)
    assert all(name.endswith(".$") for name in body)
    assert body["task_token.$"] == "$$.Task.Token"
    assert body["request.$"] == "$.request"
    # The links expire with the timeout the task applies.
    assert body["timeout_seconds.$"] == task["TimeoutSecondsPath"] == "$.approval_timeout.seconds"
    assert "TimeoutSeconds" not in task
    assert "HeartbeatSeconds" not in task
    assert task["ResultPath"] == "$.decision"  # the request stays beside the decision
    assert task["Next"] == "Outcome"


@pytest.mark.parametrize("states", all_state_sets(), ids=["single", "fanout-item"])
def test_the_outcome_choice_confirms_the_delivery_first_unless_the_service_does(
    states: dict[str, Any],
) -> None:
    """A bulk vote confirms the deliveries of its items itself, 100 in one write, and its
    decisions say so: the workflow then spends no write of its own. One Choice branches on
    both, so a single click's path is no longer than before (RequestApproval, Outcome, the
    confirmation, the end) and a bulk vote's is one state shorter. The field's absence is
    tested, never compared (a comparison with a missing field is a runtime error)."""
    assert CONFIRMED_BY_SERVICE in Decision.model_fields
    unconfirmed = {"Not": {"Variable": f"$.decision.{CONFIRMED_BY_SERVICE}", "IsPresent": True}}
    approved = {"Variable": "$.decision.outcome", "StringEquals": "approved"}
    assert states["Outcome"] == {
        "Type": "Choice",
        "Choices": [
            {"And": [unconfirmed, approved], "Next": "ConfirmApproved"},
            {**unconfirmed, "Next": "ConfirmRejected"},
            {**approved, "Next": "Approved"},
        ],
        "Default": "Rejected",
    }


@pytest.mark.parametrize("states", all_state_sets(), ids=["single", "fanout-item"])
@pytest.mark.parametrize(("name", "end"), [("ConfirmApproved", "Approved"), ("ConfirmRejected", "Rejected")])
def test_the_workflow_confirms_it_has_the_decision_with_one_conditional_write(
    states: dict[str, Any], name: str, end: str
) -> None:
    confirm = states[name]
    assert confirm["Resource"] == f"arn:{PARTITION_PLACEHOLDER}:states:::dynamodb:updateItem"
    parameters = confirm["Parameters"]
    assert parameters["TableName"] == TABLE_NAME_PLACEHOLDER
    assert "approval_id" in Decision.model_fields  # the task's result names its approval
    assert parameters["Key"] == {"approval_id": {"S.$": "$.decision.approval_id"}}
    # The approval leaves the sweep's index, and only if it is there, settled: an update
    # would otherwise create an item for a key the table does not hold.
    assert parameters["UpdateExpression"] == f"REMOVE delivery_failed, {OPEN_ATTRIBUTE}"
    assert parameters["ConditionExpression"] == "#status IN (:approved, :rejected)"
    assert parameters["ExpressionAttributeValues"] == {
        ":approved": {"S": "approved"},
        ":rejected": {"S": "rejected"},
    }
    # The state's input goes on untouched, whether the write passes or fails: a failed
    # confirmation leaves the approval to the sweep and never fails the workflow.
    assert confirm["ResultPath"] is None
    assert confirm["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": end}]
    refused, other = confirm["Retry"]
    assert refused == {"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "MaxAttempts": 0}
    assert other["ErrorEquals"] == ["States.ALL"]
    assert confirm["Next"] == end


@pytest.mark.parametrize("states", all_state_sets(), ids=["single", "fanout-item"])
def test_approval_task_catches_each_named_error(states: dict[str, Any]) -> None:
    catches = {tuple(c["ErrorEquals"]): c for c in states["RequestApproval"]["Catch"]}
    assert set(catches) == {(TIMEOUT, EXPIRED), (INVALID_REQUEST,), (DELIVERY_FAILED,)}
    assert catches[(TIMEOUT, EXPIRED)]["Next"] == "Expired"
    assert catches[(INVALID_REQUEST,)]["Next"] == "InvalidRequest"
    assert catches[(DELIVERY_FAILED,)]["Next"] == "Undelivered"
    assert all(c["ResultPath"] == "$.error" for c in catches.values())
    assert not any("States.ALL" in c["ErrorEquals"] for c in catches.values())
    assert TIMEOUT == "States.Timeout"
    assert INVALID_REQUEST == "Approval.InvalidRequest"
    assert DELIVERY_FAILED == "Approval.DeliveryFailed"


@pytest.mark.parametrize("states", all_state_sets(), ids=["single", "fanout-item"])
def test_timeout_is_checked_before_anything_is_queued(states: dict[str, Any]) -> None:
    check = states["CheckTimeout"]
    assert check["Type"] == "Choice"
    missing, numeric = check["Choices"]
    assert missing == {
        "Not": {"Variable": "$.request.timeout_seconds", "IsPresent": True},
        "Next": "DefaultTimeout",
    }
    assert numeric == {"Variable": "$.request.timeout_seconds", "IsNumeric": True, "Next": "ReadTimeout"}
    assert check["Default"] == "TimeoutOutOfRange"
    # The request is passed on untouched: the timeout applied lives beside it.
    assert states["DefaultTimeout"]["Result"] == {"seconds": DEFAULT_TIMEOUT_SECONDS, "text": "86400"}
    assert states["DefaultTimeout"]["ResultPath"] == "$.approval_timeout"
    assert states["ReadTimeout"]["Parameters"] == {
        "seconds.$": "$.request.timeout_seconds",
        "text.$": "States.Format('{}', $.request.timeout_seconds)",
    }
    (whole_and_in_range,) = states["CheckTimeoutRange"]["Choices"]
    rules = whole_and_in_range["And"]
    assert {"Variable": "$.approval_timeout.seconds", "NumericGreaterThanEquals": 1} in rules
    assert {"Variable": "$.approval_timeout.seconds", "NumericLessThanEquals": MAX_TIMEOUT_SECONDS} in rules
    assert {"Not": {"Variable": "$.approval_timeout.text", "StringMatches": "*.*"}} in rules
    assert whole_and_in_range["Next"] == "RequestApproval"
    assert states["CheckTimeoutRange"]["Default"] == "TimeoutOutOfRange"
    out_of_range = states["TimeoutOutOfRange"]
    assert out_of_range["Result"]["Error"] == INVALID_REQUEST
    assert out_of_range["Result"]["Cause"].startswith("request.timeout_seconds: ")
    assert out_of_range["Next"] == "InvalidRequest"


@pytest.mark.parametrize("states", all_state_sets(), ids=["single", "fanout-item"])
def test_every_state_is_reachable_and_every_target_exists(states: dict[str, Any]) -> None:
    assert reachable(states, "CheckTimeout") == set(states)


def test_single_approval_ends() -> None:
    definition = approval_definition()
    states = definition["States"]
    assert definition["StartAt"] == "CheckTimeout"
    assert states["Approved"] == {"Type": "Pass", "OutputPath": "$.decision", "End": True}
    assert states["Rejected"] == {"Type": "Pass", "OutputPath": "$.decision", "End": True}
    assert states["Expired"] == {"Type": "Pass", "Result": {"outcome": "expired"}, "End": True}
    for name in ("InvalidRequest", "Undelivered"):
        assert states[name] == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}


def test_fanout_map() -> None:
    definition = fanout_definition()
    assert definition["StartAt"] == "RequestsFrom"
    assert definition["States"]["RequestsFrom"]["Choices"] == [
        {"Variable": "$.requests_from", "IsPresent": True, "Next": "ApproveEachFromS3"}
    ]
    assert definition["States"]["RequestsFrom"]["Default"] == "ApproveEach"
    for name in ("ApproveEach", "ApproveEachFromS3"):
        each = definition["States"][name]
        assert each["Type"] == "Map"
        assert each["ItemSelector"] == {"request.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"}
        # Every approval of a batch in flight at once: a Distributed Map of standard child
        # executions (an inline Map runs 40 at a time, and Express children cannot wait a year).
        assert each["MaxConcurrency"] == 10_000
        assert each["ItemProcessor"]["ProcessorConfig"] == {
            "Mode": "DISTRIBUTED",
            "ExecutionType": "STANDARD",
        }
        assert each["ItemProcessor"]["StartAt"] == "CheckTimeout"
        assert each["ItemProcessor"]["States"] == item_states()
        assert "Iterator" not in each
        assert "Parameters" not in each
        # The decisions go to S3 and replace the state: nothing in it grows with the items.
        assert each["ResultWriter"] == {
            "Resource": f"arn:{PARTITION_PLACEHOLDER}:states:::s3:putObject",
            "Parameters": {"Bucket": "${FanoutBucket}", "Prefix": "fanout"},
        }
        assert each["ResultPath"] == "$"
        assert each["Next"] == "Summary"
    assert definition["States"]["ApproveEach"]["ItemsPath"] == "$.requests"
    assert definition["States"]["ApproveEachFromS3"]["ItemReader"] == {
        "Resource": f"arn:{PARTITION_PLACEHOLDER}:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket.$": "$.requests_from.bucket", "Key.$": "$.requests_from.key"},
    }
    # The output: the summary function's (counts and where the decisions are, which the
    # integration tests read); if it fails, where the decisions are and why no counts.
    summary = definition["States"]["Summary"]
    assert (summary["Type"], summary["End"], summary["OutputPath"]) == ("Task", True, "$.Payload")
    assert summary["Parameters"] == {"FunctionName": "${FanoutSummaryFunction}", "Payload.$": "$"}
    assert [c["Next"] for c in summary["Catch"]] == ["SummaryWithoutCounts"]
    without = definition["States"]["SummaryWithoutCounts"]
    assert (without["Type"], without["End"]) == ("Pass", True)
    assert set(without["Parameters"]) == {"map_run.$", "decisions", "counts_error.$"}


def test_a_fanout_map_takes_its_items_from_one_place() -> None:
    for sources in (
        {},
        {"items_path": "$.items", "item_reader": {"Resource": "arn:aws:states:::s3:getObject"}},
    ):
        with pytest.raises(ValueError, match="either"):
            fanout_map(
                item_states(),
                "CheckTimeout",
                max_concurrency=1,
                results_bucket="b",
                results_prefix="p",
                **sources,  # type: ignore[arg-type]
            )


def test_fanout_concurrency_is_a_parameter_within_the_services_limit() -> None:
    assert fanout_definition(max_concurrency=500)["States"]["ApproveEach"]["MaxConcurrency"] == 500
    for refused in (0, 10_001):
        with pytest.raises(ValueError, match="max_concurrency"):
            fanout_definition(max_concurrency=refused)


def test_fanout_items_never_fail_the_batch() -> None:
    states = item_states()
    assert not [name for name, state in states.items() if state["Type"] == "Fail"]
    assert states["Approved"] == {"Type": "Pass", "End": True, "OutputPath": "$.decision"}
    assert states["Rejected"] == {"Type": "Pass", "End": True, "OutputPath": "$.decision"}
    assert states["Expired"] == {"Type": "Pass", "End": True, "Result": {"outcome": "expired"}}
    assert states["InvalidRequest"]["Parameters"] == {"outcome": "invalid", "error.$": "$.error.Cause"}
    assert states["Undelivered"]["Parameters"] == {"outcome": "undelivered", "error.$": "$.error.Cause"}


def test_render_fills_the_queue_url_table_name_and_bucket_everywhere() -> None:
    # The fan-out asks in two places (its items from the state, or from S3).
    for definition, askers in ((approval_definition(), 1), (fanout_definition(), 2)):
        rendered = render(definition, QUEUE_URL, TABLE_NAME, "approvals-fanout")
        assert "${" not in rendered
        parsed = json.loads(rendered)
        text = json.dumps(parsed)
        assert text.count(QUEUE_URL) == askers
        assert text.count(f'"TableName": "{TABLE_NAME}"') == 2 * askers  # an approval's, a rejection's
        assert text.count('"Bucket": "approvals-fanout"') == (
            2 if askers == 2 else 0
        )  # each Map's ResultWriter


def test_definitions_are_fresh_each_call() -> None:
    first = approval_definition()
    first["States"]["Outcome"]["Default"] = "Approved"
    first["States"]["Outcome"]["Choices"][0]["And"][1]["StringEquals"] = "rejected"
    first["States"]["ConfirmApproved"]["Parameters"]["ExpressionAttributeValues"].clear()
    again = approval_definition()["States"]
    assert again["Outcome"]["Default"] == "Rejected"
    assert again["Outcome"]["Choices"][0]["And"][1]["StringEquals"] == "approved"
    assert again["ConfirmApproved"]["Parameters"]["ExpressionAttributeValues"]
    assert MAX_TIMEOUT_SECONDS == 31_536_000


def test_the_default_timeout_is_the_definitions_one_parameter() -> None:
    for definition, item in ((approval_definition(3600), False), (fanout_definition(3600), True)):
        states = (
            definition["States"]["ApproveEach"]["ItemProcessor"]["States"] if item else definition["States"]
        )
        assert states["DefaultTimeout"]["Result"] == {"seconds": 3600, "text": "3600"}
    assert approval_definition(DEFAULT_TIMEOUT_SECONDS) == approval_definition()
