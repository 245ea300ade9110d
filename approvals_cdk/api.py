"""`ApprovalApi`: the REST API the emailed links point at, and the function behind it.

GET shows a request and changes nothing; POST records a decision. Each method is throttled
on its own; an optional AWS WAF rule limits each address. With SnapStart, API Gateway calls
an alias of the function's latest published version, which starts from a snapshot.
"""

from __future__ import annotations

import itertools
import json
import re

import aws_cdk as cdk
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from approvals import signin
from approvals.store.items import INBOX_INDEX
from approvals_cdk import shared
from approvals_cdk.table import index_arns

# API Gateway access log fields. Neither the query string (a signed link's signature) nor the
# path (a short link's token) is logged: both are credentials.
APPROVAL_PATH = "/approvals/{approval_id}"
SHORT_LINK_PATH = "/a/{token}"  # what emails link to (approvals.shortlinks)
INBOX_PATH = "/i/{token}"  # an approver's batch page (approvals.inboxlinks)
# Each route and its path parameter: signed links, short links, inbox links.
ROUTES = ((APPROVAL_PATH, "approval_id"), (SHORT_LINK_PATH, "token"), (INBOX_PATH, "token"))
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integration.error",
}
# The CDK's feature flag that keeps a RestApi from making the account's CloudWatch role.
DISABLE_CLOUDWATCH_ROLE = "@aws-cdk/aws-apigateway:disableCloudWatchRole"
# The alias API Gateway invokes when SnapStart is on: always the latest published version.
LIVE_ALIAS = "live"


class ApprovalApi:
    """The approval function and the REST API in front of it (attributes ``function``,
    ``api``, and ``alias`` when SnapStart is on)."""

    def __init__(
        self,
        scope: Construct,
        factory: shared.Factory,
        table: dynamodb.Table,
        topic_arn: str,
        *,
        page_view_limits: tuple[float, int],
        vote_limits: tuple[float, int],
        rate_limit_per_ip: int | None,
        snap_start: bool,
        cloud_watch_role: bool | None,
    ) -> None:
        self._scope = scope
        # None: as the CDK's RestApi would do by itself, so that the flag of `cdk init`'s
        # cdk.json is followed as for any other API of the app.
        self._cloud_watch_role = (
            cloud_watch_role
            if cloud_watch_role is not None
            else not cdk.FeatureFlags.of(scope).is_enabled(DISABLE_CLOUDWATCH_ROLE)
        )
        self.function = factory.function(
            "ApiFunction",
            "approval_api.handler.lambda_handler",
            "Approval pages and decisions (API Gateway)",
            memory_mb=512,  # an approver waits on its cold start: more memory, more CPU
            timeout=Duration.seconds(15),
            snap_start=snap_start,
            # A sequence's next voter is emailed right after the vote (its link's URL is
            # stored with the approval: the API cannot name its own URL here, a cycle).
            environment={"APPROVALS_TOPIC_ARN": topic_arn},
        )
        self.alias = self._live_alias() if snap_start else None
        self.api = self._api(factory, page_view_limits, vote_limits, self.alias or self.function)
        if rate_limit_per_ip is None:
            shared.acknowledge(
                self.api.deployment_stage,
                "AwsSolutions-APIG3",
                "No WAF unless -c rateLimitPerIp is given: every request must carry an HMAC-signed"
                " link, each method is throttled, and a web ACL adds a fixed monthly cost.",
            )
        else:
            self._rate_limit_per_ip(self.api.deployment_stage, rate_limit_per_ip)
        # Read an approval for its page, record views and votes, answer the workflow; a bulk
        # vote's delivery confirmations (UpdateItems in a TransactWriteItems, which IAM
        # authorizes per write: it has no action of its own).
        shared.allow(self.function, ["dynamodb:GetItem", "dynamodb:UpdateItem"], [table.table_arn])
        # The batch page: the approver's inbox entries, then their approvals 100 at a time;
        # entries put for a sequence's next voter, and taken out by a bulk vote.
        shared.allow(self.function, ["dynamodb:Query"], [index_arns(table)[INBOX_INDEX]])
        shared.allow(self.function, ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"], [table.table_arn])
        shared.allow(self.function, ["states:SendTaskSuccess"], [shared.TASK_RESPONSE_RESOURCE])
        shared.allow(self.function, ["sns:Publish"], [topic_arn])  # a sequence's next voter
        shared.acknowledge(self.function.role, "AwsSolutions-IAM5[Resource::*]", shared.TASK_RESPONSE_REASON)

    def add_sign_in_routes(self) -> None:
        """GET /signin, /signin/callback and /signout: sign-in's redirects (approvals.signin)."""
        for path in (signin.START_PATH, signin.CALLBACK_PATH, signin.SIGN_OUT_PATH):
            added = self.api.root.resource_for_path(path).add_method("GET", self._integration)
            shared.acknowledge(
                added,
                "AwsSolutions-APIG4",
                "The sign-in's own redirects: the function checks the flow's sealed cookie and the"
                " identity provider's ID token; nothing here decides an approval.",
            )
            shared.acknowledge(
                added,
                "AwsSolutions-COG4",
                "Approvers sign in with the company's OpenID Connect provider, not a Cognito user pool.",
            )

    def _live_alias(self) -> lambda_.Alias:
        """The latest published version: Lambda takes its snapshot when it is published."""
        cdk.Annotations.of(self.function).acknowledge_warning(
            "@aws-cdk/aws-lambda:snapStartRequirePublish",
            "The alias publishes the function's current version, and API Gateway invokes the alias.",
        )
        return lambda_.Alias(
            self._scope, "ApiFunctionAlias", alias_name=LIVE_ALIAS, version=self.function.current_version
        )

    def _api(
        self,
        factory: shared.Factory,
        page_view_limits: tuple[float, int],
        vote_limits: tuple[float, int],
        handler: lambda_.IFunction,
    ) -> apigateway.RestApi:
        access_logs = factory.log_group("ApiAccessLogs")
        api = apigateway.RestApi(
            self._scope,
            "Api",
            description="Approval links: GET shows a request, POST records a decision",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # API Gateway writes access logs through the account's CloudWatch role (one per
            # account and region, shared by every REST API there): made and set here, or left
            # to whoever manages it. A role made is kept on teardown, since other APIs may
            # rely on it.
            cloud_watch_role=self._cloud_watch_role,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN if self._cloud_watch_role else None,
            deploy_options=apigateway.StageOptions(
                stage_name="prod",
                # Anything else (an unknown path) shares the page views' limits.
                throttling_rate_limit=page_view_limits[0],
                throttling_burst_limit=page_view_limits[1],
                method_options={
                    f"{path}/{method}": apigateway.MethodDeploymentOptions(
                        throttling_rate_limit=rate, throttling_burst_limit=burst
                    )
                    for path, _ in ROUTES
                    for method, (rate, burst) in (("GET", page_view_limits), ("POST", vote_limits))
                },
                access_log_destination=apigateway.LogGroupLogDestination(access_logs),
                access_log_format=apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
                # No execution logging and no data trace: both can record the request's query
                # string, which holds the link's signature. Access logs (above) stand in.
                data_trace_enabled=False,
            ),
        )
        validator = api.add_request_validator(
            "PathValidator", validate_request_parameters=True, validate_request_body=False
        )
        integration = apigateway.LambdaIntegration(handler, allow_test_invoke=False)
        self._integration = integration  # the sign-in's routes, if any, are added later
        for (path, parameter), method in itertools.product(ROUTES, ("GET", "POST")):
            added = api.root.resource_for_path(path).add_method(
                method,
                integration,
                request_validator=validator,
                # The query string is not required here: a link missing a part must reach the
                # function, which answers with a readable page rather than API Gateway's 400.
                request_parameters={f"method.request.path.{parameter}": True},
            )
            shared.acknowledge(
                added,
                "AwsSolutions-APIG4",
                "Approvers are people following an emailed link, not AWS principals or app users:"
                " the function authorizes each request by the link's HMAC signature, expiry and approver,"
                " by the short link's token, whose hash the table binds to one approver, or by the"
                " inbox link's token, an HMAC of the approver's id and its expiry.",
            )
            shared.acknowledge(
                added,
                "AwsSolutions-COG4",
                "No Cognito user pool: approvers are authorized by the link (signed or short)"
                " they were emailed.",
            )
        shared.acknowledge(
            api.node.default_child,
            "AwsSolutions-APIG2",
            "The path parameter is validated by API Gateway; the link's fields and the form are"
            " validated by the function, which answers malformed input with a readable page.",
        )
        shared.acknowledge(
            api.deployment_stage,
            "AwsSolutions-APIG6",
            "Execution logging is off on purpose: it can record the query string, which holds the"
            " link's signature. Access logs, in a format without the query string, are on.",
        )
        account_role = api.node.try_find_child("CloudWatchRole")
        if account_role is not None:
            shared.acknowledge(
                account_role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                "The account-level role API Gateway needs to write access logs; AWS's managed policy"
                " is the documented one for it, and it serves every REST API in the account.",
            )
        return api

    def _rate_limit_per_ip(self, stage: apigateway.Stage, limit: int) -> None:
        """A web ACL on the stage that blocks an address sending more than ``limit``
        requests in 5 minutes: one client cannot starve the approvers."""
        name = re.sub(r"[^A-Za-z0-9_-]", "-", f"{cdk.Stack.of(stage).stack_name}-approval-api")[:128]

        def visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
            )

        acl = wafv2.CfnWebACL(
            self._scope,
            "ApiWebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility(name),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="RateLimitPerIp",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            aggregate_key_type="IP", limit=limit
                        )
                    ),
                    visibility_config=visibility(f"{name}-rate-limit-per-ip"),
                )
            ],
        )
        wafv2.CfnWebACLAssociation(
            self._scope, "ApiWebAclAssociation", resource_arn=stage.stage_arn, web_acl_arn=acl.attr_arn
        )
