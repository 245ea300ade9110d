"""The AWS clients, settings and signing key of one process, made once.

Lambda reuses a container for many invocations, so everything here is built at the first
call and kept; the local stack and the tests build their own with :func:`build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from approvals.settings import Settings
from approvals.store import ApprovalStore

if TYPE_CHECKING:
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
    signing_key: bytes


def build(
    settings: Settings, session: boto3.Session | None = None, endpoint_url: str | None = None
) -> Services:
    session = session or boto3.Session(region_name=settings.region)
    extra = {"endpoint_url": endpoint_url} if endpoint_url else {}

    def client(name: str):  # type: ignore[no-untyped-def]
        return session.client(name, config=CLIENT_CONFIG, **extra)  # type: ignore[call-overload]

    secret = client("secretsmanager").get_secret_value(SecretId=settings.signing_secret_id)
    return Services(
        settings=settings,
        store=ApprovalStore(client("dynamodb"), settings.table_name, settings.retention_days),
        sns=client("sns"),
        sfn=client("stepfunctions"),
        signing_key=secret["SecretString"].encode(),
    )


@cache
def from_environment() -> Services:
    """This container's services, from its environment (Lambda: built on the first event)."""
    return build(Settings.from_env())
