"""One service for several stacks and accounts: who may send requests (roles named without a
reference between stacks, other accounts), and which executions' ends cancel their approvals.

A role of another stack is named by its ARN, built from its ``role_name``: referring to it
would make the service's stack depend on the stack that sends to the service's queue, a cycle.
Another account's Step Functions events stay on that account's default bus: it forwards them
(``ForwardExecutionEnds``) to the service's ``ExecutionEventsBus``, whose policy lets only the
``allowed_accounts`` put events and whose rule takes only their executions' ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import cast

import aws_cdk as cdk
import jsii
from aws_cdk import Duration, Token
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from approvals_cdk.config import ACCOUNT_ID

# A sender: a role's ARN, or a role (or what has one: a state machine) of any stack.
Sender = str | iam.IGrantable

ENDED_STATUSES = ["FAILED", "TIMED_OUT", "ABORTED"]


class WatchExecutions(Enum):
    """Whose executions' ends (failed, timed out, stopped) cancel their pending approvals."""

    STACK = "stack"
    """The state machines of the service's own stack: one service per stack, each watching its
    own, so several copies in one account leave each other alone."""
    ACCOUNT = "account"
    """Every state machine of the account and region: one service shared by the account's
    stacks (one rule for the account; an execution that asked none costs one query)."""
    NONE = "none"
    """No rule: an ended execution's approvals stay open until they expire (the sweep closes
    them then), and their links answer that the request can no longer be decided."""


def sender_arn(service: Construct, sender: Sender) -> str:
    """The ARN by which the queue's policy names ``sender`` without a reference to another
    stack of the same environment."""
    if isinstance(sender, str):
        return sender
    principal = sender.grant_principal
    role_arn = getattr(principal, "role_arn", None)
    if not isinstance(role_arn, str):
        raise ValueError(f"sender_roles: {principal} is not a role (give a role, or a state machine)")
    if not Token.is_unresolved(role_arn):
        return role_arn  # an imported role: its ARN is already a string
    theirs, ours = cdk.Stack.of(cast(Construct, principal)), cdk.Stack.of(service)
    if theirs is ours or _environments_differ(theirs, ours):
        # Across environments the CDK names the role itself (role_name or GENERATE_IF_NEEDED).
        return role_arn
    # The role's own resource: a role imported by name has none, and its ARN is a string.
    resource = cast(Construct, principal).node.default_child
    name = resource.role_name if isinstance(resource, iam.CfnRole) else None
    if name is None or Token.is_unresolved(name):
        raise ValueError(
            f"sender_roles: the role {cast(Construct, principal).node.path} is in stack {theirs.stack_name}:"
            " naming it here would make this stack depend on that one, which sends to this one's queue"
            " (a cycle). Give the role a role_name, or pass its ARN as a string."
        )
    path = cast(iam.CfnRole, resource).path or "/"
    return theirs.format_arn(
        service="iam", region="", resource="role", resource_name=f"{path.lstrip('/')}{name}"
    )


def _environments_differ(one: cdk.Stack, other: cdk.Stack) -> bool:
    def differ(a: str, b: str) -> bool:
        return not Token.is_unresolved(a) and not Token.is_unresolved(b) and a != b

    return differ(one.account, other.account) or differ(one.region, other.region)


def check_accounts(service: Construct, accounts: Sequence[str]) -> None:
    """Refuse what is not an account id, and the service's own account: exempting it would
    undo the Deny for every principal of the account."""
    own = cdk.Stack.of(service).account
    for account in accounts:
        if not ACCOUNT_ID.fullmatch(account):
            raise ValueError(f"allowed_accounts: {account!r} is not a 12-digit AWS account id")
        if account == own:
            raise ValueError(
                f"allowed_accounts: {account} is the service's own account; name its senders in sender_roles"
            )


def allow_accounts(queue: sqs.Queue, accounts: Sequence[str]) -> None:
    """Each account's principals may send requests, as far as their own account's identity
    policies let them (the resource policy side of a cross-account send)."""
    queue.add_to_resource_policy(
        iam.PolicyStatement(
            sid="SendMessageFromAllowedAccounts",
            principals=[iam.AccountPrincipal(account) for account in accounts],
            actions=["sqs:SendMessage"],
            resources=[queue.queue_arn],
        )
    )


def ended_executions(
    state_machine_arns: Sequence[str] | None = None, accounts: Sequence[str] | None = None
) -> events.EventPattern:
    """The Step Functions events of executions that failed, timed out or were stopped: of
    these state machines or every one, from these accounts or any."""
    detail: dict[str, object] = {"status": ENDED_STATUSES}
    if state_machine_arns is not None:
        detail["stateMachineArn"] = list(state_machine_arns)
    return events.EventPattern(
        source=["aws.states"],
        detail_type=["Step Functions Execution Status Change"],
        detail=detail,
        account=list(accounts) if accounts is not None else None,
    )


def cancel_target(function: lambda_.IFunction) -> events_targets.LambdaFunction:
    """The execution-ended function, retried for a day: a cancellation missed is a pending
    approval left until it expires."""
    return events_targets.LambdaFunction(function, retry_attempts=10, max_event_age=Duration.hours(24))


@jsii.implements(cdk.IStableListProducer)
class _StateMachinesOfStack:
    """The ARNs of the stack's state machines, read once the whole stack is built."""

    def __init__(self, stack: cdk.Stack) -> None:
        self._stack = stack

    def produce(self) -> list[str]:
        return [
            construct.state_machine_arn
            for construct in self._stack.node.find_all()
            if isinstance(construct, sfn.StateMachine) and cdk.Stack.of(construct) is self._stack
        ]


def watched_state_machines(scope: Construct, watch: WatchExecutions) -> list[str] | None:
    """Whose ends the account's default bus rule takes: the stack's, or (None) every one."""
    if watch is WatchExecutions.STACK:
        return cdk.Lazy.list(_StateMachinesOfStack(cdk.Stack.of(scope)))
    return None


class ExecutionEventsBus(Construct):
    """Where ``accounts`` forward their executions' ends, and the rule that cancels their
    approvals (only the events of those accounts)."""

    def __init__(
        self, scope: Construct, construct_id: str, function: lambda_.IFunction, accounts: Sequence[str]
    ) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(
            self, "Bus", description="Other accounts' Step Functions executions that ended (approvals)"
        )
        self.bus.add_to_resource_policy(
            iam.PolicyStatement(
                sid="PutEventsFromAllowedAccounts",
                principals=[iam.AccountPrincipal(account) for account in accounts],
                actions=["events:PutEvents"],
                resources=[self.bus.event_bus_arn],
            )
        )
        self.rule = events.Rule(
            self,
            "ExecutionEndedRule",
            description="Another account's execution ended: cancel its pending approvals",
            event_bus=self.bus,
            event_pattern=ended_executions(accounts=accounts),
            targets=[cancel_target(function)],
        )


class ForwardExecutionEnds(Construct):
    """In a consumer account: forwards the ends of ``state_machines`` (every one of the
    account and region if none is named) to the service's ``ExecutionEventsBus``, so that
    their pending approvals are cancelled. CDK makes the role that puts the events."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        event_bus_arn: str,
        state_machines: Sequence[sfn.IStateMachine] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        arns = [machine.state_machine_arn for machine in state_machines] or None
        self.rule = events.Rule(
            self,
            "Rule",
            description="Executions that ended, for the approval service of another account",
            event_pattern=ended_executions(arns),
            targets=[
                events_targets.EventBus(events.EventBus.from_event_bus_arn(self, "ServiceBus", event_bus_arn))
            ],
        )
