"""What moto's CloudFormation (5.2.5, server mode) lacks to deploy a synthesized CDK
template, added so that `approvals local --template` deploys the template itself.

- Eleven resource types are skipped with a log line (and a ``Ref`` to them resolves to
  nothing): each is made here with its service's own API, against the same moto server,
  as CloudFormation would make it.
- A Lambda version has no ``Fn::GetAtt`` attribute (an alias names its ``Version``): added.
- A state machine's ``DefinitionSubstitutions`` are ignored: they are applied here.
- State machines are created in the backend that does not execute them once execution
  is switched on: they go to the executing one (the backend the API serves).
- A ``Ref`` to an API Gateway deployment resolves to the deployment object: it is its id.
  So does one to an event bus (a rule on the bus of a service shared with other accounts):
  it is the bus's name.
- A resource that another one refers to is created when the reference is met, before what
  it ``DependsOn`` (an API deployment before its methods, which fails): its dependencies
  are created first.

What the local stack makes for CloudFormation it makes as the CDK bootstrap's execution role
(:func:`deployer_role`), with whose credentials CloudFormation makes a CDK app's resources:
a resource policy that names that role (the email topic's ``sns:Subscribe`` Deny) lets it
subscribe the approvers, and no one else.

Large templates (over 51,200 bytes) are deployed by ``TemplateURL``, from a bucket in
moto's S3, as the CDK CLI does with its staging bucket. Several templates (a shared service's
and its consumers', which import its exports: moto resolves ``Fn::ImportValue``) are deployed
in the order given, into the account and region they were synthesized for, as `cdk deploy`
does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

import boto3
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError
from moto.apigateway.models import Deployment
from moto.awslambda.models import LambdaVersion
from moto.cloudformation import parsing
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.core.common_models import CloudFormationModel
from moto.events.models import EventBus
from moto.stepfunctions.models import StateMachine
from moto.stepfunctions.responses import get_backend as stepfunctions_backend

from approvals.local import access

log = logging.getLogger(__name__)

TEMPLATE_BODY_LIMIT = 51_200  # CloudFormation's limit for TemplateBody; larger goes by TemplateURL
TEMPLATE_BUCKET = "approvals-local-templates"
# The CDK's bootstrap version parameter (read by every synthesized stack): `cdk bootstrap`
# writes it; locally there is no bootstrap stack, so the local stack writes it.
BOOTSTRAP_VERSION = "30"
BOOTSTRAP_QUALIFIER = "hnb659fds"  # the CDK's default


def deployer_role(account_id: str, region: str) -> str:
    """The role the CDK's default synthesizer has CloudFormation deploy with."""
    return f"arn:aws:iam::{account_id}:role/cdk-{BOOTSTRAP_QUALIFIER}-cfn-exec-role-{account_id}-{region}"


class TemplateError(Exception):
    """The template cannot be deployed or run locally; the message says why."""


Properties = dict[str, Any]
# Makes one resource with the service's API: (clients for the region, generated name,
# properties with every intrinsic function resolved) -> (what Ref gives, GetAtt attributes).
Maker = Callable[[Callable[[str], Any], str, Properties], tuple[str, dict[str, str]]]
_MAKERS: dict[str, Maker] = {}


def _makes(resource_type: str) -> Callable[[Maker], Maker]:
    def register(maker: Maker) -> Maker:
        _MAKERS[resource_type] = maker
        return maker

    return register


class _MadeByApi:
    """A resource moto's CloudFormation skips, made by the local stack with the service's API.
    (moto finds models among CloudFormationModel's direct subclasses: see _model.)"""

    resource_type: ClassVar[str]

    def __init__(self, physical_id: str, attributes: dict[str, str]) -> None:
        self._physical_id = physical_id
        self._attributes = attributes

    @property
    def physical_resource_id(self) -> str:
        return self._physical_id

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return True

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name not in self._attributes:
            raise UnformattedGetAttTemplateException()
        return self._attributes[attribute_name]

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **_: Any,
    ) -> _MadeByApi:
        # The endpoint: AWS_ENDPOINT_URL.
        session = access.credentials_of(deployer_role(account_id, region_name), region_name).session(
            region_name
        )
        physical_id, attributes = _MAKERS[cls.resource_type](
            cast(Callable[[str], Any], session.client),
            resource_name,
            cloudformation_json.get("Properties", {}),
        )
        return cls(physical_id, attributes)

    def is_created(self) -> bool:
        return True


def _model(resource_type: str) -> type:
    return type(
        f"Local{resource_type.replace('::', '')}",
        (_MadeByApi, CloudFormationModel),
        {"resource_type": resource_type, "cloudformation_type": staticmethod(lambda: resource_type)},
    )


def _pick(properties: Properties, *names: str) -> dict[str, Any]:
    return {name: properties[name] for name in names if name in properties}


@_makes("AWS::SecretsManager::Secret")
def _secret(client: Callable[[str], Any], name: str, properties: Properties) -> tuple[str, dict[str, str]]:
    secrets = client("secretsmanager")
    value = properties.get("SecretString")
    if value is None:
        generate = properties.get("GenerateSecretString", {})
        value = secrets.get_random_password(
            **_pick(generate, "PasswordLength", "ExcludeCharacters", "ExcludeNumbers", "ExcludePunctuation",
                    "ExcludeUppercase", "ExcludeLowercase", "IncludeSpace", "RequireEachIncludedType")
        )["RandomPassword"]  # fmt: skip
        if "SecretStringTemplate" in generate:
            value = json.dumps(
                {**json.loads(generate["SecretStringTemplate"]), generate["GenerateStringKey"]: value}
            )
    arn = secrets.create_secret(
        Name=properties.get("Name", name), SecretString=value, **_pick(properties, "Description")
    )["ARN"]
    return arn, {"Id": arn}


@_makes("AWS::SNS::Subscription")
def _subscription(client: Callable[[str], Any], _: str, properties: Properties) -> tuple[str, dict[str, str]]:
    attributes = {
        key: json.dumps(value) if isinstance(value, dict) else str(value)
        for key, value in _pick(
            properties, "FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy"
        ).items()
    }
    arn = client("sns").subscribe(
        TopicArn=properties["TopicArn"],
        Protocol=properties["Protocol"],
        Endpoint=properties["Endpoint"],
        Attributes=attributes,
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return arn, {"Arn": arn}


@_makes("AWS::SNS::TopicPolicy")
def _topic_policy(
    client: Callable[[str], Any], name: str, properties: Properties
) -> tuple[str, dict[str, str]]:
    for topic in properties["Topics"]:
        client("sns").set_topic_attributes(
            TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(properties["PolicyDocument"])
        )
    return name, {}


@_makes("AWS::SQS::QueuePolicy")
def _queue_policy(
    client: Callable[[str], Any], name: str, properties: Properties
) -> tuple[str, dict[str, str]]:
    for queue_url in properties["Queues"]:
        client("sqs").set_queue_attributes(
            QueueUrl=queue_url, Attributes={"Policy": json.dumps(properties["PolicyDocument"])}
        )
    return name, {}


@_makes("AWS::Events::EventBusPolicy")
def _event_bus_policy(
    client: Callable[[str], Any], _: str, properties: Properties
) -> tuple[str, dict[str, str]]:
    """One statement of a bus's policy (its ``Sid`` the ``StatementId``), beside the others."""
    events = client("events")
    bus = properties.get("EventBusName", "default")
    sid = properties["StatementId"]
    if "Statement" not in properties:  # the older form: an account and an action
        events.put_permission(
            EventBusName=bus, StatementId=sid, **_pick(properties, "Action", "Principal", "Condition")
        )
        return sid, {}
    policy = events.describe_event_bus(Name=bus).get("Policy")
    others = [s for s in json.loads(policy)["Statement"] if s.get("Sid") != sid] if policy else []
    statement = {**properties["Statement"], "Sid": sid}
    events.put_permission(
        EventBusName=bus, Policy=json.dumps({"Version": "2012-10-17", "Statement": [*others, statement]})
    )
    return sid, {}


@_makes("AWS::ApiGateway::Stage")
def _stage(client: Callable[[str], Any], _: str, properties: Properties) -> tuple[str, dict[str, str]]:
    client("apigateway").create_stage(
        restApiId=properties["RestApiId"],
        stageName=properties["StageName"],
        deploymentId=properties["DeploymentId"],
        **{k[0].lower() + k[1:]: v for k, v in _pick(properties, "Description", "Variables").items()},
    )
    return properties["StageName"], {}


@_makes("AWS::ApiGateway::Account")
def _account(client: Callable[[str], Any], name: str, properties: Properties) -> tuple[str, dict[str, str]]:
    if "CloudWatchRoleArn" in properties:
        client("apigateway").update_account(
            patchOperations=[
                {"op": "replace", "path": "/cloudwatchRoleArn", "value": properties["CloudWatchRoleArn"]}
            ]
        )
    return name, {}


@_makes("AWS::ApiGateway::RequestValidator")
def _request_validator(
    client: Callable[[str], Any], name: str, properties: Properties
) -> tuple[str, dict[str, str]]:
    created = client("apigateway").create_request_validator(
        restApiId=properties["RestApiId"],
        name=properties.get("Name", name),
        validateRequestBody=bool(properties.get("ValidateRequestBody", False)),
        validateRequestParameters=bool(properties.get("ValidateRequestParameters", False)),
    )
    return str(created["id"]), {"RequestValidatorId": str(created["id"])}


@_makes("AWS::Scheduler::Schedule")
def _schedule(client: Callable[[str], Any], name: str, properties: Properties) -> tuple[str, dict[str, str]]:
    schedule_name = properties.get("Name", name[-64:])
    arn = client("scheduler").create_schedule(
        Name=schedule_name,
        **_pick(properties, "ScheduleExpression", "FlexibleTimeWindow", "Target", "State", "Description",
                "GroupName", "ScheduleExpressionTimezone"),
    )["ScheduleArn"]  # fmt: skip
    return schedule_name, {"Arn": arn}


@_makes("AWS::CloudWatch::Alarm")
def _alarm(client: Callable[[str], Any], name: str, properties: Properties) -> tuple[str, dict[str, str]]:
    alarm_name = properties.get("AlarmName", name)
    cloudwatch = client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=alarm_name,
        **_pick(properties, "AlarmDescription", "ActionsEnabled", "AlarmActions", "OKActions",
                "InsufficientDataActions", "MetricName", "Namespace", "Statistic", "ExtendedStatistic",
                "Dimensions", "Period", "Unit", "EvaluationPeriods", "DatapointsToAlarm", "Threshold",
                "ComparisonOperator", "TreatMissingData", "Metrics", "ThresholdMetricId"),
    )  # fmt: skip
    arn = cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"][0]["AlarmArn"]
    return alarm_name, {"Arn": arn}


@_makes("AWS::Lambda::Alias")
def _alias(client: Callable[[str], Any], _: str, properties: Properties) -> tuple[str, dict[str, str]]:
    arn = client("lambda").create_alias(
        **_pick(properties, "FunctionName", "Name", "FunctionVersion", "Description")
    )["AliasArn"]
    return arn, {"AliasArn": arn}


def _version_number(version: LambdaVersion, attribute_name: str) -> str:
    if attribute_name != "Version":
        raise UnformattedGetAttTemplateException()
    return str(version.version)


def _substitute(definition: str, substitutions: Mapping[str, Any]) -> str:
    """``${Name}`` in a definition string, as Step Functions' DefinitionSubstitutions fill it."""
    return re.sub(r"\$\{([^}]+)\}", lambda m: str(substitutions.get(m.group(1), m.group(0))), definition)


def _create_state_machine(
    cls: type[StateMachine],
    /,
    resource_name: str,
    cloudformation_json: Any,
    account_id: str,
    region_name: str,
    **_: Any,
) -> StateMachine:
    properties = cloudformation_json["Properties"]
    definition = properties.get("DefinitionString") or json.dumps(properties.get("Definition", {}))
    return stepfunctions_backend(account_id, region_name).create_state_machine(
        properties.get("StateMachineName", resource_name),
        _substitute(definition, properties.get("DefinitionSubstitutions", {})),
        properties.get("RoleArn", ""),
        tags=[{"key": t["Key"], "value": t["Value"]} for t in properties.get("Tags", [])],
    )


_applied = False


def apply() -> None:
    """Teach moto's CloudFormation what it lacks; once per process."""
    global _applied
    if _applied:
        return
    _applied = True
    for resource_type in _MAKERS:
        _model(resource_type)
    parsing.get_model_list.cache_clear()  # the models are found as subclasses, once
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()
    create_when_referred = parsing.ResourceMap.__getitem__

    def create_dependencies_first(resources: parsing.ResourceMap, logical_id: str) -> Any:
        definition = resources._resource_json_map.get(logical_id)
        if definition and logical_id not in resources._parsed_resources:
            depends_on = definition.get("DependsOn", [])
            for dependency in [depends_on] if isinstance(depends_on, str) else depends_on:
                resources[dependency]
        return create_when_referred(resources, logical_id)

    parsing.ResourceMap.__getitem__ = create_dependencies_first  # type: ignore[method-assign]
    StateMachine.create_from_cloudformation_json = classmethod(_create_state_machine)  # type: ignore[assignment]
    Deployment.physical_resource_id = property(lambda self: self.id)  # type: ignore[attr-defined]
    EventBus.physical_resource_id = property(lambda self: self.name)  # type: ignore[attr-defined]
    LambdaVersion.has_cfn_attr = classmethod(lambda cls, attribute: attribute == "Version")  # type: ignore[assignment]
    LambdaVersion.get_cfn_attribute = _version_number  # type: ignore[attr-defined]


# How a cloud assembly's manifest names an environment-agnostic stack's account and region.
UNKNOWN_ACCOUNT, UNKNOWN_REGION = "unknown-account", "unknown-region"


def _synthesized_for(template: Path) -> tuple[str | None, str | None]:
    """The account and region the CDK synthesized ``template`` for, as the manifest beside it
    (cdk.out/manifest.json) names them: None where the stack names none (or no manifest)."""
    try:
        artifacts = json.loads((template.parent / "manifest.json").read_text())["artifacts"]
    except (OSError, ValueError, KeyError):
        return None, None
    for artifact in artifacts.values():
        if artifact.get("properties", {}).get("templateFile") == template.name:
            account, region = artifact.get("environment", "aws:///").removeprefix("aws://").split("/")
            return (
                None if account == UNKNOWN_ACCOUNT else account or None,
                None if region == UNKNOWN_REGION else region or None,
            )
    return None, None


def environment(templates: Sequence[Path]) -> tuple[str | None, str | None]:
    """The one account and region that ``templates`` were synthesized for (None: any), which
    the local stack runs: their ARNs name them (a queue policy naming a role of another stack,
    an API's stage URL), as a stack deployed elsewhere would not find them."""
    named = {template: _synthesized_for(template) for template in templates}
    accounts = {account for account, _ in named.values() if account}
    regions = {region for _, region in named.values() if region}
    if len(accounts) > 1 or len(regions) > 1:
        described = ", ".join(
            f"{template.name} for {account or 'any account'} in {region or 'any region'}"
            for template, (account, region) in named.items()
        )
        raise TemplateError(f"the local stack runs one account and region; the templates differ: {described}")
    return next(iter(accounts), None), next(iter(regions), None)


def _refuse_what_cannot_run(template: str) -> None:
    try:
        resources = json.loads(template)["Resources"]
    except (ValueError, KeyError, TypeError):
        raise TemplateError("not a synthesized template (JSON with Resources)") from None
    custom = [
        logical_id
        for logical_id, resource in resources.items()
        if resource.get("Type", "").startswith("Custom::")
        or resource.get("Type") == "AWS::CloudFormation::CustomResource"
    ]
    if custom:
        # moto sends a custom resource's request to its provider function in Docker, and
        # waits for the answer: the stack would never be created.
        raise TemplateError(f"custom resources cannot be created locally: {', '.join(custom)}")


def deploy(session: boto3.Session, template: str, stack_name: str, timeout: float = 120) -> dict[str, str]:
    """Create the stack from a template's text, as `cdk deploy` does; returns its outputs."""
    _refuse_what_cannot_run(template)
    cloudformation = session.client("cloudformation")
    session.client("ssm").put_parameter(
        Name=f"/cdk-bootstrap/{BOOTSTRAP_QUALIFIER}/version",
        Value=BOOTSTRAP_VERSION,
        Type="String",
        Overwrite=True,
    )
    source: dict[str, str]
    if len(template.encode()) <= TEMPLATE_BODY_LIMIT:
        source = {"TemplateBody": template}
    else:
        s3 = session.client("s3")
        region = session.region_name or "us-east-1"
        # S3 takes no location constraint in its first region, and requires one in the others.
        where: dict[str, Any] = (
            {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):  # made for an earlier template
            s3.create_bucket(Bucket=TEMPLATE_BUCKET, **where)
        key = f"{stack_name}.template.json"
        s3.put_object(Bucket=TEMPLATE_BUCKET, Key=key, Body=template.encode())
        source = {"TemplateURL": f"https://s3.{session.region_name}.amazonaws.com/{TEMPLATE_BUCKET}/{key}"}
    try:
        cloudformation.create_stack(StackName=stack_name, Capabilities=["CAPABILITY_IAM"], **source)
    except ClientError as error:
        raise TemplateError(str(error)) from None
    except ResponseParserError:  # moto answered with its 500 page: it failed on the template
        raise TemplateError(
            "moto's CloudFormation failed on it (an internal error); `cfn-lint` may say what is wrong"
        ) from None
    deadline = time.monotonic() + timeout
    while True:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise TemplateError(f"stack {stack_name} still {stack['StackStatus']} after {timeout} s")
        time.sleep(0.2)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise TemplateError(
            f"stack {stack_name}: {stack['StackStatus']} {stack.get('StackStatusReason', '')}"
        )
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
