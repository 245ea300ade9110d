"""The README's app as a new user runs it: synthesized (in this process), deployed with
`approvals local --template`, and driven with the `approvals` command. The banner names its
state machines and its approvers, `approvals start` says what to start instead, and
`approvals list --workflow` takes the state machine's id in the app."""

from __future__ import annotations

import json
import re
import runpy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from approvals import cli
from approvals.local.environments import IN_PROCESS
from approvals.local.info import LocalInfo
from approvals.local.stack import LocalStack, banner
from approvals.target import for_local
from approvals_cdk import ApprovalErrors
from tests.cdk_templates import readme_app

pytestmark = pytest.mark.xdist_group("local-template")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app's template, synthesized in this process (the app's `cdk.App()` told where)."""
    directory = tmp_path_factory.mktemp("app")
    app = readme_app()
    assert app.count("cdk.App()") == 1
    (directory / "app.py").write_text(
        app.replace("cdk.App()", f"cdk.App(outdir={str(directory / 'cdk.out')!r})")
    )
    runpy.run_path(str(directory / "app.py"))
    return directory / "cdk.out" / "ReleaseStack.template.json"


@pytest.fixture(scope="module")
def deployed(template: Path) -> Iterator[LocalInfo]:
    stack = LocalStack(moto_port=0, api_port=0, templates=[template], concurrency=IN_PROCESS)
    info = stack.start()
    yield info
    stack.stop()


@pytest.fixture
def in_the_app(deployed: LocalInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalInfo:
    """The app's directory, where `approvals local` wrote its state file."""
    monkeypatch.chdir(tmp_path)
    deployed.write()
    return deployed


def release_pipeline(info: LocalInfo) -> str:
    machines = for_local(info).sfn.list_state_machines()["stateMachines"]
    (arn,) = (m["stateMachineArn"] for m in machines if "ReleasePipeline" in m["name"])
    return arn


def test_the_readme_app_catches_requests_that_cannot_be_asked(template: Path) -> None:
    resources = json.loads(template.read_text())["Resources"]
    (machine,) = (
        r
        for lid, r in resources.items()
        if lid.startswith("ReleasePipeline") and r["Type"].endswith("StateMachine")
    )
    text = json.dumps(machine["Properties"]["DefinitionString"])
    for error in (ApprovalErrors.INVALID_REQUEST, ApprovalErrors.DELIVERY_FAILED, *ApprovalErrors.EXPIRY):
        assert f'\\"{error}\\"' in text


def test_the_banner_lists_the_templates_state_machines_and_its_confirmed_approvers(
    deployed: LocalInfo, template: Path
) -> None:
    shown = banner(deployed, [template])
    assert f"state machine {release_pipeline(deployed)}" in shown
    assert not re.search(r"^  [a-z -]+\s*$", shown, re.MULTILINE), shown  # no field left blank
    assert "Approvers: alice@example.com, bob@example.com; add others" in shown
    assert f"export AWS_ENDPOINT_URL={deployed.endpoint_url} AWS_ACCESS_KEY_ID=testing" in shown


def test_start_says_which_state_machine_to_start(
    in_the_app: LocalInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["start", "--title", "Release 2.4", "--approver", "alice@example.com"]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1, said
    assert "no StateMachineArn output" in said
    assert release_pipeline(in_the_app) in said
    assert "aws stepfunctions start-execution" in said


def test_list_takes_the_state_machines_id_in_the_app(
    in_the_app: LocalInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    sfn = for_local(in_the_app).sfn
    sfn.start_execution(
        stateMachineArn=release_pipeline(in_the_app), input=json.dumps({"title": "Release 2.4"})
    )
    deadline = time.monotonic() + 30
    while True:
        assert cli.main(["list", "--workflow", "ReleasePipeline"]) == 0
        listed = capsys.readouterr().out
        if "Release 2.4" in listed or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert "Release 2.4" in listed
    assert cli.main(["list", "--workflow", "Release"]) == 0  # a prefix of the id is not the id
    assert capsys.readouterr().out == "No approvals match.\n"
