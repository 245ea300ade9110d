"""The approval step: a Task for a team's own state machine, served by a deployed ApprovalService.

``ApprovalTask`` is that Task (an ``SqsSendMessage`` whose body it builds). It sends the
queue message of docs/queue-message.schema.json with ``sqs:sendMessage.waitForTaskToken``
and waits for the decision. It always sets its own timeout and puts the same number of
seconds in the message, so the links, the reminders, the page and the task expire together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Required, TypedDict, Unpack, get_args

from aws_cdk import Duration, Token
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct
from pydantic import Field as Limit
from pydantic import TypeAdapter, ValidationError

from approvals import statemachine
from approvals.models import (
    MAX_APPROVERS,
    MAX_ESCALATIONS,
    MAX_FIELDS,
    MAX_TIMEOUT_SECONDS,
    ApprovalRequest,
    Email,
    Escalation,
    FieldSpec,
    Identity,
    Policy,
    describe_validation_error,
)
from approvals.store.close import CONFIRM_DELIVERY
from approvals_cdk import shared

# Approvers, fields and escalation steps named at synth time are checked as the worker will
# check them.
_APPROVERS = TypeAdapter(Annotated[list[Email], Limit(min_length=1, max_length=MAX_APPROVERS)])
_FIELDS = TypeAdapter(Annotated[list[FieldSpec], Limit(max_length=MAX_FIELDS)])
_ESCALATION = TypeAdapter(Annotated[list[Escalation], Limit(max_length=MAX_ESCALATIONS)])


class ApprovalErrors:
    """The errors an approval step ends with, for ``step.add_catch(handler, errors=[...])``.

    A rejection is not an error: the step succeeds with ``{"outcome": "rejected", ...}``.
    """

    INVALID_REQUEST = statemachine.INVALID_REQUEST
    """The request can never succeed (no approvers, a bad address, ...); the cause names the field."""
    DELIVERY_FAILED = statemachine.DELIVERY_FAILED
    """The emails could not be sent after several attempts."""
    TIMEOUT = sfn.Errors.TIMEOUT
    """Nobody settled the request within the step's timeout."""
    EXPIRED = statemachine.EXPIRED
    """The links expired while the task still waited (only a Task whose own timeout is longer
    than its message's ``timeout_seconds`` can get this; the step never does)."""
    EXPIRY = (TIMEOUT, EXPIRED)
    """Both ways a request runs out of time: catch these for an "expired" branch."""


# A field of the request: a value fixed at synth time, or read from the execution's state
# (JSONPath: ``sfn.JsonPath.string_at("$.title")``, ``list_at``, ``number_at``, ``object_at``;
# JSONata: a ``"{% ... %}"`` expression).
RequestField = Any


@dataclass(frozen=True)
class _Timeout:
    """The step's timeout as the task and the message each need it."""

    task: sfn.Timeout
    message: Any  # a number of seconds, or what reads it from the state

    @classmethod
    def of(cls, timeout: Duration | str, language: sfn.QueryLanguage) -> _Timeout:
        if isinstance(timeout, Duration):
            seconds = int(timeout.to_seconds())
            if not 1 <= seconds <= MAX_TIMEOUT_SECONDS:
                raise ValueError(
                    f"timeout: {seconds} seconds is not from 1 second to the service's one year"
                    f" ({MAX_TIMEOUT_SECONDS} seconds)"
                )
            return cls(sfn.Timeout.duration(timeout), seconds)
        if language == sfn.QueryLanguage.JSONATA:
            if not (timeout.startswith("{%") and timeout.endswith("%}")):
                raise ValueError(f"timeout: {timeout!r} is not a JSONata expression ('{{% ... %}}')")
            return cls(sfn.Timeout.jsonata(timeout), timeout)
        if not timeout.startswith("$"):
            raise ValueError(
                f"timeout: {timeout!r} is neither a Duration nor a JSONPath ('$.timeout_seconds')"
            )
        return cls(sfn.Timeout.at(timeout), sfn.JsonPath.number_at(timeout))


class TaskOptions(TypedDict, total=False):
    """What the step asks and how it sits in the definition: the keyword arguments of
    ``ApprovalTask.json_path`` and ``.jsonata``, each described on
    :meth:`approvals_cdk.ApprovalService.approval_step`."""

    title: Required[RequestField]
    approvers: Required[Sequence[str] | RequestField]
    requester: Required[RequestField]
    timeout: Required[Duration | str]
    policy: RequestField
    quorum: RequestField
    description: RequestField
    details: Mapping[str, Any] | RequestField
    fields: Sequence[FieldSpec | Mapping[str, Any]] | RequestField
    remind_every: Duration | RequestField
    escalation: Sequence[Escalation | Mapping[str, Any]] | RequestField
    identity: RequestField
    result_path: str | None
    result_selector: Mapping[str, Any] | None
    input_path: str | None
    output_path: str | None
    outputs: Any
    assign: Mapping[str, Any] | None
    comment: str | None
    state_name: str | None
    heartbeat_timeout: sfn.Timeout | None
    credentials: sfn.Credentials | None


class StepOptions(TaskOptions, total=False):
    """The keyword arguments of :class:`ApprovalTask` and ``ApprovalService.approval_step``."""

    query_language: sfn.QueryLanguage


def _static(value: Any) -> bool:
    """Whether a request field is fixed at synth time (not read from the state)."""
    if isinstance(value, str):
        return not value.startswith(("$", "{%")) and not Token.is_unresolved(value)
    if isinstance(value, list | tuple):
        return not Token.is_unresolved(list(value))
    return value is None or isinstance(value, int)


def _check_policy(approvers: Any, policy: Any, quorum: Any) -> None:
    """The request model's own rules on the policy and its quorum, once all three are fixed
    at synth time: a quorum above the number of approvers fails the synth, not the request."""
    if not (_static(approvers) and _static(policy) and _static(quorum)):
        return
    try:
        ApprovalRequest.model_validate(
            {
                "title": "-",
                "requester": "-",
                "approvers": approvers,
                "policy": policy or Policy.FIRST_RESPONSE,
            }
            | ({} if quorum is None else {"quorum": quorum})
        )
    except ValidationError as error:
        raise ValueError(describe_validation_error(error)) from None


def _request(options: Mapping[str, Any]) -> dict[str, Any]:
    policy = options.get("policy")
    approvers = options["approvers"]
    fields = options.get("fields")
    remind_every = options.get("remind_every")
    details = options.get("details")
    if isinstance(policy, str) and not policy.startswith(("$", "{%")):
        policy = Policy(policy).value  # a typo fails the synth, not the first execution
    if isinstance(approvers, list | tuple) and not Token.is_unresolved(list(approvers)):
        try:
            approvers = _APPROVERS.validate_python(list(approvers))
        except ValidationError as error:
            raise ValueError(describe_validation_error(error, prefix="approvers")) from None
    _check_policy(approvers, policy, options.get("quorum"))
    if isinstance(fields, list | tuple) and not Token.is_unresolved(list(fields)):
        try:
            specs = _FIELDS.validate_python(
                [s.model_dump() if isinstance(s, FieldSpec) else s for s in fields]
            )
        except ValidationError as error:
            raise ValueError(describe_validation_error(error, prefix="fields")) from None
        fields = [spec.model_dump(mode="json", exclude_none=True) for spec in specs]
    if isinstance(remind_every, Duration):
        remind_every = int(remind_every.to_seconds())
    escalation = options.get("escalation")
    if isinstance(escalation, list | tuple) and not Token.is_unresolved(list(escalation)):
        try:
            steps = _ESCALATION.validate_python(
                [s.model_dump() if isinstance(s, Escalation) else s for s in escalation]
            )
        except ValidationError as error:
            raise ValueError(describe_validation_error(error, prefix="escalation")) from None
        escalation = [step.model_dump(mode="json") for step in steps]
    identity = options.get("identity")
    if (
        isinstance(identity, str)
        and not identity.startswith(("$", "{%"))
        and identity not in get_args(Identity)
    ):
        raise ValueError(f"identity: {identity!r} is not one of {', '.join(get_args(Identity))}")
    request = {
        "title": options["title"],
        "approvers": list(approvers) if isinstance(approvers, list | tuple) else approvers,
        "requester": options["requester"],
        "policy": policy,
        "quorum": options.get("quorum"),
        "description": options.get("description"),
        "details": dict(details) if isinstance(details, Mapping) else details,
        "fields": fields,
        "remind_every_seconds": remind_every,
        "escalation": escalation,
        "identity": identity,
    }
    return {name: value for name, value in request.items() if value is not None}


class ApprovalTask(tasks.SqsSendMessage):
    """A state that asks people for approval and waits for their decision: the request
    queue's ``sqs:sendMessage.waitForTaskToken`` Task, with the message of
    docs/queue-message.schema.json. ``ApprovalTask.json_path(...)`` and
    ``ApprovalTask.jsonata(...)`` make one for a state machine of that query language;
    ``ApprovalService.approval_step(...)`` makes one for the service's own queue. Every
    keyword argument is explicit (a misspelt one is a TypeError) and described on
    :meth:`approvals_cdk.ApprovalService.approval_step`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue: sqs.IQueue,
        title: RequestField,
        approvers: Sequence[str] | RequestField,
        requester: RequestField,
        timeout: Duration | str,
        policy: RequestField = None,
        quorum: RequestField = None,
        description: RequestField = None,
        details: Mapping[str, Any] | RequestField = None,
        fields: Sequence[FieldSpec | Mapping[str, Any]] | RequestField = None,
        remind_every: Duration | RequestField = None,
        escalation: Sequence[Escalation | Mapping[str, Any]] | RequestField = None,
        identity: RequestField = None,
        query_language: sfn.QueryLanguage | None = None,
        result_path: str | None = None,
        result_selector: Mapping[str, Any] | None = None,
        input_path: str | None = None,
        output_path: str | None = None,
        outputs: Any = None,
        assign: Mapping[str, Any] | None = None,
        comment: str | None = None,
        state_name: str | None = None,
        heartbeat_timeout: sfn.Timeout | None = None,
        credentials: sfn.Credentials | None = None,
    ) -> None:
        jsonata = query_language == sfn.QueryLanguage.JSONATA
        for name, value in (
            ("result_path", result_path),
            ("result_selector", result_selector),
            ("input_path", input_path),
            ("output_path", output_path),
        ):
            if jsonata and value is not None:
                raise ValueError(f"{name} is JSONPath: with JSONata, shape the state's output with outputs=")
        if not jsonata and outputs is not None:
            raise ValueError("outputs is JSONata: with JSONPath, place the decision with result_path=")
        limit = _Timeout.of(timeout, query_language or sfn.QueryLanguage.JSON_PATH)
        context = (
            {
                "task_token": "{% $states.context.Task.Token %}",
                "execution": "{% $states.context.Execution.Id %}",
                "state": "{% $states.context.State.Name %}",
            }
            if jsonata
            else {
                "task_token": sfn.JsonPath.task_token,
                "execution": sfn.JsonPath.execution_id,
                "state": sfn.JsonPath.string_at("$$.State.Name"),
            }
        )
        request = _request(
            {
                "title": title,
                "approvers": approvers,
                "requester": requester,
                "policy": policy,
                "quorum": quorum,
                "description": description,
                "details": details,
                "fields": fields,
                "remind_every": remind_every,
                "escalation": escalation,
                "identity": identity,
            }
        )
        super().__init__(
            scope,
            construct_id,
            queue=queue,
            message_body=sfn.TaskInput.from_object(
                {**context, "request": request, "timeout_seconds": limit.message}
            ),
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            task_timeout=limit.task,
            query_language=query_language,
            result_path=result_path,
            result_selector=dict(result_selector) if result_selector else None,
            input_path=input_path,
            output_path=output_path,
            outputs=outputs,
            assign=dict(assign) if assign else None,
            comment=comment or "Waits for people's approval (stepfunctions-approvals)",
            state_name=state_name,
            heartbeat_timeout=heartbeat_timeout,
            credentials=credentials,
        )

    # These replace SqsSendMessage's own factories, which take a message body: an approval
    # task's body is the request it builds.
    @classmethod
    def json_path(  # type: ignore[override]
        cls, scope: Construct, construct_id: str, queue: sqs.IQueue, **options: Unpack[TaskOptions]
    ) -> ApprovalTask:
        """The step in a JSONPath state machine (the default query language)."""
        return cls(scope, construct_id, queue=queue, query_language=sfn.QueryLanguage.JSON_PATH, **options)

    @classmethod
    def jsonata(  # type: ignore[override]
        cls, scope: Construct, construct_id: str, queue: sqs.IQueue, **options: Unpack[TaskOptions]
    ) -> ApprovalTask:
        """The step in a JSONata state machine: request fields are ``"{% ... %}"``
        expressions, and ``outputs`` shapes the state's output. (The local stack's engine,
        moto's, cannot run JSONata: test such a workflow on AWS.)"""
        return cls(scope, construct_id, queue=queue, query_language=sfn.QueryLanguage.JSONATA, **options)


class _ConfirmationWrite(tasks.DynamoUpdateItem):
    """The confirmation's UpdateItem, granted as narrowly as the product's own state machines'
    (approvals_cdk.shared.confirm_delivery): the confirmation's attributes only, nothing
    returned. DynamoUpdateItem's own grant would let a changed definition rewrite votes or
    read task tokens back."""

    def __init__(self, scope: Construct, construct_id: str, *, table: dynamodb.ITable, **props: Any) -> None:
        super().__init__(scope, construct_id, table=table, **props)
        self._grant = shared.confirm_delivery(table)

    @property
    def _task_policies(self) -> list[iam.PolicyStatement]:
        return [self._grant]


class DeliveryConfirmation(sfn.StateMachineFragment):
    """The states after an approval step that tell the service the workflow has the
    decision: the same conditional ``dynamodb:updateItem`` as the product's own state
    machines' ``ConfirmApproved`` / ``ConfirmRejected`` (approvals.statemachine), behind a
    Choice that skips it when the service records the delivery itself (a bulk vote: the
    decision's ``confirmed_by_service``). Without it the sweep confirms each decision a
    minute later with two calls of its own; a write that fails after its retries is left to
    the sweep the same way, and the workflow goes on (JSONPath only)."""

    def __init__(
        self, scope: Construct, construct_id: str, table: dynamodb.ITable, decision_path: str = "$"
    ) -> None:
        super().__init__(scope, construct_id)
        values = CONFIRM_DELIVERY["ExpressionAttributeValues"]
        confirm = _ConfirmationWrite(
            self,
            "Confirm",
            state_name=construct_id,
            comment="Tells the approval service the workflow has the decision (stepfunctions-approvals)",
            table=table,
            key={
                "approval_id": tasks.DynamoAttributeValue.from_string(
                    sfn.JsonPath.string_at(f"{decision_path.rstrip('.')}.approval_id")
                )
            },
            update_expression=CONFIRM_DELIVERY["UpdateExpression"],
            condition_expression=CONFIRM_DELIVERY["ConditionExpression"],
            expression_attribute_names=CONFIRM_DELIVERY["ExpressionAttributeNames"],
            expression_attribute_values={
                name: tasks.DynamoAttributeValue.from_string(value["S"]) for name, value in values.items()
            },
            result_path=sfn.JsonPath.DISCARD,
        )
        confirm.add_retry(errors=[statemachine.CONFIRM_REFUSED], max_attempts=0)
        confirm.add_retry(
            errors=[sfn.Errors.ALL], interval=Duration.seconds(1), max_attempts=2, backoff_rate=2
        )
        left_to_sweep = sfn.Pass(self, "LeftToSweep", state_name=f"{construct_id}LeftToSweep")
        confirm.add_catch(left_to_sweep, errors=[sfn.Errors.ALL], result_path=sfn.JsonPath.DISCARD)
        by_service = sfn.Pass(self, "ByService", state_name=f"{construct_id}ByService")
        flag = f"{decision_path.rstrip('.')}.{statemachine.CONFIRMED_BY_SERVICE}"
        # As the product's Outcome Choice reads it: the field is there only when true.
        needed = (
            sfn.Choice(self, "Needed", state_name=f"{construct_id}Needed")
            .when(sfn.Condition.not_(sfn.Condition.is_present(flag)), confirm)
            .otherwise(by_service)
        )
        self._start = needed
        self._ends: list[sfn.INextable] = [confirm, left_to_sweep, by_service]

    @property
    def start_state(self) -> sfn.State:
        return self._start

    @property
    def end_states(self) -> list[sfn.INextable]:
        return self._ends
