"""`ApprovalService`: every AWS resource of the approval gate, as one reusable construct.

The product's stack (approvals_cdk/stack.py) instantiates it once; a team can put the same
construct into its own CDK app, and give any state machine the step that uses it
(:meth:`ApprovalService.approval_step`). The wiring, one part per module:

    state machine --sqs:SendMessage.waitForTaskToken--> request queue --> worker λ --> SNS (email,
    one filtered subscription per approver) ... approver --> REST API --> approval λ --> SendTaskSuccess
    request queue --(after a few receives)--> dead-letter queue --> dead-letter λ --> SendTaskFailure
    EventBridge Scheduler --> sweeper λ (expiry, reminders, redelivery)
    EventBridge rule (execution failed / timed out / aborted) --> execution-ended λ (cancel)

    directory.py     ApproverDirectory: the email topic and its subscriptions
    api.py           ApprovalApi: the REST API and its function (+ WAF, SnapStart)
    queue_worker.py  QueueAndWorker: the request queue, the worker, the dead letters
    state_machines.py  the product's own workflows
    sweeps.py        Sweeps: the scheduled sweep and the execution-ended rule
    alarms.py        Alarms: the alarm topic and the alarms
    shared.py        the function factory, grants and cdk-nag acknowledgements they share

IAM is least privilege: each function has its own role holding only the calls its code
makes, on its own resources. Every cdk-nag finding that remains is acknowledged where the
resource is made, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Unpack

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from approvals import statemachine
from approvals_cdk import config, packaging, shared
from approvals_cdk.alarms import Alarms
from approvals_cdk.api import ApprovalApi
from approvals_cdk.config import (
    DEFAULT_LOG_RETENTION_DAYS,
    DEFAULT_REMINDERS,
    DEFAULT_RETENTION_DAYS,
    DEFAULT_SWEEP_MINUTES,
    LOG_RETENTION,
)
from approvals_cdk.directory import ApproverDirectory
from approvals_cdk.fanout import FanoutMap
from approvals_cdk.queue_worker import QueueAndWorker
from approvals_cdk.state_machines import StateMachines
from approvals_cdk.step import ApprovalTask, DeliveryConfirmation, StepOptions
from approvals_cdk.sweeps import Sweeps
from approvals_cdk.table import approvals_table


@dataclass(frozen=True)
class ApprovalServiceProps:
    """How the service is deployed. ``approvers`` are the addresses subscribed at deploy time
    (each confirms it once); more are added without a deploy by `approvals approvers add`. A
    request may only name approvers in that directory."""

    approvers: Sequence[str] = ()  # email addresses (lowercased, as the worker compares them)
    # How long a request that names no timeout waits: whole seconds, at most a year.
    default_timeout: Duration = field(
        default_factory=lambda: Duration.seconds(statemachine.DEFAULT_TIMEOUT_SECONDS)
    )
    # How long an approval is kept after it expires (table TTL): whole days, at most 3650.
    approval_retention: Duration = field(default_factory=lambda: Duration.days(DEFAULT_RETENTION_DAYS))
    log_retention: logs.RetentionDays = LOG_RETENTION[DEFAULT_LOG_RETENTION_DAYS]
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
    # Reminders and expiry are as precise as this: whole minutes, from 1 to 60.
    sweep_interval: Duration = field(default_factory=lambda: Duration.minutes(DEFAULT_SWEEP_MINUTES))
    max_receive_count: int = 3  # deliveries of a request before it is dead-lettered
    # Requests per second (steady, burst), per method: each method has a bucket of its own,
    # so a flood of page views cannot use up the votes'.
    page_view_limits: tuple[float, int] = (10, 20)
    vote_limits: tuple[float, int] = (10, 20)
    # An AWS WAF rate-based rule: requests per 5 minutes from one address; None for no WAF.
    rate_limit_per_ip: int | None = None
    # Lambda SnapStart for the approval function: API Gateway invokes an alias of its latest
    # published version, which starts from a snapshot instead of importing the handler.
    snap_start: bool = False
    asset: packaging.Asset | None = None  # the Lambda code; built (or reused) if not given
    worker_timeout: Duration = field(default_factory=lambda: Duration.seconds(30))
    # Approvals of one fan-out in flight at once (a Distributed Map's child executions).
    fanout_max_concurrency: int = statemachine.MAX_FANOUT_CONCURRENCY


def _checked(props: ApprovalServiceProps) -> ApprovalServiceProps:
    """The props as the service uses them (addresses lowercased, as the worker compares
    them), or one ConfigError naming every prop that is wrong: the checks of `-c` context."""
    problems = config.Problems()
    approvers = problems.check(config.parse_approvers, props.approvers, '["alice@example.com"]', default=())
    for name, (unit, bounds) in config.DURATION_PROPS.items():
        problems.check(config.whole_duration, name, getattr(props, name), unit, *bounds)
    problems.check(config.log_retention, "log_retention", props.log_retention)
    reminders = problems.check(config.parse_reminders, props.reminders, default=())
    alarm_email = props.alarm_email and problems.check(config.email, "alarm_email", props.alarm_email)
    for name, (unit, bounds) in config.COUNT_PROPS.items():
        if getattr(props, name) is not None:
            problems.check(config.in_range, name, getattr(props, name), *bounds, unit)
    problems.raise_any()
    return replace(props, approvers=approvers, reminders=reminders, alarm_email=alarm_email)


class ApprovalService(Construct):
    """The approval gate's resources (see the module docstring for the wiring).

    One serves every workflow of an account and region: give each an :meth:`approval_step`. Its
    attributes expose what a team may wire further: ``queue`` (the request queue a
    hand-written Task sends to), ``api`` (the links' host), ``table``, ``topic``,
    ``alarm_topic``, and the product's own ``state_machine`` and ``fanout_state_machine``.
    """

    def __init__(self, scope: Construct, construct_id: str, props: ApprovalServiceProps) -> None:
        super().__init__(scope, construct_id)
        props = _checked(props)
        self.lambda_runtime = shared.LAMBDA_RUNTIME
        self.lambda_architecture = shared.LAMBDA_ARCHITECTURE

        self.signing_key = secretsmanager.Secret(
            self,
            "SigningKey",
            description="HMAC key that signs the approval links (read by the functions at cold start)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
        )
        shared.acknowledge(
            self.signing_key,
            "AwsSolutions-SMG4",
            "The key signs links that stay valid until their approval expires (up to a year);"
            " a scheduled rotation would retire keys whose links are still in flight. Operators"
            " rotate it with `approvals rotate-key`: links name their key, and the previous key"
            " still verifies.",
        )
        self.table = approvals_table(self, props.removal_policy)
        factory = shared.Factory(
            self,
            asset=props.asset or packaging.build(),
            log_retention=props.log_retention,
            removal_policy=props.removal_policy,
            retention_days=int(props.approval_retention.to_days()),
            table=self.table,
            signing_key=self.signing_key,
        )
        directory = ApproverDirectory(self, props.approvers)
        self.topic = directory.topic

        approval_api = ApprovalApi(
            self,
            factory,
            self.table,
            self.topic.topic_arn,
            page_view_limits=props.page_view_limits,
            vote_limits=props.vote_limits,
            rate_limit_per_ip=props.rate_limit_per_ip,
            snap_start=props.snap_start,
        )
        self.api_function, self.api = approval_api.function, approval_api.api
        self.api_alias = approval_api.alias  # what API Gateway invokes with SnapStart (else None)
        queue_and_worker = QueueAndWorker(
            self,
            factory,
            self.table,
            directory,
            api_url=self.api.url,
            worker_timeout=props.worker_timeout,
            max_receive_count=props.max_receive_count,
            allow_self_approval=props.allow_self_approval,
            sweep_seconds=int(props.sweep_interval.to_seconds()),
        )
        self.queue, self.dead_letter_queue = queue_and_worker.queue, queue_and_worker.dead_letter_queue
        self.worker = queue_and_worker.worker
        self.dead_letter_function = queue_and_worker.dead_letter_function
        self.fanout_bucket = self._fanout_bucket(props)
        machines = StateMachines(
            self,
            factory,
            self.queue,
            self.table,
            self.fanout_bucket,
            default_timeout_seconds=int(props.default_timeout.to_seconds()),
            fanout_max_concurrency=props.fanout_max_concurrency,
        )
        self.state_machine, self.fanout_state_machine = machines.approval, machines.fanout
        sweeps = Sweeps(
            self,
            factory,
            self.table,
            directory,
            [machines.approval, machines.fanout],
            api_url=self.api.url,
            reminders=props.reminders,
            sweep_minutes=int(props.sweep_interval.to_minutes()),
        )
        self.sweeper, self.sweep_schedule = sweeps.sweeper, sweeps.sweep_schedule
        self.execution_ended_function = sweeps.execution_ended_function
        self.execution_ended_rule = sweeps.execution_ended_rule

        # Grants that span the parts. The API reads the history of the state machines' executions
        # (which need the queue, whose worker needs the API's URL, so they come after the API).
        shared.grant_history(self.api_function, [machines.approval, machines.fanout])
        # Only the functions that sign or verify links read the key (at its first use).
        for function in (self.worker, self.api_function, self.sweeper):
            shared.allow(function, ["secretsmanager:GetSecretValue"], [self.signing_key.secret_arn])
        # Resource policies that hold whatever the account's identity policies allow.
        queue_and_worker.restrict_senders(
            [machines.approval.role.role_arn, machines.fanout.role.role_arn, *props.sender_roles]
        )
        directory.restrict(
            publishers=[self.worker, self.sweeper, self.api_function], subscriber_roles=props.subscriber_roles
        )

        alarms = Alarms(
            self,
            table_name=self.table.table_name,
            queue_and_worker=queue_and_worker,
            email_topic=self.topic,
            approval=machines.approval,
            fanout=machines.fanout,
            alarm_email=props.alarm_email,
            removal_policy=props.removal_policy,
        )
        self.alarm_topic, self.alarms = alarms.topic, alarms.alarms

    def _fanout_bucket(self, props: ApprovalServiceProps) -> s3.Bucket:
        """Where fan-outs write their decisions (a state holds at most 256 KiB) and read
        requests from (``requests/``); kept as long as the approvals are."""
        bucket = s3.Bucket(
            self,
            "FanoutBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            removal_policy=props.removal_policy,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(props.approval_retention.to_days()))],
        )
        shared.acknowledge(
            bucket,
            "AwsSolutions-S1",
            "Only the state machines write here (their results) and read (their requests);"
            " Step Functions' own history and CloudTrail record who started what.",
        )
        return bucket

    # -- the step teams add to their own state machines ---------------------------------------

    def approval_step(
        self, scope: Construct, construct_id: str, **options: Unpack[StepOptions]
    ) -> ApprovalTask:
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
            result_selector, input_path, output_path: JSONPath only, as on any Task.
            assign: workflow variables to set from the decision.
            comment: the state's comment.
            state_name: the state's name in the definition (default: ``construct_id``).
            heartbeat_timeout: the service sends no heartbeats: the step fails with
                ``States.HeartbeatTimeout`` once this passes undecided (leave it unset).
            credentials: a role the state machine assumes to send the request (another
                account's workflow; that role needs the grant).

        A misspelt keyword is a TypeError. ``ApprovalTask.json_path`` / ``.jsonata`` make
        the same state from a queue, typed for one query language.
        """
        return ApprovalTask(scope, construct_id, queue=self.queue, **options)

    def confirmation_step(
        self, scope: Construct, construct_id: str, decision_path: str = "$"
    ) -> DeliveryConfirmation:
        """The state to chain right after an approval step (JSONPath): it tells the service
        the workflow has the decision (one conditional write on the table, which attaching
        it grants), so that the sweep need not confirm it with two calls a minute later.
        ``decision_path`` is the step's ``result_path``. Its failure never fails the workflow.
        """
        return DeliveryConfirmation(scope, construct_id, self.table, decision_path)

    def fanout_step(
        self,
        scope: Construct,
        construct_id: str,
        *,
        items_path: str | None = None,
        items_key: str | None = None,
        item_selector: Mapping[str, Any] | None = None,
        max_concurrency: int = 1_000,
        results_prefix: str | None = None,
        result_path: str | None = None,
    ) -> FanoutMap:
        """A Distributed Map to put around :meth:`approval_step` (``.item_processor(chain)``)
        that handles any number of items: its state never grows with them.

        Its items come from the state (``items_path``, a JSONPath to an array) or from a
        JSON array in this service's fan-out bucket (``items_key``, a key under
        ``requests/``). Every item's result goes to that bucket (``ResultWriter``:
        ``manifest.json`` and the result files under ``results_prefix/MAP-RUN-ID/``, read
        back with ``approvals.fanout.decisions``), and the Map's own output is only
        ``{"MapRunArn": ..., "ResultWriterDetails": {"Bucket": ..., "Key": manifest}}``. Its
        state machine is granted what that takes and nothing more: ``s3:PutObject`` under the
        prefix, ``s3:GetObject`` on the key, and starting, watching and stopping its own
        child executions (a standard child per item: an approval may wait a year).

        A Map whose ``ResultPath`` adds every decision to the state (the old pattern) fails
        with ``States.DataLimitExceeded`` once the state passes 256 KiB: about 500 items of
        a refund-sized request and decision.
        """
        if (items_path is None) == (items_key is None):
            raise ValueError("fanout_step: give the items either by items_path or by items_key")
        if items_key is not None and not items_key.startswith(statemachine.FANOUT_REQUESTS_PREFIX):
            raise ValueError(f"fanout_step: items_key must be under {statemachine.FANOUT_REQUESTS_PREFIX}")
        prefix = results_prefix or f"{statemachine.FANOUT_RESULTS_PREFIX}-{construct_id}"
        return FanoutMap(
            scope,
            construct_id,
            bucket=self.fanout_bucket,
            results_prefix=prefix,
            items_key=items_key,
            items_path=items_path,
            item_selector=item_selector,
            max_concurrency=max_concurrency,
            map_execution_type=sfn.StateMachineType.STANDARD,
            result_path=result_path,
        )
