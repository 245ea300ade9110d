"""Reading state machines out of a synthesized CDK template (tests of the step and the examples)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack, assertions

from approvals.local.access import LOCAL_IDENTITY
from approvals_cdk.packaging import build
from examples.deploy_gate.app import DeployGateStack
from examples.refund_batch.app import RefundBatchStack
from tests.infra.conftest import ROOT, STACK, SYNTH_TIMEOUT
from tests.infra.conftest import _start as cdk_synth


def state_machine_definition(
    template: Mapping[str, Any], logical_id_prefix: str, refs: Mapping[str, str]
) -> dict[str, Any]:
    """The definition of the one state machine whose logical id starts with the prefix, with
    each ``Ref`` in it replaced by ``refs[prefix of the referenced logical id]``."""
    (resource,) = (
        r
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::StepFunctions::StateMachine" and lid.startswith(logical_id_prefix)
    )
    definition = resource["Properties"]["DefinitionString"]
    if isinstance(definition, str):
        parsed: dict[str, Any] = json.loads(definition)
        return parsed
    parts = definition["Fn::Join"][1]
    text = "".join(part if isinstance(part, str) else _resolve(part, refs) for part in parts)
    parsed = json.loads(text)
    return parsed


def _resolve(part: Mapping[str, Any], refs: Mapping[str, str]) -> str:
    target = part.get("Ref")
    if target == "AWS::Partition":
        return "aws"
    matches = [
        value for prefix, value in refs.items() if isinstance(target, str) and target.startswith(prefix)
    ]
    if len(matches) != 1:
        raise AssertionError(f"cannot resolve {part} with {sorted(refs)}")
    return matches[0]


def synthesize(stack: Stack) -> dict[str, Any]:
    """The stack's CloudFormation template, as `cdk synth` writes it."""
    return dict(assertions.Template.from_stack(stack).to_json())


@contextmanager
def once_in_the_run(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """``name``'s place in the run's directory (shared by its xdist workers), held under a
    lock for the block: the first worker to ask makes what goes there, the others wait for
    it and read it (a synthesis takes many seconds of CPU)."""
    run_directory = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        run_directory = run_directory.parent  # the run's, shared by its workers
    with (run_directory / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield run_directory / name


def examples_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The templates of the two example apps (examples/): one synth of the whole app in a
    run, kept as JSON for the run's other workers."""
    with once_in_the_run(tmp_path_factory, "examples-templates.json") as kept:
        if not kept.exists():
            build()  # the Lambda asset, once, before both stacks ask for it
            app = App()
            stacks = {
                "deploy": DeployGateStack(app, "DeployGate"),
                "refunds": RefundBatchStack(app, "RefundBatch"),
            }
            kept.write_text(json.dumps({name: synthesize(stack) for name, stack in stacks.items()}))
        templates: dict[str, dict[str, Any]] = json.loads(kept.read_text())
        return templates


def role_statements(template: Mapping[str, Any], logical_id_prefix: str) -> list[dict[str, Any]]:
    """Every IAM statement of the policies whose logical id starts with the prefix."""
    return [
        statement
        for lid, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::Policy" and lid.startswith(logical_id_prefix)
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]


def request_queue(template: Mapping[str, Any]) -> str:
    """The logical id of the approval service's request queue."""
    (queue,) = (
        lid
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::SQS::Queue" and lid.startswith("ApprovalsRequestQueue")
    )
    return str(queue)


def queue_senders(template: Mapping[str, Any]) -> list[Any]:
    """Who the request queue's policy lets send (``sqs:SendMessage``): the principals its
    Deny exempts, as the template writes them."""
    queue = {"Ref": request_queue(template)}
    (statement,) = (
        statement
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::SQS::QueuePolicy" and queue in resource["Properties"]["Queues"]
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
        and statement["Action"] == "sqs:SendMessage"
        and "ArnNotEquals" in statement.get("Condition", {})
    )
    principals = statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
    return principals if isinstance(principals, list) else [principals]


def role_arn(template: Mapping[str, Any], state_machine_prefix: str) -> dict[str, Any]:
    """The ARN of the role of the one state machine whose logical id starts with the prefix."""
    (resource,) = (
        r
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::StepFunctions::StateMachine" and lid.startswith(state_machine_prefix)
    )
    return {"Fn::GetAtt": [resource["Properties"]["RoleArn"]["Fn::GetAtt"][0], "Arn"]}


def synthesize_template(tmp_path_factory: pytest.TempPathFactory, name: str, **context: str) -> Path:
    """The product's template as `make synth` writes it (the real CDK CLI, two approvers),
    with these `-c` parameters besides. Synthesized once in a run, by the first xdist worker
    to ask (a synthesis takes a minute of CPU); the others wait for it and read it."""
    # The local operator (the CLI's credentials) manages approvers, as the README says an
    # operator's role must be named to (the topic's policy is evaluated locally).
    # Each batch's emails at once, as the built-in stack sends them (`approvals local`'s
    # --digest-seconds 0): the tests read each request's own email. The window itself is
    # tested on an injected clock (tests/integration/test_digest.py).
    defaults = {
        "approvers": "alice@example.com,bob@example.com",
        "operatorRoles": LOCAL_IDENTITY,
        "digestSeconds": "0",
    }
    with once_in_the_run(tmp_path_factory, f"cdk-{name}") as outdir:
        template = outdir / f"{STACK}.template.json"
        if not template.exists():
            synth = cdk_synth(outdir, {**defaults, **context})
            output, _ = synth.communicate(timeout=SYNTH_TIMEOUT)
            assert synth.returncode == 0, f"cdk synth failed:\n{output}"
    return template


def product_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The product's template as the end-to-end tests deploy it (each batch's emails at once)."""
    return synthesize_template(tmp_path_factory, "product")


def one_minute_sweep_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same with `-c sweepMinutes=1`."""
    return synthesize_template(tmp_path_factory, "one-minute-sweep", sweepMinutes="1")


README = ROOT / "README.md"
README_APP_SECTION = "## Add an approval to your own workflow"


def readme_app() -> str:
    """The Python block of the README's "Add an approval to your own workflow"."""
    section = README.read_text().split(README_APP_SECTION, 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no Python block under {README_APP_SECTION!r}"
    return match.group(1)


def readme_app_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's app run as the CDK CLI runs it, in an empty directory: its template's
    path. Synthesized once in a run, for the infra and the end-to-end tests alike."""
    with once_in_the_run(tmp_path_factory, "readme-app") as directory:
        template = directory / "cdk.out" / "ReleaseStack.template.json"
        if not template.exists():
            directory.mkdir(exist_ok=True)
            (directory / "app.py").write_text(readme_app())
            environment = {
                **os.environ,
                "CDK_OUTDIR": str(template.parent),
                "CDK_CONTEXT_JSON": "{}",
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            }
            result = subprocess.run(
                [sys.executable, "app.py"],
                cwd=directory,
                env=environment,
                capture_output=True,
                text=True,
                timeout=SYNTH_TIMEOUT,
                check=False,
            )
            assert result.returncode == 0, result.stderr
    return template
