"""What a team's stack needs of an approval service, whether it deploys one or uses one deployed
elsewhere: `IApprovalService`, and `ApprovalServiceBase`, which gives both kinds the step, the
grants and the metrics from the service's request queue and table alone.

``ApprovalService`` (approval_service.py) is the deployed kind; ``ImportedApprovalService``,
made by ``ApprovalService.from_attributes``, is a service of another stack, app or account,
named by the ARNs in its stack's outputs, as ``sqs.Queue.from_queue_attributes`` names a queue.
"""

from __future__ import annotations

from typing import Protocol, Unpack

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from approvals import metrics
from approvals_cdk.step import ApprovalTask, DeliveryConfirmation, StepOptions

METRIC_PERIOD = Duration.minutes(5)


def service_metric(
    table_name: str, metric_name: str, *, period: Duration = METRIC_PERIOD, statistic: str = "Sum"
) -> cloudwatch.Metric:
    """One of the counts the service's functions write in the embedded metric format
    (approvals.metrics), for the requests of every workflow using the service."""
    return cloudwatch.Metric(
        namespace=metrics.NAMESPACE,
        metric_name=metric_name,
        dimensions_map={metrics.DIMENSION: table_name},
        period=period,
        statistic=statistic,
    )


class IApprovalService(Protocol):
    """An approval service a state machine can ask, deployed in this stack or elsewhere."""

    @property
    def queue(self) -> sqs.IQueue:
        """The request queue an approval Task sends to."""
        ...

    @property
    def table(self) -> dynamodb.ITable:
        """The approvals table (state and audit trail)."""
        ...

    def approval_step(
        self, scope: Construct, construct_id: str, **options: Unpack[StepOptions]
    ) -> ApprovalTask: ...

    def confirmation_step(
        self, scope: Construct, construct_id: str, decision_path: str = "$"
    ) -> DeliveryConfirmation: ...

    def grant_send_requests(self, grantee: iam.IGrantable) -> iam.Grant: ...

    def grant_read_approvals(self, grantee: iam.IGrantable) -> iam.Grant: ...

    def metric_invalid_requests(
        self, *, period: Duration = METRIC_PERIOD, statistic: str = "Sum"
    ) -> cloudwatch.Metric: ...

    def metric_deliveries_failed(
        self, *, period: Duration = METRIC_PERIOD, statistic: str = "Sum"
    ) -> cloudwatch.Metric: ...


class ApprovalServiceBase(Construct):
    """What works from the request ``queue`` and the ``table`` alone, deployed or imported."""

    queue: sqs.IQueue
    table: dynamodb.ITable

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
            identity: ``"link"`` (default: the emailed link proves the vote) or ``"sign-in"``
                (the approver also signs in with the service's OpenID Connect provider; a
                service without one refuses the request with ``Approval.InvalidRequest``).
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

    # -- grants and metrics --------------------------------------------------------------------

    def grant_send_requests(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` send approval requests (a hand-written Task's role): the identity
        side, ``sqs:SendMessage`` on the request queue. The queue's own policy must also
        let it send: the service's ``sender_roles`` or ``allowed_accounts``."""
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=["sqs:SendMessage"], resource_arns=[self.queue.queue_arn]
        )

    def grant_read_approvals(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` read the approvals and their timelines (the table and its
        indexes: ``GetItem``, ``Query``, ``Scan`` and the rest of ``grant_read_data``),
        for a report or a dashboard of your own. Nothing it grants changes an approval."""
        return self.table.grant_read_data(grantee)

    def metric_invalid_requests(
        self, *, period: Duration = METRIC_PERIOD, statistic: str = "Sum"
    ) -> cloudwatch.Metric:
        """Requests refused as invalid (answered with ``Approval.InvalidRequest``), from every
        workflow using the service: the worker's logs name each cause."""
        return service_metric(
            self.table.table_name, metrics.INVALID_REQUESTS, period=period, statistic=statistic
        )

    def metric_deliveries_failed(
        self, *, period: Duration = METRIC_PERIOD, statistic: str = "Sum"
    ) -> cloudwatch.Metric:
        """Requests that could not be emailed and whose executions were failed (answered with
        ``Approval.DeliveryFailed``), from every workflow using the service."""
        return service_metric(
            self.table.table_name, metrics.DELIVERIES_FAILED, period=period, statistic=statistic
        )


class ImportedApprovalService(ApprovalServiceBase):
    """A service deployed by another stack, app or account (``ApprovalService.from_attributes``).

    Attaching a step grants your state machine's role only its own side: the service's
    stack must let it send (``sender_roles`` by name in the same account, or
    ``allowed_accounts`` for another account, which forwards its executions' ends to the
    service's ``ExecutionEventsBusArn`` with ``ForwardExecutionEnds``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue_arn: str,
        table_arn: str,
        queue_key_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.queue = sqs.Queue.from_queue_attributes(
            self,
            "RequestQueue",
            queue_arn=queue_arn,
            key_arn=queue_key_arn,  # the step then grants kms:GenerateDataKey and Decrypt too
        )
        # The indexes are named in the grants: a report queries the execution index, say.
        self.table = dynamodb.Table.from_table_attributes(
            self, "Table", table_arn=table_arn, grant_index_permissions=True
        )
