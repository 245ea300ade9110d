"""The embedded local stack: moto in server mode running the real state machines, the
worker behind a queue poller, the approval API behind a local HTTP server, an outbox.

The handlers are the Lambda handlers themselves, reading their settings from the
environment exactly as in AWS; only the endpoint differs. With a synthesized template
(``approvals local --template``) the resources are the template's, deployed into moto's
CloudFormation, and each function runs with the environment the template gives it
(approvals/local/template.py).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from approvals import directory, stack_outputs
from approvals.local import environments, identities, long_polls, moto_fixes
from approvals.local.environments import DEFAULT_CONCURRENCY, IN_PROCESS, Handler, ProcessEnvironments
from approvals.local.info import LOCAL_CREDENTIALS, STATE_FILE, LocalInfo
from approvals.local.outbox import Outbox
from approvals.local.periodic import Periodic
from approvals.local.resources import SNS_PAGES_TAG, Resources, mailbox, provision
from approvals.store import ApprovalStore

if TYPE_CHECKING:  # imported where used: the CLI reads this module's state file on every call
    from approvals.local.http import LocalApi
    from approvals.local.poller import QueuePoller
    from approvals.local.template import LocalFunction

log = logging.getLogger(__name__)
DEFAULT_MOTO_PORT = 4570
DEFAULT_API_PORT = 8787
SWEEP_INTERVAL = 2.0  # seconds between the provisioned stack's sweeps
API_TIMEOUT = 29  # seconds: API Gateway's own integration timeout, which Lambda's cannot outlast


class PortInUse(Exception):
    """A port the stack was given is taken: most likely by another local stack."""

    def __init__(self, port: int, serves: str) -> None:
        super().__init__(f"port {port} ({serves}) is in use")
        self.port = port
        self.serves = serves


def _ensure_free(host: str, port: int, serves: str) -> None:
    """Refuse a taken port before anything starts: moto's server thread, failing to bind,
    would leave ``ThreadedMotoServer.start`` waiting for it forever."""
    if port == 0:
        return
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As both servers bind: a port left in TIME_WAIT by a stack just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUse(port, serves) from None
            raise


def banner(info: LocalInfo, templates: Sequence[Path] = ()) -> str:
    """What `approvals local` prints once the stack runs: where everything is, the line that
    points the AWS CLI at it, the state machines there are to start (a template's own, by
    whatever names CloudFormation gave them) and who can be asked already."""
    session = boto3.Session(
        region_name=info.region,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    if info.state_machine_arn:
        machines = [("state machine", info.state_machine_arn), ("fan-out", info.fanout_state_machine_arn)]
    else:  # a template without the product's outputs (a team's own app): each of its own
        pages = session.client("stepfunctions", endpoint_url=info.endpoint_url).get_paginator(
            "list_state_machines"
        )
        machines = [
            ("state machine", m["stateMachineArn"]) for p in pages.paginate() for m in p["stateMachines"]
        ]
    sns = session.client("sns", endpoint_url=info.endpoint_url)
    held = directory.read(sns, info.topic_arn) if info.topic_arn else {}  # a template may have none
    confirmed = sorted(address for address, s in held.items() if s.reach is directory.Reach.CONFIRMED)
    cli = {"AWS_ENDPOINT_URL": info.endpoint_url, **LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": info.region}
    return "\n".join(
        [
            f"Local stack running (state in {STATE_FILE})",
            f"  AWS endpoint  {info.endpoint_url}",
            f"  AWS CLI       export {' '.join(f'{name}={value}' for name, value in cli.items())}",
            f"  approval API  {info.api_url}",
            f"  outbox        {info.outbox_url}",
            *(
                [f"  sign-in       {info.identity_provider_url} (OpenID Connect)"]
                if info.identity_provider_url
                else []
            ),
            *(f"  {label:<13} {arn}" for label, arn in machines),
            *(f"  template      {template} (deployed into moto's CloudFormation)" for template in templates),
            (f"Approvers: {', '.join(confirmed)}; add others" if confirmed else "Add approvers first")
            + " with `approvals approvers add EMAIL...` (a request naming anyone else is refused)",
            "Press Ctrl-C to stop.",
        ]
    )


def sweep_if_any_work(table_name: str, region: str) -> None:
    """One sweep, unless it would find nothing (approvals/local/sweep_work.py)."""
    from approvals import runtime, sweep
    from approvals.local.sweep_work import nothing_to_sweep
    from approvals.models import utcnow

    if not nothing_to_sweep(table_name, region):
        sweep.sweep(runtime.from_environment(), utcnow(), check_executions=True)


def sweeper(interval: float, table_name: str, region: str) -> Periodic:
    """Plays EventBridge Scheduler (the sweep) and the execution-status rule (by asking
    Step Functions about each pending approval's execution)."""
    return Periodic("sweeper", interval, lambda: sweep_if_any_work(table_name, region))


def fanout_summary(resources: Resources) -> LocalFunction:
    """Plays the fan-out's summary function, which the fan-out invokes by this ARN."""
    from approvals.local.template import LocalFunction

    return LocalFunction(
        name=resources.fanout_summary_function.rpartition(":")[2],
        handler="worker.fanout_summary.lambda_handler",
        environment={"AWS_REGION": resources.region},
    )


def _restore_environment(saved: dict[str, str]) -> None:
    from approvals import runtime

    os.environ.clear()
    os.environ.update(saved)
    runtime.reset()


def _quiet_libraries() -> None:
    # moto's executor logs every JSONPath miss of a Choice's IsPresent; werkzeug every request.
    for name in ("werkzeug", "moto", "botocore.credentials"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


class LocalStack:
    """The local stack: the product's resources provisioned here (by default), or a
    synthesized templates deployed into moto's CloudFormation (``templates``, in order)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        moto_port: int = DEFAULT_MOTO_PORT,
        api_port: int = DEFAULT_API_PORT,
        visibility_timeout: int = 5,
        max_receives: int = 3,
        sweep_interval: float = SWEEP_INTERVAL,
        templates: Sequence[Path] = (),
        confirm_subscriptions: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
        sign_in: bool = False,
        digest_seconds: int = 0,
    ) -> None:
        self.host = host
        # The built-in stack's digest window (a template brings its own, as deployed).
        self.digest_seconds = digest_seconds
        # A local OpenID Connect provider, and the approval API set up to sign people in with it.
        self.sign_in = sign_in
        self.moto_port = moto_port
        self.api_port = api_port
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives
        self.sweep_interval = sweep_interval
        self.templates = list(templates)
        # Nobody reads the local mail: approvers are confirmed as they are added, unless
        # asked to leave them pending (their confirmation email is then in the outbox).
        self.confirm_subscriptions = confirm_subscriptions
        # Each function's execution environments at once: processes of their own, or with
        # IN_PROCESS one environment in this process (approvals/local/environments.py).
        if concurrency < 0:
            raise ValueError(f"concurrency is a number of environments, not {concurrency}")
        self.concurrency = concurrency
        self.processes: dict[str, ProcessEnvironments] = {}  # by function name
        self._stoppers: list[Any] = []
        self._runners: list[QueuePoller | Periodic] = []
        self._saved_environment: dict[str, str] | None = None
        self.resources: Resources | None = None
        self.info: LocalInfo | None = None
        self.outbox: Outbox | None = None

    def start(self) -> LocalInfo:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        from approvals.local import cloudformation

        if self.templates and self.sign_in:
            raise cloudformation.TemplateError(
                "--sign-in runs the built-in stack: a template's own settings configure sign-in"
            )
        for template in self.templates:
            if not template.is_file():
                raise cloudformation.TemplateError(
                    f"no template at {template} (`cdk synth` writes cdk.out/STACK.template.json)"
                )
        # Each stack is named after its template's file, as `cdk synth` names the file.
        stacks = {template.name.split(".")[0]: template for template in self.templates}
        if len(stacks) < len(self.templates):
            raise cloudformation.TemplateError(
                "two templates of one stack name (each stack is named after its file)"
            )
        account, region = cloudformation.environment(self.templates)
        _ensure_free(self.host, self.moto_port, "the AWS endpoint")
        _ensure_free(self.host, self.api_port, "the approval API")
        _quiet_libraries()
        moto_fixes.apply()
        long_polls.apply()
        # The handlers read the environment, as in Lambda; what is set here is undone by stop().
        self._saved_environment = dict(os.environ)
        server = ThreadedMotoServer(ip_address=self.host, port=self.moto_port, verbose=False)
        server.start()
        self._stoppers.append(server.stop)
        host, port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        # The executor inside moto calls SQS on localhost:MOTO_PORT.
        os.environ["MOTO_PORT"] = str(port)
        os.environ.update(LOCAL_CREDENTIALS)
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
        if account:  # moto's server (in this process) then serves every request as this account
            os.environ["MOTO_ACCOUNT_ID"] = account
        session = boto3.Session(region_name=region or "us-east-1")
        import requests

        # moto keeps its state per process: a stack started after another one in the same
        # process (the tests, the benchmark) starts empty all the same.
        requests.post(f"{endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        requests.post(
            f"{endpoint_url}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}},
            timeout=10,
        ).raise_for_status()
        try:
            if self.templates:
                self.info = self._run_templates(session, endpoint_url, stacks)
            else:
                self.info = self._run_provisioned(session, endpoint_url)
        except BaseException:
            self.stop()  # nothing of a stack that did not start is left running
            raise
        return self.info

    def _function(self, name: str, handler: str, timeout: float) -> Handler:
        """The project's function ``handler`` in its environments, with this process's
        environment variables (the provisioned stack's settings) and ``timeout``."""
        if self.concurrency == IN_PROCESS:
            return environments.one_at_a_time(environments.entry_point(handler, None))
        processes = self.processes[name] = ProcessEnvironments(
            name, handler, dict(os.environ), self.concurrency, timeout
        )
        return processes

    @property
    def pollers_per_queue(self) -> int:
        return max(1, self.concurrency)

    def _run(self, api: LocalApi, pollers: list[QueuePoller], timers: list[Periodic]) -> None:
        api.start()
        self._stoppers.append(api.stop)
        runners: list[QueuePoller | Periodic] = [*pollers, *timers]
        for runner in runners:
            runner.start()
            self._stoppers.insert(0, runner.stop)
        self._runners += runners

    def _start_identity_provider(self, session: boto3.Session) -> str:
        from approvals.local import identity

        provider = identity.start(session)
        self._stoppers.append(provider.stop)
        os.environ.update(provider.environment)
        return provider.issuer

    def _run_provisioned(self, session: boto3.Session, endpoint_url: str) -> LocalInfo:
        from approvals.local.http import LocalApi
        from approvals.local.poller import QueuePoller
        from approvals.local.template import serve_invocations

        resources = provision(
            session,
            visibility_timeout=self.visibility_timeout,
            max_receives=self.max_receives,
            confirm_subscriptions=self.confirm_subscriptions,
            restrict_senders=True,  # as the product's queue: only the state machines send
        )
        self.resources = resources

        sqs = session.client("sqs")
        self.outbox = Outbox(sqs, resources.outbox_queue_url)
        from approvals import runtime

        sns = session.client("sns")
        api = LocalApi(
            # The function is made below: its environment names the API's URL, known once bound.
            lambda event, context: api_function(event, context),
            self.outbox,
            lambda: list(runtime.from_environment().store.all()),
            self.host,
            self.api_port,
            sns,
        )
        # The emails' confirm and unsubscribe links point at the local API, which plays SNS's pages.
        sns.tag_resource(ResourceArn=resources.topic_arn, Tags=[{"Key": SNS_PAGES_TAG, "Value": api.url}])
        os.environ.update(resources.environment(api.url, self.digest_seconds))
        # As in AWS: the worker's claim on a message lasts one visibility timeout, so that a
        # redelivery after a failure is a retry, not a duplicate to turn away.
        os.environ["APPROVALS_CLAIM_SECONDS"] = str(self.visibility_timeout)
        # As in AWS: recurring reminders may come as often as this stack's sweep runs.
        os.environ["APPROVALS_SWEEP_SECONDS"] = str(math.ceil(self.sweep_interval))
        provider_url = self._start_identity_provider(session) if self.sign_in else ""
        runtime.reset()
        runtime.from_environment()  # built here, before any thread of the stack asks for it
        api_function = self._function("approval-api", "approval_api.handler.lambda_handler", API_TIMEOUT)
        # As AWS requires of a queue's functions: their timeout is no longer than the
        # queue's visibility timeout (the worker's claim lasts as long).
        pollers = [
            QueuePoller(
                sqs,
                queue_url,
                self._function(name, handler, self.visibility_timeout),
                name,
                concurrency=self.pollers_per_queue,
            )
            for queue_url, handler, name in (
                (resources.queue_url, "worker.handler.lambda_handler", "approval-worker"),
                (resources.dlq_url, "worker.dead_letter.lambda_handler", "approval-dead-letter"),
            )
        ]
        summary = fanout_summary(resources)
        self._stoppers.append(serve_invocations({resources.fanout_summary_function: summary}))
        self._run(api, pollers, [sweeper(self.sweep_interval, resources.table_name, resources.region)])
        return LocalInfo(
            endpoint_url=endpoint_url,
            region=resources.region,
            state_machine_arn=resources.state_machine_arn,
            fanout_state_machine_arn=resources.fanout_state_machine_arn,
            api_url=api.url,
            outbox_url=f"{api.url}/outbox",
            queue_url=resources.queue_url,
            dlq_url=resources.dlq_url,
            table_name=resources.table_name,
            topic_arn=resources.topic_arn,
            signing_secret_arn=resources.signing_secret_arn,
            fanout_bucket=resources.fanout_bucket,
            identity_provider_url=provider_url,
        )

    def _run_templates(self, session: boto3.Session, endpoint_url: str, stacks: dict[str, Path]) -> LocalInfo:
        from approvals.local import cloudformation
        from approvals.local.http import LocalApi
        from approvals.local.poller import QueuePoller
        from approvals.local.template import (
            DeployedTemplate,
            execution_events_player,
            schedule_player,
            serve_invocations,
        )

        cloudformation.apply()
        # The functions run in this process from the project's packages: moto need not find
        # their code packages in S3 (the CDK CLI would have uploaded them).
        os.environ["VALIDATE_LAMBDA_S3"] = "false"
        outputs: dict[str, str] = {}
        for stack_name, template in stacks.items():  # in order: a consumer imports what a service exports
            outputs.update(cloudformation.deploy(session, template.read_text(), stack_name))
        deployed = DeployedTemplate(session, stacks)
        api_function, stage_urls = deployed.api_function()

        sqs, sns = session.client("sqs"), session.client("sns")
        email_topics = deployed.email_topics()
        outbox_queue_url = mailbox(sqs, sns, email_topics, "approvals-outbox", self.confirm_subscriptions)
        if self.confirm_subscriptions:  # the template's own, subscribed before the topic was tagged
            for topic_arn in email_topics:
                moto_fixes.confirm_pending_emails(topic_arn)
        self.outbox = Outbox(sqs, outbox_queue_url)
        environment = {k: v for f in deployed.functions.values() for k, v in f.environment.items()}
        table_name = outputs.get(stack_outputs.OUTPUT_TABLE) or environment.get("APPROVALS_TABLE", "")
        store = ApprovalStore(session.client("dynamodb"), table_name)
        api = LocalApi(api_function, self.outbox, lambda: list(store.all()), self.host, self.api_port, sns)
        for topic_arn in email_topics:
            sns.tag_resource(ResourceArn=topic_arn, Tags=[{"Key": SNS_PAGES_TAG, "Value": api.url}])
        deployed.serve_api_at(stage_urls, api.url)
        if self.concurrency != IN_PROCESS:
            for function in set(deployed.functions.values()):
                self.processes[function.name] = function.run_in_processes(self.concurrency)
        self._stoppers.append(serve_invocations(deployed.functions))
        # Set up: from now on each function, and each state machine's task, may make only
        # the calls its own role allows.
        identities.apply()
        self._stoppers.append(identities.enforce())

        pollers = [
            QueuePoller(sqs, queue_url, function, function.name, batch_size, self.pollers_per_queue)
            for queue_url, function, batch_size in deployed.queue_triggers()
        ]
        timers = [
            # At the template's own rates, as in AWS: its worker refuses reminders and
            # escalation steps closer together than its sweep runs.
            *(schedule_player(schedule) for schedule in deployed.schedules()),
            execution_events_player(session, deployed.rules(), self.sweep_interval),
        ]
        self._run(api, pollers, timers)
        return LocalInfo(
            endpoint_url=endpoint_url,
            region=deployed.region,
            state_machine_arn=outputs.get(stack_outputs.OUTPUT_STATE_MACHINE, ""),
            fanout_state_machine_arn=outputs.get(stack_outputs.OUTPUT_FANOUT_STATE_MACHINE, ""),
            api_url=api.url,
            outbox_url=f"{api.url}/outbox",
            queue_url=outputs.get(stack_outputs.OUTPUT_QUEUE_URL, ""),
            dlq_url=outputs.get(stack_outputs.OUTPUT_DEAD_LETTER_QUEUE, ""),
            table_name=table_name,
            topic_arn=outputs.get(stack_outputs.OUTPUT_TOPIC) or environment.get("APPROVALS_TOPIC_ARN", ""),
            signing_secret_arn=outputs.get(stack_outputs.OUTPUT_SIGNING_KEY)
            or environment.get("APPROVALS_SIGNING_SECRET", ""),
            fanout_bucket=outputs.get(stack_outputs.OUTPUT_FANOUT_BUCKET, ""),
        )

    def stop(self) -> None:
        # Every poller told first, then their long polls ended: none waits out its 20 s.
        for runner in self._runners:
            runner.request_stop()
        self._runners.clear()
        long_polls.end()
        for stop in self._stoppers:
            stop()
        self._stoppers.clear()
        for processes in self.processes.values():  # once nothing invokes them any more
            processes.stop()
        self.processes.clear()
        if self._saved_environment is not None:
            _restore_environment(self._saved_environment)
            self._saved_environment = None

    def __enter__(self) -> LocalInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
