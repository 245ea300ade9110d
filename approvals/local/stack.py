"""The embedded local stack: moto in server mode running the real state machines, the
worker behind a queue poller, the approval API behind a local HTTP server, an outbox.

The handlers are the Lambda handlers themselves, reading their settings from the
environment exactly as in AWS; only the endpoint differs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from approvals.local import moto_fixes
from approvals.local.outbox import Outbox
from approvals.local.resources import SNS_PAGES_TAG, Resources, provision

log = logging.getLogger(__name__)
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
STATE_FILE = Path(".approvals") / "local.json"
DEFAULT_MOTO_PORT = 4570
DEFAULT_API_PORT = 8787


@dataclass(frozen=True)
class LocalInfo:
    """What `approvals local` writes to its state file, for the CLI and for people."""

    endpoint_url: str
    region: str
    state_machine_arn: str
    fanout_state_machine_arn: str
    api_url: str
    outbox_url: str
    queue_url: str
    dlq_url: str
    table_name: str
    topic_arn: str

    def write(self, path: Path = STATE_FILE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def read(cls, path: Path = STATE_FILE) -> LocalInfo:
        return cls(**json.loads(path.read_text()))


class Sweeper:
    """Plays EventBridge Scheduler (the sweep) and the execution-status rule (by asking
    Step Functions about each pending approval's execution)."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper", daemon=True)

    def _run(self) -> None:
        from approvals import runtime, sweep
        from approvals.models import utcnow

        while not self._stop.wait(self._interval):
            try:
                sweep.sweep(runtime.from_environment(), utcnow(), check_executions=True)
            except Exception:
                log.exception("sweep failed")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


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
    def __init__(
        self,
        host: str = "127.0.0.1",
        moto_port: int = DEFAULT_MOTO_PORT,
        api_port: int = DEFAULT_API_PORT,
        visibility_timeout: int = 5,
        max_receives: int = 3,
        sweep_interval: float = 2.0,
        confirm_subscriptions: bool = True,
    ) -> None:
        self.host = host
        self.moto_port = moto_port
        self.api_port = api_port
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives
        self.sweep_interval = sweep_interval
        # Nobody reads the local mail: approvers are confirmed as they are added, unless
        # asked to leave them pending (their confirmation email is then in the outbox).
        self.confirm_subscriptions = confirm_subscriptions
        self._stoppers: list[Any] = []
        self._saved_environment: dict[str, str] | None = None
        self.resources: Resources | None = None
        self.info: LocalInfo | None = None
        self.outbox: Outbox | None = None

    def start(self) -> LocalInfo:
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        _quiet_libraries()
        moto_fixes.apply()
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
        session = boto3.Session(region_name="us-east-1")
        import requests

        # moto keeps its state per process: a stack started after another one in the same
        # process (the tests, the benchmark) starts empty all the same.
        requests.post(f"{endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        requests.post(
            f"{endpoint_url}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}},
            timeout=10,
        ).raise_for_status()
        resources = provision(
            session,
            visibility_timeout=self.visibility_timeout,
            max_receives=self.max_receives,
            confirm_subscriptions=self.confirm_subscriptions,
        )
        self.resources = resources

        sqs = session.client("sqs")
        self.outbox = Outbox(sqs, resources.outbox_queue_url)
        from approval_api.handler import lambda_handler as api_handler
        from approvals import runtime
        from approvals.local.http import LocalApi

        sns = session.client("sns")
        api = LocalApi(
            api_handler,
            self.outbox,
            lambda: list(runtime.from_environment().store.all()),
            self.host,
            self.api_port,
            sns,
        )
        # The emails' confirm and unsubscribe links point at the local API, which plays SNS's pages.
        sns.tag_resource(ResourceArn=resources.topic_arn, Tags=[{"Key": SNS_PAGES_TAG, "Value": api.url}])
        os.environ.update(resources.environment(api.url))
        # As in AWS: the worker's claim on a message lasts one visibility timeout, so that a
        # redelivery after a failure is a retry, not a duplicate to turn away.
        os.environ["APPROVALS_CLAIM_SECONDS"] = str(self.visibility_timeout)
        runtime.reset()
        runtime.from_environment()  # built here, before any thread of the stack asks for it
        api.start()
        self._stoppers.append(api.stop)

        from approvals.local.poller import QueuePoller
        from worker.dead_letter import lambda_handler as dead_letter_handler
        from worker.handler import lambda_handler as worker_handler

        # One poller per function, each one execution environment: the handlers keep a
        # batch's state in module globals (Powertools' batch processor), as Lambda allows.
        for queue_url, handler, name in (
            (resources.queue_url, worker_handler, "approval-worker"),
            (resources.dlq_url, dead_letter_handler, "approval-dead-letter"),
        ):
            poller = QueuePoller(sqs, queue_url, handler, name)
            poller.start()
            self._stoppers.insert(0, poller.stop)

        sweeper = Sweeper(self.sweep_interval)
        sweeper.start()
        self._stoppers.insert(0, sweeper.stop)

        self.info = LocalInfo(
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
        )
        return self.info

    def stop(self) -> None:
        for stop in self._stoppers:
            stop()
        self._stoppers.clear()
        if self._saved_environment is not None:
            _restore_environment(self._saved_environment)
            self._saved_environment = None

    def __enter__(self) -> LocalInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
