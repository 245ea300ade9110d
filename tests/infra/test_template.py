"""The synthesized template holds every part of the service, wired as the README describes.

Checked with aws_cdk.assertions on the template the real `cdk synth` wrote.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from approvals import stack_outputs
from approvals.models import Approval, ApprovalRequest
from approvals.settings import Settings
from approvals.store import ApprovalStore
from approvals.store.table import table_definition
from approvals_cdk import packaging
from approvals_cdk.table import TTL_ATTRIBUTE
from tests.infra.conftest import APPROVERS, RATE_LIMIT_PER_IP, Synthesis
from tests.infra.lookup import HANDLERS, arn, email_topic, function, only, queues

pytestmark = pytest.mark.xdist_group("infra")


@pytest.fixture(scope="module")
def assertions(template: dict[str, Any]) -> Template:
    return Template.from_json(template)


# -- queues ------------------------------------------------------------------------------


def test_request_queue_is_encrypted_and_redrives_after_a_few_receives(
    synthesis: Synthesis, assertions: Template
) -> None:
    request, dead_letter = queues(synthesis)
    properties = synthesis.template["Resources"][request]["Properties"]
    assert properties["SqsManagedSseEnabled"] is True
    assert properties["RedrivePolicy"] == {"deadLetterTargetArn": arn(dead_letter), "maxReceiveCount": 5}


def test_dead_letter_queue_is_encrypted_and_keeps_messages_longest(synthesis: Synthesis) -> None:
    _, dead_letter = queues(synthesis)
    properties = synthesis.template["Resources"][dead_letter]["Properties"]
    assert properties["SqsManagedSseEnabled"] is True
    assert properties["MessageRetentionPeriod"] == 14 * 86_400  # the most SQS allows


def test_visibility_timeout_is_at_least_six_times_the_workers(synthesis: Synthesis) -> None:
    request, _ = queues(synthesis)
    visibility = synthesis.template["Resources"][request]["Properties"]["VisibilityTimeout"]
    _, worker = function(synthesis, "worker")
    assert visibility >= 6 * worker["Properties"]["Timeout"]
    # The worker's claim on a request lasts exactly one visibility timeout.
    assert worker["Properties"]["Environment"]["Variables"]["APPROVALS_CLAIM_SECONDS"] == str(visibility)


def test_the_worker_refuses_recurring_reminders_oftener_than_the_sweep_runs(synthesis: Synthesis) -> None:
    _, schedule = only(synthesis.resources("AWS::Scheduler::Schedule"))
    _, worker = function(synthesis, "worker")
    assert schedule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert worker["Properties"]["Environment"]["Variables"]["APPROVALS_SWEEP_SECONDS"] == "300"


def test_both_queues_refuse_unencrypted_transport(synthesis: Synthesis, assertions: Template) -> None:
    for queue in queues(synthesis):
        assertions.has_resource_properties(
            "AWS::SQS::QueuePolicy",
            {
                "Queues": [{"Ref": queue}],
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                },
            },
        )


@pytest.mark.parametrize(
    ("queue", "handler", "batching"),
    [
        (0, "worker", {"BatchSize": 10, "MaximumBatchingWindowInSeconds": Match.any_value()}),
        (1, "dead_letter", {}),
    ],
    ids=["the worker drains the request queue in batches", "the dead-letter handler drains its queue"],
)
def test_each_queue_is_drained_by_its_function_with_partial_failures(
    synthesis: Synthesis, assertions: Template, queue: int, handler: str, batching: dict[str, Any]
) -> None:
    function_id, _ = function(synthesis, handler)
    assertions.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": arn(queues(synthesis)[queue]),
            "FunctionName": {"Ref": function_id},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            **batching,
        },
    )


# -- email ---------------------------------------------------------------------------------


def test_topic_is_encrypted_and_each_approver_gets_only_their_own_messages(
    synthesis: Synthesis, assertions: Template
) -> None:
    topic, resource = email_topic(synthesis)
    # SNS's AWS managed key, by its alias ARN.
    assert json.dumps(resource["Properties"]["KmsMasterKeyId"]).endswith(':alias/aws/sns"]]}')
    subscriptions = [
        s
        for s in synthesis.resources("AWS::SNS::Subscription").values()
        if s["Properties"]["TopicArn"] == {"Ref": topic}
    ]
    assert sorted(s["Properties"]["Endpoint"] for s in subscriptions) == APPROVERS  # normalized
    for approver in APPROVERS:
        assertions.has_resource_properties(
            "AWS::SNS::Subscription",
            {
                "TopicArn": {"Ref": topic},
                "Protocol": "email",
                "Endpoint": approver,
                # The worker publishes each email with this attribute (approvals.notify).
                "FilterPolicy": {"approver": [approver]},
            },
        )


def test_topic_refuses_unencrypted_transport(assertions: Template) -> None:
    assertions.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )


# -- data ----------------------------------------------------------------------------------


def test_table_has_the_key_and_indexes_the_code_queries(synthesis: Synthesis) -> None:
    _, table = only(synthesis.resources("AWS::DynamoDB::Table"))
    properties = table["Properties"]
    local = table_definition("approvals-table")

    def indexes(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {i["IndexName"]: (i["KeySchema"], i["Projection"]) for i in items}

    assert properties["KeySchema"] == local["KeySchema"]
    assert sorted(properties["AttributeDefinitions"], key=str) == sorted(
        local["AttributeDefinitions"], key=str
    )
    assert indexes(properties["GlobalSecondaryIndexes"]) == indexes(local["GlobalSecondaryIndexes"])


def test_table_is_on_demand_with_ttl_recovery_and_kept_on_teardown(assertions: Template) -> None:
    assertions.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": Match.object_like(
                {
                    "BillingMode": "PAY_PER_REQUEST",
                    "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "DeletionProtectionEnabled": True,
                }
            ),
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_ttl_attribute_is_the_one_the_store_writes() -> None:
    written: dict[str, Any] = {}

    class RecordingDynamoDB:
        def put_item(self, **call: Any) -> dict[str, Any]:
            written.update(call["Item"])
            return {}

    request = ApprovalRequest(title="t", approvers=["a@example.com"], requester="r@example.com")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    approval = Approval(
        approval_id="id",
        task_token="token",
        execution="arn:aws:states:us-east-1:1:execution:m:e",
        state="RequestApproval",
        request=request,
        created_at=now,
        expires_at=now + timedelta(days=1),
    )
    ApprovalStore(RecordingDynamoDB(), "table").claim(approval, now, 180)  # type: ignore[arg-type]
    assert TTL_ATTRIBUTE in written


def test_signing_key_is_generated_and_never_in_the_template_in_clear(synthesis: Synthesis) -> None:
    secret, resource = only(synthesis.resources("AWS::SecretsManager::Secret"))
    assert "GenerateSecretString" in resource["Properties"]
    assert "SecretString" not in resource["Properties"]
    for _, fn in synthesis.resources("AWS::Lambda::Function").items():
        variables = fn["Properties"]["Environment"]["Variables"]
        # The functions get the secret's ARN and read the key at cold start.
        assert variables["APPROVALS_SIGNING_SECRET"] == {"Ref": secret}
        assert not any("{{resolve:secretsmanager" in json.dumps(v) for v in variables.values())
    assert "{{resolve:secretsmanager" not in json.dumps(synthesis.template)


# -- functions -----------------------------------------------------------------------------


def test_functions_run_the_runtime_and_architecture_the_assets_are_built_for(synthesis: Synthesis) -> None:
    functions = synthesis.resources("AWS::Lambda::Function")
    assert sorted(f["Properties"]["Handler"] for f in functions.values()) == sorted(HANDLERS.values())
    for fn in functions.values():
        assert fn["Properties"]["Runtime"] == f"python{packaging.LAMBDA_PYTHON_VERSION}"
        assert fn["Properties"]["Architectures"] == [
            packaging.LAMBDA_ARCHITECTURE.replace("aarch64", "arm64")
        ]


def _placeholders(variables: dict[str, Any]) -> dict[str, str]:
    """The environment as a function sees it, with references replaced by stand-ins."""
    return {
        "AWS_REGION": "eu-west-1",
        **{name: value if isinstance(value, str) else f"<{name}>" for name, value in variables.items()},
    }


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_each_function_has_every_setting_it_reads(synthesis: Synthesis, name: str) -> None:
    _, fn = function(synthesis, name)
    settings = Settings.from_env(_placeholders(fn["Properties"]["Environment"]["Variables"]))
    assert settings.retention_days == 30  # -c retentionDays=30
    if name in ("worker", "sweeper"):  # the two that send email with links
        assert settings.topic_arn
        assert settings.api_url
    if name == "api":  # emails a sequence's next approver, to the URL stored with the approval
        assert settings.topic_arn
    if name == "worker":  # the one that decides who gets a link
        assert settings.allow_self_approval  # -c allowSelfApproval=true
    if name == "sweeper":
        assert settings.reminders == ("50%", "2h")  # -c reminders=50%,2h


def test_function_logs_are_kept_as_configured(synthesis: Synthesis) -> None:
    groups = synthesis.resources("AWS::Logs::LogGroup")
    for fn in synthesis.resources("AWS::Lambda::Function").values():
        group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert groups[group]["Properties"]["RetentionInDays"] == 30  # -c logRetentionDays=30


# -- API -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parent", "path_part"), [("approvals", "{approval_id}"), ("a", "{token}"), ("i", "{token}")]
)
def test_api_routes_get_and_post_on_an_approval_to_the_function(
    synthesis: Synthesis, parent: str, path_part: str
) -> None:
    """Every kind of link, signed (/approvals/{approval_id}), short (/a/{token}) and the
    inbox's (/i/{token}), to the function's live alias: the stack under test has SnapStart on
    (test_snap_start.py)."""
    api_function, _ = function(synthesis, "api")
    alias, _ = only(
        {
            lid: r
            for lid, r in synthesis.resources("AWS::Lambda::Alias").items()
            if r["Properties"]["FunctionName"] == {"Ref": api_function}
        }
    )
    resources = synthesis.resources("AWS::ApiGateway::Resource")
    parent_id, _ = only({lid: r for lid, r in resources.items() if r["Properties"]["PathPart"] == parent})
    item, _ = only(
        {
            lid: r
            for lid, r in resources.items()
            if r["Properties"]["PathPart"] == path_part and r["Properties"]["ParentId"] == {"Ref": parent_id}
        }
    )
    methods = {
        m["Properties"]["HttpMethod"]: m["Properties"]
        for m in synthesis.resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["ResourceId"] == {"Ref": item}
    }
    assert sorted(methods) == ["GET", "POST"]
    for method in methods.values():
        # No IAM or Cognito authorizer: the link's HMAC signature authorizes (approvals.links).
        assert method["AuthorizationType"] == "NONE"
        assert method["Integration"]["Type"] == "AWS_PROXY"
        assert {"Ref": alias} in method["Integration"]["Uri"]["Fn::Join"][1]


def _referenced(value: Any, resources: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The resources among ``resources`` that ``value`` refers to."""
    text = json.dumps(value)
    return {lid: r for lid, r in resources.items() if f'"{lid}"' in text}


# The query string holds a signed link's signature; the path, a short link's token.
FORBIDDEN_IN_ACCESS_LOGS = (
    "querystring",
    "requestoverride",
    "$input",
    "$method.request",
    "$request",
    '"$context.path"',
)


def test_api_stage_is_throttled_and_logs_access_without_query_strings(
    synthesis: Synthesis, assertions: Template
) -> None:
    _, stage = only(synthesis.resources("AWS::ApiGateway::Stage"))
    properties = stage["Properties"]
    throttling = {
        (s["ResourcePath"], s["HttpMethod"]): (s["ThrottlingRateLimit"], s["ThrottlingBurstLimit"])
        for s in properties["MethodSettings"]
        if "ThrottlingRateLimit" in s
    }
    # Page views and votes each have limits of their own (API Gateway escapes the path's
    # "/" as "~1"), so a flood of views cannot starve the votes; anything else has the stage's.
    assert set(throttling) == {
        ("/*", "*"),
        ("/~1approvals~1{approval_id}", "GET"),
        ("/~1approvals~1{approval_id}", "POST"),
        ("/~1a~1{token}", "GET"),
        ("/~1a~1{token}", "POST"),
        ("/~1i~1{token}", "GET"),
        ("/~1i~1{token}", "POST"),
    }
    assert all(rate > 0 and burst > 0 for rate, burst in throttling.values())
    access = properties["AccessLogSetting"]
    groups = synthesis.resources("AWS::Logs::LogGroup")
    assert {"Ref": only(_referenced(access["DestinationArn"], groups))[0]} in access["DestinationArn"][
        "Fn::Join"
    ][1]
    fields = json.loads(access["Format"])
    assert {"requestId", "status", "httpMethod", "resourcePath"} <= fields.keys()
    lowered = access["Format"].lower()
    assert not any(marker in lowered for marker in FORBIDDEN_IN_ACCESS_LOGS), access["Format"]
    # Neither execution logging nor data trace, which would record the query string.
    for setting in properties["MethodSettings"]:
        assert "LoggingLevel" not in setting
        assert not setting.get("DataTraceEnabled", False)


# -- workflows -------------------------------------------------------------------------------


def test_a_web_acl_limits_each_address_when_asked(synthesis: Synthesis) -> None:
    stage, _ = only(synthesis.resources("AWS::ApiGateway::Stage"))
    acl_id, acl = only(synthesis.resources("AWS::WAFv2::WebACL"))
    _, association = only(synthesis.resources("AWS::WAFv2::WebACLAssociation"))
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert stage in json.dumps(association["Properties"]["ResourceArn"])
    assert acl["Properties"]["Scope"] == "REGIONAL"
    assert acl["Properties"]["DefaultAction"] == {"Allow": {}}
    (rule,) = acl["Properties"]["Rules"]
    assert rule["Action"] == {"Block": {}}
    assert rule["Statement"] == {
        "RateBasedStatement": {"AggregateKeyType": "IP", "Limit": RATE_LIMIT_PER_IP}  # -c rateLimitPerIp
    }


def test_state_machines_log_everything_but_execution_data_and_are_traced(
    synthesis: Synthesis, assertions: Template
) -> None:
    machines = synthesis.resources("AWS::StepFunctions::StateMachine")
    assert len(machines) == 2
    groups = synthesis.resources("AWS::Logs::LogGroup")
    for machine in machines.values():
        properties = machine["Properties"]
        assert properties["StateMachineType"] == "STANDARD"  # a wait of up to a year
        assert properties["TracingConfiguration"] == {"Enabled": True}
        logging = properties["LoggingConfiguration"]
        assert logging["Level"] == "ALL"
        # Execution data holds the task token: it never reaches a log.
        assert logging["IncludeExecutionData"] is False
        destination = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
        assert destination["Fn::GetAtt"][0] in groups


def test_sweep_runs_on_eventbridge_scheduler(synthesis: Synthesis, assertions: Template) -> None:
    sweeper, _ = function(synthesis, "sweeper")
    assertions.has_resource_properties(
        "AWS::Scheduler::Schedule",
        {
            "ScheduleExpression": Match.string_like_regexp(r"^rate\("),
            "State": "ENABLED",
            "Target": Match.object_like({"Arn": arn(sweeper)}),
        },
    )


def test_execution_status_changes_cancel_pending_approvals(
    synthesis: Synthesis, assertions: Template
) -> None:
    handler, _ = function(synthesis, "execution_ended")
    rule = only(synthesis.resources("AWS::Events::Rule"))[1]["Properties"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    # Any state machine may use the service: the rule names none.
    assert set(pattern["detail"]) == {"status"}
    assert rule["Targets"][0]["Arn"] == arn(handler)
    assertions.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "FunctionName": arn(handler),
            "Principal": "events.amazonaws.com",
            "Action": "lambda:InvokeFunction",
        },
    )


# -- alarms and outputs ----------------------------------------------------------------------


def test_alarms_watch_dead_letters_worker_errors_and_failed_executions(synthesis: Synthesis) -> None:
    _, dead_letter = queues(synthesis)
    worker, _ = function(synthesis, "worker")
    watched = set()
    for alarm in synthesis.resources("AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        assert properties["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert properties["Threshold"] == 1
        assert properties["TreatMissingData"] == "notBreaching"
        for dimension in properties.get("Dimensions", []):
            value = dimension["Value"]
            watched_id = value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0]
            watched.add((properties["Namespace"], properties["MetricName"], watched_id))
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", dead_letter) in watched
    assert ("AWS/Lambda", "Errors", worker) in watched
    for machine in synthesis.resources("AWS::StepFunctions::StateMachine"):
        assert ("AWS/States", "ExecutionsFailed", machine) in watched
    # What every workflow's requests run into, whichever state machine sent them.
    table, _ = only(synthesis.resources("AWS::DynamoDB::Table"))
    assert ("StepFunctionsApprovals", "InvalidRequests", table) in watched
    assert ("StepFunctionsApprovals", "DeliveriesFailed", table) in watched


def test_an_alarm_fires_when_the_email_topic_delivers_a_message_to_nobody(synthesis: Synthesis) -> None:
    topic, _ = email_topic(synthesis)
    (alarm,) = [
        a["Properties"]
        for a in synthesis.resources("AWS::CloudWatch::Alarm").values()
        if "Metrics" in a["Properties"]
    ]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    expression = [m for m in metrics.values() if "Expression" in m]
    assert [m["Expression"] for m in expression] == [
        "FILL(published, 0) - FILL(delivered, 0) - FILL(failed, 0)"
    ]
    assert expression[0].get("ReturnData", True) is True
    for name, metric_name in (
        ("published", "NumberOfMessagesPublished"),
        ("delivered", "NumberOfNotificationsDelivered"),
        ("failed", "NumberOfNotificationsFailed"),
    ):
        stat = metrics[name]["MetricStat"]
        assert (stat["Metric"]["Namespace"], stat["Metric"]["MetricName"], stat["Stat"]) == (
            "AWS/SNS",
            metric_name,
            "Sum",
        )
        assert stat["Metric"]["Dimensions"] == [
            {"Name": "TopicName", "Value": {"Fn::GetAtt": [topic, "TopicName"]}}
        ]
        assert metrics[name]["ReturnData"] is False


def test_outputs_are_the_ones_the_cli_reads(synthesis: Synthesis) -> None:
    outputs = synthesis.template["Outputs"]
    request, _ = queues(synthesis)
    table, _ = only(synthesis.resources("AWS::DynamoDB::Table"))
    machines = synthesis.resources("AWS::StepFunctions::StateMachine")
    assert outputs[stack_outputs.OUTPUT_QUEUE_URL]["Value"] == {"Ref": request}
    assert outputs[stack_outputs.OUTPUT_TABLE]["Value"] == {"Ref": table}
    secret, _ = only(synthesis.resources("AWS::SecretsManager::Secret"))
    assert outputs[stack_outputs.OUTPUT_SIGNING_KEY]["Value"] == {"Ref": secret}
    arns = {
        outputs[name]["Value"]["Ref"]
        for name in (stack_outputs.OUTPUT_STATE_MACHINE, stack_outputs.OUTPUT_FANOUT_STATE_MACHINE)
    }
    assert arns == set(machines)
    assert "execute-api" in json.dumps(outputs[stack_outputs.OUTPUT_API_URL]["Value"])
    topic, _ = email_topic(synthesis)
    assert outputs[stack_outputs.OUTPUT_TOPIC]["Value"] == {"Ref": topic}
    # What other stacks name the service by (ApprovalService.from_attributes), exported.
    assert outputs["QueueArn"] == {
        "Description": outputs["QueueArn"]["Description"],
        "Value": {"Fn::GetAtt": [request, "Arn"]},
        "Export": {"Name": "Approvals-QueueArn"},
    }
    assert outputs["TableArn"]["Value"] == {"Fn::GetAtt": [table, "Arn"]}
    assert outputs["TableArn"]["Export"] == {"Name": "Approvals-TableArn"}


def test_every_alarm_notifies_the_alarm_topic_which_mails_the_alarm_email(synthesis: Synthesis) -> None:
    template = Template.from_json(synthesis.template)
    topics = template.find_resources("AWS::SNS::Topic", {"Properties": {"DisplayName": "Approvals alarms"}})
    assert len(topics) == 1
    (topic_id,) = topics
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 5
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    template.has_resource_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "email", "Endpoint": "oncall@example.com", "TopicArn": {"Ref": topic_id}},
    )
    # CloudWatch may use the topic's key; no one else is granted it but the account.
    key_id = topics[topic_id]["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    statements = template.find_resources("AWS::KMS::Key")[key_id]["Properties"]["KeyPolicy"]["Statement"]
    principals = [s["Principal"] for s in statements]
    assert {"Service": "cloudwatch.amazonaws.com"} in principals
    assert template.find_outputs("AlarmTopicArn")
