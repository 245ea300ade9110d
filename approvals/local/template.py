"""`approvals local --template`: a synthesized template deployed into moto's CloudFormation,
and what AWS would run around it, played in this process.

Everything is found in the deployed stack by resource type and properties, never by
construct name: the functions (their handler and the environment the template gives them),
the event source mappings (each replaced by a queue poller: in moto they would run the
function in Docker), Lambda's Invoke of those functions (run here, not in Docker), the REST
API's Lambda integration (served by the local API), the schedules (fired by a timer) and the
EventBridge rules on Step Functions execution status changes (moto sends Step Functions'
events nowhere: a watcher sends them to the rules).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import boto3
from moto.awslambda.models import LambdaBackend
from moto.events.models import EventPattern

from approvals import runtime
from approvals.local import access, environments
from approvals.local.cloudformation import TemplateError
from approvals.local.environments import ProcessEnvironments
from approvals.local.periodic import Periodic
from approvals.local.poller import LambdaContext

log = logging.getLogger(__name__)
INTEGRATION_FUNCTION = re.compile(r":lambda:path/[^/]+/functions/(arn:[^/]+)/invocations$")
# EventBridge Scheduler's rate expressions: "rate(1 minute)", "rate(5 minutes)", ...
RATE = re.compile(r"rate\((?P<value>[1-9][0-9]*) (?P<unit>minute|hour|day)s?\)")
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(eq=False)  # one function is one object: a set of them holds each once
class LocalFunction:
    """A function of the template, with the environment the template gives it: in
    ``processes`` once :meth:`run_in_processes` has started them, else in this process,
    one event at a time, as one Lambda execution environment takes them."""

    name: str
    handler: str  # "module.function", as the template names it
    environment: dict[str, str]
    code_path: Path | None = None  # the function's asset, for code this process cannot import
    timeout: float = 3  # seconds, Lambda's default
    processes: ProcessEnvironments | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run_in_processes(self, concurrency: int) -> ProcessEnvironments:
        self.processes = ProcessEnvironments(
            self.name,
            self.handler,
            {**os.environ, **self.environment},
            concurrency,
            self.timeout,
            self.code_path,
        )
        return self.processes

    def __call__(self, event: dict[str, Any], context: Any = None) -> Any:
        context = context or LambdaContext(self.name)
        if self.processes is not None:
            return self.processes(event, context)
        entry_point = environments.entry_point(self.handler, self.code_path)
        token = runtime.function_environment.set(self.environment)
        try:
            with self._lock:
                return entry_point(event, context)
        finally:
            runtime.function_environment.reset(token)


# The functions Lambda's Invoke runs in this process (by name and by ARN); moto would run
# them in Docker. Filled while a template's stack runs.
_invocable: dict[str, LocalFunction] = {}
_invoke_in_docker = LambdaBackend.invoke


def _invoke(
    backend: LambdaBackend,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: Any,
) -> str | bytes | None:
    function = _invocable.get(function_name)
    if function is None:
        return _invoke_in_docker(backend, function_name, qualifier, body, headers, response_headers)
    try:
        result = function(json.loads(body or "{}"))
    except Exception as error:  # as Lambda answers a function's own error
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps({"errorMessage": str(error), "errorType": type(error).__name__}).encode()
    return json.dumps(result).encode()


def serve_invocations(functions: Mapping[str, LocalFunction]) -> Callable[[], None]:
    """Lambda's Invoke (the CLI's, a state machine's lambda:invoke task) runs these functions
    here; returns what stops it."""
    LambdaBackend.invoke = _invoke  # type: ignore[method-assign,assignment]
    for arn, function in functions.items():
        _invocable[arn] = _invocable[function.name] = function
    return _invocable.clear


def _pages(client: Any, operation: str, key: str, **arguments: Any) -> Iterator[Any]:
    for page in client.get_paginator(operation).paginate(**arguments):
        yield from page[key]


class DeployedTemplate:
    """The deployed stacks' functions and triggers, read back through the services' APIs."""

    def __init__(self, session: boto3.Session, stacks: Mapping[str, Path]) -> None:
        """``stacks``: each deployed stack's name and its template's path."""
        self._session = session
        self.region = session.region_name or "us-east-1"
        self.functions: dict[str, LocalFunction] = {}
        for stack_name, template_path in stacks.items():
            self._read_functions(stack_name, template_path)

    def _read_functions(self, stack_name: str, template_path: Path) -> None:
        template = json.loads(template_path.read_text())
        resources = self._session.client("cloudformation").list_stack_resources(StackName=stack_name)[
            "StackResourceSummaries"
        ]
        physical_ids = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources}
        lambda_ = self._session.client("lambda")
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::Lambda::Function" or logical_id not in physical_ids:
                continue  # not a function, or one whose Condition left it out
            configuration = lambda_.get_function_configuration(FunctionName=physical_ids[logical_id])
            asset = resource.get("Metadata", {}).get("aws:asset:path")
            self.functions[configuration["FunctionArn"]] = LocalFunction(
                name=configuration["FunctionName"],
                handler=configuration["Handler"],
                # What the Lambda runtime adds to the function's own variables.
                environment={
                    **configuration.get("Environment", {}).get("Variables", {}),
                    "AWS_REGION": self.region,
                    "AWS_DEFAULT_REGION": self.region,
                    "AWS_LAMBDA_FUNCTION_NAME": configuration["FunctionName"],
                    # Lambda's credentials: a session of the function's own role.
                    **access.credentials_of(configuration["Role"], self.region).environment(),
                },
                code_path=template_path.parent / asset if asset else None,
                timeout=configuration.get("Timeout", 3),
            )

    def function(self, arn: str) -> LocalFunction | None:
        # A target may name a version or alias (arn:...:function:name:qualifier).
        return self.functions.get(arn) or self.functions.get(arn.rsplit(":", 1)[0])

    # -- API Gateway ---------------------------------------------------------------------

    def api_function(self) -> tuple[LocalFunction, list[str]]:
        """The function behind the REST API, and the API's stage URLs (what its links name)."""
        apigateway = self._session.client("apigateway")
        targets: set[str] = set()
        stage_urls: list[str] = []
        for api in _pages(apigateway, "get_rest_apis", "items"):
            for resource in _pages(
                apigateway, "get_resources", "items", restApiId=api["id"], embed=["methods"]
            ):
                for method in resource.get("resourceMethods", {}).values():
                    match = INTEGRATION_FUNCTION.search(method.get("methodIntegration", {}).get("uri", ""))
                    if match:
                        targets.add(match.group(1))
            for stage in apigateway.get_stages(restApiId=api["id"])["item"]:
                stage_urls.append(
                    f"https://{api['id']}.execute-api.{self.region}.amazonaws.com/{stage['stageName']}"
                )
        functions = {self.function(arn) for arn in targets} - {None}
        if len(functions) != 1:
            raise TemplateError(
                f"the local API serves one function behind one REST API; the template has {len(functions)}"
            )
        return functions.pop(), stage_urls  # type: ignore[return-value]

    def serve_api_at(self, stage_urls: list[str], local_url: str) -> None:
        """The functions reach the local API where the template names a stage's URL."""
        for function in self.functions.values():
            for name, value in function.environment.items():
                for stage_url in stage_urls:
                    value = value.replace(stage_url, local_url.rstrip("/"))
                function.environment[name] = value

    # -- triggers ------------------------------------------------------------------------

    def queue_triggers(self) -> list[tuple[str, LocalFunction, int]]:
        """Each SQS event source mapping as (queue URL, function, batch size), switched off in
        moto, whose own delivery would run the function in Docker."""
        lambda_ = self._session.client("lambda")
        sqs = self._session.client("sqs")
        triggers = []
        for mapping in _pages(lambda_, "list_event_source_mappings", "EventSourceMappings"):
            function = self.function(mapping["FunctionArn"])
            if function is None or ":sqs:" not in mapping.get("EventSourceArn", ""):
                continue
            lambda_.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
            account, queue_name = mapping["EventSourceArn"].split(":")[4:6]
            queue_url = sqs.get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            triggers.append((queue_url, function, int(mapping.get("BatchSize", 10))))
        return triggers

    def schedules(self) -> list[Schedule]:
        """Each enabled schedule whose target is a function of the template."""
        scheduler = self._session.client("scheduler")
        found = []
        for listed in _pages(scheduler, "list_schedules", "Schedules"):
            schedule = scheduler.get_schedule(
                Name=listed["Name"], GroupName=listed.get("GroupName", "default")
            )
            function = self.function(schedule["Target"]["Arn"])
            if function is not None and schedule.get("State", "ENABLED") == "ENABLED":
                found.append(
                    Schedule(
                        schedule["Name"],
                        function,
                        json.loads(schedule["Target"].get("Input") or "{}"),
                        rate_seconds(schedule["Name"], schedule["ScheduleExpression"]),
                    )
                )
        return found

    def rules(self) -> list[tuple[EventPattern, list[LocalFunction]]]:
        """Each EventBridge rule with an event pattern, and the template's functions it targets."""
        events = self._session.client("events")
        found = []
        for rule in _pages(events, "list_rules", "Rules"):
            if "EventPattern" not in rule or rule.get("State", "ENABLED") != "ENABLED":
                continue
            targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
            functions = [f for f in (self.function(t["Arn"]) for t in targets) if f is not None]
            if functions:
                found.append((EventPattern.load(rule["EventPattern"]), functions))
        return found

    def email_topics(self) -> set[str]:
        """The topics that mail someone: those with email subscriptions, and the one the
        functions publish their emails to."""
        sns = self._session.client("sns")
        topics = {
            s["TopicArn"]
            for s in _pages(sns, "list_subscriptions", "Subscriptions")
            if s["Protocol"] in ("email", "email-json")
        }
        named = {f.environment.get("APPROVALS_TOPIC_ARN", "") for f in self.functions.values()}
        return topics | (named - {""})


@dataclass(frozen=True)
class Schedule:
    """An EventBridge Scheduler schedule of the template: its target function, the input it
    sends and its rate."""

    name: str
    function: LocalFunction
    event: dict[str, Any]
    every_seconds: int


def rate_seconds(name: str, expression: str) -> int:
    """The seconds between a rate schedule's invocations."""
    match = RATE.fullmatch(expression.strip())
    if match is None:
        raise TemplateError(
            f"schedule {name}: the local stack plays rate schedules, e.g. rate(5 minutes), not {expression!r}"
        )
    return int(match["value"]) * UNIT_SECONDS[match["unit"]]


def schedule_player(schedule: Schedule) -> Periodic:
    """Invokes the schedule's function at once and then at the schedule's own rate, as
    EventBridge Scheduler does with a rate schedule that names no start date."""
    return Periodic(
        f"schedule {schedule.name}",
        schedule.every_seconds,
        lambda: schedule.function(dict(schedule.event)),
        at_start=True,
    )


def status_change_event(execution: Mapping[str, Any], region: str) -> dict[str, Any]:
    """The event Step Functions sends EventBridge when an execution's status changes."""

    def millis(moment: datetime | None) -> int | None:
        return int(moment.timestamp() * 1000) if moment else None

    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": execution["executionArn"].split(":")[4],
        "time": (execution.get("stopDate") or execution["startDate"]).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [execution["executionArn"]],
        "detail": {
            "executionArn": execution["executionArn"],
            "stateMachineArn": execution["stateMachineArn"],
            "name": execution["name"],
            "status": execution["status"],
            "startDate": millis(execution["startDate"]),
            "stopDate": millis(execution.get("stopDate")),
            "input": None,
            "output": None,
        },
    }


def execution_events_player(
    session: boto3.Session, rules: list[tuple[EventPattern, list[LocalFunction]]], interval: float
) -> Periodic:
    """Watches every execution's status and sends each change to the rules that match it."""
    sfn = session.client("stepfunctions")
    region = session.region_name or "us-east-1"
    reported: dict[str, str] = {}

    def watch() -> None:
        for machine in _pages(sfn, "list_state_machines", "stateMachines"):
            for execution in _pages(
                sfn, "list_executions", "executions", stateMachineArn=machine["stateMachineArn"]
            ):
                arn, status = execution["executionArn"], execution["status"]
                if reported.get(arn) == status:
                    continue
                reported[arn] = status
                event = status_change_event(
                    {**execution, "stateMachineArn": machine["stateMachineArn"]}, region
                )
                for pattern, functions in rules:
                    if pattern.matches_event(cast(Any, event)):
                        for function in functions:
                            function(event)

    return Periodic("execution-events", interval, watch)
