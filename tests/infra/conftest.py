"""Infra fixtures: the real `cdk synth` (the project's CDK CLI running approvals_cdk/app.py, cdk-nag
included), run once per test session, and the cloud assembly it writes.

Synthesis is slow (the CDK runs on Node through jsii), so the session starts the four runs
the tests need at once, in parallel: the stack with every part, the stack with no approvers
yet (they are added after the deploy), one that must stop with a clear error (approvers
malformed, a misspelt parameter), and the app with its cdk-nag
acknowledgements taken out, which must fail on exactly those. Every infra test is in the xdist
group "infra", so under `pytest -n 3 --dist loadgroup` they share one worker, and one synth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CDK_CLI = ROOT / "node_modules" / ".bin" / "cdk"
STACK = "ApprovalsStack"
SYNTH_TIMEOUT = 600

# What the tests deploy: two approvers (one written as a person might type it, to check
# the normalization) and non-default values that must reach the functions.
APPROVERS = ["alice@example.com", "bob@example.com"]
DEFAULT_TIMEOUT = 3600  # not the product's default, so a test can tell it reached the definitions
TEAM_WORKFLOW_ROLE = "arn:aws:iam::123456789012:role/team-deploy-workflow"
OPERATOR_ROLE = "arn:aws:iam::123456789012:role/approvals-operators"
RATE_LIMIT_PER_IP = 300
CONTEXT = {
    "approvers": " Alice@Example.COM, bob@example.com",
    "defaultTimeout": str(DEFAULT_TIMEOUT),
    "alarmEmail": "OnCall@example.com",
    "reminders": "50%,2h",
    "retentionDays": "30",
    "logRetentionDays": "30",
    "allowSelfApproval": "true",
    "senderRoles": TEAM_WORKFLOW_ROLE,
    "operatorRoles": OPERATOR_ROLE,
    "rateLimitPerIp": str(RATE_LIMIT_PER_IP),
    # On here, so that cdk-nag and cfn-lint check the alias and version it adds; the run
    # without approvers has every default, SnapStart off.
    "snapStart": "true",
}
MISSING_APPROVERS: dict[str, str] = {}
# A malformed address and a misspelt parameter: both are reported, at once.
MALFORMED_APPROVERS = {"approvers": "alice@example.com,bob-at-example.com", "retentiondays": "30"}


@dataclass(frozen=True)
class Synthesis:
    """One `cdk synth` run: its exit code, what it printed and the assembly it wrote."""

    returncode: int
    output: str
    outdir: Path

    @cached_property
    def template(self) -> dict[str, Any]:
        path = self.outdir / f"{STACK}.template.json"
        assert self.returncode == 0, f"cdk synth failed:\n{self.output}"
        template: dict[str, Any] = json.loads(path.read_text())
        return template

    @cached_property
    def asset_manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads((self.outdir / f"{STACK}.assets.json").read_text())
        return manifest

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.template["Resources"].items() if r["Type"] == kind}


def _start(outdir: Path, context: dict[str, str], validated: bool = False) -> subprocess.Popen[str]:
    """`cdk synth` with ``context``; with CDK's built-in CloudFormation validation when
    ``validated`` (as users run it; tests/conftest.py turns it off for the tests' other
    syntheses)."""
    if not CDK_CLI.exists():
        pytest.fail("the CDK CLI is not installed: `make test` installs it (npm ci), or run `npm ci`")
    command = [str(CDK_CLI), "synth", "--no-notices", "--quiet", "--output", str(outdir)]
    for name, value in context.items():
        command += ["--context", f"{name}={value}"]
    environment = {
        **os.environ,
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        # jsii's banner about Node 20's end of life would bury the output a failure shows.
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_VALIDATION": "true" if validated else "false",
    }
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _start_without_acknowledgements(outdir: Path) -> subprocess.Popen[str]:
    """The app with its cdk-nag acknowledgements taken out, run as the CLI runs an app."""
    environment = {
        **os.environ,
        "CDK_OUTDIR": str(outdir),
        # With the WAF, as the stack under test: cdk-nag must then find no "no WAF" (APIG3).
        "CDK_CONTEXT_JSON": json.dumps(
            {"approvers": ",".join(APPROVERS), "rateLimitPerIp": str(RATE_LIMIT_PER_IP)}
        ),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    script = Path(__file__).with_name("app_without_acknowledgements.py")
    return subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="session")
def synth_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synthesis]:
    runs = {"stack": CONTEXT, "missing": MISSING_APPROVERS, "malformed": MALFORMED_APPROVERS}
    outdirs = {name: tmp_path_factory.mktemp(f"cdk-{name}") for name in [*runs, "unacknowledged"]}
    started = {
        name: _start(outdirs[name], context, validated=name == "stack") for name, context in runs.items()
    }
    started["unacknowledged"] = _start_without_acknowledgements(outdirs["unacknowledged"])
    done: dict[str, Synthesis] = {}
    try:
        for name, process in started.items():
            output, _ = process.communicate(timeout=SYNTH_TIMEOUT)
            done[name] = Synthesis(process.returncode, output, outdirs[name])
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
    return done


@pytest.fixture(scope="session")
def synthesis(synth_runs: dict[str, Synthesis]) -> Synthesis:
    run = synth_runs["stack"]
    assert run.returncode == 0, f"cdk synth failed:\n{run.output}"
    return run


@pytest.fixture(scope="session")
def template(synthesis: Synthesis) -> dict[str, Any]:
    return synthesis.template
