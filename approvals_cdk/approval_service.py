"""`ApprovalService`: every AWS resource of the approval gate, as one reusable construct.

The product's stack (approvals_cdk/stack.py) instantiates it once; a team can put the same
construct into its own CDK app, and give any state machine the step that uses it
(:meth:`ApprovalService.approval_step`), or use one deployed elsewhere
(:meth:`ApprovalService.from_attributes`). The wiring, one part per module:

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
    interface.py     IApprovalService: the step, grants and metrics, for this service or one
                     deployed elsewhere (from_attributes)
    sharing.py       senders of other stacks and accounts, whose executions are watched

IAM is least privilege: each function has its own role holding only the calls its code
makes, on its own resources. Every cdk-nag finding that remains is acknowledged where the
resource is made, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jsii
from aws_cdk import Duration, IStableListProducer, Lazy, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from approvals import statemachine
from approvals.models import DEFAULT_TIMEOUT_SECONDS, Identity
from approvals_cdk import config, packaging, shared
from approvals_cdk.alarms import Alarms
from approvals_cdk.api import ApprovalApi
from approvals_cdk.config import (
    DEFAULT_DIGEST_SECONDS,
    DEFAULT_LOG_RETENTION_DAYS,
    DEFAULT_REMINDERS,
    DEFAULT_RETENTION_DAYS,
    DEFAULT_SWEEP_MINUTES,
    DEFAULT_WORKER_MAX_CONCURRENCY,
    LOG_RETENTION,
)
from approvals_cdk.directory import ApproverDirectory
from approvals_cdk.fanout import FanoutMap
from approvals_cdk.interface import ApprovalServiceBase, IApprovalService, ImportedApprovalService
from approvals_cdk.queue_worker import MAX_RECEIVE_COUNT, QueueAndWorker
from approvals_cdk.sharing import ExecutionEventsBus, Sender, WatchExecutions, check_accounts, sender_arn
from approvals_cdk.state_machines import StateMachines
from approvals_cdk.sweeps import Sweeps
from approvals_cdk.table import approvals_table


@dataclass(frozen=True)
class ApprovalServiceProps:
    """How the service is deployed. ``approvers`` are the addresses subscribed at deploy time
    (each confirms it once); more are added without a deploy by `approvals approvers add`. A
    request may only name approvers in that directory."""

    approvers: Sequence[str] = ()  # email addresses (lowercased, as the worker compares them)
    # How long a request that names no timeout waits: whole seconds, at most a year.
    default_timeout: Duration = field(default_factory=lambda: Duration.seconds(DEFAULT_TIMEOUT_SECONDS))
    # How long an approval is kept after it expires (table TTL): whole days, at most 3650.
    approval_retention: Duration = field(default_factory=lambda: Duration.days(DEFAULT_RETENTION_DAYS))
    log_retention: logs.RetentionDays = LOG_RETENTION[DEFAULT_LOG_RETENTION_DAYS]
    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN  # for the table and the log groups
    reminders: Sequence[str] = DEFAULT_REMINDERS
    alarm_email: str | None = None  # subscribed to the alarm topic, if given
    # Besides the service's own state machines, the roles of workflows that send approval
    # requests to the queue: ARNs, or roles (state machines) of any stack; a role of another
    # stack needs a role_name (approvals_cdk.sharing.sender_arn says why).
    sender_roles: Sequence[Sender] = ()
    # Other accounts whose workflows may send requests (as their own IAM policies allow);
    # they forward their executions' ends to the service's execution events bus.
    allowed_accounts: Sequence[str] = ()
    # Whose ended executions cancel their approvals: the stack's state machines (one service
    # per stack), the account's (one shared service), or none.
    watch_executions: WatchExecutions = WatchExecutions.STACK
    # The account's API Gateway CloudWatch role, which access logs need: True makes and sets
    # it, False leaves it to another stack, None follows the CDK's feature flag
    # @aws-cdk/aws-apigateway:disableCloudWatchRole (absent: made).
    api_gateway_cloud_watch_role: bool | None = None
    # Where the alarms notify: a topic of your own, else one the service makes (and mails
    # alarm_email); no alarms at all with create_alarms=False.
    alarm_topic: sns.ITopic | None = None
    create_alarms: bool = True
    # The operators' roles (ARNs): besides the deployment itself, the only ones that may
    # subscribe to the email topic (`approvals approvers add`), and besides the service's own
    # functions, the only ones that may publish to it (`approvals reassign` emails the new
    # approver with the operator's credentials).
    operator_roles: Sequence[str] = ()
    allow_self_approval: bool = False  # a requester listed as an approver may approve
    # Reminders and expiry are as precise as this: whole minutes, from 1 to 60.
    sweep_interval: Duration = field(default_factory=lambda: Duration.minutes(DEFAULT_SWEEP_MINUTES))
    # One email per approver: requests arriving within this long of an approver's last email
    # wait to go together in one digest, sent when it closes (by the sweep or the next
    # batch); whole seconds, 0 to 3,600 (0: only a worker batch's own requests go together).
    # A request with "digest": false is emailed at once, on its own, whatever this is.
    digest_window: Duration = field(default_factory=lambda: Duration.seconds(DEFAULT_DIGEST_SECONDS))
    max_receive_count: int = MAX_RECEIVE_COUNT  # deliveries of a request before it is dead-lettered
    # The worker's invocations at once (2 to 1,000): a burst waits in the queue beyond it.
    # The default fits a new account's concurrency quota of 10; see docs/scaling.md.
    worker_max_concurrency: int = DEFAULT_WORKER_MAX_CONCURRENCY
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
    # Every function's code, built your own way (from your own lock file, in CI): it must hold
    # the project's packages and their dependencies for the functions' runtime and
    # architecture (ApprovalService.lambda_runtime / lambda_architecture). Nothing is built then.
    code: lambda_.Code | None = None
    worker_timeout: Duration = field(default_factory=lambda: Duration.seconds(30))
    # Approvals of one fan-out in flight at once (a Distributed Map's child executions).
    fanout_max_concurrency: int = statemachine.MAX_FANOUT_CONCURRENCY
    # Sign-in (approvals.signin): "sign-in" requires it of every request; with "link" a
    # request may still ask for it ("identity": "sign-in") where an issuer is given. The
    # client secret: a secret of yours, or one the service makes for you to put it in.
    identity: Identity = "link"
    oidc_issuer: str | None = None  # https://..., as the provider's ID tokens name it
    oidc_client_id: str | None = None
    oidc_client_secret: secretsmanager.ISecret | None = None
    # The ID token's claim that must equal the approver: "email" (which must then be
    # verified, email_verified), or one your provider controls, such as Entra ID's "upn".
    oidc_email_claim: str = "email"


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
    problems.check(config.identity, "identity", props.identity)
    if props.oidc_issuer is not None:
        problems.check(config.oidc_issuer, "oidc_issuer", props.oidc_issuer)
    if props.oidc_client_id is not None:
        problems.check(config.oidc_client_id, "oidc_client_id", props.oidc_client_id)
    problems.check(config.email_claim, "oidc_email_claim", props.oidc_email_claim)
    problems.check(
        config.check_sign_in,
        props.identity,
        props.oidc_issuer,
        props.oidc_client_id,
        ("identity", "oidc_issuer", "oidc_client_id"),
    )
    problems.raise_any()
    return replace(props, approvers=approvers, reminders=reminders, alarm_email=alarm_email)


def _sign_in_environment(props: ApprovalServiceProps) -> dict[str, str]:
    """What the worker, the API and the sweeper read of sign-in (nothing where it is not set up)."""
    environment: dict[str, str] = {"APPROVALS_IDENTITY": props.identity} if props.identity != "link" else {}
    if props.oidc_issuer and props.oidc_client_id:
        environment |= {
            "APPROVALS_OIDC_ISSUER": config.oidc_issuer("oidc_issuer", props.oidc_issuer),
            "APPROVALS_OIDC_CLIENT_ID": props.oidc_client_id,
        }
        if props.oidc_email_claim != "email":
            environment["APPROVALS_OIDC_EMAIL_CLAIM"] = props.oidc_email_claim
    return environment


class ApprovalService(ApprovalServiceBase):
    """The approval gate's resources (see the module docstring for the wiring).

    One serves the workflows of its stack, or of every stack and account it is shared with
    (``from_attributes`` in theirs): give each an :meth:`approval_step`. Its attributes
    expose what a team may wire further: ``queue`` (the request queue a hand-written Task
    sends to), ``api`` (the links' host), ``table``, ``topic``, ``alarm_topic`` (None without
    alarms), ``execution_events_bus`` (with ``allowed_accounts``), and the product's own
    ``state_machine`` and ``fanout_state_machine``.
    """

    queue: sqs.Queue
    table: dynamodb.Table

    @staticmethod
    def from_attributes(
        scope: Construct,
        construct_id: str,
        *,
        queue_arn: str,
        table_arn: str,
        queue_key_arn: str | None = None,
    ) -> IApprovalService:
        """A service deployed by another stack, app or account, named by its stack's outputs
        (``QueueArn``, ``TableArn``; in the same account and region ``cdk.Fn.import_value``
        reads their exports). The step, the grants and the metrics work
        as on a service of your own; the service's stack must let your roles send
        (``sender_roles``, or ``allowed_accounts`` for another account). ``queue_key_arn``
        only if the queue is encrypted with a KMS key (the service's own uses SSE-SQS)."""
        return ImportedApprovalService(
            scope,
            construct_id,
            queue_arn=queue_arn,
            table_arn=table_arn,
            queue_key_arn=queue_key_arn,
        )

    def __init__(self, scope: Construct, construct_id: str, props: ApprovalServiceProps) -> None:
        super().__init__(scope, construct_id)
        props = _checked(props)
        check_accounts(self, props.allowed_accounts)
        if props.alarm_email and (props.alarm_topic or not props.create_alarms):
            raise ValueError(
                "alarm_email is subscribed to the service's own alarm topic: with alarm_topic"
                " (subscribe to yours) or create_alarms=False there is none"
            )
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
            code=props.code or shared.asset_code(props.asset or packaging.build()),
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
            cloud_watch_role=props.api_gateway_cloud_watch_role,
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
            max_concurrency=props.worker_max_concurrency,
            allow_self_approval=props.allow_self_approval,
            sweep_seconds=int(props.sweep_interval.to_seconds()),
            digest_seconds=int(props.digest_window.to_seconds()),
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
            api_url=self.api.url,
            reminders=props.reminders,
            sweep_minutes=int(props.sweep_interval.to_minutes()),
            digest_seconds=int(props.digest_window.to_seconds()),
            watch_executions=props.watch_executions,
        )
        self.watch_executions = props.watch_executions
        self.sweeper, self.sweep_schedule = sweeps.sweeper, sweeps.sweep_schedule
        self.execution_ended_function = sweeps.execution_ended_function
        self.execution_ended_rule = sweeps.execution_ended_rule
        # Other accounts' executions' ends reach this account on a bus of the service's own.
        self.execution_events_bus = (
            ExecutionEventsBus(
                self, "ExecutionEvents", self.execution_ended_function, props.allowed_accounts
            ).bus
            if props.allowed_accounts
            else None
        )

        # Grants that span the parts. The API reads the history of the executions that ask.
        shared.grant_history(self.api_function)
        # Only the functions that sign or verify links read the key (at its first use).
        for function in (self.worker, self.api_function, self.sweeper):
            shared.allow(function, ["secretsmanager:GetSecretValue"], [self.signing_key.secret_arn])
        # Resource policies that hold whatever the account's identity policies allow. Who
        # may send is known only once the app is built: the roles given requests to send.
        self._senders = [
            machines.approval.role.role_arn,
            machines.fanout.role.role_arn,
            *(sender_arn(self, sender) for sender in props.sender_roles),
        ]
        queue_and_worker.restrict_senders(Lazy.list(_RequestSenders(self)), props.allowed_accounts)
        directory.restrict(
            publishers=[self.worker, self.sweeper, self.api_function], operator_roles=props.operator_roles
        )
        self.oidc_client_secret = self._sign_in(props, approval_api)

        self.alarm_topic: sns.ITopic | None = None
        self.alarms: list[cloudwatch.Alarm] = []
        if props.create_alarms:
            alarms = Alarms(
                self,
                table_name=self.table.table_name,
                queue_and_worker=queue_and_worker,
                email_topic=self.topic,
                approval=machines.approval,
                fanout=machines.fanout,
                alarm_email=props.alarm_email,
                removal_policy=props.removal_policy,
                topic=props.alarm_topic,
            )
            self.alarm_topic, self.alarms = alarms.topic, alarms.alarms

    def _sign_in(
        self, props: ApprovalServiceProps, approval_api: ApprovalApi
    ) -> secretsmanager.ISecret | None:
        """Sign-in's settings for the worker (which refuses a request asking for sign-in
        where there is no provider), the API (the relying party) and the sweeper (whose
        bulk jobs vote under the deployment's rule, proven by the sign-in a job keeps while
        the deployment trusts its issuer, and whose digests say sign-in will be asked), its
        routes, and the client secret, which only the API reads."""
        for function in (self.worker, self.api_function, self.sweeper):
            for name, value in _sign_in_environment(props).items():
                function.add_environment(name, value)
        if not props.oidc_issuer:
            return None
        secret = props.oidc_client_secret
        if secret is None:
            made = secretsmanager.Secret(
                self,
                "OidcClientSecret",
                description="The approval API's client secret at the OpenID Connect provider: put the"
                " value the provider issued (aws secretsmanager put-secret-value); read at the first sign-in",
            )
            shared.acknowledge(
                made,
                "AwsSolutions-SMG4",
                "The identity provider issues and rotates the client secret; the operator puts it here.",
            )
            secret = made
        self.api_function.add_environment("APPROVALS_OIDC_CLIENT_SECRET", secret.secret_arn)
        shared.allow(self.api_function, ["secretsmanager:GetSecretValue"], [secret.secret_arn])
        approval_api.add_sign_in_routes()
        return secret

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

    # -- who may send requests ------------------------------------------------------------------

    def grant_send_requests(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` (a role, or what acts with one: a state machine, a function) send
        approval requests: ``sqs:SendMessage`` on the request queue in its own policy, and its
        role among those the queue's policy lets send (it denies every other principal,
        whatever their own policies allow). Attaching an :meth:`approval_step` does this
        for the state machine it is in."""
        principal = grantee.grant_principal
        if hasattr(principal, "role_arn"):
            arn = sender_arn(self, grantee)  # a role of another stack, named without a reference
        else:
            names = [name for name in ("user_arn", "arn") if hasattr(principal, name)]
            if not names:
                raise ValueError(f"grant_send_requests: {principal} is not a role, a user or an ARN")
            arn = str(getattr(principal, names[0]))
        self._senders.append(arn)
        return super().grant_send_requests(grantee)

    def request_senders(self) -> list[str]:
        """The principals (ARNs) the request queue's policy lets send: the service's own state
        machines, ``sender_roles``, those granted :meth:`grant_send_requests`, and every state
        machine of the stack whose role may send to the queue (attaching a step grants it)."""
        stack = Stack.of(self)
        queue_arn = stack.resolve(self.queue.queue_arn)
        attached = [
            machine.role.role_arn
            for machine in stack.node.find_all()
            if isinstance(machine, sfn.StateMachine) and _allowed_to_send(stack, machine.role, queue_arn)
        ]
        return list(dict.fromkeys([*self._senders, *attached]))

    # -- fan-outs of teams' own ------------------------------------------------------------------

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


def _allowed_to_send(stack: Stack, role: iam.IRole, queue_arn: object) -> bool:
    """Whether the role's own policy allows ``sqs:SendMessage`` on the queue."""
    policy = role.node.try_find_child("DefaultPolicy")
    if not isinstance(policy, iam.Policy):
        return False
    statements = stack.resolve(policy.document).get("Statement", [])

    def listed(value: object) -> list[object]:
        return value if isinstance(value, list) else [value]

    return any(
        statement.get("Effect") == "Allow"
        and "sqs:SendMessage" in listed(statement.get("Action"))
        and queue_arn in listed(statement.get("Resource"))
        for statement in statements
    )


@jsii.implements(IStableListProducer)
class _RequestSenders:
    """The queue policy's senders, produced at synth, once the app has attached its steps."""

    def __init__(self, service: ApprovalService) -> None:
        self._service = service

    def produce(self) -> list[str]:
        return self._service.request_senders()
