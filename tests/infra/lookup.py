"""Finding things in the synthesized template by what they are, not by logical id."""

from __future__ import annotations

from typing import Any

from approvals.store.close import CONFIRM_DELIVERY_ATTRIBUTES
from tests.infra.conftest import Synthesis

HANDLERS = {
    "worker": "worker.handler.lambda_handler",
    "api": "approval_api.handler.lambda_handler",
    "dead_letter": "worker.dead_letter.lambda_handler",
    "sweeper": "worker.sweeper.lambda_handler",
    "execution_ended": "worker.execution_ended.lambda_handler",
    "fanout_summary": "worker.fanout_summary.lambda_handler",
}


def only(resources: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    assert len(resources) == 1, sorted(resources)
    return next(iter(resources.items()))


def function(synthesis: Synthesis, name: str) -> tuple[str, dict[str, Any]]:
    return only(
        {
            lid: r
            for lid, r in synthesis.resources("AWS::Lambda::Function").items()
            if r["Properties"]["Handler"] == HANDLERS[name]
        }
    )


def email_topic(synthesis: Synthesis) -> tuple[str, dict[str, Any]]:
    """The approvers' email topic (the other topic carries alarms)."""
    return only(
        {
            lid: r
            for lid, r in synthesis.resources("AWS::SNS::Topic").items()
            if r["Properties"].get("DisplayName") == "Approvals"
        }
    )


def queues(synthesis: Synthesis) -> tuple[str, str]:
    """(request queue, dead-letter queue) logical ids: the request queue is the one that redrives."""
    found = synthesis.resources("AWS::SQS::Queue")
    request = only({lid: r for lid, r in found.items() if "RedrivePolicy" in r["Properties"]})[0]
    (dead_letter,) = set(found) - {request}
    return request, dead_letter


def arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


# The conditions on every confirmation write's grant (approvals_cdk.shared.confirm_delivery):
# the confirmation's own attributes only, nothing returned.
CONFIRMATION_CONDITIONS = {
    "ForAllValues:StringEquals": {"dynamodb:Attributes": sorted(CONFIRM_DELIVERY_ATTRIBUTES)},
    "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"},
}
