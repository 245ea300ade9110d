"""SQS long polls that the local stack's stop ends at once, and that an idle queue does not
wake every second.

moto (5.2.5) serves a ``ReceiveMessage`` with ``WaitTimeSeconds`` by receiving, then waiting
on the queue (a new message wakes the wait at once; one made visible again by its visibility
timeout is found by a check every second), until a message comes or the time is up; nothing
ends the wait sooner. The local stack's pollers wait 20 s, as Lambda's own pollers do, so a
stop would wait out their receives. Here the same wait can also be ended: :func:`end` makes
every receive waiting on the process's queues answer at once with what it has (nothing),
as the poll's time running out would, and any later one on those queues not wait at all.
An empty queue's wait is not checked every second: only a send can change it, and a send
wakes it.
"""

from __future__ import annotations

import threading
import time
import weakref

from moto.sqs.models import Message, Queue, SQSBackend, sqs_backends

RECHECK_SECONDS = 1.0  # as moto: how late a message made visible again may be found

_receive_at_once = SQSBackend.receive_message
_ended: weakref.WeakSet[Queue] = weakref.WeakSet()
# Queues a receive has waited on: a reset of moto's state (a second stack started in the
# process) takes them out of the backends while the first stack's pollers still wait there.
_waited_on: weakref.WeakSet[Queue] = weakref.WeakSet()
_waited_on_lock = threading.Lock()


def _receive(
    self: SQSBackend,
    queue_name: str,
    count: int,
    wait_seconds_timeout: int,
    visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> list[Message]:
    queue = self.get_queue(queue_name)
    with _waited_on_lock:
        _waited_on.add(queue)
    deadline = time.monotonic() + wait_seconds_timeout
    # Held from each receive to the wait (which lets it go): a message sent between the two
    # takes the same lock to notify the wait, so none is missed for a second.
    with queue._messages_lock:
        while True:
            received = _receive_at_once(
                self, queue_name, count, 0, visibility_timeout, message_attribute_names
            )
            remaining = deadline - time.monotonic()
            if received or remaining <= 0 or queue in _ended:
                return received
            # An empty queue changes only by a send, which wakes the wait: an idle stack's
            # receives then wake once a poll, not every second.
            queue._messages_lock.wait(min(remaining, RECHECK_SECONDS) if queue._messages else remaining)
            if queue in _ended:  # nothing more: its backend may be gone (a reset)
                return []


def apply() -> None:
    SQSBackend.receive_message = _receive  # type: ignore[method-assign]


def end() -> None:
    """Every receive waiting on a queue of this process answers now, and none waits again."""
    # Copies: a request being served may create a queue or a region's backend meanwhile.
    queues = [
        queue
        for regions in list(sqs_backends.values())
        for backend in list(regions.values())
        for queue in list(backend.queues.values())
    ]
    with _waited_on_lock:
        queues += list(_waited_on)
    for queue in queues:
        with queue._messages_lock:
            _ended.add(queue)
            queue._messages_lock.notify_all()
