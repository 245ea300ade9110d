"""Identity policies, enforced by moto's own IAM evaluation (5.2.5), for the callers that use
credentials of an assumed role: a template's functions (each with a session of its own
role, approvals/local/template.py) and the tasks moto's Step Functions executor runs (with
the state machine's role, approvals/local/access.py). A call its role's policies do not
allow is refused with AccessDenied, as on AWS.

moto checks every request once ``INITIAL_NO_AUTH_ACTION_COUNT`` requests have been served
(:func:`enforce` sets it to 0 once the template is deployed). Two things it lacks are added:

- only requests signed with a session token (assumed-role credentials) are checked. The
  CLI's and the local stack's own ``testing`` credentials are no IAM user's: moto would
  refuse them all (InvalidClientTokenId); they stand for an operator's admin rights.
- moto authorizes a call under its operation's name (``sns:PublishBatch``,
  ``lambda:Invoke``); IAM under the action's (``sns:Publish``, ``lambda:InvokeFunction``).
- moto names the resource of a request only for SQS, IAM and STS, and checks every other
  call against ``*``, which refuses a policy scoped to its table or topic. The resources of
  the calls the product makes are named here: a DynamoDB table (or its index), an SNS topic,
  a Secrets Manager secret, a Step Functions state machine or execution, a Lambda function.
- moto answers its refusal in XML whatever the service's protocol, so a JSON service's
  client (SQS, DynamoDB, Step Functions, Secrets Manager) read its code as "403". It is
  answered here as each service answers: ``AccessDeniedException`` (400), and SQS's
  ``AccessDenied`` (403, by the header its query-compatible clients read).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from moto import settings
from moto.awslambda.responses import LambdaResponse
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import AccessDeniedError, JsonRESTError
from moto.dynamodb.responses import DynamoHandler
from moto.iam.access_control import IAMRequest
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.sns.responses import SNSResponse
from moto.stepfunctions.responses import StepFunctionResponse


def _table(response: Any) -> str:
    table, index = response._get_param("TableName"), response._get_param("IndexName")
    # A batch call names its tables in its requests: one table is that table's ARN (IAM
    # checks each table named; the product's batches name only its own).
    batch = list(response._get_param("RequestItems") or {})
    if not table and len(batch) == 1:
        table = batch[0]
    if not table:
        return "*"
    arn = f"arn:aws:dynamodb:{response.region}:{response.current_account}:table/{table}"
    return f"{arn}/index/{index}" if index else arn


def _topic(response: Any) -> str:
    return str(response._get_param("TopicArn") or "*")


def _secret(response: Any) -> str:
    secret = response._get_param("SecretId")
    if not secret:
        return "*"
    if str(secret).startswith("arn:"):
        return str(secret)
    try:
        return str(response.backend.describe_secret(secret).arn)
    except Exception:  # not found: moto answers that itself, after the check
        return "*"


def _function(response: Any) -> str:
    match = re.search(r"/functions/([^/]+)", response.path or "")
    if match is None:
        return "*"
    name = unquote(match.group(1)).split(":")  # a name, an ARN, either with a qualifier
    if name[0] == "arn":
        return ":".join(name[:7])
    return f"arn:aws:lambda:{response.region}:{response.current_account}:function:{name[0]}"


def _state_machine(response: Any) -> str:
    return str(response._get_param("executionArn") or response._get_param("stateMachineArn") or "*")


# Calls IAM authorizes under another name than moto gives them: the batch calls as their
# single call (a policy names no "sns:PublishBatch"), Lambda's Invoke as InvokeFunction.
AUTHORIZED_AS = {
    "Invoke": "InvokeFunction",
    "PublishBatch": "Publish",
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


JSON_1_0 = "application/x-amz-json-1.0"
SQS_TARGET = "AmazonSQS."
ACCESS_DENIED_EXCEPTION = "com.amazon.coral.service#AccessDeniedException"


# IAM has no action for a DynamoDB transaction: it authorizes each of its writes as the
# single call it stands for, on that write's table.
TRANSACTION_WRITES = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


class _Request(IAMRequest):
    def __init__(self, **request: Any) -> None:  # moto passes every argument by name
        request["action"] = AUTHORIZED_AS.get(request["action"], request["action"])
        super().__init__(**request)


def _authorized_as(action: str) -> type[IAMRequest]:
    class _Write(IAMRequest):
        def __init__(self, **request: Any) -> None:
            super().__init__(**{**request, "action": action})

    return _Write


def _transaction_writes(response: Any) -> list[tuple[type[IAMRequest], str]]:
    """Each write of a ``TransactWriteItems`` as IAM checks it: its single call, its table."""
    writes = []
    for item in response._get_param("TransactItems") or []:
        for kind, write in item.items():
            table = (
                f"arn:aws:dynamodb:{response.region}:{response.current_account}:table/{write['TableName']}"
            )
            writes.append((_authorized_as(TRANSACTION_WRITES.get(kind, kind)), table))
    return writes


RESOURCES: dict[type, Callable[[Any], str]] = {
    DynamoHandler: _table,
    SNSResponse: _topic,
    SecretsManagerResponse: _secret,
    StepFunctionResponse: _state_machine,
    LambdaResponse: _function,
}

_applied = False


def _as_the_service_answers(response: Any, refusal: AccessDeniedError) -> Exception:
    """moto's refusal in the protocol of the service asked: a JSON service's (its requests
    name an ``X-Amz-Target``) in JSON; a query or REST service's stays moto's XML."""
    target = response.headers.get("X-Amz-Target", "")
    if not target:
        return refusal
    response.response_headers["Content-Type"] = response.headers.get("Content-Type", JSON_1_0)
    if target.startswith(SQS_TARGET):
        response.response_headers["x-amzn-query-error"] = "AccessDenied;Sender"
        denied = JsonRESTError(ACCESS_DENIED_EXCEPTION, refusal.message)
        denied.code = 403
        return denied
    return JsonRESTError(ACCESS_DENIED_EXCEPTION, refusal.message)


def apply() -> None:
    """Check assumed-role callers only, naming the resources; once per process. Nothing is
    checked before :func:`enforce`."""
    global _applied
    if _applied:
        return
    _applied = True
    for response_class, resource in RESOURCES.items():
        response_class._determine_resource = resource  # type: ignore[attr-defined]
    check = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def check_assumed_roles(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        if "X-Amz-Security-Token" not in self.headers:
            return
        try:
            if isinstance(self, DynamoHandler) and self._get_action() == "TransactWriteItems":
                for write, table in _transaction_writes(self):
                    check(self, write, table)
            else:
                check(self, _Request if iam_request_cls is IAMRequest else iam_request_cls, resource)
        except AccessDeniedError as refusal:
            raise _as_the_service_answers(self, refusal) from None

    ActionAuthenticatorMixin._authenticate_and_authorize_action = check_assumed_roles  # type: ignore[method-assign]


def enforce() -> Callable[[], None]:
    """From now on, moto refuses an assumed role's call its policies do not allow; returns
    what stops it. (moto's setting is the process's: the server runs in this one.)"""
    previous = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0

    def stop() -> None:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = previous

    return stop
