"""Lambda execution environments of the local stack.

A function runs in up to ``concurrency`` environments at once, as Lambda runs it: each one a
Python process of its own that imports the handler on its first event (the cold start) and
then takes one event at a time, sharing nothing in memory with the others. They meet only
where Lambda's environments meet: in the services (the moto server).

``concurrency`` 0 runs a function in this process instead, one event at a time, as one
environment: what a test needs that hooks the very clients the handlers use
(``runtime.from_environment()``), or reads what a handler of its own recorded.

The parent and an environment speak JSON lines over the environment's stdin and its own
copy of stdout: ``{}`` out once initialized, then ``{"event", "request_id"}`` in and
``{"result"}`` or ``{"error"}`` out for each event, as Lambda's runtime API carries JSON
both ways. The handler's own output (log lines, prints)
goes to the local stack's stderr.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import IO, Any

from approvals import functions

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any], Any], Any]
DEFAULT_CONCURRENCY = 4
IN_PROCESS = 0


class FunctionError(RuntimeError):
    """The function raised, or its environment died: Lambda's invocation error."""

    def __init__(self, function_name: str, error_type: str, message: str) -> None:
        super().__init__(f"{function_name}: {error_type}: {message}")
        self.error_type = error_type


def one_at_a_time(handler: Handler) -> Handler:
    """A handler run in this process as one environment. One Lambda environment takes one
    event at a time, and the handlers keep the event in module globals meanwhile
    (Powertools' resolver and batch processor do): two events served at once in one
    process would read each other's."""
    lock = threading.Lock()

    def invoke(event: dict[str, Any], context: Any) -> Any:
        with lock:
            return handler(event, context)

    return invoke


class _Environment:
    """One execution environment: a process running :func:`main`."""

    def __init__(
        self, function_name: str, handler: str, environment: Mapping[str, str], code_path: Path | None
    ):
        command = [sys.executable, "-m", __name__, function_name, handler]
        if code_path is not None:
            command.append(str(code_path))
        self.process = subprocess.Popen(  # noqa: S603 - this module, with the project's own Python
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(environment)
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._requests: IO[bytes] = self.process.stdin
        self._replies: IO[bytes] = self.process.stdout

    def initialized(self) -> bool:
        """Waits for the end of the environment's init (the handler's import), which the
        function's timeout does not count, as Lambda's does not; False if it ended instead."""
        return bool(self._replies.readline())

    def invoke(self, event: dict[str, Any], request_id: str, timeout: float) -> dict[str, Any]:
        """The function's answer; TimeoutError once ``timeout`` seconds have gone without one."""
        self._requests.write(json.dumps({"event": event, "request_id": request_id}).encode() + b"\n")
        self._requests.flush()
        if not select.select([self._replies], [], [], timeout)[0]:
            raise TimeoutError
        reply = self._replies.readline()
        if not reply:
            raise EOFError(f"the environment (pid {self.process.pid}) ended")
        answer: dict[str, Any] = json.loads(reply)
        return answer

    def kill(self) -> None:
        self.process.kill()
        self.stop()

    def stop(self) -> None:
        self._requests.close()  # the environment ends at the end of its input
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._replies.close()


class ProcessEnvironments:
    """A function's environments: each event goes to an idle one, or to a new one while
    there are fewer than ``concurrency``; otherwise it waits for one to be free (Lambda
    would throttle; the local stack queues, as the API's clients and the pollers retry).
    ``environment`` is the whole of each process's environment variables.

    As Lambda, an invocation that runs past the function's ``timeout`` (seconds) is an
    error and its environment is ended: a worker held up past its queue's visibility
    timeout must not go on to email a request that another environment now handles."""

    def __init__(
        self,
        function_name: str,
        handler: str,
        environment: Mapping[str, str],
        concurrency: int,
        timeout: float,
        code_path: Path | None = None,
    ) -> None:
        self.function_name = function_name
        self.timeout = timeout
        self._handler = handler
        self._environment = dict(environment)
        self._code_path = code_path
        self._slots = threading.BoundedSemaphore(concurrency)
        self._idle: SimpleQueue[_Environment] = SimpleQueue()
        self._lock = threading.Lock()
        self._running: list[_Environment] = []
        self.pids: set[int] = set()  # every environment this function has had, for the tests

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self._slots:
            try:
                environment = self._idle.get_nowait()
            except Empty:
                environment = self._start()
            try:
                answer = environment.invoke(event, context.aws_request_id, self.timeout)
            except TimeoutError:
                self._discard(environment, environment.kill)
                raise FunctionError(
                    self.function_name, "Sandbox.Timedout", f"Task timed out after {self.timeout:.2f} seconds"
                ) from None
            except (OSError, EOFError, ValueError) as died:  # as in Lambda, a new one takes the next event
                self._discard(environment, environment.stop)
                raise FunctionError(self.function_name, "Runtime.ExitError", str(died)) from None
            self._idle.put(environment)
        if "error" in answer:
            raise FunctionError(
                self.function_name, answer["error"]["errorType"], answer["error"]["errorMessage"]
            )
        return answer["result"]

    def _start(self) -> _Environment:
        environment = _Environment(self.function_name, self._handler, self._environment, self._code_path)
        if not environment.initialized():
            environment.stop()
            raise FunctionError(
                self.function_name, "Runtime.ExitError", "the environment ended during its init"
            )
        with self._lock:
            self._running.append(environment)
            self.pids.add(environment.process.pid)
        return environment

    def _discard(self, environment: _Environment, end: Callable[[], None]) -> None:
        with self._lock:
            self._running.remove(environment)
        end()

    def stop(self) -> None:
        """Ends every environment; call once nothing invokes the function any more."""
        with self._lock:
            running, self._running = self._running, []
        for environment in running:
            environment.stop()


def entry_point(handler: str, code_path: Path | None) -> Handler:
    """The function ``handler`` names ("module.function"), from the project's packages or
    else from the function's asset (code only the template has).

    The functions' packages are found as Lambda finds them in an asset, by their names from
    a directory first on the path: an installed distribution carries them inside its own
    package, under no top-level name of a team's environment, and a team's own ``worker.py``
    (the working directory is on a child's path) does not stand in for them.
    """
    if str(functions.ROOT) not in sys.path:
        sys.path.insert(0, str(functions.ROOT))
    module_name, _, attribute = handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        if code_path is None or str(code_path) in sys.path:
            raise
        sys.path.append(str(code_path))  # after the project's own packages
        module = importlib.import_module(module_name)
    function: Handler = getattr(module, attribute)
    return function


def main(function_name: str, handler: str, code_path: str | None = None) -> None:
    """One environment: import the handler (the cold start), then answer events until the
    end of input."""
    from approvals.local.poller import LambdaContext

    # Ctrl-C in a terminal reaches the whole process group: the local stack stops its
    # environments itself, each after the event it is running.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the handler's output: log lines
    begin = time.perf_counter()
    function = entry_point(handler, Path(code_path) if code_path else None)
    # Lambda's own line about a new environment, named here (every function's output is one).
    print(
        f"INIT_REPORT Function: {function_name} Environment: {os.getpid()}"
        f" Init Duration: {(time.perf_counter() - begin) * 1000:.2f} ms",
        file=sys.stderr,
        flush=True,
    )
    replies.write(b"{}\n")  # initialized
    replies.flush()
    for line in sys.stdin.buffer:
        request = json.loads(line)
        context = LambdaContext(function_name, aws_request_id=request["request_id"])
        try:
            answer = {"result": function(request["event"], context)}
            reply = json.dumps(answer)
        except Exception as error:
            reply = json.dumps({"error": {"errorType": type(error).__name__, "errorMessage": str(error)}})
        replies.write(reply.encode() + b"\n")
        replies.flush()


if __name__ == "__main__":
    main(*sys.argv[1:])
