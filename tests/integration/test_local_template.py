"""`approvals local --template` on a small template of a team's own: each of the eleven
resource types moto's CloudFormation skips, a substituted definition, a Ref to an API
deployment, and every trigger the local stack plays for AWS (event source mapping, REST
API integration, schedule, EventBridge rule on Step Functions status changes).

The template's two functions are ``record`` below, run in this process by the local stack
with the environment the template gives each; the tests read what they received.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from approvals import cli, runtime
from approvals.local.cloudformation import TEMPLATE_BODY_LIMIT, TEMPLATE_BUCKET, TemplateError
from approvals.local.environments import IN_PROCESS
from approvals.local.info import LocalInfo
from approvals.local.stack import LocalStack
from approvals.local.template import rate_seconds
from tests.conftest import eventually

pytestmark = pytest.mark.xdist_group("local-template")

received: list[tuple[dict[str, Any], dict[str, str]]] = []
_received_lock = threading.Lock()


def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The template's functions: note each event with the environment it ran with."""
    with _received_lock:
        received.append((event, dict(runtime.function_environment.get() or {})))
    if "httpMethod" in event:
        return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "recorded"}
    return {"batchItemFailures": []}


def events_where(matches: Callable[[dict[str, Any]], bool]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    with _received_lock:
        return [(event, environment) for event, environment in received if matches(event)]


def wait_for_events(
    matches: Callable[[dict[str, Any]], bool], what: str
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """The events the functions received that match, once there is one."""
    return eventually(lambda: events_where(matches) or None, what=what)


ROLE = {"Fn::GetAtt": ["Role", "Arn"]}
LAMBDA_PATH = "2015-03-31/functions/${PageLive}/invocations"  # the alias's ARN
FUNCTION_ARN = {"Fn::GetAtt": ["Recorder", "Arn"]}
POLICY = {  # what the tests do not do: the local stack evaluates a resource policy's Deny
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": ["sqs:DeleteQueue", "sns:DeleteTopic"],
            "Resource": "*",
        }
    ],
}
BUILD = json.dumps(
    {
        "StartAt": "Build",
        "States": {
            "Build": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "${Builder}", "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "End": True,
            }
        },
    }
)


PARTNER_ACCOUNTS = ("111111111111", "222222222222")


def role_for(service: str) -> dict[str, Any]:
    """A role the service may assume, with no policy of its own."""
    trust = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [trust]}},
    }


RESOURCES: dict[str, Any] = {
    "Role": role_for("lambda.amazonaws.com"),
    # Once set up, the local stack enforces the roles' policies: the Pipeline may invoke
    # the Recorder, and Bare, with no policy, may do nothing.
    "InvokeRecorder": {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": "InvokeRecorder",
            "Roles": [{"Ref": "Role"}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": FUNCTION_ARN}
                ],
            },
        },
    },
    "Bare": role_for("states.amazonaws.com"),
    "Key": {
        "Type": "AWS::SecretsManager::Secret",
        "Properties": {"GenerateSecretString": {"PasswordLength": 40, "ExcludePunctuation": True}},
    },
    "Topic": {"Type": "AWS::SNS::Topic"},
    "TopicPolicy": {
        "Type": "AWS::SNS::TopicPolicy",
        "Properties": {"Topics": [{"Ref": "Topic"}], "PolicyDocument": POLICY},
    },
    "Ann": {
        "Type": "AWS::SNS::Subscription",
        "Properties": {
            "TopicArn": {"Ref": "Topic"},
            "Protocol": "email",
            "Endpoint": "ann@example.com",
            "FilterPolicy": {"approver": ["ann@example.com"]},
        },
    },
    "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 30}},
    "QueuePolicy": {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {"Queues": [{"Ref": "Queue"}], "PolicyDocument": POLICY},
    },
    "Recorder": {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Handler": "tests.integration.test_local_template.record",
            "Runtime": "python3.11",
            "Role": ROLE,
            "Code": {"S3Bucket": "assets-of-cdk", "S3Key": "recorder.zip"},
            "Environment": {
                "Variables": {
                    "KEY": {"Ref": "Key"},
                    "QUEUE": {"Ref": "Queue"},
                    "API": {
                        "Fn::Sub": "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}/"
                    },
                }
            },
        },
    },
    # Behind the API (the Recorder names the API's URL: behind it too, it would be a cycle).
    # Its code is only in its asset directory, as a team's own function's would be.
    "Page": {
        "Type": "AWS::Lambda::Function",
        "Metadata": {"aws:asset:path": "asset.team"},
        "Properties": {
            "Handler": "team_pages.handler",
            "Runtime": "python3.11",
            "Role": ROLE,
            "Code": {"S3Bucket": "assets-of-cdk", "S3Key": "recorder.zip"},
        },
    },
    # The API invokes an alias of its published version, as with SnapStart (-c snapStart=true).
    "PageVersion": {"Type": "AWS::Lambda::Version", "Properties": {"FunctionName": {"Ref": "Page"}}},
    "PageLive": {
        "Type": "AWS::Lambda::Alias",
        "Properties": {
            "FunctionName": {"Ref": "Page"},
            "FunctionVersion": {"Fn::GetAtt": ["PageVersion", "Version"]},
            "Name": "live",
        },
    },
    "Mapping": {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["Queue", "Arn"]},
            "FunctionName": {"Ref": "Recorder"},
            "BatchSize": 5,
        },
    },
    "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "team-api"}},
    "Things": {
        "Type": "AWS::ApiGateway::Resource",
        "Properties": {
            "RestApiId": {"Ref": "Api"},
            "ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
            "PathPart": "things",
        },
    },
    "Validator": {
        "Type": "AWS::ApiGateway::RequestValidator",
        "Properties": {"RestApiId": {"Ref": "Api"}, "Name": "paths", "ValidateRequestParameters": True},
    },
    "GetThings": {
        "Type": "AWS::ApiGateway::Method",
        "Properties": {
            "RestApiId": {"Ref": "Api"},
            "ResourceId": {"Ref": "Things"},
            "HttpMethod": "GET",
            "AuthorizationType": "NONE",
            "RequestValidatorId": {"Ref": "Validator"},
            "Integration": {
                "Type": "AWS_PROXY",
                "IntegrationHttpMethod": "POST",
                "Uri": {"Fn::Sub": f"arn:aws:apigateway:${{AWS::Region}}:lambda:path/{LAMBDA_PATH}"},
            },
        },
    },
    "Deployment": {
        "Type": "AWS::ApiGateway::Deployment",
        "DependsOn": ["GetThings"],
        "Properties": {"RestApiId": {"Ref": "Api"}},
    },
    "Stage": {
        "Type": "AWS::ApiGateway::Stage",
        "Properties": {
            "RestApiId": {"Ref": "Api"},
            "DeploymentId": {"Ref": "Deployment"},
            "StageName": "live",
        },
    },
    "ApiAccount": {"Type": "AWS::ApiGateway::Account", "Properties": {"CloudWatchRoleArn": ROLE}},
    "Workflow": {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            "RoleArn": ROLE,
            "DefinitionString": json.dumps(
                {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "${Error}"}}}
            ),
            "DefinitionSubstitutions": {"Error": "Team.BuildFailed"},
        },
    },
    "Pipeline": {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            "RoleArn": ROLE,
            "DefinitionString": BUILD,
            "DefinitionSubstitutions": {"Builder": FUNCTION_ARN},
        },
    },
    "Ungranted": {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            "RoleArn": {"Fn::GetAtt": ["Bare", "Arn"]},
            "DefinitionString": BUILD,
            "DefinitionSubstitutions": {"Builder": FUNCTION_ARN},
        },
    },
    "WorkflowFailed": {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "EventPattern": {
                "source": ["aws.states"],
                "detail-type": ["Step Functions Execution Status Change"],
                "detail": {"status": ["FAILED"], "stateMachineArn": [{"Ref": "Workflow"}]},
            },
            "Targets": [{"Id": "recorder", "Arn": FUNCTION_ARN}],
        },
    },
    "Tick": {
        "Type": "AWS::Scheduler::Schedule",
        "Properties": {
            "ScheduleExpression": "rate(5 minutes)",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {"Arn": FUNCTION_ARN, "RoleArn": ROLE, "Input": json.dumps({"tick": True})},
        },
    },
    # A bus other accounts may put events on: one statement per account, as the CDK makes
    # them (the shared service's ExecutionEventsBus).
    "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "team-bus"}},
    **{
        f"PutsFrom{account}": {
            "Type": "AWS::Events::EventBusPolicy",
            "Properties": {
                "EventBusName": {"Ref": "Bus"},
                "StatementId": f"PutsFrom{account}",
                "Statement": {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": "events:PutEvents",
                    "Resource": {"Fn::GetAtt": ["Bus", "Arn"]},
                },
            },
        }
        for account in PARTNER_ACCOUNTS
    },
    "QueueAlarm": {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["Queue", "QueueName"]}}],
            "Statistic": "Maximum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "AlarmActions": [{"Ref": "Topic"}],
        },
    },
}
SKIPPED_BY_MOTO = {
    "AWS::SecretsManager::Secret", "AWS::SNS::Subscription", "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy",
    "AWS::ApiGateway::Stage", "AWS::ApiGateway::Account", "AWS::ApiGateway::RequestValidator",
    "AWS::Scheduler::Schedule", "AWS::CloudWatch::Alarm", "AWS::Lambda::Alias", "AWS::Events::EventBusPolicy",
}  # fmt: skip


TEAM_PAGES = """
from tests.integration.test_local_template import record


def handler(event, context):
    return record(event, context)
"""


def team_template(padding: int = 0) -> dict[str, Any]:
    """The template; ``padding`` bytes of metadata make it one that must go by TemplateURL."""
    return {
        "Metadata": {"Padding": "x" * padding},
        "Resources": RESOURCES,
        "Outputs": {"QueueUrl": {"Value": {"Ref": "Queue"}}},
    }


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalInfo, boto3.Session]]:
    path = tmp_path_factory.mktemp("cdk.out") / "TeamStack.template.json"
    (path.parent / "asset.team").mkdir()
    (path.parent / "asset.team" / "team_pages.py").write_text(TEAM_PAGES)
    path.write_text(json.dumps(team_template(padding=TEMPLATE_BODY_LIMIT)))
    # In this process: the tests read what the template's functions recorded here.
    stack = LocalStack(moto_port=0, api_port=0, sweep_interval=0.5, templates=[path], concurrency=IN_PROCESS)
    info = stack.start()
    try:
        session = boto3.Session(
            region_name=info.region, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        yield info, session
    finally:
        stack.stop()


def client(deployed: tuple[LocalInfo, boto3.Session], name: str) -> Any:
    info, session = deployed
    return session.client(name, endpoint_url=info.endpoint_url)  # type: ignore[call-overload]


def physical_ids(deployed: tuple[LocalInfo, boto3.Session]) -> dict[str, str]:
    summaries = client(deployed, "cloudformation").list_stack_resources(StackName="TeamStack")[
        "StackResourceSummaries"
    ]
    return {s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries}


def run(deployed: tuple[LocalInfo, boto3.Session], machine: str, execution_input: str = "{}") -> Any:
    """Starts the template's state machine ``machine`` (logical id); its description once ended."""
    sfn = client(deployed, "stepfunctions")
    arn = sfn.start_execution(stateMachineArn=physical_ids(deployed)[machine], input=execution_input)[
        "executionArn"
    ]

    def ended() -> Any:
        described = sfn.describe_execution(executionArn=arn)
        return described if described["status"] != "RUNNING" else None

    return eventually(ended, what="the execution to end")


def test_every_resource_type_moto_skips_is_created(deployed: tuple[LocalInfo, boto3.Session]) -> None:
    ids = physical_ids(deployed)
    assert {RESOURCES[logical_id]["Type"] for logical_id in ids} >= SKIPPED_BY_MOTO
    secret = client(deployed, "secretsmanager").get_secret_value(SecretId=ids["Key"])["SecretString"]
    assert len(secret) == 40
    assert secret.isalnum()
    subscription = client(deployed, "sns").get_subscription_attributes(SubscriptionArn=ids["Ann"])[
        "Attributes"
    ]
    assert json.loads(subscription["FilterPolicy"]) == {"approver": ["ann@example.com"]}
    topic = client(deployed, "sns").get_topic_attributes(TopicArn=ids["Topic"])["Attributes"]
    assert json.loads(topic["Policy"]) == POLICY
    queue = client(deployed, "sqs").get_queue_attributes(QueueUrl=ids["Queue"], AttributeNames=["Policy"])
    assert json.loads(queue["Attributes"]["Policy"]) == POLICY
    apigateway = client(deployed, "apigateway")
    stage = apigateway.get_stage(restApiId=ids["Api"], stageName="live")
    assert stage["deploymentId"] == ids["Deployment"], "a Ref to the deployment is its id"
    validator = apigateway.get_request_validator(restApiId=ids["Api"], requestValidatorId=ids["Validator"])
    assert validator["validateRequestParameters"] is True
    assert apigateway.get_account()["cloudwatchRoleArn"].endswith(ids["Role"])
    schedule = client(deployed, "scheduler").get_schedule(Name=ids["Tick"])
    assert schedule["ScheduleExpression"] == "rate(5 minutes)"
    # Over CloudFormation's 51,200 bytes for a TemplateBody: it went by TemplateURL, from S3.
    uploaded = client(deployed, "s3").get_object(Bucket=TEMPLATE_BUCKET, Key="TeamStack.template.json")
    assert uploaded["ContentLength"] > TEMPLATE_BODY_LIMIT
    alias = client(deployed, "lambda").get_alias(FunctionName=ids["Page"], Name="live")
    assert alias["AliasArn"] == ids["PageLive"]
    assert alias["FunctionVersion"] == "1"  # the published version's GetAtt Version
    alarm = client(deployed, "cloudwatch").describe_alarms(AlarmNames=[ids["QueueAlarm"]])["MetricAlarms"][0]
    assert alarm["AlarmActions"] == [ids["Topic"]]
    bus = client(deployed, "events").describe_event_bus(Name="team-bus")
    assert json.loads(bus["Policy"])["Statement"] == [
        {
            "Sid": f"PutsFrom{account}",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
            "Action": "events:PutEvents",
            "Resource": bus["Arn"],
        }
        for account in PARTNER_ACCOUNTS
    ]


def test_state_machine_runs_its_substituted_definition(deployed: tuple[LocalInfo, boto3.Session]) -> None:
    described = run(deployed, "Workflow")
    arn = described["executionArn"]
    assert described["status"] == "FAILED"
    assert described["error"] == "Team.BuildFailed"
    # The rule on failed executions of this state machine reaches the function, as in AWS.
    events = wait_for_events(
        lambda e: e.get("detail", {}).get("executionArn") == arn, what="the status-change event"
    )
    event = events[0][0]
    assert event["source"] == "aws.states"
    assert event["detail-type"] == "Step Functions Execution Status Change"
    assert event["detail"]["status"] == "FAILED"
    assert len(events) == 1, "one event per status change"


def test_function_runs_with_the_environment_the_template_gives_it(
    deployed: tuple[LocalInfo, boto3.Session],
) -> None:
    info, _ = deployed
    ids = physical_ids(deployed)
    ticks = wait_for_events(lambda e: e == {"tick": True}, what="the schedule to fire")
    environment = ticks[0][1]
    assert environment["KEY"] == ids["Key"]
    assert environment["QUEUE"] == ids["Queue"]
    assert environment["API"] == f"{info.api_url}/", "the stage's URL is the local API's"
    assert environment["AWS_REGION"] == "us-east-1"


def test_a_schedule_fires_at_once_then_at_its_own_rate(deployed: tuple[LocalInfo, boto3.Session]) -> None:
    """As EventBridge Scheduler runs a rate schedule that names no start date: invoked at
    once, then every 5 minutes (the template's rate), not at the pace of the stack's own
    timers (every 0.5 s here)."""
    wait_for_events(lambda e: e == {"tick": True}, what="the schedule to fire")
    time.sleep(4 * 0.5)  # four of the stack's timer periods: a schedule played at that pace fires again
    assert len(events_where(lambda e: e == {"tick": True})) == 1


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200), ("rate(1 day)", 86400)],
)
def test_a_rate_is_read_from_its_expression(expression: str, seconds: int) -> None:
    assert rate_seconds("Sweep", expression) == seconds


@pytest.mark.parametrize("expression", ["cron(0/5 * * * ? *)", "rate(0 minutes)", "rate(5 seconds)"])
def test_a_schedule_the_local_stack_cannot_play_is_refused_by_name(expression: str) -> None:
    with pytest.raises(TemplateError, match=r"schedule Sweep: the local stack plays rate schedules"):
        rate_seconds("Sweep", expression)


def test_a_state_machine_invokes_the_function_here(deployed: tuple[LocalInfo, boto3.Session]) -> None:
    """A lambda:invoke task (and so Lambda's Invoke) runs the template's function in this
    process: moto would run it in Docker."""
    described = run(deployed, "Pipeline", '{"build": 7}')
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == {"batchItemFailures": []}, "what record() answered"
    assert events_where(lambda e: e == {"build": 7})


def test_a_state_machine_may_only_make_the_calls_its_role_allows(
    deployed: tuple[LocalInfo, boto3.Session],
) -> None:
    """Once set up, moto refuses an assumed role what its policies do not allow: the
    executor invokes with the state machine's role, which here has no policy at all."""
    described = run(deployed, "Ungranted", '{"build": 8}')
    assert described["status"] == "FAILED", described
    assert "AccessDenied" in described.get("cause", "") or "not authorized" in described.get("cause", "")
    assert not events_where(lambda e: e == {"build": 8}), "the function never ran"


def test_event_source_mapping_is_played_by_a_poller(deployed: tuple[LocalInfo, boto3.Session]) -> None:
    info, _ = deployed
    client(deployed, "sqs").send_message(QueueUrl=physical_ids(deployed)["Queue"], MessageBody="hello")
    batches = wait_for_events(
        lambda e: any(r.get("body") == "hello" for r in e.get("Records", [])),
        what="the message to reach the function",
    )
    assert batches[0][0]["Records"][0]["eventSource"] == "aws:sqs"
    mappings = client(deployed, "lambda").list_event_source_mappings()["EventSourceMappings"]
    assert [m["State"] for m in mappings] == ["Disabled"], "moto's own delivery would need Docker"
    assert info.queue_url == physical_ids(deployed)["Queue"], "read from the stack's outputs"


def test_local_api_serves_the_function_behind_the_rest_api_from_its_asset(
    deployed: tuple[LocalInfo, boto3.Session],
) -> None:
    info, _ = deployed
    with urllib.request.urlopen(f"{info.api_url}/things?x=1", timeout=10) as response:
        assert response.status == 200
        assert response.read() == b"recorded"
    requests = events_where(lambda e: e.get("path") == "/things")
    assert requests[0][0]["httpMethod"] == "GET"
    assert requests[0][0]["queryStringParameters"] == {"x": "1"}


def test_a_template_that_cannot_run_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Last in this module: a stack starting in this process resets moto's state, which the
    module's stack shares."""
    missing = tmp_path / "NoStack.template.json"
    assert cli.main(["local", "--moto-port", "0", "--api-port", "0", "--template", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"approvals: cannot run {missing} locally: no template at {missing}"
        " (`cdk synth` writes cdk.out/STACK.template.json)\n"
    )
    broken = tmp_path / "Broken.template.json"
    broken.write_text(json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}, "Outputs": {
        "Nowhere": {"Value": {"Fn::GetAtt": ["Missing", "Arn"]}}}}))  # fmt: skip
    custom = tmp_path / "Custom.template.json"
    custom.write_text(
        json.dumps({"Resources": {"Seed": {"Type": "Custom::Seed", "Properties": {"ServiceToken": "x"}}}})
    )
    assert cli.main(["local", "--moto-port", "0", "--api-port", "0", "--template", str(custom)]) == 2
    assert capsys.readouterr().err == (
        f"approvals: cannot run {custom} locally: custom resources cannot be created locally: Seed\n"
    )
    environment = dict(os.environ)
    assert cli.main(["local", "--moto-port", "0", "--api-port", "0", "--template", str(broken)]) == 2
    printed = capsys.readouterr().err
    assert printed == (
        f"approvals: cannot run {broken} locally: moto's CloudFormation failed on it (an internal"
        " error); `cfn-lint` may say what is wrong\n"
    )
    assert dict(os.environ) == environment, "the stack that did not start was stopped"


def test_templates_for_two_environments_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The local stack runs the account and region the templates were synthesized for (their
    ARNs name them): one of each."""
    paths = []
    for stack, environment in (
        ("Service", "aws://111111111111/eu-west-1"),
        ("Other", "aws://222222222222/eu-west-1"),
    ):
        outdir = tmp_path / stack
        outdir.mkdir()
        (outdir / f"{stack}.template.json").write_text(json.dumps(team_template()))
        artifact = {"type": "aws:cloudformation:stack", "environment": environment,
                    "properties": {"templateFile": f"{stack}.template.json"}}  # fmt: skip
        (outdir / "manifest.json").write_text(json.dumps({"artifacts": {stack: artifact}}))
        paths += ["--template", str(outdir / f"{stack}.template.json")]
    assert cli.main(["local", "--moto-port", "0", "--api-port", "0", *paths]) == 2
    assert capsys.readouterr().err == (
        f"approvals: cannot run {paths[1]}, {paths[3]} locally: the local stack runs one account and"
        " region; the templates differ: Service.template.json for 111111111111 in eu-west-1,"
        " Other.template.json for 222222222222 in eu-west-1\n"
    )
    twice = ["--template", paths[1], "--template", paths[1]]
    assert cli.main(["local", "--moto-port", "0", "--api-port", "0", *twice]) == 2
    assert capsys.readouterr().err == (
        f"approvals: cannot run {paths[1]}, {paths[1]} locally: two templates of one stack name"
        " (each stack is named after its file)\n"
    )
