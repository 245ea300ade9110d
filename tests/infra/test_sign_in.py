"""Sign-in in the template: the settings the worker, the sweeper and the API read, the
client secret only the API reads (never its value in the template), the sign-in's routes,
the checks of props and context, and the step's ``identity``."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs

from approvals_cdk import ApprovalService, ApprovalServiceProps, config
from approvals_cdk.config import ConfigError
from approvals_cdk.packaging import build
from approvals_cdk.step import ApprovalTask
from tests.cdk_templates import role_statements, synthesize

pytestmark = pytest.mark.xdist_group("infra")

ISSUER = "https://example.okta.com"
CLIENT_ID = "0oa1approvals"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    stack = cdk.Stack(cdk.App(), "Theirs")
    ApprovalService(
        stack,
        "Approvals",
        ApprovalServiceProps(asset=build(), identity="sign-in", oidc_issuer=ISSUER, oidc_client_id=CLIENT_ID),
    )
    return synthesize(stack)


def _function_environment(template: dict[str, Any], prefix: str) -> dict[str, Any]:
    (function,) = (
        r
        for lid, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function" and lid.startswith(prefix)
    )
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


def test_the_api_the_worker_and_the_sweeper_know_the_provider_and_only_the_api_its_secret(
    template: dict[str, Any],
) -> None:
    """The sweeper too: it votes "all matching" jobs under the deployment's sign-in rule,
    proven by the sign-in a job keeps while the deployment trusts its issuer, and its
    digests and reminders say when sign-in will be asked."""
    (secret_id,) = (lid for lid in template["Resources"] if lid.startswith("ApprovalsOidcClientSecret"))
    api = _function_environment(template, "ApprovalsApiFunction")
    others = {name: _function_environment(template, name) for name in ("ApprovalsWorker", "ApprovalsSweeper")}
    for environment in (api, *others.values()):
        assert environment["APPROVALS_IDENTITY"] == "sign-in"
        assert environment["APPROVALS_OIDC_ISSUER"] == ISSUER
        assert environment["APPROVALS_OIDC_CLIENT_ID"] == CLIENT_ID
    assert api["APPROVALS_OIDC_CLIENT_SECRET"] == {"Ref": secret_id}
    reads = [
        s
        for s in role_statements(template, "ApprovalsApiFunction")
        if s["Resource"] == {"Ref": secret_id} or s["Resource"] == [{"Ref": secret_id}]
    ]
    assert [s["Action"] for s in reads] == ["secretsmanager:GetSecretValue"]
    for name, environment in others.items():
        assert "APPROVALS_OIDC_CLIENT_SECRET" not in environment
        assert not any(
            json.dumps({"Ref": secret_id}) in json.dumps(s) for s in role_statements(template, name)
        )
    # The value is the provider's to issue: never in the template.
    assert "SecretString" not in template["Resources"][secret_id]["Properties"]


def test_the_api_has_the_sign_in_routes(template: dict[str, Any]) -> None:
    paths = {
        r["Properties"]["PathPart"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApiGateway::Resource"
    }
    assert {"signin", "callback", "signout"} <= paths


def test_a_service_without_sign_in_has_none_of_it() -> None:
    stack = cdk.Stack(cdk.App(), "Plain")
    ApprovalService(stack, "Approvals", ApprovalServiceProps(asset=build()))
    plain = synthesize(stack)
    assert not any(lid.startswith("ApprovalsOidcClientSecret") for lid in plain["Resources"])
    assert "APPROVALS_OIDC" not in json.dumps(plain)
    assert "APPROVALS_IDENTITY" not in json.dumps(plain)


@pytest.mark.parametrize(
    ("props", "named"),
    [
        ({"identity": "sign-in"}, "identity: sign-in needs an OpenID Connect provider"),
        ({"identity": "password"}, "identity: 'password' is not one of link, sign-in"),
        ({"oidc_issuer": ISSUER}, "oidc_issuer and oidc_client_id: give both"),
        ({"oidc_issuer": "http://example.okta.com", "oidc_client_id": CLIENT_ID}, "oidc_issuer:"),
    ],
)
def test_props_that_cannot_sign_in_are_refused_by_name(props: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        ApprovalService(
            cdk.Stack(cdk.App(), "Bad"), "Approvals", ApprovalServiceProps(asset=build(), **props)
        )


def test_the_context_takes_identity_issuer_client_id_and_a_secrets_arn() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:okta-client-AbCdEf"
    chosen = config.from_context(
        {
            "identity": "sign-in",
            "oidcIssuer": ISSUER + "/",
            "oidcClientId": CLIENT_ID,
            "oidcClientSecretArn": arn,
        }
    )
    assert (chosen.identity, chosen.oidc_issuer, chosen.oidc_client_id) == ("sign-in", ISSUER, CLIENT_ID)
    assert chosen.oidc_client_secret_arn == arn
    assert chosen.oidc_email_claim == "email"
    assert config.from_context({"oidcEmailClaim": "upn"}).oidc_email_claim == "upn"
    with pytest.raises(ConfigError, match="identity: sign-in needs an OpenID Connect provider"):
        config.from_context({"identity": "sign-in"})
    with pytest.raises(ConfigError, match="oidcClientSecretArn"):
        config.from_context(
            {"oidcIssuer": ISSUER, "oidcClientId": CLIENT_ID, "oidcClientSecretArn": "secret"}
        )


def test_the_step_asks_for_sign_in_and_refuses_an_unknown_identity() -> None:
    stack = cdk.Stack(cdk.App(), "Steps")
    queue = sqs.Queue(stack, "Queue")
    fields: dict[str, Any] = {"title": "Grant access", "approvers": ["alice@example.com"], "requester": "ci"}
    step = ApprovalTask(stack, "Step", queue=queue, timeout=Duration.hours(1), identity="sign-in", **fields)
    body = stack.resolve(step.to_state_json())["Parameters"]["MessageBody"]
    assert body["request"]["identity"] == "sign-in"
    with pytest.raises(ValueError, match="identity: 'password'"):
        ApprovalTask(stack, "Bad", queue=queue, timeout=Duration.hours(1), identity="password", **fields)
