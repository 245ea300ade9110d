"""The shared-service example as its teams run it locally: the app synthesized (in this
process), the service's template and the same-account consumer's deployed in that order by
`approvals local --template ... --template ...` (the consumer imports the service's exports),
in the account and region the app names; one payment approved through the emailed link runs
on the consumer's own state machine, which confirms the decision in the service's table."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import aws_cdk as cdk
import boto3
import pytest

from approvals.local import approver
from approvals.local.environments import IN_PROCESS
from approvals.local.info import LocalInfo
from approvals.local.stack import LocalStack, banner
from approvals.target import for_local
from examples.shared_service.app import (
    APPROVERS,
    PARTNER_ACCOUNT,
    REGION,
    SERVICE_ACCOUNT,
    SERVICE_STACK,
    build,
)

pytestmark = pytest.mark.xdist_group("local-template")


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The service's template, then the consumer's, as `cdk synth` writes them in cdk.out."""
    outdir = tmp_path_factory.mktemp("app") / "cdk.out"
    app = cdk.App(outdir=str(outdir))
    stacks = build(app)
    app.synth()
    return [outdir / f"{stacks[name].artifact_id}.template.json" for name in ("service", "payments")]


@pytest.fixture(scope="module")
def deployed(templates: list[Path]) -> Iterator[LocalInfo]:
    stack = LocalStack(moto_port=0, api_port=0, templates=templates, concurrency=IN_PROCESS)
    info = stack.start()
    yield info
    stack.stop()


def payments(info: LocalInfo) -> str:
    machines = for_local(info).sfn.list_state_machines()["stateMachines"]
    (arn,) = (m["stateMachineArn"] for m in machines if m["name"].startswith("Payments-"))
    return str(arn)


def test_a_consumer_stacks_workflow_is_approved_through_the_shared_service(
    deployed: LocalInfo, templates: list[Path]
) -> None:
    machine = payments(deployed)
    # Where the app deploys it: its ARNs (a sender role, an API's URL) name that account and region.
    assert machine.split(":")[3:5] == [REGION, SERVICE_ACCOUNT]
    shown = banner(deployed, templates)
    assert f"state machine {machine}" in shown
    for template in templates:
        assert f"template      {template}" in shown

    sfn = for_local(deployed).sfn
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"title": "Pay invoice 42"}))[
        "executionArn"
    ]
    deadline = time.monotonic() + 60
    while True:
        emails = approver.request(deployed.outbox_url, headers={"Accept": "application/json"}).json()
        sent = {e["to"]: e["links"][0] for e in emails if "Pay invoice 42" in e["subject"]}
        if len(sent) == len(APPROVERS) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert sorted(sent) == sorted(APPROVERS)
    assert approver.submit(approver.open_link(sent[APPROVERS[0]]), "approve", "").status == 200

    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the consumer's execution still waits"
        time.sleep(0.3)
    assert described["status"] == "SUCCEEDED", described
    decision = json.loads(described["output"])["approval"]
    assert (decision["outcome"], [v["approver"] for v in decision["votes"]]) == ("approved", [APPROVERS[0]])
    # The consumer confirmed the decision itself, in the service's table it imports.
    (approval,) = [a for a in for_local(deployed).store.all() if a.execution == execution]
    assert (approval.status.value, approval.unconfirmed, approval.request.requester) == (
        "approved",
        False,
        "Payments",
    )
    assert SERVICE_STACK in deployed.table_name


def test_the_partner_account_may_put_its_executions_ends_on_the_services_bus(deployed: LocalInfo) -> None:
    """The bus's policy (an ``AWS::Events::EventBusPolicy``, which moto's CloudFormation skips)."""
    events = boto3.client(
        "events",
        endpoint_url=deployed.endpoint_url,
        region_name=deployed.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    (bus,) = [b for b in events.list_event_buses()["EventBuses"] if b["Name"] != "default"]
    assert json.loads(events.describe_event_bus(Name=bus["Name"])["Policy"])["Statement"] == [
        {
            "Sid": "cdk-PutEventsFromAllowedAccounts",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{PARTNER_ACCOUNT}:root"},
            "Action": "events:PutEvents",
            "Resource": bus["Arn"],
        }
    ]
