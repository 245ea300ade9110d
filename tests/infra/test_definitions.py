"""AWS runs the very state machine definitions the local stack runs (the queue URL aside)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from approvals import statemachine
from approvals.models import Approval
from approvals.request import handle_message
from approvals.runtime import Services
from approvals.settings import Settings
from approvals.store import Claim, ClaimResult
from infra.approval_service import with_default_timeout
from tests.infra.conftest import Synthesis
from tests.infra.lookup import function, queues

pytestmark = pytest.mark.xdist_group("infra")

DEFINITIONS = {
    "approval": statemachine.approval_definition,
    "fanout": statemachine.fanout_definition,
}


def deployed(synthesis: Synthesis) -> dict[str, dict[str, Any]]:
    """The synthesized state machines, by which definition they carry (Map: fan-out)."""
    found = {}
    for machine in synthesis.resources("AWS::StepFunctions::StateMachine").values():
        properties = machine["Properties"]
        kind = "fanout" if '"Map"' in properties["DefinitionString"] else "approval"
        found[kind] = properties
    return found


@pytest.mark.parametrize("kind", sorted(DEFINITIONS))
def test_template_holds_the_definition_approvals_statemachine_writes(synthesis: Synthesis, kind: str) -> None:
    properties = deployed(synthesis)[kind]
    # A plain string, not a Fn::Join: nothing but the substitution is filled in at deploy time.
    assert isinstance(properties["DefinitionString"], str)
    assert json.loads(properties["DefinitionString"]) == DEFINITIONS[kind]()
    request, _ = queues(synthesis)
    assert properties["DefinitionSubstitutions"] == {"QueueUrl": {"Ref": request}}


@pytest.mark.parametrize("kind", sorted(DEFINITIONS))
def test_deployed_definition_is_the_one_the_local_stack_creates(synthesis: Synthesis, kind: str) -> None:
    queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/approvals-requests"
    in_aws = deployed(synthesis)[kind]["DefinitionString"].replace(
        statemachine.QUEUE_URL_PLACEHOLDER, queue_url
    )
    # approvals.local.resources.provision creates each machine from exactly this rendering.
    assert json.loads(in_aws) == json.loads(statemachine.render(DEFINITIONS[kind](), queue_url))


def _differences(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [d for key in a for d in _differences(a[key], b[key], f"{path}/{key}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [(path, a, b)]


@pytest.mark.parametrize("kind", sorted(DEFINITIONS))
def test_default_timeout_changes_only_the_default(kind: str) -> None:
    original = DEFINITIONS[kind]()
    changed = with_default_timeout(original, 3_600)
    assert original == DEFINITIONS[kind]()  # not modified in place
    assert with_default_timeout(original, statemachine.DEFAULT_TIMEOUT_SECONDS) == original
    differences = _differences(original, changed)
    assert differences
    for path, before, after in differences:
        assert "/DefaultTimeout/Result" in path
        assert (before, after) in (
            (statemachine.DEFAULT_TIMEOUT_SECONDS, 3_600),
            (str(statemachine.DEFAULT_TIMEOUT_SECONDS), "3600"),
        )


def test_default_timeout_refuses_a_definition_without_one() -> None:
    with pytest.raises(ValueError, match="DefaultTimeout"):
        with_default_timeout({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}, 60)


def test_worker_is_told_the_default_timeout_the_state_machines_apply(synthesis: Synthesis) -> None:
    _, worker = function(synthesis, "worker")
    variables = worker["Properties"]["Environment"]["Variables"]
    applied = json.loads(deployed(synthesis)["approval"]["DefinitionString"])["States"]["DefaultTimeout"]
    assert str(applied["Result"]["seconds"]) == variables["APPROVALS_DEFAULT_TIMEOUT"]


def test_a_request_without_a_timeout_expires_at_the_deployed_default() -> None:
    """With -c defaultTimeout the task times out at that default: so must the approval."""
    stored: list[Approval] = []

    class Store:
        def claim(self, approval: Approval, now: datetime, claim_seconds: int) -> ClaimResult:
            stored.append(approval)
            return ClaimResult(Claim.NEW)

        def mark_emailed(self, approval_id: str, now: datetime) -> None:
            pass

    class SNS:
        def publish_batch(self, **call: Any) -> dict[str, Any]:
            return {"Successful": [{"Id": e["Id"]} for e in call["PublishBatchRequestEntries"]]}

    settings = Settings.from_env(
        {"APPROVALS_TABLE": "t", "APPROVALS_SIGNING_SECRET": "s", "APPROVALS_DEFAULT_TIMEOUT": "3600"}
    )
    services = Services(settings, Store(), SNS(), None, b"key")  # type: ignore[arg-type]
    body = {
        "task_token": "token",
        "execution": "arn:aws:states:eu-west-1:123456789012:execution:approval:run",
        "state": "RequestApproval",
        "request": {"title": "Deploy", "approvers": ["a@example.com"], "requester": "ci@example.com"},
    }
    sent_at = datetime(2030, 1, 1, tzinfo=UTC)
    handle_message(services, json.dumps(body), sent_at, sent_at)
    assert stored[0].expires_at == sent_at + timedelta(seconds=3600)
