"""The README's "Add an approval to your own workflow" app, copied verbatim into an empty
directory and run as the CDK CLI runs an app: it must synthesize, with the step in it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cdk_templates import queue_senders, readme_app_template, role_arn, state_machine_definition

pytestmark = pytest.mark.xdist_group("infra")


@pytest.fixture(scope="module")
def readme_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    template: dict[str, Any] = json.loads(readme_app_template(tmp_path_factory).read_text())
    return template


def test_the_readme_app_synthesizes_in_an_empty_directory(readme_template: dict[str, Any]) -> None:
    template = readme_template
    refs = {"ApprovalsRequestQueue": "QUEUE", "ApprovalsTable": "TABLE"}
    states = state_machine_definition(template, "ReleasePipeline", refs)["States"]
    task = states["ManagerApproval"]
    assert task["Resource"] == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
    assert task["TimeoutSeconds"] == task["Parameters"]["MessageBody"]["timeout_seconds"] == 4 * 3600
    assert task["Next"] == "ConfirmApprovalNeeded"
    assert states["ConfirmApprovalNeeded"]["Choices"][0]["Next"] == "ConfirmApproval"
    assert states["ConfirmApproval"]["Parameters"]["TableName"] == "TABLE"
    assert states["Approved?"]["Type"] == "Choice"


def test_the_readme_apps_state_machine_may_send_through_the_queues_policy(
    readme_template: dict[str, Any],
) -> None:
    """On AWS the queue's Deny (every principal but those it names) beats the Allow the step
    adds to the role: ReleasePipeline's role must be among those it names."""
    assert role_arn(readme_template, "ReleasePipeline") in queue_senders(readme_template)
