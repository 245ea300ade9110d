"""The stateful resources keep the logical IDs they were first deployed with.

CloudFormation replaces a resource whose logical ID changes: a `cdk deploy` would create a new,
empty table, queue or topic (and a new signing key and API URL, which break every link in
flight). The IDs below are those of the stack before approvals_cdk/approval_service.py was
split into parts; a refactoring that moves a construct must keep them.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.infra.conftest import Synthesis
from tests.infra.lookup import email_topic, only, queues

pytestmark = pytest.mark.xdist_group("infra")


def _of_type(kind: str, **properties: str) -> Callable[[Synthesis], str]:
    def find(synthesis: Synthesis) -> str:
        return only(
            {
                lid: r
                for lid, r in synthesis.resources(kind).items()
                if all(r["Properties"].get(name) == value for name, value in properties.items())
            }
        )[0]

    return find


def _state_machine(kind: str) -> Callable[[Synthesis], str]:
    """The fan-out is the one whose definition holds a Map."""

    def find(synthesis: Synthesis) -> str:
        machines = synthesis.resources("AWS::StepFunctions::StateMachine")
        return only(
            {
                lid: r
                for lid, r in machines.items()
                if ("ItemProcessor" in json.dumps(r["Properties"]["DefinitionString"])) == (kind == "fan-out")
            }
        )[0]

    return find


PINNED: dict[str, tuple[Callable[[Synthesis], str], str]] = {
    "table": (_of_type("AWS::DynamoDB::Table"), "ServiceTable603BACCB"),
    "request queue": (lambda s: queues(s)[0], "ServiceRequestQueue5FA1B77B"),
    "dead-letter queue": (lambda s: queues(s)[1], "ServiceDeadLetterQueue16FADB68"),
    "email topic": (lambda s: email_topic(s)[0], "ServiceEmailTopicB3904F8D"),
    "alarm topic": (_of_type("AWS::SNS::Topic", DisplayName="Approvals alarms"), "ServiceAlarmTopicC581BA4B"),
    "alarm topic key": (_of_type("AWS::KMS::Key"), "ServiceAlarmTopicKey06640ABC"),
    "signing key": (_of_type("AWS::SecretsManager::Secret"), "ServiceSigningKey410955B3"),
    "API (its URL is in every link)": (_of_type("AWS::ApiGateway::RestApi"), "ServiceApiC8B597B2"),
    "approval state machine": (_state_machine("approval"), "ServiceApprovalStateMachine43276AF5"),
    "fan-out state machine": (_state_machine("fan-out"), "ServiceFanoutStateMachineFB65ABA8"),
}


@pytest.mark.parametrize("resource", sorted(PINNED))
@pytest.mark.parametrize("run", ["stack", "missing"])
def test_stateful_resources_keep_their_logical_ids(
    synth_runs: dict[str, Synthesis], run: str, resource: str
) -> None:
    find, logical_id = PINNED[resource]
    assert find(synth_runs[run]) == logical_id


def test_named_log_groups_keep_their_names(synthesis: Synthesis) -> None:
    """The state machines' log groups are named after the construct path and the stack's id:
    a new name would leave the old group (retained) behind, and the same name under a new ID
    fails the deploy. The stack's id stays the same across updates."""
    names = [
        json.dumps(r["Properties"]["LogGroupName"])
        for r in synthesis.resources("AWS::Logs::LogGroup").values()
        if "LogGroupName" in r["Properties"]
    ]
    stack_id = {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}
    assert sorted(names) == [
        json.dumps(
            {
                "Fn::Join": [
                    "",
                    [f"/aws/vendedlogs/states/Approvals/ApprovalsStack/Service/{machine}-", stack_id],
                ]
            }
        )
        for machine in ("ApprovalStateMachine", "FanoutStateMachine")
    ]
