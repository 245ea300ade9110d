"""`approvals approvers ...` on a deployed stack (`--stack-name`), against moto: the stack's
outputs name the topic, and the commands manage its subscriptions."""

from __future__ import annotations

import json

import boto3
import pytest

from approvals import cli, directory, target
from approvals.local.resources import CONFIRM_AT_ONCE_TAG
from tests.integration.conftest import Stack

ALICE, BOB = "alice@example.com", "bob@example.com"


def deploy_outputs(stack: Stack) -> None:
    """A CloudFormation stack named Approvals whose outputs are the ones `--stack-name` reads."""
    resources = stack.resources
    outputs = {
        target.OUTPUT_STATE_MACHINE: resources.state_machine_arn,
        target.OUTPUT_FANOUT_STATE_MACHINE: resources.fanout_state_machine_arn,
        target.OUTPUT_TABLE: resources.table_name,
        target.OUTPUT_API_URL: "https://approvals.example.test/prod/",
        target.OUTPUT_TOPIC: resources.topic_arn,
        target.OUTPUT_SIGNING_KEY: resources.signing_secret_arn,
    }
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    cloudformation.create_stack(StackName="Approvals", TemplateBody=json.dumps(template))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--stack-name", "Approvals", "--region", "us-east-1"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_add_list_confirm_and_remove_on_a_deployed_stack(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_outputs(stack)
    stack.sns.untag_resource(ResourceArn=stack.resources.topic_arn, TagKeys=[CONFIRM_AT_ONCE_TAG])  # as AWS

    code, out, _ = run(capsys, "approvers", "add", ALICE, "Bob@Example.com")
    assert code == 0
    assert out.splitlines()[1:3] == [
        f"{ALICE}  pending confirmation  no",
        f"{BOB}    pending confirmation  no",
    ]
    assert "run `approvals approvers confirm LINK`" in out.splitlines()[3]

    link = next(e.links[0] for e in stack.emails() if e.to == ALICE)
    code, out, _ = run(capsys, "approvers", "confirm", link)
    assert (code, out.startswith("Confirmed and protected arn:aws:sns:")) == (0, True)

    code, out, _ = run(capsys, "approvers", "list", "carol@example.com")
    assert out.splitlines()[1:] == [
        f"{ALICE}  confirmed             yes",
        f"{BOB}    pending confirmation  no",
        "carol@example.com  no subscription       no",
    ]

    code, _, err = run(capsys, "approvers", "remove", BOB)
    assert code == 2
    assert err.startswith(
        f"approvals: {BOB} is pending confirmation: SNS cannot remove a pending subscription"
    )
    code, out, _ = run(capsys, "approvers", "remove", ALICE)
    assert (code, out) == (0, f"Removed {ALICE}: requests naming it are refused from now on.\n")
    assert ALICE not in directory.read(stack.sns, stack.resources.topic_arn)

    code, _, err = run(capsys, "approvers", "confirm", "https://example.com/not-a-confirmation")
    assert (code, err) == (
        2,
        "approvals: not a subscription confirmation link: it needs TopicArn and Token parameters\n",
    )
