"""moto's Step Functions executor (5.2.5) made fast enough for a fan-out of thousands of
items, without changing what it does. Measured on the product's fan-out (bench/fanout_scale.py),
where a child execution's time went:

- Every program (an execution's, each Map item's, each Parallel branch's) ran in a thread
  of its own that its caller joined, a timeout or none. One without ``TimeoutSeconds``
  runs in its caller's thread: a waiting child holds two threads, not three, and a process
  runs out of them later (a fan-out of 10,000 needed about 30,000). An error escaping it
  goes to ``threading.excepthook``, as from moto's thread.
- A Map starts ``MaxConcurrency`` worker threads whatever the number of items (10,000 for
  the product's fan-out, even for three items); a worker finding no item left ends at once.
  It starts no more workers than there are items: the same items run at once.
- Each child copied the Map state's whole input (every item, when the items come from the
  state) before its ``ItemSelector`` read it: the children's time grew with the square of
  their number. The selector only reads that input, which moto's own stack entry already
  shares between the children; what it selects is copied for the child, as in moto.
- Every JSONPath (``$.request.timeout_seconds``) is parsed again by a parser built anew for
  each parse. A parsed path is kept: jsonpath_ng sets a parsed path's parts only when it
  builds them; finding and updating read them.
- SQS ``SendMessage`` reads every attribute of its queue to learn whether a FIFO queue
  deduplicates by content, and ``ReceiveMessage`` reads them three times for each message
  it receives, to learn the queue's retention period; each reading counts the queue's
  messages one by one, three times, so a send or a receive took longer the more messages
  waited. To a standard queue, which has no such attribute, a message is sent without that
  reading, and the retention period is read alone.
- The executor made a boto3 session and client for every task; they are kept per role and
  service (approvals/local/access.py).
- DynamoDB ``TransactWriteItems`` copied the whole table once for every item of the
  transaction, to put back should it be cancelled: a worker's batch (its marks and inbox
  entries, about 25 items) took longer the more the table held, 0.5 s a request at 1,000
  (bench/digest.py). The items the transaction names are copied instead, and put back as
  they were if it is cancelled: only those can have changed. (A table with a stream is
  copied whole, as before: its stream records are put back too.)
- The local stack's moto server looked up which service a request is for by listing moto's
  package directory (about 200 entries, each checked to be a directory) and then matching
  the request's host against every service's URL patterns, on every request. The answer
  for a host never changes while the server runs: each host's is kept.
- moto serializes each DynamoDB response by walking the service's model, value by value:
  an item's every attribute, nested map and list. An item is held as DynamoDB's own JSON
  already (``{"S": "..."}``, ``{"M": {...}}``), which is what that walk writes out for every
  type but binary (base64): an attribute value of no binary type is written as it is. Half
  of an idle local stack's CPU went to it, serializing what its sweep reads every 2 s.
- Each new boto3 session read botocore's data anew (the endpoints, each service's model):
  deploying a template made one per resource made through the API, about half of a
  deployment's CPU. The sessions of a process share one loader, which keeps what it read.
"""

from __future__ import annotations

import copy
import functools
import sys
import threading
import weakref
from typing import Any

import botocore.loaders
import botocore.session
from moto.core.serialize import BaseJSONSerializer
from moto.core.utils import unix_time
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.exceptions import MockValidationException, TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs.models import Message, Queue, SQSBackend
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.component.program.program import Program
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.inline_iteration_component import (  # noqa: E501
    InlineIterationComponent,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor_worker import (  # noqa: E501
    DistributedItemProcessorWorker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.job import JobPool
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.utils import json_path

PARSED_PATHS = 1024  # JSONPaths kept parsed: the distinct paths of the definitions running


def apply() -> None:
    """Called once, by moto_fixes.apply."""
    _apply_untimed_programs_in_their_callers_thread()
    _apply_workers_per_item()
    _apply_map_input_shared()
    _apply_parsed_paths_kept()
    _apply_queue_reads_uncounted()
    _apply_transactions_undone_by_item()
    _apply_backends_found_once_per_host()
    _apply_attribute_values_written_as_they_are()
    share_one_botocore_loader()


def _apply_untimed_programs_in_their_callers_thread() -> None:
    eval_in_a_thread = Program.eval

    def eval_in_this_thread_unless_timed(self: Program, env: Environment) -> None:
        if self.timeout_seconds and self.timeout_seconds.timeout_seconds is not None:
            eval_in_a_thread(self, env)  # the thread is what a timeout ends
            return
        env.next_state_name = self.start_at.start_at_name
        try:
            EvalComponent.eval(self, env)
        except Exception:  # it would have ended moto's thread; the caller carries on
            threading.excepthook(threading.ExceptHookArgs((*sys.exc_info(), threading.current_thread())))

    Program.eval = eval_in_this_thread_unless_timed  # type: ignore[method-assign]


def _apply_workers_per_item() -> None:
    launch_worker = InlineIterationComponent._launch_worker
    launched: weakref.WeakKeyDictionary[JobPool, int] = weakref.WeakKeyDictionary()
    launched_lock = threading.Lock()

    def launch_worker_for_an_item(
        self: InlineIterationComponent, env: Environment, eval_input: Any, job_pool: JobPool
    ) -> Any:
        with launched_lock:
            count = launched.get(job_pool, 0)
            if count >= job_pool._jobs_number:
                return None  # it would find no item: every item has a worker already
            launched[job_pool] = count + 1
        return launch_worker(self, env=env, eval_input=eval_input, job_pool=job_pool)

    InlineIterationComponent._launch_worker = launch_worker_for_an_item  # type: ignore[method-assign]


def _apply_map_input_shared() -> None:
    def eval_input(self: DistributedItemProcessorWorker, env_frame: Environment) -> None:
        """moto's (InlineItemProcessorWorker._eval_input) but for one copy."""
        selector = self._item_selector or self._parameters
        if selector is None:
            return
        map_state_input = self._env.stack[-1]
        env_frame.states.reset(input_value=None)
        env_frame.states._states_data["input"] = map_state_input  # shared, not copied
        env_frame.stack.append(map_state_input)
        selector.eval(env_frame)
        env_frame.states.reset(input_value=env_frame.stack[-1])  # the selection, copied

    DistributedItemProcessorWorker._eval_input = eval_input  # type: ignore[method-assign,assignment]


def _apply_parsed_paths_kept() -> None:
    # The two parsers moto uses: jsonpath_ng's extended one, and its plain one for ResultPath.
    json_path.parse = functools.lru_cache(maxsize=PARSED_PATHS)(json_path.parse)  # type: ignore[attr-defined]
    result_path.parse = functools.lru_cache(maxsize=PARSED_PATHS)(result_path.parse)  # type: ignore[attr-defined]


def _apply_queue_reads_uncounted() -> None:
    send_message = SQSBackend.send_message
    attributes = Queue.attributes
    sending = threading.local()  # the standard queue this thread's send_message is serving

    def attributes_unless_sending(self: Queue) -> dict[str, Any]:
        if getattr(sending, "queue", None) is self:
            return {}  # all send_message reads of a standard queue's (ContentBasedDeduplication) is absent
        return attributes.fget(self)  # type: ignore[attr-defined,no-any-return]

    def send_message_uncounted(self: SQSBackend, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        if queue.fifo_queue:
            return send_message(self, queue_name, *args, **kwargs)
        sending.queue = queue
        try:
            return send_message(self, queue_name, *args, **kwargs)
        finally:
            sending.queue = None

    def retained(self: SQSBackend, queue_name: str, message: Message) -> bool:
        """moto's, with the retention period read alone."""
        retention_period = self.get_queue(queue_name).message_retention_period  # type: ignore[attr-defined]
        return bool(retention_period + message.sent_timestamp / 1000 > unix_time())  # type: ignore[operator]

    Queue.attributes = property(attributes_unless_sending)  # type: ignore[method-assign,assignment]
    SQSBackend.send_message = send_message_uncounted  # type: ignore[method-assign]
    SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign]


class _TablesCopied:
    """``copy`` as moto's DynamoDB backend sees it: a table this thread's transaction puts
    back item by item is not copied whole."""

    def __init__(self, undone_by_item: threading.local) -> None:
        self.copy = copy.copy
        self._undone_by_item = undone_by_item

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if any(value is table for table in getattr(self._undone_by_item, "tables", ())):
            return value
        return copy.deepcopy(value, memo)


def _apply_transactions_undone_by_item() -> None:
    transact_write_items = DynamoDBBackend.transact_write_items
    undone_by_item = threading.local()  # the tables this thread's transaction puts back itself
    dynamodb_models.copy = _TablesCopied(undone_by_item)  # type: ignore[attr-defined,assignment]

    def key_of(table: Table, operation_type: str, operation: dict[str, Any]) -> dict[str, Any]:
        if operation_type != "Put":
            return operation["Key"]  # type: ignore[no-any-return]
        item = operation["Item"]
        return {a: item[a] for a in (table.hash_key_attr, table.range_key_attr) if a is not None}

    def transact_write_items_undone_by_item(
        self: DynamoDBBackend, transact_items: list[dict[str, Any]]
    ) -> None:
        before: list[tuple[Table, DynamoType, DynamoType | None, Item | None, bool]] = []
        for transact_item in transact_items:
            for operation_type, operation in transact_item.items():
                table = self.tables.get(operation.get("TableName"))
                if table is None or table.stream_shard is not None:
                    continue
                try:
                    hash_key, range_key = self.get_keys_value(table, key_of(table, operation_type, operation))
                except (KeyError, MockValidationException):
                    continue  # moto refuses it before it writes anything
                held = hash_key in table.items
                item = table.get_item(hash_key, range_key) if held or range_key is None else None
                before.append((table, hash_key, range_key, copy.deepcopy(item), held))
        undone_by_item.tables = [entry[0] for entry in before]
        try:
            transact_write_items(self, transact_items)
        except (MockValidationException, TransactionCanceledException):
            for table, hash_key, range_key, item, held in reversed(before):
                if range_key is None:
                    if item is None:
                        table.items.pop(hash_key, None)
                    else:
                        table.items[hash_key] = item  # type: ignore[assignment]
                    continue
                kept = table.items[hash_key]
                if item is None:
                    kept.pop(range_key, None)
                else:
                    kept[range_key] = item
                if not held and not kept:
                    del table.items[hash_key]
            raise
        finally:
            undone_by_item.tables = ()

    DynamoDBBackend.transact_write_items = transact_write_items_undone_by_item  # type: ignore[method-assign]


def _apply_backends_found_once_per_host() -> None:
    find = DomainDispatcherApplication.get_backend_for_host
    found: dict[str | None, Any] = {}  # the hosts moto names services by: a few dozen at most

    def get_backend_for_host_once(self: DomainDispatcherApplication, host: str | None) -> Any:
        if host not in found:
            found[host] = find(self, host)
        return found[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host_once  # type: ignore[method-assign]


TEXT_TYPES = {"S", "N"}
TEXT_SET_TYPES = {"SS", "NS"}
FLAG_TYPES = {"BOOL", "NULL"}


def written_as_it_is(value: Any) -> bool:
    """Whether moto's walk of a DynamoDB attribute value would write it unchanged: DynamoDB
    JSON of any type but binary (which the walk base64-encodes), with text as text."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((kind, held),) = value.items()
    if kind in TEXT_TYPES:
        return type(held) is str
    if kind in TEXT_SET_TYPES:
        return type(held) is list and all(type(member) is str for member in held)
    if kind in FLAG_TYPES:
        return type(held) is bool
    if kind == "L":
        return type(held) is list and all(written_as_it_is(member) for member in held)
    if kind == "M":
        return type(held) is dict and all(
            type(name) is str and written_as_it_is(member) for name, member in held.items()
        )
    return False


def _apply_attribute_values_written_as_they_are() -> None:
    serialize = BaseJSONSerializer._serialize

    def serialize_attribute_values_as_they_are(
        self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str
    ) -> None:
        if (
            shape.name == "AttributeValue"
            and self.operation_model.service_model.service_name == "dynamodb"
            and written_as_it_is(value)
        ):
            self._default_serialize(serialized, value, shape, key)
        else:
            serialize(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize = serialize_attribute_values_as_they_are  # type: ignore[method-assign,assignment]


class _SearchPaths(list[str]):
    """A shared loader's search paths: each new boto3 session appends its own data path."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


@functools.cache
def _shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
    loader = botocore.loaders.create_loader(search_path_string)
    loader._search_paths = _SearchPaths(loader.search_paths)  # type: ignore[attr-defined]
    return loader


def share_one_botocore_loader() -> None:
    """Every botocore session made from now on in this process reads its data through one
    loader (the tests' processes call it too)."""
    botocore.session.create_loader = _shared_loader
