"""`StateMachines`: the product's own workflows, one approval and a fan-out of many, from the
very definitions the local stack runs."""

from __future__ import annotations

import json
import re
from typing import Any, cast

import aws_cdk as cdk
from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from approvals import statemachine
from approvals_cdk import shared


class StateMachines:
    """``approval`` runs one request; ``fanout`` runs one child execution of it per item."""

    def __init__(
        self,
        scope: Construct,
        factory: shared.Factory,
        queue: sqs.Queue,
        table: dynamodb.Table,
        bucket: s3.Bucket,
        *,
        default_timeout_seconds: int,
        fanout_max_concurrency: int,
    ) -> None:
        self._scope = scope
        self._factory = factory
        self._queue = queue
        self._table = table
        # The deployment's default timeout is the one parameter of the definitions; the
        # message carries the timeout applied, so the worker needs no copy of it.
        self.approval = self._state_machine(
            "ApprovalStateMachine", statemachine.approval_definition(default_timeout_seconds)
        )
        self.fanout_summary_function = self._fanout_summary_function(bucket)
        self.fanout = self._state_machine(
            "FanoutStateMachine",
            statemachine.fanout_definition(default_timeout_seconds, fanout_max_concurrency),
            {
                "FanoutBucket": bucket.bucket_name,
                "FanoutSummaryFunction": self.fanout_summary_function.function_arn,
            },
        )
        self._run_child_executions(self.fanout)
        self._grant_fanout_bucket(bucket)
        # The function itself, unqualified, as the task names it (grant_invoke adds its versions).
        self.fanout.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[self.fanout_summary_function.function_arn]
            )
        )

    def _fanout_summary_function(self, bucket: s3.Bucket) -> lambda_.Function:
        """Counts a map run's outcomes: reads its manifest and result files, and nothing else."""
        function = self._factory.function(
            "FanoutSummaryFunction",
            "worker.fanout_summary.lambda_handler",
            "Counts a fan-out's decisions by outcome from the result files its map run wrote",
            # The fan-out's task waits FANOUT_SUMMARY_TIMEOUT_SECONDS; the function stops first.
            timeout=Duration.seconds(statemachine.FANOUT_SUMMARY_TIMEOUT_SECONDS - 30),
        )
        results = f"{statemachine.FANOUT_RESULTS_PREFIX}/*"
        shared.allow(function, ["s3:GetObject"], [bucket.arn_for_objects(results)])
        bucket_id = cdk.Stack.of(self._scope).resolve(
            cast(s3.CfnBucket, bucket.node.default_child).logical_id
        )
        shared.acknowledge(
            function.role,
            f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{results}]",
            "A map run's result files are named by the service as it writes them: the grant"
            " names the results prefix of the service's own fan-out bucket.",
        )
        return function

    def _state_machine(
        self, construct_id: str, definition: dict[str, Any], substitutions: dict[str, str] | None = None
    ) -> sfn.StateMachine:
        stack = cdk.Stack.of(self._scope)
        # Step Functions' log delivery adds a resource policy per log group; under the
        # vendedlogs prefix one policy covers them all (AWS's advice), so the group is named.
        # The stack name and the construct's path keep two deployments in one account apart;
        # the stack's own id (the last part of its ARN, new for each stack created) keeps a
        # group retained after a destroy from blocking the next deploy ("already exists").
        path = re.sub(
            r"[^A-Za-z0-9_/.#-]",
            "-",
            f"/aws/vendedlogs/states/{stack.stack_name}/{self._scope.node.path}/{construct_id}",
        )
        log_group = self._factory.log_group(
            f"{construct_id}Logs", name=f"{path}-{cdk.Fn.select(2, cdk.Fn.split('/', stack.stack_id))}"
        )
        machine = sfn.StateMachine(
            self._scope,
            construct_id,
            # The very definition the local stack runs; only the queue URL, the table, the
            # fan-out's bucket and the partition are filled in. The partition is joined in
            # (not a substitution), so that cfn-lint, which applies no substitutions, can
            # check the integrations' ARNs.
            definition_body=sfn.DefinitionBody.from_string(
                json.dumps(definition).replace(statemachine.PARTITION_PLACEHOLDER, stack.partition)
            ),
            definition_substitutions={
                "QueueUrl": self._queue.queue_url,
                "TableName": self._table.table_name,
                **(substitutions or {}),
            },
            state_machine_type=sfn.StateMachineType.STANDARD,  # waits up to a year; Express cannot
            logs=sfn.LogOptions(
                destination=log_group,
                level=sfn.LogLevel.ALL,
                # Execution data holds the task token and the request: it stays out of the logs.
                include_execution_data=False,
            ),
            tracing_enabled=True,
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[self._queue.queue_arn])
        )
        # The confirmation states' one write (ConfirmDelivery: approvals.statemachine), and no other.
        machine.add_to_role_policy(shared.confirm_delivery(self._table))
        shared.acknowledge(
            machine.role,
            "AwsSolutions-IAM5[Resource::*]",
            "Added by CDK for the state machine's logging and X-Ray tracing: CloudWatch Logs"
            " log-delivery actions and X-Ray PutTraceSegments/PutTelemetryRecords/GetSampling*"
            " support no resource-level permissions.",
        )
        return machine

    def _grant_fanout_bucket(self, bucket: s3.Bucket) -> None:
        """The ResultWriter's prefix (its result files, written in parts when large, as AWS's
        guide for ResultWriter says) and the ItemReader's one place (requests a caller put
        under requests/)."""
        results = f"{statemachine.FANOUT_RESULTS_PREFIX}/*"
        requests = f"{statemachine.FANOUT_REQUESTS_PREFIX}*"
        self.fanout.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(results)],
            )
        )
        self.fanout.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[bucket.arn_for_objects(requests)])
        )
        bucket_id = cdk.Stack.of(self._scope).resolve(
            cast(s3.CfnBucket, bucket.node.default_child).logical_id
        )
        for objects in (results, requests):
            shared.acknowledge(
                self.fanout.role,
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{objects}]",
                "A map run's result files are named by the service as it writes them, and a"
                " batch's requests by whoever starts it: the grant names one prefix of the"
                " service's own fan-out bucket.",
            )

    def _run_child_executions(self, machine: sfn.StateMachine) -> None:
        """What a Distributed Map needs: start its own state machine for each item, and watch
        and stop those child executions. (CDK adds this itself for a DistributedMap construct;
        this definition is written as ASL, shared with the local stack.)"""
        stack = cdk.Stack.of(self._scope)
        children = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{machine.state_machine_name}/*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        # A policy of its own, not the role's default one: the state machine depends on that,
        # and this one names the state machine.
        policy = iam.Policy(
            self._scope,
            f"{machine.node.id}DistributedMapPolicy",
            roles=[machine.role],
            statements=[
                iam.PolicyStatement(actions=["states:StartExecution"], resources=[machine.state_machine_arn]),
                iam.PolicyStatement(
                    actions=["states:DescribeExecution", "states:StopExecution"], resources=[children]
                ),
            ],
        )
        shared.acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
            f"<{stack.resolve(cast(sfn.CfnStateMachine, machine.node.default_child).logical_id)}.Name>/*]",
            "A Distributed Map's child executions are named by the service as they start: the"
            " policy names every execution of this one state machine, as AWS's guide for"
            " Distributed Map permissions does.",
        )
