"""`-c snapStart=true`: the approval API starts from a snapshot of its published version.

Lambda snapshots a published version only, so the switch adds a version of the API function
and an alias on it, and API Gateway must invoke the alias (a call to the function itself runs
$LATEST, which never has a snapshot). The stack under test has it on, so test_checks.py runs
cdk-nag and cfn-lint over the alias and version; the run without approvers has it off.
"""

from __future__ import annotations

from typing import Any

import pytest

from approvals_cdk.api import LIVE_ALIAS, ROUTES
from tests.infra.conftest import Synthesis
from tests.infra.lookup import arn, function, only

pytestmark = pytest.mark.xdist_group("infra")


def _invoked(synthesis: Synthesis) -> list[Any]:
    """What each approval method's integration and each API Gateway permission names (two
    for each of GET and POST on each route: the integration's URI and its permission)."""
    uris = [
        method["Properties"]["Integration"]["Uri"]["Fn::Join"][1]
        for method in synthesis.resources("AWS::ApiGateway::Method").values()
        if method["Properties"]["HttpMethod"] in ("GET", "POST")
    ]
    named = [
        part
        for uri in uris
        for part in uri
        if isinstance(part, dict) and not str(part.get("Ref", "")).startswith("AWS::")  # not the region
    ]
    permissions = [
        p["Properties"]["FunctionName"]
        for p in synthesis.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    assert len(uris) == 2 * len(ROUTES)  # GET and POST on each kind of link
    assert len(permissions) == len(uris)
    return [*named, *permissions]


def test_snap_start_is_off_by_default(synth_runs: dict[str, Synthesis]) -> None:
    run = synth_runs["missing"]
    assert all("SnapStart" not in f["Properties"] for f in run.resources("AWS::Lambda::Function").values())
    assert run.resources("AWS::Lambda::Version") == {}
    assert run.resources("AWS::Lambda::Alias") == {}
    api_function, _ = function(run, "api")
    assert _invoked(run) == [arn(api_function)] * 4 * len(ROUTES)


def test_only_the_api_function_starts_from_a_snapshot(synthesis: Synthesis) -> None:
    api_function, _ = function(synthesis, "api")
    snap_start = {
        lid: f["Properties"].get("SnapStart")
        for lid, f in synthesis.resources("AWS::Lambda::Function").items()
    }
    assert snap_start.pop(api_function) == {"ApplyOn": "PublishedVersions"}
    assert set(snap_start.values()) == {None}  # the others are called by services, not waited on


def test_api_gateway_invokes_the_alias_of_the_published_version(synthesis: Synthesis) -> None:
    api_function, _ = function(synthesis, "api")
    version, version_resource = only(synthesis.resources("AWS::Lambda::Version"))
    assert version_resource["Properties"]["FunctionName"] == {"Ref": api_function}
    alias, alias_resource = only(synthesis.resources("AWS::Lambda::Alias"))
    assert alias_resource["Properties"] == {
        "FunctionName": {"Ref": api_function},
        "FunctionVersion": {"Fn::GetAtt": [version, "Version"]},
        "Name": LIVE_ALIAS,
    }
    assert _invoked(synthesis) == [{"Ref": alias}] * 4 * len(ROUTES)


def test_a_replaced_version_is_deleted_since_its_snapshot_is_charged_while_it_exists(
    synthesis: Synthesis,
) -> None:
    _, version = only(synthesis.resources("AWS::Lambda::Version"))
    assert version["DeletionPolicy"] == "Delete"
    assert version["UpdateReplacePolicy"] == "Delete"
