"""The AWS clients, settings and signing key of one process, made once.

Lambda reuses a container for many invocations, so everything here is built at the first
call and kept; the local stack and the tests build their own with :func:`build`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from approvals.directory import Directory
from approvals.keys import Keys
from approvals.settings import Settings
from approvals.signin import Provider
from approvals.store import ApprovalStore

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_stepfunctions import SFNClient

# Fail fast and retry with backoff: an approver is waiting on the other end.
CLIENT_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 3})


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: ApprovalStore
    sns: SNSClient
    sfn: SFNClient
    secrets: SecretsManagerClient = field(repr=False)
    # Both read nothing until their first use, so functions that never sign or verify a
    # link (dead letters, execution ended) never read the keys, nor may they. Made with
    # the services rather than at first use: the worker's threads share one of each.
    keys: Keys = field(repr=False)
    directory: Directory  # who can be emailed, read from the topic and kept a while
    # The deployment's OpenID Connect provider, if it has one (approvals.signin).
    provider: Provider | None = None


def build(settings: Settings, credentials: Mapping[str, str] | None = None) -> Services:
    """Clients for the settings' region; boto3 honours AWS_ENDPOINT_URL (the local stack).
    ``credentials`` are the AWS_* variables of a function's own environment, where it is
    not the process's (without them, boto3 reads them where Lambda puts them)."""
    given = credentials or {}
    session = boto3.Session(
        region_name=settings.region,
        aws_access_key_id=given.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=given.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=given.get("AWS_SESSION_TOKEN"),
    )

    def client(name: str):  # type: ignore[no-untyped-def]
        return session.client(name, config=CLIENT_CONFIG)  # type: ignore[call-overload]

    sns, secrets = client("sns"), client("secretsmanager")
    return Services(
        settings=settings,
        store=ApprovalStore(client("dynamodb"), settings.table_name, settings.retention_days),
        sns=sns,
        sfn=client("stepfunctions"),
        secrets=secrets,
        keys=Keys(secrets, settings.signing_secret_id),
        directory=Directory(sns, settings.topic_arn, timedelta(seconds=settings.directory_seconds)),
        provider=_provider(settings, secrets),
    )


def _provider(settings: Settings, secrets: SecretsManagerClient) -> Provider | None:
    if not settings.sign_in_available:
        return None

    def client_secret() -> str:  # read at the first code exchange, from Secrets Manager
        if not settings.oidc_client_secret_id:
            return ""  # a public client: PKCE alone
        return secrets.get_secret_value(SecretId=settings.oidc_client_secret_id)["SecretString"]

    return Provider(settings.oidc_issuer, settings.oidc_client_id, client_secret)


# The environment of the function being invoked, where it is not the process's own: the
# local stack running a template's functions in one process gives each the environment the
# template gives it (None: the process environment, as in Lambda).
function_environment: ContextVar[Mapping[str, str] | None] = ContextVar("function_environment", default=None)

_lock = threading.Lock()
# One entry per environment: None for the process's own, else the function's variables.
_services: dict[tuple[tuple[str, str], ...] | None, Services] = {}


def from_environment() -> Services:
    """This container's services, from its environment (Lambda: built on the first event).

    One object per process (per function environment, see ``function_environment``) even
    when several threads ask first at the same moment (the local stack's pollers, sweeper
    and HTTP server): a test that hooks a fault on its clients hooks the very clients every
    handler uses. ``functools.cache`` would let each concurrent first caller build, and
    keep, its own.
    """
    environment = function_environment.get()
    key = None if environment is None else tuple(sorted(environment.items()))
    with _lock:
        services = _services.get(key)
        if services is None:
            services = _services[key] = build(Settings.from_env(environment), environment)
        return services


_clients: dict[tuple[str, tuple[tuple[str, str], ...] | None], Any] = {}


def function_client(name: str) -> Any:
    """A client of one service for a function that needs no settings (the fan-out's
    summary): made once per environment, with the function's own credentials and region
    where the local stack gives it an environment of its own."""
    environment = function_environment.get()
    key = (name, None if environment is None else tuple(sorted(environment.items())))
    with _lock:
        if key not in _clients:
            given = environment or {}
            session = boto3.Session(
                region_name=given.get("AWS_REGION"),
                aws_access_key_id=given.get("AWS_ACCESS_KEY_ID"),
                aws_secret_access_key=given.get("AWS_SECRET_ACCESS_KEY"),
                aws_session_token=given.get("AWS_SESSION_TOKEN"),
            )
            _clients[key] = session.client(name, config=CLIENT_CONFIG)  # type: ignore[call-overload]
        return _clients[key]


def reset() -> None:
    """Forget this process's services: the next call builds them from the environment anew."""
    with _lock:
        _services.clear()
        _clients.clear()
