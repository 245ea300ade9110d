"""A real OpenID Connect provider on localhost, for `approvals local --sign-in`.

oidc-provider-mock runs the provider's side of the flow for real (discovery, the authorize
page, the token endpoint, ID tokens signed with its own key, JWKS): the approval API signs
people in against it exactly as against Okta or Entra ID. Its page asks for a subject; a
person types the approver's address, which the API compares with the link's approver (the
``sub`` claim here: the provider vouches for no email, so nothing claims it is verified).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import boto3

CLIENT_ID = "approvals-local"
SECRET_NAME = "approvals-oidc-client-secret"  # noqa: S105 (its name, not the secret)


@dataclass(frozen=True)
class LocalIdentityProvider:
    issuer: str
    environment: dict[str, str]  # what the approval API's environment gets
    stop: Callable[[], None] = field(repr=False)


def start(session: boto3.Session) -> LocalIdentityProvider:
    """The provider on a free port of localhost, and its client secret in Secrets Manager."""
    from oidc_provider_mock import run_server_in_thread

    running = run_server_in_thread()
    server = running.__enter__()
    issuer = f"http://localhost:{server.server_port}"
    secret = session.client("secretsmanager").create_secret(
        Name=SECRET_NAME, SecretString=secrets.token_urlsafe(32)
    )
    environment = {
        "APPROVALS_OIDC_ISSUER": issuer,
        "APPROVALS_OIDC_CLIENT_ID": CLIENT_ID,
        "APPROVALS_OIDC_CLIENT_SECRET": secret["ARN"],
        "APPROVALS_OIDC_EMAIL_CLAIM": "sub",
    }
    return LocalIdentityProvider(issuer, environment, lambda: running.__exit__(None, None, None))
