"""Where the CLI acts: the local stack (from its state file) or a deployed stack (from its
CloudFormation outputs, with the caller's AWS credentials).

The local stack runs on moto, which only the ``local`` extra installs. Acting on a running one
needs only its state file (approvals.local.info), so nothing here imports moto: a ``[cdk]``
installation's commands on a deployed stack work, and every command starts fast."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from approvals import directory, keys, reassign
from approvals.local.info import LOCAL_CREDENTIALS, STATE_FILE, LocalInfo
from approvals.models import Approval, Reassignment
from approvals.runtime import Services
from approvals.settings import Settings
from approvals.stack_outputs import (
    OUTPUT_API_URL,
    OUTPUT_FANOUT_STATE_MACHINE,
    OUTPUT_SIGNING_KEY,
    OUTPUT_STATE_MACHINE,
    OUTPUT_TABLE,
    OUTPUT_TOPIC,
)
from approvals.store import ApprovalStore

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_stepfunctions import SFNClient


class TargetError(Exception):
    """The CLI cannot find what to act on; the message says what to do."""


NO_LOCAL_EXTRA = (
    "the local stack runs on moto, which is not installed:"
    " pip install 'stepfunctions-approvals[local]' (or name a deployed stack with --stack-name)"
)


def without_local_extra(missing: ModuleNotFoundError) -> str:
    """What to say when a command needs a module this installation lacks."""
    if (missing.name or "").split(".")[0] == "moto":
        return NO_LOCAL_EXTRA
    return f"{type(missing).__name__}: {missing}"


def _local_extra_installed() -> bool:
    """Whether moto can be imported, asked without importing it (a second of CPU)."""
    try:
        return importlib.util.find_spec("moto") is not None
    except ModuleNotFoundError:
        return False


@dataclass(frozen=True)
class Target:
    session: boto3.Session
    endpoint_url: str | None
    state_machine_arn: str
    fanout_state_machine_arn: str
    table_name: str
    api_url: str
    signing_secret_id: str
    topic_arn: str  # the email topic: its subscriptions are the approver directory

    def client(self, name: Any) -> Any:
        return self.session.client(name, endpoint_url=self.endpoint_url)

    @property
    def sfn(self) -> SFNClient:
        return self.client("stepfunctions")  # type: ignore[no-any-return]

    @property
    def secrets(self) -> SecretsManagerClient:
        return self.client("secretsmanager")  # type: ignore[no-any-return]

    @property
    def sns(self) -> SNSClient:
        return self.client("sns")  # type: ignore[no-any-return]

    @property
    def store(self) -> ApprovalStore:
        return ApprovalStore(self.client("dynamodb"), self.table_name)

    def approval_state_machine(self) -> str:
        """The product's approval state machine, which `approvals start` starts; a template
        of a team's own app has none of its own outputs, so this says what to start instead."""
        if self.state_machine_arn:
            return self.state_machine_arn
        pages = self.sfn.get_paginator("list_state_machines").paginate()
        theirs = [machine["stateMachineArn"] for page in pages for machine in page["stateMachines"]]
        raise TargetError(
            f"this stack has no {OUTPUT_STATE_MACHINE} output, so no state machine of the product's"
            " to start: start one of its own with its own input, `aws stepfunctions start-execution"
            " --state-machine-arn ARN --input '{...}'`, ARN one of: " + (", ".join(theirs) or "(none)")
        )

    def services(self) -> Services:
        """The domain's services acting on this stack with the caller's credentials."""
        settings = Settings(
            table_name=self.table_name,
            signing_secret_id=self.signing_secret_id,
            topic_arn=self.topic_arn,
            api_url=self.api_url,
            region=self.session.region_name or "us-east-1",
        )
        return Services(
            settings=settings,
            store=self.store,
            sns=self.sns,
            sfn=self.sfn,
            secrets=self.secrets,
            keys=keys.Keys(self.secrets, self.signing_secret_id),
            directory=directory.Directory(self.sns, self.topic_arn, max_age=timedelta(0)),
        )

    def caller(self) -> str:
        """Who is acting, as AWS knows them: recorded with an operator's decision."""
        return str(self.client("sts").get_caller_identity()["Arn"])

    def hand_over(self, approval_id: str, change: Reassignment) -> Approval:
        """Reassign here and email the new approver their link (the operator's keys)."""
        lookup = directory.Directory(self.sns, self.topic_arn, max_age=timedelta(0))  # read it now
        signing = keys.Keys(self.secrets, self.signing_secret_id).signing()
        try:
            approval = reassign.reassign(self.store, lookup, signing, approval_id, change)
        except reassign.ReassignError as refused:
            raise TargetError(str(refused)) from None
        if not reassign.email_new_approver(
            self.store, self.sns, self.topic_arn, self.api_url, signing, approval, change.to
        ):
            raise TargetError(
                f"{change.from_}'s place is {change.to}'s, but the email with their link failed:"
                " run the same command again to send it"
            )
        return approval


def local(state_file: Path | None = None) -> Target:
    state_file = state_file or STATE_FILE
    if not state_file.exists():
        if not _local_extra_installed():
            raise TargetError(NO_LOCAL_EXTRA)
        raise TargetError(f"no local stack: {state_file} is missing. Start one with `approvals local`.")
    return for_local(LocalInfo.read(state_file))


def for_local(info: LocalInfo) -> Target:
    session = boto3.Session(
        region_name=info.region,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    return Target(
        session,
        info.endpoint_url,
        info.state_machine_arn,
        info.fanout_state_machine_arn,
        info.table_name,
        info.api_url,
        info.signing_secret_arn,
        info.topic_arn,
    )


def deployed(stack_name: str, region: str | None = None) -> Target:
    session = boto3.Session(region_name=region)
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as error:
        raise TargetError(f"cannot read stack {stack_name!r}: {error}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = {
        OUTPUT_STATE_MACHINE,
        OUTPUT_FANOUT_STATE_MACHINE,
        OUTPUT_TABLE,
        OUTPUT_API_URL,
        OUTPUT_TOPIC,
    } - outputs.keys()
    if missing:
        raise TargetError(
            f"stack {stack_name!r} lacks the outputs {sorted(missing)}: is it an approvals stack?"
        )
    return Target(
        session,
        None,
        outputs[OUTPUT_STATE_MACHINE],
        outputs[OUTPUT_FANOUT_STATE_MACHINE],
        outputs[OUTPUT_TABLE],
        outputs[OUTPUT_API_URL],
        # Stacks deployed before keys rotated lack it; only `rotate-key` needs it.
        outputs.get(OUTPUT_SIGNING_KEY, ""),
        outputs[OUTPUT_TOPIC],
    )
