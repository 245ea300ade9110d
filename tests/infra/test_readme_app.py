"""The README's "Add an approval to your own workflow" app, copied verbatim into an empty
directory and run as the CDK CLI runs an app: it must synthesize, with the step in it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cdk_templates import queue_senders, role_arn, state_machine_definition

pytestmark = pytest.mark.xdist_group("infra")

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Add an approval to your own workflow"


def readme_app() -> str:
    section = README.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no Python block under {SECTION!r}"
    return match.group(1)


def synthesize_readme_app(tmp_path: Path) -> Path:
    """The README's app run as the CDK CLI runs it, in an empty directory: its template's path."""
    (tmp_path / "app.py").write_text(readme_app())
    outdir = tmp_path / "cdk.out"
    environment = {
        **os.environ,
        "CDK_OUTDIR": str(outdir),
        "CDK_CONTEXT_JSON": "{}",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return outdir / "ReleaseStack.template.json"


@pytest.fixture(scope="module")
def readme_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    template: dict[str, Any] = json.loads(
        synthesize_readme_app(tmp_path_factory.mktemp("readme-app")).read_text()
    )
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
