"""Who calls the local stack, and what the product's resource policies deny them.

moto (5.2.5) evaluates no resource policy: a queue's or topic's explicit Deny, which on AWS
beats every Allow, passes silently there. This module evaluates the Deny statements of the
policies the product writes, on the calls they restrict, so that a missing grant fails
here as it fails on AWS:

- the calls: ``sqs:SendMessage`` (SendMessage, SendMessageBatch) against the queue's policy,
  ``sns:Publish`` (Publish, PublishBatch) and ``sns:Subscribe`` against the topic's;
- the caller (``aws:PrincipalArn``): for credentials from ``sts:AssumeRole``, the role's ARN;
  for an IAM user's access key, the user's ARN; for any other credentials (the CLI's and the
  local stack's own, ``testing``), :data:`LOCAL_IDENTITY`, an operator's role. The tasks
  moto's Step Functions executor runs call with credentials of the state machine's role,
  assumed here, as Step Functions calls with that role;
- the statements: only ``Deny`` ones whose principal is ``*`` (or names the caller), whose
  action and resource match, and whose conditions use only ``ArnNotEquals``, ``ArnNotLike``
  or ``StringNotEquals`` on ``aws:PrincipalArn`` and ``Bool`` on ``aws:SecureTransport``
  (true here: the local endpoint stands for AWS's HTTPS one). A statement with any other
  condition is not evaluated, and says so in the log. Allow statements, and identity
  policies, are left to moto (approvals/local/identities.py).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import boto3
from botocore.config import Config
from moto.core.exceptions import ServiceException
from moto.core.models import botocore_stubber
from moto.iam.models import iam_backends
from moto.settings import moto_server_port
from moto.sns.responses import SNSResponse
from moto.sqs.responses import SQSResponse
from moto.sts.models import AssumedRole, sts_backends

log = logging.getLogger(__name__)

# Who credentials that are not moto's (the CLI's and the local stack's own "testing") are:
# an operator's role, which a template may name (-c operatorRoles=...).
LOCAL_IDENTITY = "arn:aws:iam::123456789012:role/approvals-local-operator"
PARTITION = "aws"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_PRINCIPAL_KEY = "aws:principalarn"


class AccessDenied(ServiceException):
    code = "AccessDenied"


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(operator: str, key: str, values: list[str], principal: str) -> bool | None:
    """Whether one condition holds for the caller; None for one this module does not evaluate."""
    key = key.lower()
    if operator == "Bool" and key == "aws:securetransport":
        return "true" in [str(v).lower() for v in values]
    if key != _PRINCIPAL_KEY:
        return None
    if operator in ("ArnNotEquals", "StringNotEquals"):
        return principal not in values
    if operator == "ArnNotLike":
        return not any(fnmatchcase(principal, pattern) for pattern in values)
    return None


def _denies(statement: Mapping[str, Any], action: str, resource: str, principal: str) -> bool:
    if statement.get("Effect") != "Deny" or "NotAction" in statement or "NotPrincipal" in statement:
        return False
    if not any(fnmatchcase(action.lower(), str(a).lower()) for a in _listed(statement.get("Action", []))):
        return False
    if not any(fnmatchcase(resource, str(r)) for r in _listed(statement.get("Resource", "*"))):
        return False
    who = statement.get("Principal")
    named = _listed(who.get("AWS", [])) if isinstance(who, dict) else _listed(who)
    if "*" not in named and principal not in named:
        return False
    for operator, tests in statement.get("Condition", {}).items():
        for key, values in tests.items():
            holds = _condition_holds(operator, key, [str(v) for v in _listed(values)], principal)
            if holds is None:
                log.warning(
                    "not evaluated locally (condition %s on %s): %s", operator, key, statement.get("Sid")
                )
                return False
            if not holds:
                return False
    return True


def denied(policy: str | Mapping[str, Any] | None, action: str, resource: str, principal: str) -> bool:
    """Whether a Deny of the resource policy refuses ``action`` on ``resource`` to ``principal``."""
    if not policy:
        return False
    document = json.loads(policy) if isinstance(policy, str) else policy
    return any(_denies(s, action, resource, principal) for s in _listed(document.get("Statement", [])))


def principal_arn(headers: Mapping[str, str], account_id: str) -> str:
    """The ``aws:PrincipalArn`` of the request's credentials."""
    match = _CREDENTIAL.search(headers.get("Authorization") or "")
    if match is None:
        return LOCAL_IDENTITY
    access_key = match.group(1)
    role = sts_backends[account_id][PARTITION].get_assumed_role_from_access_key(access_key)
    if role is not None:
        return str(role.role_arn)
    user = iam_backends[account_id][PARTITION].get_user_from_access_key_id(access_key)
    return str(user.arn) if user is not None else LOCAL_IDENTITY


def _refuse(principal: str, action: str, resource: str) -> None:
    raise AccessDenied(
        f"User: {principal} is not authorized to perform: {action} on resource: {resource}"
        " with an explicit deny in a resource-based policy"
    )


# -- credentials of a role, as Step Functions and Lambda use them --------------------------

_assumed: dict[str, AssumedRole] = {}
_assumed_lock = threading.Lock()


@dataclass(frozen=True)
class Credentials:
    """Credentials from ``sts:AssumeRole`` of one role."""

    access_key_id: str
    secret_access_key: str
    session_token: str

    def session(self, region: str) -> boto3.Session:
        return boto3.Session(
            region_name=region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
        )

    def environment(self) -> dict[str, str]:
        """As Lambda gives them to a function: environment variables."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }


def credentials_of(role_arn: str, region: str = "us-east-1") -> Credentials:
    """Credentials from ``sts:AssumeRole`` of the role (one session per role, assumed again
    after moto's state is reset)."""
    account_id = role_arn.split(":")[4]
    backend = sts_backends[account_id][PARTITION]
    with _assumed_lock:
        role = _assumed.get(role_arn)
        if role is None or role not in backend.assumed_roles:
            role = _assumed[role_arn] = backend.assume_role(
                region_name=region,
                role_session_name=role_arn.rsplit("/", 1)[-1][:64],
                role_arn=role_arn,
                policy="",
                duration=43200,
                external_id="",
            )
    return Credentials(role.access_key_id, role.secret_access_key, role.session_token)


# A client takes a session and its service model read from disk (about a tenth of a second
# of CPU): one is made per role and service, not one for every task of every child
# execution. Clients are safe to share between threads; new credentials (a reset) make a new one.
EXECUTOR_CLIENTS = 64
EXECUTOR_CONNECTIONS = 100  # executor threads calling the server at once, none of them dropped
_clients_lock = threading.Lock()  # a map run's children start at once: one client made, not one each


@functools.lru_cache(maxsize=EXECUTOR_CLIENTS)
def role_client(credentials: Credentials, region: str, service: str, endpoint: str | None) -> Any:
    return credentials.session(region).client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        # As moto's own client: its executor retries nothing and times out by itself.
        config=Config(
            parameter_validation=False,
            retries={"max_attempts": 0, "total_max_attempts": 1},
            max_pool_connections=EXECUTOR_CONNECTIONS,
        ),
    )


def _executor_client(original: Callable[..., Any]) -> Callable[..., Any]:
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        role_arn = getattr(state_credentials, "role_arn", None)
        if not role_arn:
            return original(region, service, state_credentials)
        # In server mode the executor calls the server; under mock_aws, moto intercepts boto.
        endpoint = None if botocore_stubber.enabled else f"http://localhost:{moto_server_port()}"
        credentials = credentials_of(role_arn, region)
        with _clients_lock:
            return role_client(credentials, region, service, endpoint)

    return boto_client_for


def apply() -> None:
    """Evaluate the resource policies' Deny statements (moto_fixes.apply calls it, once)."""
    # The services answer AccessDenied although their models name no such error shape.
    warnings.filterwarnings("ignore", r"Exception\(AccessDenied\)", UserWarning)

    def guarded(
        serve: Callable[[Any], Any], action: str, resource: Callable[[Any], str]
    ) -> Callable[[Any], Any]:
        def serve_unless_denied(self: Any) -> Any:
            arn = resource(self)
            policy = _policy_of(self, arn) if arn else None
            if policy:
                principal = principal_arn(self.headers, self.current_account)
                if denied(policy, action, arn, principal):
                    _refuse(principal, action, arn)
            return serve(self)

        return serve_unless_denied

    def queue_arn(response: SQSResponse) -> str:
        return str(response.sqs_backend.get_queue(response._get_queue_name()).queue_arn)

    def topic_arn(response: SNSResponse) -> str:
        return str(response._get_param("TopicArn") or "")

    restricted: list[tuple[type, str, str, Callable[[Any], str]]] = [
        (SQSResponse, "send_message", "sqs:SendMessage", queue_arn),
        (SQSResponse, "send_message_batch", "sqs:SendMessage", queue_arn),
        (SNSResponse, "publish", "sns:Publish", topic_arn),
        (SNSResponse, "publish_batch", "sns:Publish", topic_arn),
        (SNSResponse, "subscribe", "sns:Subscribe", topic_arn),
    ]
    for owner, method, action, resource in restricted:
        setattr(owner, method, guarded(getattr(owner, method), action, resource))

    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for
    as_role = _executor_client(original)
    boto_client.boto_client_for = as_role  # modules imported from now on
    for name, module in list(sys.modules.items()):  # and those that imported it already
        if (
            name.startswith("moto.stepfunctions.parser")
            and getattr(module, "boto_client_for", None) is original
        ):
            module.boto_client_for = as_role  # type: ignore[attr-defined]


def _policy_of(response: Any, arn: str) -> Any:
    if isinstance(response, SQSResponse):
        return response.sqs_backend.get_queue(response._get_queue_name()).policy
    topic = response.backend.topics.get(arn)
    return topic.policy if topic is not None else None
