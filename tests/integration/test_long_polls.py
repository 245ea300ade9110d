"""SQS long polls on moto as the local stack serves them (approvals/local/long_polls.py): a
message is received at once by a waiting receive, and the stack's stop ends the waits
rather than waiting out its pollers' 20 s receives."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import moto
import pytest
from moto.core.base_backend import BackendDict
from moto.sqs.models import Queue, sqs_backends

from approvals.local import long_polls
from approvals.local.environments import IN_PROCESS
from approvals.local.poller import LONG_POLL_SECONDS
from approvals.local.stack import LocalStack
from tests.conftest import eventually

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

ACCOUNT = "123456789012"  # moto's default
REGION = "us-east-1"


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[SQSClient]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    long_polls.apply()
    with moto.mock_aws():
        yield boto3.client("sqs", region_name=REGION)


def waiting_receives(queue: Queue) -> int:
    return len(queue._messages_lock._waiters)  # type: ignore[attr-defined]


class Receive(threading.Thread):
    """A long poll of the queue, on a thread of its own as each poller's."""

    def __init__(self, sqs: SQSClient, queue_url: str) -> None:
        super().__init__(daemon=True)
        self._sqs = sqs
        self._queue_url = queue_url
        self.bodies: list[str] | None = None

    def run(self) -> None:
        received = self._sqs.receive_message(QueueUrl=self._queue_url, WaitTimeSeconds=LONG_POLL_SECONDS)
        self.bodies = [message["Body"] for message in received.get("Messages", [])]


def long_poll(sqs: SQSClient, queue_url: str) -> Receive:
    """A receive started, once it waits."""
    receive = Receive(sqs, queue_url)
    receive.start()
    queue = sqs_backends[ACCOUNT][REGION].get_queue(queue_url.rpartition("/")[2])
    eventually(lambda: waiting_receives(queue) == 1, what="the receive waiting")
    return receive


def answered(receive: Receive) -> list[str]:
    """The bodies the receive answered with, well before its poll's time would run out."""
    receive.join(timeout=LONG_POLL_SECONDS / 2)
    assert not receive.is_alive(), "the receive still waits"
    assert receive.bodies is not None
    return receive.bodies


def test_a_message_sent_while_a_receive_waits_is_received_by_it(sqs: SQSClient) -> None:
    queue_url = sqs.create_queue(QueueName="arrivals")["QueueUrl"]
    receive = long_poll(sqs, queue_url)
    sqs.send_message(QueueUrl=queue_url, MessageBody="at once")
    assert answered(receive) == ["at once"]


def test_a_message_visible_again_is_received_by_a_waiting_receive(sqs: SQSClient) -> None:
    """No send wakes the wait: the message's visibility timeout runs out while it waits."""
    queue_url = sqs.create_queue(QueueName="retries")["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="again")
    assert sqs.receive_message(QueueUrl=queue_url, VisibilityTimeout=1)["Messages"]
    receive = long_poll(sqs, queue_url)
    assert answered(receive) == ["again"]


def test_ending_the_long_polls_answers_a_waiting_receive_and_any_later_one_at_once(sqs: SQSClient) -> None:
    queue_url = sqs.create_queue(QueueName="stopping")["QueueUrl"]
    receive = long_poll(sqs, queue_url)
    long_polls.end()
    assert answered(receive) == []
    later = Receive(sqs, queue_url)
    later.start()
    assert answered(later) == []


def test_ending_the_long_polls_answers_a_receive_on_a_queue_that_a_reset_took_away(sqs: SQSClient) -> None:
    """A second stack started in the process resets moto's state (the tests start several):
    the first stack's pollers still wait on its queues, which the backends no longer hold."""
    queue_url = sqs.create_queue(QueueName="reset")["QueueUrl"]
    receive = long_poll(sqs, queue_url)
    BackendDict.reset()
    long_polls.end()
    assert answered(receive) == []


def test_a_local_stack_stops_without_waiting_out_its_pollers_receives() -> None:
    stack = LocalStack(moto_port=0, api_port=0, concurrency=IN_PROCESS)
    info = stack.start()
    try:
        queue = sqs_backends[ACCOUNT][info.region].get_queue(info.queue_url.rpartition("/")[2])
        eventually(lambda: waiting_receives(queue) == stack.pollers_per_queue, what="the pollers waiting")
    finally:
        stopping = threading.Thread(target=stack.stop, daemon=True)
        stopping.start()
    stopping.join(timeout=LONG_POLL_SECONDS / 2)
    assert not stopping.is_alive(), "the stop waits for the pollers' receives"
