"""The local stack as a user runs it: `approvals local` in a subprocess, driven over HTTP
and with the AWS CLI.

Under `pytest -n 3 --dist loadgroup` each module's tests in each mode are an xdist group of
their own (the module's stack in that mode starts once, on one worker, while the other
workers take other groups), except the tests on the template with a one-minute sweep: they
share one stack, in a group of their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest

from approvals import directory, fanout
from approvals.local.info import LocalInfo
from approvals.local.stack import SWEEP_INTERVAL
from approvals.target import for_local
from approvals_cdk.config import DEFAULT_SWEEP_MINUTES
from tests import cdk_templates

BIN = Path(sys.executable).parent
# Everyone the end-to-end tests ask, added to the directory first, as an operator does.
APPROVERS = [
    "alice@example.com", "bob@example.com", "carol@example.com", "dan@example.com",
    "erin@example.com", "gina@example.com", "hank@example.com", "ops@example.com",
    "fin@example.com", "ann@example.com", "ben@example.com", "cat@example.com",
    "dee@example.com", "eve@example.com", "fay@example.com", "fan1@example.com",
    "fan2@example.com", "rot@example.com",
]  # fmt: skip


# The modes of `approvals local`: the resources it provisions itself, or the product's own
# synthesized template deployed into moto's CloudFormation (`--template`).
PROVISIONED = "provisioned"
TEMPLATE = "template"
BOTH_MODES = pytest.mark.parametrize("local_stack", [PROVISIONED, TEMPLATE], indirect=True)
# The template again, synthesized with `-c sweepMinutes=1`: the local stack runs its sweep at
# that rate, so what the sweep does on the template (reminders, escalation, the requester
# told on expiry) shows within a couple of minutes. Only one test waits for the schedule
# (an escalation: its step can come no sooner than a minute); the others fire it when they
# need a sweep (RunningStack.sweep). They share one stack, in an xdist group of their own.
ONE_MINUTE_SWEEP = "template-sweep-1m"
SWEEP_MODES = pytest.mark.parametrize(
    "local_stack",
    [PROVISIONED, pytest.param(ONE_MINUTE_SWEEP, marks=pytest.mark.xdist_group(ONE_MINUTE_SWEEP))],
    indirect=True,
)
# How often each mode's sweep runs: the local stack's own, or the template's schedule.
SWEEP_SECONDS = {PROVISIONED: SWEEP_INTERVAL, TEMPLATE: DEFAULT_SWEEP_MINUTES * 60.0, ONE_MINUTE_SWEEP: 60.0}
T = TypeVar("T")


@dataclass
class RunningStack:
    info: LocalInfo
    workdir: Path
    process: subprocess.Popen[str]
    env: dict[str, str]
    mode: str = PROVISIONED
    sweep_seconds: float = SWEEP_INTERVAL  # how often its sweep runs

    def aws(self, *args: str) -> Any:
        """The AWS CLI against the local stack, as the README shows it."""
        result = subprocess.run(
            [str(BIN / "aws"), "--endpoint-url", self.info.endpoint_url, "--output", "json", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=True,
        )
        return json.loads(result.stdout) if result.stdout.strip() else {}

    def ended(self, execution_arn: str, timeout: float = 30) -> dict[str, Any]:
        """The execution described once it has ended (or as it stands at ``timeout``). Polled
        with boto3 in this process: each AWS CLI call is a Python start of its own (about a
        third of a CPU-second), and these waits polled it thrice a second."""
        sfn = self.sfn
        deadline = time.monotonic() + timeout
        while True:
            described: dict[str, Any] = dict(sfn.describe_execution(executionArn=execution_arn))
            if described["status"] != "RUNNING" or time.monotonic() > deadline:
                return described
            time.sleep(0.3)

    @cached_property
    def sfn(self) -> Any:
        """Step Functions through boto3, for what a test reads or starts itself."""
        return for_local(self.info).client("stepfunctions")

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.sfn.get_execution_history(executionArn=execution_arn)["events"]
        return events

    def fanout_decisions(self, output: str) -> list[dict[str, Any]]:
        """A fan-out's decisions, read from S3 where its output (a summary) says they are."""
        return fanout.decisions(for_local(self.info).client("s3"), json.loads(output))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "approvals"), *args],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=self.env,
            timeout=60,
        )

    def fire_schedules(self) -> None:
        """What the template's schedules do at their next tick, done now and waited for: each
        one's target invoked with its input through Lambda's Invoke, as an operator may do in
        AWS. A test that needs no real minute between sweeps fires them instead of waiting."""
        session = boto3.Session(
            region_name=self.info.region, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        scheduler = session.client("scheduler", endpoint_url=self.info.endpoint_url)
        functions = session.client("lambda", endpoint_url=self.info.endpoint_url)
        for listed in scheduler.list_schedules()["Schedules"]:
            target = scheduler.get_schedule(Name=listed["Name"], GroupName=listed["GroupName"])["Target"]
            answer = functions.invoke(FunctionName=target["Arn"], Payload=target.get("Input", "{}").encode())
            assert "FunctionError" not in answer, answer["Payload"].read()

    def sweep(self) -> None:
        """Lets a whole sweep run: on a template, its schedules are fired now; the provisioned
        stack sweeps every 2 seconds by itself."""
        if self.mode == PROVISIONED:
            time.sleep(self.sweep_seconds + 2)
        else:
            self.fire_schedules()

    def swept_until(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """``probe``'s first answer other than None while sweeps run (on a template, each
        poll fires its schedules first)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.mode != PROVISIONED:
                self.fire_schedules()
            answer = probe()
            if answer is not None:
                return answer
            assert time.monotonic() < deadline, f"no {what} within {timeout} s"
            time.sleep(0.5)

    def add_approvers(self, *addresses: str) -> None:
        """Subscribed as `approvals approvers add` subscribes them (test_approvers.py runs
        that command), here in this process: a CLI start is about half a CPU-second."""
        target = for_local(self.info)
        for address in addresses:
            directory.add(target.sns, target.topic_arn, address)

    def start(self, title: str, approvers: list[str], requester: str, **extra: Any) -> str:
        """One approval, started with boto3 in this process (the README's own AWS CLI command
        is run by tests/e2e/test_local_stack.py; each AWS CLI call here was a Python start of
        about 0.4 CPU-seconds)."""
        request = {"title": title, "approvers": approvers, "requester": requester, **extra}
        started = self.sfn.start_execution(
            stateMachineArn=self.info.state_machine_arn, input=json.dumps({"request": request})
        )
        return str(started["executionArn"])


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One xdist group per module and mode: a module's stack in each mode starts once either
    way, and its two modes run side by side on two workers rather than one after the other."""
    for item in items:
        if item.get_closest_marker("e2e") and not item.get_closest_marker("xdist_group"):
            callspec = getattr(item, "callspec", None)
            mode = callspec.params.get("local_stack") if callspec else None
            item.add_marker(pytest.mark.xdist_group(f"e2e-{item.path.stem}" + (f"-{mode}" if mode else "")))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test not parametrized over the modes runs on the provisioned stack: the module's
    one, which its parametrized tests share (the same parameter, so one stack)."""
    parametrized = {
        name.strip()
        for mark in metafunc.definition.iter_markers("parametrize")
        for name in (mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0])
    }
    if "local_stack" in metafunc.fixturenames and "local_stack" not in parametrized:
        metafunc.parametrize("local_stack", [PROVISIONED], indirect=True)


@pytest.fixture(scope="session")
def product_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cdk_templates.product_template(tmp_path_factory)


@pytest.fixture(scope="session")
def one_minute_sweep_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cdk_templates.one_minute_sweep_template(tmp_path_factory)


@contextmanager
def running_local_stack(
    workdir: Path, *options: str, environment: dict[str, str] | None = None
) -> Iterator[RunningStack]:
    """`approvals local` in a subprocess (any free ports), until the block ends."""
    env = {
        **os.environ,
        **(environment or {}),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONUNBUFFERED": "1",
    }
    log = (workdir / "local.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "approvals"), "local", "--moto-port", "0", "--api-port", "0", *options],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state = workdir / ".approvals" / "local.json"
    deadline = time.monotonic() + 120  # a template's deployment takes about 10 s on its own
    while not state.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"approvals local did not start:\n{(workdir / 'local.log').read_text()}")
        time.sleep(0.2)
    time.sleep(0.2)  # the file is written whole, but let the printout finish
    try:
        yield RunningStack(LocalInfo.read(state), workdir, process, env)
    finally:
        stopped = True
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:  # a stop takes about 2 s; never leave a stack behind
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                stopped = False
        log.close()
        if not stopped:
            printed = (workdir / "local.log").read_text()
            pytest.fail(f"approvals local ignored its SIGINT for 60 s; it printed:\n{printed[-2000:]}")


@contextmanager
def stack_in_mode(
    tmp_path_factory: pytest.TempPathFactory, mode: str, *options: str
) -> Iterator[RunningStack]:
    """A local stack in ``mode`` with everyone the tests ask in its directory."""
    with running_local_stack(tmp_path_factory.mktemp(f"local-{mode}"), *options) as stack:
        stack.mode = mode
        stack.sweep_seconds = SWEEP_SECONDS[mode]
        stack.add_approvers(*APPROVERS)
        yield stack


@pytest.fixture(scope="session")
def one_minute_sweep_stack(
    tmp_path_factory: pytest.TempPathFactory, one_minute_sweep_template: Path
) -> Iterator[RunningStack]:
    """One stack for every test on the one-minute template (each test has titles of its own)."""
    with stack_in_mode(
        tmp_path_factory, ONE_MINUTE_SWEEP, "--template", str(one_minute_sweep_template)
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def local_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    mode = request.param
    if mode == ONE_MINUTE_SWEEP:
        yield request.getfixturevalue("one_minute_sweep_stack")
        return
    options = ["--template", str(request.getfixturevalue("product_template"))] if mode == TEMPLATE else []
    with stack_in_mode(tmp_path_factory, mode, *options) as stack:
        yield stack
