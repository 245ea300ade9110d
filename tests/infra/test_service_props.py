"""ApprovalServiceProps are checked in the constructor, as `-c` context is at synth: every
problem in one error naming the prop, addresses normalized as the worker normalizes them,
durations and log retention as the CDK types them."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import Duration
from aws_cdk import aws_logs as logs

from approvals_cdk import ApprovalService, ApprovalServiceProps
from approvals_cdk.config import ConfigError
from approvals_cdk.packaging import build
from tests.cdk_templates import synthesize

pytestmark = pytest.mark.xdist_group("infra")


def service(**props: Any) -> ApprovalService:
    stack = cdk.Stack(cdk.App(), "Theirs")
    return ApprovalService(stack, "Approvals", ApprovalServiceProps(asset=build(), **props))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    built = service(
        approvers=[" Alice@Example.com", "bob@example.com", "alice@example.com"],
        alarm_email="OnCall@Example.com",
        default_timeout=Duration.hours(1),
        approval_retention=Duration.days(30),
        log_retention=logs.RetentionDays.THREE_DAYS,
        sweep_interval=Duration.minutes(10),
    )
    return synthesize(cdk.Stack.of(built))


def resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def test_approvers_are_lowercased_like_the_worker_does_so_their_filters_match(
    template: dict[str, Any],
) -> None:
    filters = [
        json.dumps(s["FilterPolicy"])
        for s in resources(template, "AWS::SNS::Subscription")
        if "FilterPolicy" in s
    ]
    assert filters == [
        json.dumps({"approver": ["alice@example.com"]}),
        json.dumps({"approver": ["bob@example.com"]}),
    ]
    endpoints = {s["Endpoint"] for s in resources(template, "AWS::SNS::Subscription")}
    assert "oncall@example.com" in endpoints


def test_durations_and_log_retention_reach_the_template(template: dict[str, Any]) -> None:
    assert {g["RetentionInDays"] for g in resources(template, "AWS::Logs::LogGroup")} == {3}
    (schedule,) = resources(template, "AWS::Scheduler::Schedule")
    assert schedule["ScheduleExpression"] == "rate(10 minutes)"
    environments = [f["Environment"]["Variables"] for f in resources(template, "AWS::Lambda::Function")]
    assert {e["APPROVALS_RETENTION_DAYS"] for e in environments if "APPROVALS_RETENTION_DAYS" in e} == {"30"}
    # Both state machines' default, in the Pass state that supplies it.
    for machine in resources(template, "AWS::StepFunctions::StateMachine"):
        assert '{\\"seconds\\": 3600, \\"text\\": \\"3600\\"}' in json.dumps(machine["DefinitionString"])


def test_every_wrong_prop_is_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as raised:
        ApprovalService(
            cdk.Stack(cdk.App(), "Theirs"),
            "Approvals",
            ApprovalServiceProps(
                approvers=["bob-at-example.com"],
                default_timeout=Duration.days(400),
                approval_retention=Duration.hours(5),
                log_retention=45,  # type: ignore[arg-type]
                sweep_interval=Duration.seconds(30),
                digest_window=Duration.hours(2),
                reminders=["soon"],
                alarm_email="on-call",
                max_receive_count=0,
                rate_limit_per_ip=5,
                fanout_max_concurrency=20_000,
            ),
        )
    lines = str(raised.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "approvers",
        "default_timeout",
        "approval_retention",
        "sweep_interval",
        "digest_window",
        "log_retention",
        "reminders",
        "alarm_email",
        "max_receive_count",
        "rate_limit_per_ip",
        "fanout_max_concurrency",
    ]
    assert "'bob-at-example.com' is not a valid email address" in lines[0]
    assert "400 days is not a whole number of seconds from 1 to 31536000" in lines[1]
    assert "45 is not a logs.RetentionDays (for example logs.RetentionDays.THREE_MONTHS)" in lines[5]
    assert "digest_window: 2 hours is not a whole number of seconds from 0 to 3600" in lines[4]


def test_an_int_where_a_duration_goes_says_which_duration() -> None:
    with pytest.raises(
        ConfigError, match=r"default_timeout: 3600 is not a Duration \(Duration.seconds\(3600\)\)"
    ):
        service(default_timeout=3600)
