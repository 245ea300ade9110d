"""Context parameters: `cdk deploy` with malformed approvers stops at synth with a clear
error, and without any deploys a service whose approvers are added later; the other
parameters are checked the same way."""

from __future__ import annotations

import json
import re
from typing import Any

import aws_cdk as cdk
import pytest

from approvals.models import DEFAULT_TIMEOUT_SECONDS
from approvals_cdk.config import ConfigError, DeployConfig, from_context, parse_approvers
from approvals_cdk.stack import ApprovalsStack
from tests import cdk_templates
from tests.cdk_templates import synthesize
from tests.infra.conftest import STACK, Synthesis

pytestmark = pytest.mark.xdist_group("infra")


def config(**context: Any) -> DeployConfig:
    return from_context(context)


def test_cdk_synth_without_approvers_deploys_an_empty_directory(synth_runs: dict[str, Synthesis]) -> None:
    """Approvers can all be added after the deploy (`approvals approvers add`): the topic is
    there, with no subscription yet, and everything else as with approvers."""
    run = synth_runs["missing"]
    assert run.returncode == 0, run.output
    assert run.resources("AWS::SNS::Subscription") == {}
    assert len(run.resources("AWS::SNS::Topic")) == len(synth_runs["stack"].resources("AWS::SNS::Topic"))


def test_cdk_synth_with_a_malformed_approver_stops_with_a_clear_error(
    synth_runs: dict[str, Synthesis],
) -> None:
    run = synth_runs["malformed"]
    assert run.returncode != 0
    assert "approvers: 'bob-at-example.com' is not a valid email address" in run.output
    assert "retentiondays: not a parameter of this app (did you mean retentionDays?)" in run.output
    assert "Traceback" not in run.output
    assert not (run.outdir / f"{STACK}.template.json").exists()


def test_approvers_are_normalized_like_the_worker_does_and_deduplicated() -> None:
    assert parse_approvers(" Alice@Example.COM ,bob@example.com,alice@example.com") == (
        "alice@example.com",
        "bob@example.com",
    )
    assert parse_approvers(["carol@example.com"]) == ("carol@example.com",)  # a list, from cdk.json


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("alice@example.com,", "entry 2 is empty"),
        ("alice", "'alice' is not a valid email address"),
        ("alice@example.com;bob@example.com", "is not a valid email address"),
        ("Alice <alice@example.com>", "is not a valid email address"),
    ],
)
def test_malformed_approvers_are_refused(value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_approvers(value)


@pytest.mark.parametrize("value", [None, "", "  "])
def test_no_approvers_at_deploy_is_an_empty_directory(value: Any) -> None:
    assert parse_approvers(value) == ()


def test_defaults() -> None:
    assert config(approvers="a@example.com") == DeployConfig(
        approvers=("a@example.com",),
        stack_name="Approvals",
        default_timeout_seconds=DEFAULT_TIMEOUT_SECONDS,
        retention_days=90,
        log_retention_days=90,
        removal_policy="retain",
        reminders=("50%", "1h"),
    )


def test_every_parameter_is_read() -> None:
    assert config(
        approvers="a@example.com",
        stackName="Approvals-Prod",
        defaultTimeout="3600",
        retentionDays="365",
        logRetentionDays="30",
        removalPolicy="DESTROY",
        reminders="25%, 30m",
    ) == DeployConfig(
        approvers=("a@example.com",),
        stack_name="Approvals-Prod",
        default_timeout_seconds=3600,
        retention_days=365,
        log_retention_days=30,
        removal_policy="destroy",
        reminders=("25%", "30m"),
    )
    assert config(approvers="a@example.com", reminders="none").reminders == ()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("stackName", "1approvals", "stackName: '1approvals' is not a CloudFormation stack name"),
        ("stackName", "my_stack", "is not a CloudFormation stack name"),
        ("defaultTimeout", "0", "defaultTimeout: '0' is not a whole number of seconds from 1 to 31536000"),
        ("defaultTimeout", "1d", "defaultTimeout: '1d' is not a whole number"),
        ("defaultTimeout", "31536001", "from 1 to 31536000"),
        ("retentionDays", "-5", "retentionDays: '-5' is not a whole number of days"),
        ("logRetentionDays", "10", "logRetentionDays: '10' is not one CloudWatch Logs accepts"),
        ("removalPolicy", "snapshot", "removalPolicy: 'snapshot' is not one of retain, destroy"),
        ("reminders", "soon", "reminders: reminder 'soon'"),
        ("sweepMinutes", "0", "sweepMinutes: '0' is not a whole number of minutes from 1 to 60"),
        ("sweepMinutes", "0.5", "sweepMinutes: '0.5' is not a whole number of minutes"),
        ("digestSeconds", "-1", "digestSeconds: '-1' is not a whole number of seconds from 0 to 3600"),
        ("digestSeconds", "3601", "from 0 to 3600"),
    ],
)
def test_malformed_parameters_are_refused_by_name(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(approvers="a@example.com", **{name: value})


def test_snap_start_is_an_opt_in_flag() -> None:
    assert config(approvers="a@example.com").snap_start is False
    assert config(approvers="a@example.com", snapStart="TRUE").snap_start is True
    with pytest.raises(ConfigError, match="snapStart: 'on' is not true or false"):
        config(approvers="a@example.com", snapStart="on")


def test_sweep_minutes_default_to_five() -> None:
    assert config(approvers="a@example.com").sweep_minutes == 5
    assert config(approvers="a@example.com", sweepMinutes="1").sweep_minutes == 1
    assert config(approvers="a@example.com", sweepMinutes=60).sweep_minutes == 60  # cdk.json


def test_sweep_minutes_set_the_schedule_and_what_the_worker_allows(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The end-to-end tests' template, synthesized with -c sweepMinutes=1 once in the run.
    template = json.loads(cdk_templates.one_minute_sweep_template(tmp_path_factory).read_text())
    (schedule,) = (r for r in template["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule")
    assert schedule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    environments = [
        r["Properties"].get("Environment", {}).get("Variables", {})
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    ]
    assert {e["APPROVALS_SWEEP_SECONDS"] for e in environments if "APPROVALS_SWEEP_SECONDS" in e} == {"60"}


def test_the_digest_window_reaches_the_worker_and_the_sweeper(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    assert config(approvers="a@example.com").digest_seconds == 60
    # The end-to-end tests' template, synthesized with -c digestSeconds=0 once in the run.
    template = json.loads(cdk_templates.product_template(tmp_path_factory).read_text())
    functions = {
        r["Properties"]["Handler"]: r["Properties"].get("Environment", {}).get("Variables", {})
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and "Handler" in r["Properties"]
    }
    with_window = {
        h: e["APPROVALS_DIGEST_SECONDS"] for h, e in functions.items() if "APPROVALS_DIGEST_SECONDS" in e
    }
    assert with_window == {"worker.handler.lambda_handler": "0", "worker.sweeper.lambda_handler": "0"}


def test_allow_self_approval_is_a_flag() -> None:
    assert config(approvers="a@example.com").allow_self_approval is False
    assert config(approvers="a@example.com", allowSelfApproval="true").allow_self_approval is True
    assert config(approvers="a@example.com", allowSelfApproval=False).allow_self_approval is False  # cdk.json
    with pytest.raises(ConfigError, match="allowSelfApproval: 'yes please' is not true or false"):
        config(approvers="a@example.com", allowSelfApproval="yes please")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("approver", "approver: not a parameter of this app (did you mean approvers?)"),
        ("allowSelfApprovals", "(did you mean allowSelfApproval?)"),
        ("region", "region: not a parameter of this app; it takes approvers, stackName,"),
    ],
)
def test_an_unknown_parameter_is_refused_by_name(name: str, message: str) -> None:
    """A misspelt `-c` used to be ignored, and the deploy went ahead with the default."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        config(approvers="a@example.com", **{name: "x"})


def test_the_cdks_own_context_is_not_a_parameter() -> None:
    cdk_own = {
        "@aws-cdk/core:checkSecretUsage": True,
        "aws:cdk:enable-path-metadata": True,
        "cli-telemetry": False,
        "availability-zones:account=123456789012:region=eu-west-1": ["eu-west-1a"],
        "acknowledged-issue-numbers": [12345],
    }
    assert config(approvers="a@example.com", **cdk_own) == config(approvers="a@example.com")


def test_sender_and_operator_roles_are_role_arns() -> None:
    role = "arn:aws:iam::123456789012:role/path/team-workflow"
    read = config(approvers="a@example.com", senderRoles=f" {role}, ", operatorRoles=role)
    assert (read.sender_roles, read.operator_roles) == ((role,), (role,))
    with pytest.raises(ConfigError, match=r"senderRoles: '.*user/bob' is not an IAM role ARN"):
        config(approvers="a@example.com", senderRoles="arn:aws:iam::123456789012:user/bob")


def test_allowed_accounts_are_account_ids() -> None:
    read = config(approvers="a@example.com", allowedAccounts=" 222222222222, 333333333333 ")
    assert read.allowed_accounts == ("222222222222", "333333333333")
    assert config(approvers="a@example.com").allowed_accounts == ()
    with pytest.raises(ConfigError, match=r"allowedAccounts: '2222' is not a 12-digit AWS account id"):
        config(approvers="a@example.com", allowedAccounts="2222")


def test_the_products_stack_shared_with_other_accounts_exports_its_execution_events_bus() -> None:
    stack = ApprovalsStack(
        cdk.App(), STACK, DeployConfig(approvers=("a@example.com",), allowed_accounts=("222222222222",))
    )
    outputs = synthesize(stack)["Outputs"]
    assert outputs["ExecutionEventsBusArn"]["Export"] == {"Name": "Approvals-ExecutionEventsBusArn"}


def test_rate_limit_per_ip_is_off_by_default_and_within_what_waf_takes() -> None:
    assert config(approvers="a@example.com").rate_limit_per_ip is None
    assert config(approvers="a@example.com", rateLimitPerIp="none").rate_limit_per_ip is None
    assert config(approvers="a@example.com", rateLimitPerIp="300").rate_limit_per_ip == 300
    with pytest.raises(ConfigError, match="rateLimitPerIp: '5' is not a whole number of requests"):
        config(approvers="a@example.com", rateLimitPerIp="5")


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        config(approvers="alice", defaultTimeout="0", removalPolicy="maybe")
    assert str(raised.value).splitlines() == [
        line
        for line in str(raised.value).splitlines()
        if line.startswith(("approvers:", "defaultTimeout:", "removalPolicy:"))
    ]
    assert len(str(raised.value).splitlines()) == 3
