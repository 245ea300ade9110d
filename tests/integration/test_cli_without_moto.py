"""The command of a ``[cdk]`` installation, which has no moto: help and the commands on a
deployed stack work, and the local stack's commands say in one line how to get it.

The command runs in a subprocess whose imports of moto fail, as they would in a virtual
environment without the ``local`` extra; the deployed stack is moto's, served over HTTP by
this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from approvals import target

ROOT = Path(__file__).resolve().parents[2]
WITHOUT_MOTO = """
import importlib.abc, sys

class NoMoto(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "moto":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoMoto())
from approvals.cli import main
raise SystemExit(main(sys.argv[1:]))
"""
INSTALL_LOCAL = "pip install 'stepfunctions-approvals[local]'"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def approvals(*args: str, endpoint: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_MOTO, *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=60,
    )


def test_help_works_without_moto(endpoint: str, tmp_path: Path) -> None:
    run = approvals("--help", endpoint=endpoint, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "usage: approvals" in run.stdout


def test_a_command_on_a_deployed_stack_works_without_moto(endpoint: str, tmp_path: Path) -> None:
    outputs = {
        name: {"Value": "unused"}
        for name in (target.OUTPUT_STATE_MACHINE, target.OUTPUT_FANOUT_STATE_MACHINE, target.OUTPUT_TABLE)
    }
    template = {
        "Resources": {"Emails": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            **outputs,
            target.OUTPUT_API_URL: {"Value": "https://example.com/prod/"},
            target.OUTPUT_TOPIC: {"Value": {"Ref": "Emails"}},
        },
    }
    boto3.client(
        "cloudformation",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_stack(StackName="Deployed", TemplateBody=json.dumps(template))
    run = approvals("approvers", "list", "--stack-name", "Deployed", endpoint=endpoint, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "No approvers" in run.stdout


@pytest.mark.parametrize("command", [["local"], ["demo"], ["list"]])
def test_the_local_stacks_commands_say_how_to_install_it(
    command: list[str], endpoint: str, tmp_path: Path
) -> None:
    run = approvals(*command, endpoint=endpoint, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1, run.stderr
    assert INSTALL_LOCAL in run.stderr
