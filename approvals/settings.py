"""Settings, read once from the environment and typed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import BaseModel, Field, field_validator

from approvals.models import Identity, reminder_time


class Settings(BaseModel):
    table_name: str
    signing_secret_id: str = Field(description="Secrets Manager secret holding the link key")
    # Only the worker sends email, so only it needs these two (the API cannot know its
    # own URL at deploy time without a cycle).
    topic_arn: str = ""
    api_url: str = Field(default="", description="Base URL of the approval API, for links")
    region: str = "us-east-1"
    # The worker's claim on a message lasts one visibility timeout: a redelivery before it
    # ends is a concurrent duplicate, one after it a retry.
    claim_seconds: int = 180
    allow_self_approval: bool = False
    reject_needs_reason: bool = True
    retention_days: int = 90
    # When approvers who have not decided get a reminder: a share of the time allowed
    # ("50%") or a time before expiry ("1h", "30m").
    reminders: tuple[str, ...] = ("50%", "1h")
    # How often the sweep runs: a request's recurring reminders may come no oftener.
    sweep_seconds: int = Field(default=300, ge=1)
    # How long a read of the approver directory is kept: an unsubscribe goes unnoticed by a
    # warm worker for at most this long.
    directory_seconds: int = Field(default=60, ge=0)
    # How long after an approver's last email the requests that arrive for them wait, to go
    # out together in one digest (0: only a worker batch's own requests are gathered).
    digest_seconds: int = Field(default=60, ge=0)
    # Sign-in (approvals.signin): "sign-in" requires it of every request, whatever the request says.
    identity: Identity = "link"
    oidc_issuer: str = Field(default="", description="The OpenID Connect issuer; empty: no sign-in")
    oidc_client_id: str = ""
    oidc_client_secret_id: str = Field(default="", description="Secrets Manager secret: the client secret")
    oidc_email_claim: str = "email"  # the ID token's claim that must equal the approver
    session_seconds: int = Field(default=600, ge=60, le=3_600)  # a sign-in spares repeat ones this long

    @property
    def sign_in_available(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    def needs_sign_in(self, identity: Identity) -> bool:
        """Whether a request asking for ``identity`` must be decided signed in here."""
        return "sign-in" in (identity, self.identity)

    @field_validator("reminders")
    @classmethod
    def _reminders_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for spec in value:
            reminder_time(
                spec, created=datetime(2000, 1, 1, tzinfo=UTC), expires=datetime(2000, 1, 2, tzinfo=UTC)
            )
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        flag = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
        return cls(
            table_name=env["APPROVALS_TABLE"],
            topic_arn=env.get("APPROVALS_TOPIC_ARN", ""),
            api_url=env.get("APPROVALS_API_URL", ""),
            signing_secret_id=env["APPROVALS_SIGNING_SECRET"],
            region=env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1")),
            claim_seconds=int(env.get("APPROVALS_CLAIM_SECONDS", "180")),
            allow_self_approval=flag[env.get("APPROVALS_ALLOW_SELF_APPROVAL", "false").lower()],
            reject_needs_reason=flag[env.get("APPROVALS_REJECT_NEEDS_REASON", "true").lower()],
            retention_days=int(env.get("APPROVALS_RETENTION_DAYS", "90")),
            directory_seconds=int(env.get("APPROVALS_DIRECTORY_SECONDS", "60")),
            digest_seconds=int(env.get("APPROVALS_DIGEST_SECONDS", "60")),
            sweep_seconds=int(env.get("APPROVALS_SWEEP_SECONDS", "300")),
            identity="sign-in" if env.get("APPROVALS_IDENTITY", "link") == "sign-in" else "link",
            oidc_issuer=env.get("APPROVALS_OIDC_ISSUER", ""),
            oidc_client_id=env.get("APPROVALS_OIDC_CLIENT_ID", ""),
            oidc_client_secret_id=env.get("APPROVALS_OIDC_CLIENT_SECRET", ""),
            oidc_email_claim=env.get("APPROVALS_OIDC_EMAIL_CLAIM", "email"),
            session_seconds=int(env.get("APPROVALS_SESSION_SECONDS", "600")),
            reminders=tuple(
                r.strip() for r in env.get("APPROVALS_REMINDERS", "50%,1h").split(",") if r.strip()
            ),
        )
