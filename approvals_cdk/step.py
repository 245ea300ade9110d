"""The approval step: a Task for a team's own state machine, served by a deployed ApprovalService.

The Task sends the queue message of docs/queue-message.schema.json with
``sqs:sendMessage.waitForTaskToken`` and waits for the decision. It always sets its own
timeout and puts the same number of seconds in the message, so the links, the reminders,
the page and the task expire together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Required, TypedDict, Unpack

from aws_cdk import Duration, Token
from aws_cdk import aws_dynamodb as dynamodb
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
    Email,
    Escalation,
    FieldSpec,
    Policy,
    describe_validation_error,
)
from approvals.store.close import CONFIRM_DELIVERY

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


class StepOptions(TypedDict, total=False):
    """What the step asks and how it sits in the definition; each is described on
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
    query_language: sfn.QueryLanguage
    result_path: str | None
    outputs: Any
    assign: Mapping[str, Any] | None
    comment: str | None


def _request(options: StepOptions) -> dict[str, Any]:
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
    }
    return {name: value for name, value in request.items() if value is not None}


def approval_step(
    scope: Construct, construct_id: str, queue: sqs.IQueue, **options: Unpack[StepOptions]
) -> tasks.SqsSendMessage:
    """See :meth:`approvals_cdk.ApprovalService.approval_step`."""
    query_language = options.get("query_language", sfn.QueryLanguage.JSON_PATH)
    result_path, outputs = options.get("result_path"), options.get("outputs")
    assign, comment = options.get("assign"), options.get("comment")
    jsonata = query_language == sfn.QueryLanguage.JSONATA
    if jsonata and result_path is not None:
        raise ValueError("result_path is JSONPath: with JSONata, shape the state's output with outputs=")
    if not jsonata and outputs is not None:
        raise ValueError("outputs is JSONata: with JSONPath, place the decision with result_path=")
    limit = _Timeout.of(options["timeout"], query_language)
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
    body = sfn.TaskInput.from_object(
        {
            **context,
            "request": _request(options),
            "timeout_seconds": limit.message,
        }
    )
    common: dict[str, Any] = {
        "queue": queue,
        "message_body": body,
        "integration_pattern": sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
        "task_timeout": limit.task,
        "comment": comment or "Waits for people's approval (stepfunctions-approvals)",
        "assign": dict(assign) if assign else None,
    }
    if jsonata:
        return tasks.SqsSendMessage.jsonata(scope, construct_id, outputs=outputs, **common)
    return tasks.SqsSendMessage(scope, construct_id, result_path=result_path, **common)


class DeliveryConfirmation(sfn.StateMachineFragment):
    """The state after an approval step that tells the service the workflow has the
    decision: the same conditional ``dynamodb:updateItem`` as the product's own state
    machines' ``ConfirmDelivery`` (approvals.statemachine). Without it the sweep confirms
    each decision a minute later with two calls of its own; a write that fails after its
    retries is left to the sweep the same way, and the workflow goes on (JSONPath only)."""

    def __init__(
        self, scope: Construct, construct_id: str, table: dynamodb.ITable, decision_path: str = "$"
    ) -> None:
        super().__init__(scope, construct_id)
        values = CONFIRM_DELIVERY["ExpressionAttributeValues"]
        confirm = tasks.DynamoUpdateItem(
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
        self._start = confirm
        self._ends: list[sfn.INextable] = [confirm, left_to_sweep]

    @property
    def start_state(self) -> sfn.State:
        return self._start

    @property
    def end_states(self) -> list[sfn.INextable]:
        return self._ends
