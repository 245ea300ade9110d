"""The README's app ("Add an approval to your own workflow") deployed as it is synthesized,
with `approvals local --template`: one approval through its own state machine, with the
queue's and the topic's policies evaluated as AWS evaluates them (approvals/local/access.py),
and the step refused as on AWS when the queue's policy does not name its role."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from approvals.target import for_local
from tests.cdk_templates import queue_senders, readme_app_template, role_arn
from tests.e2e.conftest import RunningStack, running_local_stack
from tests.e2e.test_examples import click, links

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def readme_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return readme_app_template(tmp_path_factory)


def release(stack: RunningStack, title: str) -> str:
    """Starts the app's ReleasePipeline (the state machine of the template's own that the
    README names), as the README says: with a title."""
    sfn = for_local(stack.info).sfn
    (machine,) = [
        m["stateMachineArn"]
        for m in sfn.list_state_machines()["stateMachines"]
        if "ReleasePipeline" in m["name"]
    ]
    return str(
        sfn.start_execution(stateMachineArn=machine, input=json.dumps({"title": title}))["executionArn"]
    )


def test_the_readme_app_runs_an_approval_through_its_own_state_machine(
    readme_app: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with running_local_stack(tmp_path_factory.mktemp("readme-local"), "--template", str(readme_app)) as stack:
        execution = release(stack, "Release 2.4")
        sent = links(stack, "Release 2.4", 2)
        assert sorted(sent) == ["alice@example.com", "bob@example.com"]
        for link in sent.values():
            click(link, "approve")
        described = stack.ended(execution)
        assert described["status"] == "SUCCEEDED", described
        history = stack.history(execution)
        entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
        assert entered[-1] == "Release"


def test_the_step_is_refused_when_the_queues_policy_does_not_name_its_role(
    readme_app: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The template as the app synthesized before its step named its role: the queue's Deny
    refuses the state machine's SendMessage, whatever its role's own policy allows."""
    template: dict[str, Any] = json.loads(readme_app.read_text())
    pipeline = role_arn(template, "ReleasePipeline")
    senders = queue_senders(template)
    senders.remove(pipeline)  # the list is the statement's own: this edits the template
    old_grant = readme_app.with_name("OldGrant.template.json")
    old_grant.write_text(json.dumps(template))
    with running_local_stack(tmp_path_factory.mktemp("old-grant"), "--template", str(old_grant)) as stack:
        execution = release(stack, "Release 2.5")
        described = stack.ended(execution)
        assert described["status"] == "FAILED", described
        history = stack.history(execution)
        (failed,) = [e["taskFailedEventDetails"] for e in history if "taskFailedEventDetails" in e]
        assert "AccessDenied" in failed["cause"] or "explicit deny" in failed["cause"], failed
