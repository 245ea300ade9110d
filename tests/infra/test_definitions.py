"""AWS runs the very state machine definitions the local stack runs (the queue URL aside)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from approvals import statemachine
from tests.infra.conftest import DEFAULT_TIMEOUT, Synthesis
from tests.infra.lookup import function, only, queues

pytestmark = pytest.mark.xdist_group("infra")

DEFINITIONS = {
    "approval": statemachine.approval_definition,
    "fanout": statemachine.fanout_definition,
}


def definition_text(properties: dict[str, Any]) -> str:
    """The definition as deployed, with the stack's partition joined in (as in ``aws``): the
    one part CloudFormation fills in besides the substitutions."""
    separator, parts = properties["DefinitionString"]["Fn::Join"]
    assert all(part == {"Ref": "AWS::Partition"} for part in parts if not isinstance(part, str))
    return str(separator).join(part if isinstance(part, str) else "aws" for part in parts)


def deployed(synthesis: Synthesis) -> dict[str, dict[str, Any]]:
    """The synthesized state machines, by which definition they carry (Map: fan-out)."""
    found = {}
    for machine in synthesis.resources("AWS::StepFunctions::StateMachine").values():
        properties = machine["Properties"]
        kind = "fanout" if '"Map"' in definition_text(properties) else "approval"
        found[kind] = properties
    return found


@pytest.mark.parametrize("kind", sorted(DEFINITIONS))
def test_template_holds_the_definition_approvals_statemachine_writes(synthesis: Synthesis, kind: str) -> None:
    properties = deployed(synthesis)[kind]
    # Nothing but the partition and the substitutions is filled in at deploy time.
    assert json.loads(definition_text(properties)) == json.loads(
        json.dumps(DEFINITIONS[kind](DEFAULT_TIMEOUT)).replace(statemachine.PARTITION_PLACEHOLDER, "aws")
    )
    request, _ = queues(synthesis)
    table, _ = only(synthesis.resources("AWS::DynamoDB::Table"))
    bucket, _ = only(synthesis.resources("AWS::S3::Bucket"))
    summary, _ = function(synthesis, "fanout_summary")
    fanout_only = (
        {"FanoutBucket": {"Ref": bucket}, "FanoutSummaryFunction": {"Fn::GetAtt": [summary, "Arn"]}}
        if kind == "fanout"
        else {}
    )
    assert properties["DefinitionSubstitutions"] == {
        "QueueUrl": {"Ref": request},
        "TableName": {"Ref": table},
        **fanout_only,
    }


@pytest.mark.parametrize("kind", sorted(DEFINITIONS))
def test_deployed_definition_is_the_one_the_local_stack_creates(synthesis: Synthesis, kind: str) -> None:
    queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/approvals-requests"
    table_name = "approvals-table"
    bucket = "approvals-fanout"
    summary = "arn:aws:lambda:eu-west-1:123456789012:function:approvals-fanout-summary"
    in_aws = (
        definition_text(deployed(synthesis)[kind])
        .replace(statemachine.QUEUE_URL_PLACEHOLDER, queue_url)
        .replace(statemachine.TABLE_NAME_PLACEHOLDER, table_name)
        .replace(statemachine.FANOUT_BUCKET_PLACEHOLDER, bucket)
        .replace(statemachine.FANOUT_SUMMARY_FUNCTION_PLACEHOLDER, summary)
    )
    # approvals.local.resources.provision creates each machine from exactly this rendering.
    assert json.loads(in_aws) == json.loads(
        statemachine.render(DEFINITIONS[kind](DEFAULT_TIMEOUT), queue_url, table_name, bucket, summary)
    )


def test_deployed_definitions_apply_the_deployments_default_timeout(synthesis: Synthesis) -> None:
    """The one parameter of the definitions; the worker learns it from each message."""
    for kind, properties in deployed(synthesis).items():
        definition = json.loads(definition_text(properties))
        states = definition["States"]
        if kind == "fanout":
            states = states["ApproveEach"]["ItemProcessor"]["States"]
        assert states["DefaultTimeout"]["Result"]["seconds"] == DEFAULT_TIMEOUT
        body = states["RequestApproval"]["Parameters"]["MessageBody"]
        assert body["timeout_seconds.$"] == states["RequestApproval"]["TimeoutSecondsPath"]
    _, worker = function(synthesis, "worker")
    assert "APPROVALS_DEFAULT_TIMEOUT" not in worker["Properties"]["Environment"]["Variables"]
