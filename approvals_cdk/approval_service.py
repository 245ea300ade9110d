"""`ApprovalService`: every AWS resource of the approval gate, as one reusable construct.

The product's stack (approvals_cdk/stack.py) instantiates it once; a team can put the same
construct into its own CDK app, and give any state machine the step that uses it
(:meth:`ApprovalService.approval_step`). The wiring:

    state machine --sqs:SendMessage.waitForTaskToken--> request queue --> worker λ --> SNS (email,
    one filtered subscription per approver) ... approver --> REST API --> approval λ --> SendTaskSuccess
    request queue --(after a few receives)--> dead-letter queue --> dead-letter λ --> SendTaskFailure
    EventBridge Scheduler --> sweeper λ (expiry, reminders, redelivery)
    EventBridge rule (execution failed / timed out / aborted) --> execution-ended λ (cancel)

IAM is least privilege: each function has its own role holding only the calls its code
makes, on its own resources. Every cdk-nag finding that remains is acknowledged where the
resource is made, with the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Unpack, cast

import aws_cdk as cdk
from aws_cdk import (
    Duration,
    RemovalPolicy,
    Validations,
)
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct, IConstruct

from approvals import metrics, statemachine
from approvals.local.resources import table_definition
from approvals.notify import APPROVER_ATTRIBUTE
from approvals_cdk import packaging
from approvals_cdk.config import DEFAULT_REMINDERS, LOG_RETENTION_CHOICES
from approvals_cdk.step import StepOptions, approval_step

DEAD_LETTER_TIMEOUT = Duration.seconds(30)

# The attribute ApprovalStore.claim writes: when DynamoDB may delete a settled approval.
TTL_ATTRIBUTE = "ttl"

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

# The approver directory (approvals.directory) lists the topic's subscriptions and reads a
# confirmed one's filter policy and protection. GetSubscriptionAttributes is granted on "*":
# the Service Authorization Reference lists no resource type for it (subscriptions are no
# IAM resource), and the call only reads subscription settings.
DIRECTORY_READ_REASON = (
    "sns:GetSubscriptionAttributes supports no resource-level permissions (subscriptions are"
    " not an IAM resource type), so IAM requires Resource '*'; it reads a subscription's filter"
    " policy and protection, which the approver directory needs."
)

HISTORY_REASON = (
    "Executions are named when they start, so their ARNs end in a wildcard; the history read"
    " is only of this stack's own state machines' executions."
)

_LOG_RETENTION = dict(
    zip(
        LOG_RETENTION_CHOICES,
        (
            logs.RetentionDays.ONE_DAY, logs.RetentionDays.THREE_DAYS, logs.RetentionDays.FIVE_DAYS,
            logs.RetentionDays.ONE_WEEK, logs.RetentionDays.TWO_WEEKS, logs.RetentionDays.ONE_MONTH,
            logs.RetentionDays.TWO_MONTHS, logs.RetentionDays.THREE_MONTHS, logs.RetentionDays.FOUR_MONTHS,
            logs.RetentionDays.FIVE_MONTHS, logs.RetentionDays.SIX_MONTHS, logs.RetentionDays.ONE_YEAR,
            logs.RetentionDays.THIRTEEN_MONTHS, logs.RetentionDays.EIGHTEEN_MONTHS,
            logs.RetentionDays.TWO_YEARS, logs.RetentionDays.THREE_YEARS, logs.RetentionDays.FIVE_YEARS,
            logs.RetentionDays.SIX_YEARS, logs.RetentionDays.SEVEN_YEARS, logs.RetentionDays.EIGHT_YEARS,
            logs.RetentionDays.NINE_YEARS, logs.RetentionDays.TEN_YEARS,
        ),
        strict=True,
    )
)  # fmt: skip

# API Gateway access log fields. The query string is left out on purpose: it holds the
# link's signature. $context.path is the path alone (no query string).
APPROVAL_PATH = "/approvals/{approval_id}"
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integration.error",
}


def acknowledge(scope: IConstruct | None, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on ``scope`` (and what it contains), with the reason."""
    if scope is None:
        raise ValueError(f"nothing to acknowledge {rule} on")
    Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


@dataclass(frozen=True)
class ApprovalServiceProps:
    """How the service is deployed. ``approvers`` are the addresses subscribed at deploy time
    (each confirms it once); more are added without a deploy by `approvals approvers add`. A
    request may only name approvers in that directory."""

    approvers: Sequence[str] = ()  # email addresses, as the worker normalizes them (lowercase)
    default_timeout_seconds: int = statemachine.DEFAULT_TIMEOUT_SECONDS
    retention_days: int = 90  # how long an approval is kept after it expires (table TTL)
    log_retention_days: int = 90  # one of approvals_cdk.config.LOG_RETENTION_CHOICES
    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN  # for the table and the log groups
    reminders: Sequence[str] = DEFAULT_REMINDERS
    alarm_email: str | None = None  # subscribed to the alarm topic, if given
    # Besides the service's own state machines, the roles (ARNs) of workflows that send
    # approval requests to the queue.
    sender_roles: Sequence[str] = ()
    # Besides the deployment itself, the roles that may subscribe to the email topic (the
    # operators who manage approvers).
    subscriber_roles: Sequence[str] = ()
    allow_self_approval: bool = False  # a requester listed as an approver may approve
    sweep_minutes: int = 5  # reminders and expiry are as precise as this
    max_receive_count: int = 3  # deliveries of a request before it is dead-lettered
    # Requests per second (steady, burst), per method: each method has a bucket of its own,
    # so a flood of page views cannot use up the votes'.
    page_view_limits: tuple[float, int] = (10, 20)
    vote_limits: tuple[float, int] = (10, 20)
    # An AWS WAF rate-based rule: requests per 5 minutes from one address; None for no WAF.
    rate_limit_per_ip: int | None = None
    asset: packaging.Asset | None = None  # the Lambda code; built (or reused) if not given
    worker_timeout: Duration = field(default_factory=lambda: Duration.seconds(30))
    # Approvals of one fan-out in flight at once (a Distributed Map's child executions).
    fanout_max_concurrency: int = statemachine.MAX_FANOUT_CONCURRENCY


class ApprovalService(Construct):
    """The approval gate's resources (see the module docstring for the wiring).

    One serves every workflow of an account and region: give each an :meth:`approval_step`. Its
    attributes expose what a team may wire further: ``queue`` (the request queue a
    hand-written Task sends to), ``api`` (the links' host), ``table``, ``topic``,
    ``alarm_topic``, and the product's own ``state_machine`` and ``fanout_state_machine``.
    """

    def __init__(self, scope: Construct, construct_id: str, props: ApprovalServiceProps) -> None:
        super().__init__(scope, construct_id)
        self._props = props
        self._asset = props.asset or packaging.build()
        self._log_retention = _LOG_RETENTION[props.log_retention_days]
        self.lambda_runtime = {
            "3.11": lambda_.Runtime.PYTHON_3_11,
            "3.12": lambda_.Runtime.PYTHON_3_12,
            "3.13": lambda_.Runtime.PYTHON_3_13,
        }[packaging.LAMBDA_PYTHON_VERSION]
        self.lambda_architecture = {
            "x86_64": lambda_.Architecture.X86_64,
            "aarch64": lambda_.Architecture.ARM_64,
        }[packaging.LAMBDA_ARCHITECTURE]

        self.signing_key = secretsmanager.Secret(
            self,
            "SigningKey",
            description="HMAC key that signs the approval links (read by the functions at cold start)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
        )
        acknowledge(
            self.signing_key,
            "AwsSolutions-SMG4",
            "The key signs links that stay valid until their approval expires (up to a year);"
            " a scheduled rotation would retire keys whose links are still in flight. Operators"
            " rotate it with `approvals rotate-key`: links name their key, and the previous key"
            " still verifies.",
        )

        self.table = self._table()
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),  # the longest SQS keeps a message
            visibility_timeout=Duration.seconds(DEAD_LETTER_TIMEOUT.to_seconds() * 6),  # as below
        )
        self.queue = sqs.Queue(
            self,
            "RequestQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # Six times the worker's timeout (AWS's advice for an event source mapping); the
            # worker's claim on a request lasts exactly this long (APPROVALS_CLAIM_SECONDS).
            visibility_timeout=Duration.seconds(props.worker_timeout.to_seconds() * 6),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=props.max_receive_count, queue=self.dead_letter_queue
            ),
        )
        self.topic = sns.Topic(
            self,
            "EmailTopic",
            display_name="Approvals",  # the sender name approvers see
            enforce_ssl=True,
            # The AWS managed key: its key policy lets this account's principals publish
            # through SNS, so no function needs a KMS grant.
            master_key=kms.Alias.from_alias_name(self, "SnsManagedKey", "alias/aws/sns"),
        )
        for approver in props.approvers:
            self.topic.add_subscription(
                subscriptions.EmailSubscription(
                    approver,
                    filter_policy={
                        APPROVER_ATTRIBUTE: sns.SubscriptionFilter.string_filter(allowlist=[approver])
                    },
                )
            )

        # The deployment's default timeout is the one parameter of the definitions; the
        # message carries the timeout applied, so the worker needs no copy of it.
        default = props.default_timeout_seconds
        self.state_machine = self._state_machine(
            "ApprovalStateMachine", statemachine.approval_definition(default)
        )
        self.fanout_state_machine = self._state_machine(
            "FanoutStateMachine", statemachine.fanout_definition(default, props.fanout_max_concurrency)
        )
        self._run_child_executions(self.fanout_state_machine)

        self.api_function = self._function(
            "ApiFunction",
            "approval_api.handler.lambda_handler",
            "Approval pages and decisions (API Gateway)",
            memory_mb=512,  # an approver waits on its cold start: more memory, more CPU
            timeout=Duration.seconds(15),
            # A sequence's next voter is emailed right after the vote (its link's URL is
            # stored with the approval: the API cannot name its own URL here, a cycle).
            environment={"APPROVALS_TOPIC_ARN": self.topic.topic_arn},
        )
        self.api = self._api()
        api_url = self.api.url

        self.worker = self._function(
            "WorkerFunction",
            "worker.handler.lambda_handler",
            "Validates queued approval requests, stores them, emails the approvers",
            timeout=props.worker_timeout,
            environment={
                "APPROVALS_TOPIC_ARN": self.topic.topic_arn,
                "APPROVALS_API_URL": api_url,
                "APPROVALS_CLAIM_SECONDS": str(int(props.worker_timeout.to_seconds() * 6)),
                "APPROVALS_ALLOW_SELF_APPROVAL": str(props.allow_self_approval).lower(),
                # A request's recurring reminders may come no oftener than the sweep runs.
                "APPROVALS_SWEEP_SECONDS": str(props.sweep_minutes * 60),
            },
        )
        self.worker.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=10,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
            )
        )
        self.dead_letter_function = self._function(
            "DeadLetterFunction",
            "worker.dead_letter.lambda_handler",
            "Fails the execution behind each dead-lettered request with Approval.DeliveryFailed",
            timeout=DEAD_LETTER_TIMEOUT,
        )
        self.dead_letter_function.add_event_source(
            event_sources.SqsEventSource(
                self.dead_letter_queue, batch_size=10, report_batch_item_failures=True
            )
        )
        self.sweeper = self._function(
            "SweeperFunction",
            "worker.sweeper.lambda_handler",
            "Scheduled sweep: expiry, reminders, redelivery of decisions",
            timeout=Duration.minutes(2),
            environment={
                "APPROVALS_TOPIC_ARN": self.topic.topic_arn,
                "APPROVALS_API_URL": api_url,
                "APPROVALS_REMINDERS": ",".join(props.reminders),  # empty: none
            },
        )
        self.execution_ended_function = self._function(
            "ExecutionEndedFunction",
            "worker.execution_ended.lambda_handler",
            "Cancels the pending approvals of an execution that failed, timed out or was stopped",
            timeout=Duration.seconds(30),
        )
        self._grant_calls()
        self._restrict_senders_and_subscribers()
        self._schedule_sweep()
        self._watch_executions()
        self.alarms = self._alarms()

    # -- data ------------------------------------------------------------------------------

    def _table(self) -> dynamodb.Table:
        """The table the local stack creates (approvals.local.resources.table_definition),
        so the key and the two indexes the code queries are the same in both places."""
        definition = table_definition("unused")
        types = {a["AttributeName"]: a["AttributeType"] for a in definition["AttributeDefinitions"]}
        kinds = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER}

        def key(schema: list[dict[str, str]], kind: str) -> dynamodb.Attribute | None:
            names = [k["AttributeName"] for k in schema if k["KeyType"] == kind]
            return dynamodb.Attribute(name=names[0], type=kinds[types[names[0]]]) if names else None

        retain = self._props.removal_policy == RemovalPolicy.RETAIN
        partition_key = key(definition["KeySchema"], "HASH")
        assert partition_key is not None
        table = dynamodb.Table(
            self,
            "Table",
            partition_key=partition_key,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=self._props.removal_policy,
            # The table is the audit trail: while it is retained, only a deliberate act deletes it.
            deletion_protection=retain,
        )
        for index in definition["GlobalSecondaryIndexes"]:
            table.add_global_secondary_index(
                index_name=index["IndexName"],
                partition_key=key(index["KeySchema"], "HASH"),
                sort_key=key(index["KeySchema"], "RANGE"),
                projection_type=dynamodb.ProjectionType[index["Projection"]["ProjectionType"]],
            )
        return table

    # -- workflows ---------------------------------------------------------------------------

    def _log_group(self, construct_id: str, name: str | None = None) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            construct_id,
            log_group_name=name,
            retention=self._log_retention,
            removal_policy=self._props.removal_policy,
        )

    def _state_machine(self, construct_id: str, definition: dict[str, Any]) -> sfn.StateMachine:
        log_group = self._log_group(
            f"{construct_id}Logs",
            # Step Functions' log delivery adds a resource policy per log group; under the
            # vendedlogs prefix one policy covers them all (AWS's advice). The stack name
            # and the construct's path keep two deployments in one account apart.
            name=re.sub(
                r"[^A-Za-z0-9_/.#-]",
                "-",
                f"/aws/vendedlogs/states/{cdk.Stack.of(self).stack_name}/{self.node.path}/{construct_id}",
            ),
        )
        machine = sfn.StateMachine(
            self,
            construct_id,
            # The very definition the local stack runs; only the queue URL is filled in.
            definition_body=sfn.DefinitionBody.from_string(json.dumps(definition)),
            definition_substitutions={"QueueUrl": self.queue.queue_url},
            state_machine_type=sfn.StateMachineType.STANDARD,  # waits up to a year; Express cannot
            logs=sfn.LogOptions(
                destination=log_group,
                level=sfn.LogLevel.ALL,
                # Execution data holds the task token and the request: it stays out of the logs.
                include_execution_data=False,
            ),
            tracing_enabled=True,
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self.queue.queue_arn])
        )
        acknowledge(
            machine.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Added by CDK for the state machine's logging and X-Ray tracing: CloudWatch Logs"
            " log-delivery actions and X-Ray PutTraceSegments/PutTelemetryRecords/GetSampling*"
            " support no resource-level permissions.",
        )
        return machine

    # -- the step teams add to their own state machines ---------------------------------------

    def approval_step(
        self, scope: Construct, construct_id: str, **options: Unpack[StepOptions]
    ) -> tasks.SqsSendMessage:
        """A chainable state that asks people for approval and waits for their decision.

        Put it anywhere in your own state machine's definition; attaching it grants the
        state machine's role ``sqs:SendMessage`` on this service's request queue, and nothing
        else. It succeeds with the decision, ``{"outcome": "approved" | "rejected", "votes":
        [...], "decided_at": ...}`` (at ``result_path``, JSONPath; as ``$states.result``,
        JSONata), and fails with the errors of :class:`ApprovalErrors`, which
        ``.add_catch(handler, errors=[...])`` takes.

        Each request field is fixed at synth time (``title="Deploy"``) or read from the
        execution's state: with JSONPath, ``sfn.JsonPath.string_at("$.title")`` (``list_at``
        for ``approvers``, ``number_at`` for ``quorum``, ``object_at`` for ``details``); with
        ``query_language=sfn.QueryLanguage.JSONATA``, a ``"{% $states.input.title %}"``
        expression.

        Args:
            scope: where the state is created (usually your stack).
            construct_id: the state's id, and its name in the definition.
            title: one line that says what is asked (at most 200 characters).
            approvers: the approvers' email addresses (at most 50); each must be in the
                service's approver directory (``ApprovalServiceProps.approvers``, or added
                with ``approvals approvers add``), or the request fails at once.
            requester: who asks (an address or a pipeline's name), shown to approvers.
            timeout: how long the approvers have: a ``Duration`` from 1 second to a year, or a
                JSONPath (``"$.timeout_seconds"``) / JSONata expression giving whole seconds.
                The task times out after it and the message carries the same value, so the
                links expire with the task.
            policy: ``"first_response"`` (default), ``"all"``, ``"quorum"`` or ``"sequence"``.
            quorum: with ``policy="quorum"``, how many approvals settle it.
            description: longer text for the page (plain text, at most 10,000 characters).
            details: key-value pairs shown to approvers as a table.
            fields: what each approver answers with their vote (``FieldSpec`` or its dict:
                ``{"name": "environment", "label": "Target environment", "type": "choice",
                "options": ["staging", "production"], "required": True}``); each vote's
                ``data`` in the decision holds the answers.
            remind_every: remind those who have not decided this often (a ``Duration``, or
                whole seconds read from the state), no oftener than the sweep runs.
            escalation: backups asked while the request stays unsettled (``Escalation`` or its
                dict: ``{"after_seconds": 3600, "approvers": ["lead@example.com"]}``).
            query_language: JSONPATH (default) or JSONATA, as your state machine uses.
            result_path: JSONPath only: where the decision goes in the state (default: it
                replaces the state's input).
            outputs: JSONata only: the state's output (default: the decision).
            assign: workflow variables to set from the decision.
            comment: the state's comment.
        """
        return approval_step(scope, construct_id, self.queue, **options)

    def _run_child_executions(self, machine: sfn.StateMachine) -> None:
        """What a Distributed Map needs: start its own state machine for each item, and watch
        and stop those child executions. (CDK adds this itself for a DistributedMap construct;
        this definition is written as ASL, shared with the local stack.)"""
        stack = cdk.Stack.of(self)
        children = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{machine.state_machine_name}/*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        # A policy of its own, not the role's default one: the state machine depends on that,
        # and this one names the state machine.
        policy = iam.Policy(
            self,
            f"{machine.node.id}DistributedMapPolicy",
            roles=[machine.role],
            statements=[
                iam.PolicyStatement(actions=["states:StartExecution"], resources=[machine.state_machine_arn]),
                iam.PolicyStatement(
                    actions=["states:DescribeExecution", "states:StopExecution"], resources=[children]
                ),
            ],
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
            f"<{stack.resolve(cast(sfn.CfnStateMachine, machine.node.default_child).logical_id)}.Name>/*]",
            "A Distributed Map's child executions are named by the service as they start: the"
            " policy names every execution of this one state machine, as AWS's guide for"
            " Distributed Map permissions does.",
        )

    # -- functions ---------------------------------------------------------------------------

    def _function(
        self,
        construct_id: str,
        handler: str,
        description: str,
        *,
        timeout: Duration,
        memory_mb: int = 256,
        environment: dict[str, str] | None = None,
    ) -> lambda_.Function:
        log_group = self._log_group(f"{construct_id}Logs")
        # A role of its own with no managed policy: it gets exactly the grants below.
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{construct_id}: only the calls its code makes",
        )
        log_group.grant_write(role)
        function = lambda_.Function(
            self,
            construct_id,
            description=description,
            runtime=self.lambda_runtime,
            architecture=self.lambda_architecture,
            handler=handler,
            code=lambda_.Code.from_asset(
                str(self._asset.path),
                asset_hash=self._asset.key,
                asset_hash_type=cdk.AssetHashType.CUSTOM,
            ),
            role=role,
            log_group=log_group,
            memory_size=memory_mb,
            timeout=timeout,
            environment={
                "APPROVALS_TABLE": self.table.table_name,
                # The secret's ARN, not its value: functions that need the key read it once.
                "APPROVALS_SIGNING_SECRET": self.signing_key.secret_arn,
                "APPROVALS_RETENTION_DAYS": str(self._props.retention_days),
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

    def _allow(self, function: lambda_.Function, actions: list[str], resources: list[str]) -> None:
        function.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=resources))

    def _executions_finding(self, machine: sfn.StateMachine) -> str:
        """How cdk-nag names the ARN of ``machine``'s executions."""
        logical_id = cdk.Stack.of(self).get_logical_id(cast(cdk.CfnElement, machine.node.default_child))
        return f"arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<{logical_id}.Name>:*"

    def _executions_of(self, machine: sfn.StateMachine) -> str:
        return cdk.Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{machine.state_machine_name}:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )

    def _grant_calls(self) -> None:
        """Each function's calls, as its code makes them (approvals.store, notify, tasks)."""
        table = self.table.table_arn

        def index(name: str) -> str:
            return f"{table}/index/{name}"

        open_index, execution_index = (
            index(i["IndexName"]) for i in table_definition("unused")["GlobalSecondaryIndexes"]
        )
        # Only the functions that sign or verify links read the key (at its first use).
        read_key = ["secretsmanager:GetSecretValue"]

        # Worker: store the approval (conditional put, then updates), email, and answer an
        # invalid request at once with SendTaskFailure. The SQS event source adds the receive side.
        self._allow(self.worker, ["dynamodb:PutItem", "dynamodb:UpdateItem"], [table])
        self._allow(self.worker, ["sns:Publish"], [self.topic.topic_arn])  # PublishBatch too
        self._allow(self.worker, ["states:SendTaskFailure"], [TASK_RESPONSE_RESOURCE])
        # Worker and sweeper: read the approver directory (who can be emailed).
        for function in (self.worker, self.sweeper):
            self._allow(function, ["sns:ListSubscriptionsByTopic"], [self.topic.topic_arn])
            self._allow(function, ["sns:GetSubscriptionAttributes"], ["*"])
        # API: read an approval for its page, record views and votes, answer the workflow.
        self._allow(self.api_function, ["dynamodb:GetItem", "dynamodb:UpdateItem"], [table])
        self._allow(self.api_function, ["states:SendTaskSuccess"], [TASK_RESPONSE_RESOURCE])
        self._allow(self.api_function, ["sns:Publish"], [self.topic.topic_arn])  # a sequence's next voter
        # When the service refuses a repeated answer after the task may have timed out, the
        # API and the sweeper read the execution's history to tell "taken" from "timed out".
        machines = [self.state_machine, self.fanout_state_machine]
        for function in (self.api_function, self.sweeper):
            self._allow(function, ["states:GetExecutionHistory"], [self._executions_of(m) for m in machines])
            for machine in machines:
                finding = f"AwsSolutions-IAM5[Resource::{self._executions_finding(machine)}]"
                acknowledge(function.role, finding, HISTORY_REASON)
        # Sweeper: walk the open index, close / remind / redeliver.
        self._allow(self.sweeper, ["dynamodb:Query"], [open_index])
        self._allow(self.sweeper, ["dynamodb:UpdateItem"], [table])
        self._allow(self.sweeper, ["sns:Publish"], [self.topic.topic_arn])
        # Success redelivers a decision; failure answers a task that outlived its links
        # (Approval.Expired) or whose approvers can no longer be emailed (Approval.DeliveryFailed).
        self._allow(
            self.sweeper, ["states:SendTaskSuccess", "states:SendTaskFailure"], [TASK_RESPONSE_RESOURCE]
        )
        # Execution ended: find the execution's approvals, close those still pending.
        self._allow(self.execution_ended_function, ["dynamodb:Query"], [execution_index])
        self._allow(self.execution_ended_function, ["dynamodb:UpdateItem"], [table])
        # Dead letters: fail the execution by name. The SQS event source adds the receive side.
        self._allow(self.dead_letter_function, ["states:SendTaskFailure"], [TASK_RESPONSE_RESOURCE])
        for function in (self.worker, self.api_function, self.sweeper):
            self._allow(function, read_key, [self.signing_key.secret_arn])
        for function in (self.api_function, self.dead_letter_function):
            acknowledge(function.role, "AwsSolutions-IAM5[Resource::*]", TASK_RESPONSE_REASON)
        for function in (self.worker, self.sweeper):
            acknowledge(
                function.role,
                "AwsSolutions-IAM5[Resource::*]",
                f"{TASK_RESPONSE_REASON} {DIRECTORY_READ_REASON}",
            )

    def _restrict_senders_and_subscribers(self) -> None:
        """Resource policies that hold whatever the account's identity policies allow: a
        wildcard ``sqs:SendMessage`` would let any principal make the genuine sender email
        real approvers with its own text, and a wildcard ``sns:Subscribe`` would let it add
        an unfiltered subscription and receive every approver's link."""
        deployment = cdk.Stack.of(self).synthesizer
        # CloudFormation creates the approvers' subscriptions with the bootstrap's execution
        # role; its ARN holds ${AWS::AccountId}-style placeholders, for Fn::Sub to fill in.
        deployer = (
            [cdk.Fn.sub(deployment.cloud_formation_execution_role_arn)]
            if isinstance(deployment, cdk.DefaultStackSynthesizer)
            else []
        )
        function_roles = [
            fn.role.role_arn for fn in (self.worker, self.sweeper, self.api_function) if fn.role is not None
        ]
        rules: list[tuple[sqs.Queue | sns.Topic, str, str, list[str]]] = [
            (
                self.queue,
                self.queue.queue_arn,
                "sqs:SendMessage",
                [
                    self.state_machine.role.role_arn,
                    self.fanout_state_machine.role.role_arn,
                    *self._props.sender_roles,
                ],
            ),
            (self.topic, self.topic.topic_arn, "sns:Publish", function_roles),
            (self.topic, self.topic.topic_arn, "sns:Subscribe", [*deployer, *self._props.subscriber_roles]),
        ]
        for owner, resource_arn, action, principals in rules:
            owner.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"Only{action.split(':')[1]}ByTheseRoles",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=[action],
                    resources=[resource_arn],
                    conditions={"ArnNotEquals": {"aws:PrincipalArn": principals}},
                )
            )

    # -- triggers ----------------------------------------------------------------------------

    def _api(self) -> apigateway.RestApi:
        access_logs = self._log_group("ApiAccessLogs")
        api = apigateway.RestApi(
            self,
            "Api",
            description="Approval links: GET shows a request, POST records a decision",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # API Gateway writes access logs through the account's CloudWatch role; this
            # creates it (one per account and region, shared by every REST API there), and
            # keeps it on teardown, since other APIs may rely on it.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigateway.StageOptions(
                stage_name="prod",
                # Anything else (an unknown path) shares the page views' limits.
                throttling_rate_limit=self._props.page_view_limits[0],
                throttling_burst_limit=self._props.page_view_limits[1],
                method_options={
                    f"{APPROVAL_PATH}/{method}": apigateway.MethodDeploymentOptions(
                        throttling_rate_limit=rate, throttling_burst_limit=burst
                    )
                    for method, (rate, burst) in (
                        ("GET", self._props.page_view_limits),
                        ("POST", self._props.vote_limits),
                    )
                },
                access_log_destination=apigateway.LogGroupLogDestination(access_logs),
                access_log_format=apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
                # No execution logging and no data trace: both can record the request's query
                # string, which holds the link's signature. Access logs (above) stand in.
                data_trace_enabled=False,
            ),
        )
        validator = api.add_request_validator(
            "PathValidator", validate_request_parameters=True, validate_request_body=False
        )
        approval = api.root.resource_for_path(APPROVAL_PATH)
        integration = apigateway.LambdaIntegration(self.api_function, allow_test_invoke=False)
        for method in ("GET", "POST"):
            added = approval.add_method(
                method,
                integration,
                request_validator=validator,
                # The query string is not required here: a link missing a part must reach the
                # function, which answers with a readable page rather than API Gateway's 400.
                request_parameters={"method.request.path.approval_id": True},
            )
            acknowledge(
                added,
                "AwsSolutions-APIG4",
                "Approvers are people following an emailed link, not AWS principals or app users:"
                " the function authorizes each request by the link's HMAC signature, expiry and approver.",
            )
            acknowledge(
                added,
                "AwsSolutions-COG4",
                "No Cognito user pool: approvers are authorized by the signed link they were emailed.",
            )
        acknowledge(
            api.node.default_child,
            "AwsSolutions-APIG2",
            "The path parameter is validated by API Gateway; the link's fields and the form are"
            " validated by the function, which answers malformed input with a readable page.",
        )
        if self._props.rate_limit_per_ip is None:
            acknowledge(
                api.deployment_stage,
                "AwsSolutions-APIG3",
                "No WAF unless -c rateLimitPerIp is given: every request must carry an HMAC-signed"
                " link, each method is throttled, and a web ACL adds a fixed monthly cost.",
            )
        else:
            self._rate_limit_per_ip(api.deployment_stage, self._props.rate_limit_per_ip)
        acknowledge(
            api.deployment_stage,
            "AwsSolutions-APIG6",
            "Execution logging is off on purpose: it can record the query string, which holds the"
            " link's signature. Access logs, in a format without the query string, are on.",
        )
        acknowledge(
            api.node.find_child("CloudWatchRole"),
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "The account-level role API Gateway needs to write access logs; AWS's managed policy"
            " is the documented one for it, and it serves every REST API in the account.",
        )
        return api

    def _rate_limit_per_ip(self, stage: apigateway.Stage, limit: int) -> None:
        """A web ACL on the stage that blocks an address sending more than ``limit``
        requests in 5 minutes: one client cannot starve the approvers."""
        name = re.sub(r"[^A-Za-z0-9_-]", "-", f"{cdk.Stack.of(self).stack_name}-approval-api")[:128]

        def visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
            )

        acl = wafv2.CfnWebACL(
            self,
            "ApiWebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility(name),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="RateLimitPerIp",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            aggregate_key_type="IP", limit=limit
                        )
                    ),
                    visibility_config=visibility(f"{name}-rate-limit-per-ip"),
                )
            ],
        )
        wafv2.CfnWebACLAssociation(
            self, "ApiWebAclAssociation", resource_arn=stage.stage_arn, web_acl_arn=acl.attr_arn
        )

    def _schedule_sweep(self) -> None:
        role = iam.Role(
            self,
            "SweepScheduleRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                # Only schedules of this account may use the role (confused deputy).
                conditions={"StringEquals": {"aws:SourceAccount": cdk.Stack.of(self).account}},
            ),
            description="Lets EventBridge Scheduler invoke the sweeper, and nothing else",
        )
        self.sweep_schedule = scheduler.Schedule(
            self,
            "SweepSchedule",
            description="Runs the approvals sweep: expiry, reminders, redelivery",
            schedule=scheduler.ScheduleExpression.rate(Duration.minutes(self._props.sweep_minutes)),
            target=scheduler_targets.LambdaInvoke(
                self.sweeper,
                role=role,
                input=scheduler.ScheduleTargetInput.from_object({}),
                # A missed sweep is simply done by the next one.
                retry_attempts=0,
            ),
        )
        sweeper_function = cast(lambda_.CfnFunction, self.sweeper.node.default_child)
        sweeper = cdk.Stack.of(self).resolve(sweeper_function.logical_id)
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{sweeper}.Arn>:*]",
            "CDK's Lambda target grants lambda:InvokeFunction on the sweeper and its versions"
            " (<arn>:*); the role can invoke that one function and nothing else.",
        )

    def _watch_executions(self) -> None:
        self.execution_ended_rule = events.Rule(
            self,
            "ExecutionEndedRule",
            description="An execution failed, timed out or was stopped: cancel its pending approvals",
            # Every state machine of the account and region: any of them may ask for approvals
            # (the step, or a hand-written Task), and an execution that asked none costs one
            # query of the execution index.
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={"status": ["FAILED", "TIMED_OUT", "ABORTED"]},
            ),
            targets=[
                events_targets.LambdaFunction(
                    self.execution_ended_function,
                    retry_attempts=10,
                    max_event_age=Duration.hours(24),
                )
            ],
        )

    # -- alarms ------------------------------------------------------------------------------

    def _alarm_topic(self) -> sns.Topic:
        """Where every alarm notifies: email if ``alarm_email`` is given; teams may subscribe
        their own pager or chat to it (output AlarmTopicArn)."""
        # CloudWatch cannot publish to a topic under the AWS managed key: this key lets it.
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Encrypts the approval gate's alarm notifications",
            enable_key_rotation=True,
            removal_policy=self._props.removal_policy,
        )
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        topic = sns.Topic(
            self, "AlarmTopic", display_name="Approvals alarms", enforce_ssl=True, master_key=key
        )
        if self._props.alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(self._props.alarm_email))
        return topic

    def _alarms(self) -> list[cloudwatch.Alarm]:
        five_minutes = Duration.minutes(5)
        self.alarm_topic = self._alarm_topic()
        notify = cloudwatch_actions.SnsAction(self.alarm_topic)

        def alarm(
            construct_id: str, metric: cloudwatch.IMetric, description: str, threshold: float = 1
        ) -> cloudwatch.Alarm:
            created = cloudwatch.Alarm(
                self,
                construct_id,
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            created.add_alarm_action(notify)
            return created

        def counted(name: str) -> cloudwatch.Metric:
            """A count the functions write for the requests of every workflow using the service."""
            return cloudwatch.Metric(
                namespace=metrics.NAMESPACE,
                metric_name=name,
                dimensions_map={metrics.DIMENSION: self.table.table_name},
                period=five_minutes,
                statistic="Sum",
            )

        return [
            alarm(
                "InvalidRequestsAlarm",
                counted(metrics.INVALID_REQUESTS),
                "A workflow's approval request was refused as invalid (Approval.InvalidRequest):"
                " the worker's logs name the cause",
            ),
            alarm(
                "DeliveriesFailedAlarm",
                counted(metrics.DELIVERIES_FAILED),
                "An approval request could not be emailed and its execution was failed"
                " (Approval.DeliveryFailed): see the worker's logs",
            ),
            alarm(
                "DeadLetterQueueDepthAlarm",
                self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=five_minutes, statistic="Maximum"
                ),
                "Approval requests are in the dead-letter queue: its handler could not fail their"
                " executions (see the DeadLetterFunction logs)",
            ),
            alarm(
                "WorkerErrorsAlarm",
                self.worker.metric_errors(period=five_minutes, statistic="Sum"),
                "The approval worker failed invocations (requests are retried, then dead-lettered)",
            ),
            alarm(
                "DeadLetterHandlerErrorsAlarm",
                self.dead_letter_function.metric_errors(period=five_minutes, statistic="Sum"),
                "The dead-letter handler failed: executions may be left waiting",
            ),
            alarm(
                "ApprovalExecutionsFailedAlarm",
                self.state_machine.metric_failed(period=five_minutes, statistic="Sum"),
                "Approval executions failed (invalid or undeliverable requests)",
            ),
            alarm(
                "EmailsNobodyTookAlarm",
                # Each email names one approver, whose subscription alone takes it: a message
                # published and neither delivered nor failed was filtered out by every one.
                cloudwatch.MathExpression(
                    expression="FILL(published, 0) - FILL(delivered, 0) - FILL(failed, 0)",
                    using_metrics={
                        "published": self.topic.metric_number_of_messages_published(
                            period=five_minutes, statistic="Sum"
                        ),
                        "delivered": self.topic.metric_number_of_notifications_delivered(
                            period=five_minutes, statistic="Sum"
                        ),
                        "failed": self.topic.metric_number_of_notifications_failed(
                            period=five_minutes, statistic="Sum"
                        ),
                    },
                    label="Emails no subscription took",
                    period=five_minutes,
                ),
                "Approval emails went to nobody: an approver's subscription was removed or unconfirmed"
                " after the worker last read the directory (see `approvals approvers list`)",
            ),
            alarm(
                "FanoutExecutionsFailedAlarm",
                self.fanout_state_machine.metric_failed(period=five_minutes, statistic="Sum"),
                "Fan-out approval executions failed",
            ),
        ]
