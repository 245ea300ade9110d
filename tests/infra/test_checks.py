"""cdk-nag's AWS Solutions pack and cfn-lint pass on the synthesized stack.

cdk-nag runs inside every synth (approvals_cdk/app.py): an unacknowledged finding fails `cdk synth`
itself, so a synth that succeeded has none. Every acknowledgement carries its reason in the
code (approvals_cdk/, where the resource is made) and, through cdk-nag, in the template's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file

from tests.infra.conftest import STACK, Synthesis

pytestmark = pytest.mark.xdist_group("infra")

# The findings this stack acknowledges, each for a reason written where it is made. A new
# one must be added here on purpose, so none slips in unreviewed.
ACKNOWLEDGED = {
    "AwsSolutions-SMG4",  # signing key: rotation would break links in flight
    "AwsSolutions-IAM5[Resource::*]",  # task-token calls; CDK's logging/X-Ray grants
    "AwsSolutions-L1",  # Python 3.13, the newest the asset test can prove
    "AwsSolutions-APIG2",  # the function validates the link and the form
    # (AwsSolutions-APIG3, "no WAF", is acknowledged only without -c rateLimitPerIp; the
    # tests deploy with it.)
    "AwsSolutions-APIG4",  # the signed link authorizes, not IAM or Cognito
    "AwsSolutions-COG4",
    "AwsSolutions-APIG6",  # execution logs could record the signature
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
}
SWEEPER_INVOKE = "AwsSolutions-IAM5[Resource::<{sweeper}.Arn>:*]"  # CDK's Lambda target grant
# The API and the sweeper read the history of any execution of the account and region.
EVERY_EXECUTION = (
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:*]"
)
# The fan-out's Distributed Map watches and stops its own child executions, named as they start.
FANOUT_CHILDREN = (
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
    "<{fanout}.Name>/*]"
)
# The fan-out writes its result files under one prefix of its bucket and reads requests under another.
FANOUT_BUCKET = (
    "AwsSolutions-IAM5[Resource::<{bucket}.Arn>/fanout/*]",
    "AwsSolutions-IAM5[Resource::<{bucket}.Arn>/requests/*]",
)


def acknowledgements(template: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    return {
        lid: r["Metadata"]["cdk_nag"]["rules_to_suppress"]
        for lid, r in template["Resources"].items()
        if "cdk_nag" in r.get("Metadata", {})
    }


def test_synth_passes_cdk_nag_with_no_unacknowledged_finding(synthesis: Synthesis) -> None:
    assert synthesis.returncode == 0, synthesis.output
    report = json.loads((synthesis.outdir / "validation-report.json").read_text())
    assert [r for r in report["pluginReports"] if r.get("violations")] == []


def test_cdk_nag_ran_and_every_acknowledgement_has_a_reason(synthesis: Synthesis) -> None:
    found = acknowledgements(synthesis.template)
    assert found, "no cdk_nag metadata: the AwsSolutions checks did not run"
    for resource, rules in found.items():
        for rule in rules:
            assert rule["id"].startswith("AwsSolutions-")
            assert len(rule["reason"].split()) >= 8, (resource, rule)  # a reason, not a shrug


def test_only_the_reviewed_findings_are_acknowledged(synthesis: Synthesis) -> None:
    sweeper = next(
        lid
        for lid, r in synthesis.resources("AWS::Lambda::Function").items()
        if r["Properties"]["Handler"] == "worker.sweeper.lambda_handler"
    )
    fanout = next(
        lid
        for lid, r in synthesis.resources("AWS::StepFunctions::StateMachine").items()
        if "ItemProcessor" in json.dumps(r["Properties"]["DefinitionString"])
    )
    (bucket,) = synthesis.resources("AWS::S3::Bucket")
    ids = {rule["id"] for rules in acknowledgements(synthesis.template).values() for rule in rules}
    assert ids == ACKNOWLEDGED | {
        EVERY_EXECUTION,
        SWEEPER_INVOKE.format(sweeper=sweeper),
        FANOUT_CHILDREN.format(fanout=fanout),
        "AwsSolutions-S1",  # the fan-out bucket: no access logs (only the state machines use it)
        *(prefix.format(bucket=bucket) for prefix in FANOUT_BUCKET),
    }


def test_cfn_lint_finds_no_errors(synthesis: Synthesis) -> None:
    template_file = Path(synthesis.outdir) / f"{STACK}.template.json"
    matches = lint_file(template_file, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    errors = [
        f"{m.rule.id} {m.message} at {'/'.join(map(str, m.path))}"
        for m in matches
        if m.rule.id.startswith("E")
    ]
    assert errors == []


def test_every_acknowledgement_answers_a_real_finding(
    synthesis: Synthesis, synth_runs: dict[str, Synthesis]
) -> None:
    """The stack without its acknowledgements fails cdk-nag on exactly the acknowledged
    findings: none is stale, and the checks do catch what they should."""
    run = synth_runs["unacknowledged"]
    assert run.returncode != 0
    report = json.loads((run.outdir / "validation-report.json").read_text())
    found = {v["ruleName"] for r in report["pluginReports"] for v in r["violations"]}
    acknowledged = {rule["id"] for rules in acknowledgements(synthesis.template).values() for rule in rules}
    assert found == acknowledged
