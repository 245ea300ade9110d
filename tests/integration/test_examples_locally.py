"""Both example apps as their teams run them locally: each synthesized (in this process),
its whole template deployed with `approvals local --template` (the queue's and the topic's
resource policies and every role's grants enforced, as AWS enforces them), and one request
approved through the emailed links, on the app's own state machine."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import pytest

from approvals import fanout
from approvals.local import approver
from approvals.local.environments import IN_PROCESS
from approvals.local.info import LocalInfo
from approvals.local.stack import LocalStack
from approvals.target import for_local
from examples.deploy_gate.app import RELEASE_MANAGERS, DeployGateStack
from examples.refund_batch.app import FINANCE, RefundBatchStack

pytestmark = pytest.mark.xdist_group("local-template")


@dataclass(frozen=True)
class Example:
    stack: type[cdk.Stack]
    machine: str  # the construct id of the app's own state machine
    title: str
    execution_input: dict[str, Any]
    approvers: tuple[str, ...]  # who approves, for the request to be approved


DEPLOY_GATE = Example(
    DeployGateStack,
    "Pipeline",
    "Release 2.4",
    {"title": "Release 2.4", "release": {"version": "2.4"}},
    RELEASE_MANAGERS,  # policy "all"
)
REFUND_BATCH = Example(
    RefundBatchStack,
    "Refunds",
    "Refund R-7 of 70 USD",
    {"refunds": [{"id": "R-7", "amount": 70, "customer": "ana@example.org"}]},
    FINANCE[:2],  # a quorum of two
)


@pytest.fixture(scope="module", params=[DEPLOY_GATE, REFUND_BATCH], ids=["deploy_gate", "refund_batch"])
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfo]:
    example: Example = request.param
    outdir = tmp_path_factory.mktemp("app") / "cdk.out"
    app = cdk.App(outdir=str(outdir))
    stack = example.stack(app, example.stack.__name__.removesuffix("Stack"))
    app.synth()
    local = LocalStack(
        moto_port=0,
        api_port=0,
        templates=[outdir / f"{stack.artifact_id}.template.json"],
        concurrency=IN_PROCESS,
    )
    info = local.start()
    yield info
    local.stop()


def example_of(request: pytest.FixtureRequest) -> Example:
    example: Example = request.node.callspec.params["deployed"]
    return example


def own_machine(info: LocalInfo, construct_id: str) -> str:
    machines = for_local(info).sfn.list_state_machines()["stateMachines"]
    (arn,) = (m["stateMachineArn"] for m in machines if construct_id in m["name"])
    return str(arn)


def test_an_example_app_approves_through_its_own_state_machine(
    deployed: LocalInfo, request: pytest.FixtureRequest
) -> None:
    example = example_of(request)
    sfn = for_local(deployed).sfn
    execution = sfn.start_execution(
        stateMachineArn=own_machine(deployed, example.machine), input=json.dumps(example.execution_input)
    )["executionArn"]

    deadline = time.monotonic() + 60
    while True:
        emails = approver.request(deployed.outbox_url, headers={"Accept": "application/json"}).json()
        sent = {e["to"]: e["links"][0] for e in emails if example.title in e["subject"]}
        if set(example.approvers) <= set(sent) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert set(example.approvers) <= set(sent), sent
    for who in example.approvers:
        assert approver.submit(approver.open_link(sent[who]), "approve", "").status == 200

    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the app's execution still waits"
        time.sleep(0.3)
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    if example is DEPLOY_GATE:
        assert output == {"deployed": {"version": "2.4"}}
    else:
        results = fanout.results(for_local(deployed).client("s3"), **output["results"])
        assert results == [{"id": "R-7", "status": "refunded"}]
