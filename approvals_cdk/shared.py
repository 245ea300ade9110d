"""What the service's parts share: cdk-nag acknowledgements, IAM grants, and the factory of
their log groups and functions.

Every part adds its resources to the service's own scope rather than being a construct of
its own: a construct in between would add a level to every construct path below it, and so
change every logical ID, and CloudFormation replaces a resource whose logical ID changes
(a new table, queue and topic; a new API URL and signing key, which break every link in
flight). The parts are how the code reads; the construct tree stays what was deployed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import Duration, RemovalPolicy, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

from approvals.store.close import CONFIRM_DELIVERY_ATTRIBUTES
from approvals_cdk import packaging

# The task-token calls (states:SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat) cannot
# be scoped to a resource: the Service Authorization Reference lists no resource type for
# them, which means a policy must name "Resource": "*". (Naming the state machine's ARN is
# undocumented; when the CDK team tried it, it worked for some integrations and was denied
# for others, and a denied SendTaskSuccess would leave a decided approval undelivered.)
# What limits these calls is the token itself: unguessable, made per task, and never leaving
# the backend. So each function gets only the one call its code makes; none gets heartbeat.
TASK_RESPONSE_RESOURCE = "*"
TASK_RESPONSE_REASON = (
    "states:SendTaskSuccess/SendTaskFailure support no resource-level permissions (the Service"
    " Authorization Reference lists no resource type), so IAM requires Resource '*'. The action"
    " is the only one this role gets and it needs the task token, which never leaves the backend."
)

HISTORY_REASON = (
    "The executions that ask for approval are those of any workflow of the account and region"
    " (teams' own state machines, Distributed Map children), named when they start: the history"
    " read names every execution of this account and region, and no other action."
)

LAMBDA_RUNTIME = {
    "3.11": lambda_.Runtime.PYTHON_3_11,
    "3.12": lambda_.Runtime.PYTHON_3_12,
    "3.13": lambda_.Runtime.PYTHON_3_13,
}[packaging.LAMBDA_PYTHON_VERSION]
LAMBDA_ARCHITECTURE = {
    "x86_64": lambda_.Architecture.X86_64,
    "aarch64": lambda_.Architecture.ARM_64,
}[packaging.LAMBDA_ARCHITECTURE]


def asset_code(asset: packaging.Asset) -> lambda_.Code:
    """The functions' code from a built asset, under the asset's own content hash."""
    return lambda_.Code.from_asset(
        str(asset.path), asset_hash=asset.key, asset_hash_type=cdk.AssetHashType.CUSTOM
    )


def acknowledge(scope: IConstruct | None, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on ``scope`` (and what it contains), with the reason."""
    if scope is None:
        raise ValueError(f"nothing to acknowledge {rule} on")
    Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def allow(function: lambda_.Function, actions: list[str], resources: list[str]) -> None:
    """One statement on the function's own role."""
    function.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=resources))


def grant_history(function: lambda_.Function) -> None:
    """Read the history of the executions that ask for approval: when the service refuses a
    repeated answer after the task may have timed out, it tells "taken" from "timed out".
    Any workflow of the account may ask (the step, a hand-written Task, a Distributed Map's
    child, ``execution:Machine/MapRun:child``), so the grant names every execution here."""
    executions = cdk.Stack.of(function).format_arn(
        service="states",
        resource="execution",
        resource_name="*",
        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
    )
    allow(function, ["states:GetExecutionHistory"], [executions])
    acknowledge(
        function.role,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:*]",
        HISTORY_REASON,
    )


def confirm_delivery(table: dynamodb.ITable) -> iam.PolicyStatement:
    """The ConfirmDelivery write (approvals.store.close), and nothing else a changed definition
    might do with ``dynamodb:UpdateItem``: no attribute but the confirmation's own (not the
    votes, approvers or task token), and nothing returned (a task token read back)."""
    return iam.PolicyStatement(
        actions=["dynamodb:UpdateItem"],
        resources=[table.table_arn],
        conditions={
            "ForAllValues:StringEquals": {"dynamodb:Attributes": sorted(CONFIRM_DELIVERY_ATTRIBUTES)},
            "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"},
        },
    )


def deny_all_but(
    owner: sqs.Queue | sns.Topic,
    action: str,
    principals: Sequence[str],
    accounts: Sequence[str] = (),
    *,
    called_via: str | None = None,
) -> None:
    """A statement in ``owner``'s resource policy that lets only ``principals`` make the call,
    whatever the account's identity policies allow; and the principals of other ``accounts``,
    as far as their own account's policies allow (a Deny applies only when all its
    conditions hold); with ``called_via``, calls that service makes for whoever uses it."""
    arn = owner.queue_arn if isinstance(owner, sqs.Queue) else owner.topic_arn
    conditions: dict[str, dict[str, Any]] = {}
    if principals:
        conditions["ArnNotEquals"] = {"aws:PrincipalArn": list(principals)}
    if accounts:
        conditions["StringNotEquals"] = {"aws:PrincipalAccount": list(accounts)}
    if called_via:
        # Absent on a direct call, so the Deny holds there (ForAllValues of nothing is true).
        conditions["ForAllValues:StringNotEquals"] = {"aws:CalledVia": called_via}
    if not conditions:
        raise ValueError(f"{action} would be denied to everyone")
    owner.add_to_resource_policy(
        iam.PolicyStatement(
            sid=f"Only{action.split(':')[1]}ByTheseRoles",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=[action],
            resources=[arn],
            conditions=conditions,
        )
    )


class Factory:
    """Makes the service's log groups and functions, in the service's scope, with its settings:
    every function gets its own role, log group, the table and the signing key's secret."""

    def __init__(
        self,
        scope: Construct,
        *,
        code: lambda_.Code,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        retention_days: int,
        table: dynamodb.Table,
        signing_key: secretsmanager.Secret,
    ) -> None:
        self._scope = scope
        self._code = code
        self._log_retention = log_retention
        self._removal_policy = removal_policy
        self._retention_days = retention_days
        self._table = table
        self._signing_key = signing_key

    def log_group(self, construct_id: str, name: str | None = None) -> logs.LogGroup:
        return logs.LogGroup(
            self._scope,
            construct_id,
            log_group_name=name,
            retention=self._log_retention,
            removal_policy=self._removal_policy,
        )

    def function(
        self,
        construct_id: str,
        handler: str,
        description: str,
        *,
        timeout: Duration,
        memory_mb: int = 256,
        environment: dict[str, str] | None = None,
        snap_start: bool = False,
    ) -> lambda_.Function:
        """With ``snap_start``, each published version starts from a snapshot of its initialized
        environment (``function.current_version`` publishes one)."""
        log_group = self.log_group(f"{construct_id}Logs")
        # A role of its own with no managed policy: it gets exactly the grants of its part.
        role = iam.Role(
            self._scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{construct_id}: only the calls its code makes",
        )
        log_group.grant_write(role)
        function = lambda_.Function(
            self._scope,
            construct_id,
            description=description,
            runtime=LAMBDA_RUNTIME,
            architecture=LAMBDA_ARCHITECTURE,
            handler=handler,
            code=self._code,
            role=role,
            log_group=log_group,
            memory_size=memory_mb,
            timeout=timeout,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
            # A snapshot is charged for as long as its version exists: a replaced version is
            # deleted, not kept.
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY)
            if snap_start
            else None,
            environment={
                "APPROVALS_TABLE": self._table.table_name,
                # The secret's ARN, not its value: functions that need the key read it once.
                "APPROVALS_SIGNING_SECRET": self._signing_key.secret_arn,
                "APPROVALS_RETENTION_DAYS": str(self._retention_days),
                **(environment or {}),
            },
        )
        acknowledge(
            function.node.default_child,
            "AwsSolutions-L1",
            f"Python {packaging.LAMBDA_PYTHON_VERSION} on purpose: the newest runtime whose asset the"
            " build machines can prove by importing every handler with that Python version; no"
            " newer interpreter is at hand (see approvals_cdk/packaging.py).",
        )
        return function
