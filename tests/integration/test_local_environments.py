"""The local stack's execution environments (approvals/local/environments.py): processes of
their own, at most ``concurrency`` of them, each taking one event at a time, with Lambda's
answers to a function that raises, dies or runs past its timeout. The functions are this
module's own, imported by each environment as Lambda imports a handler."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from approvals.local.environments import FunctionError, ProcessEnvironments
from approvals.local.poller import LambdaContext

HERE = __name__


def report(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Holds the event a while, then says where it ran and with what."""
    time.sleep(event.get("seconds", 0))
    if event.get("fail"):
        raise ValueError("asked to fail")
    if event.get("exit"):
        os._exit(1)
    return {"pid": os.getpid(), "setting": os.environ.get("SETTING"), "request_id": context.aws_request_id}


@pytest.fixture
def environments() -> Any:
    processes = ProcessEnvironments(
        "reporter", f"{HERE}.report", {**os.environ, "SETTING": "theirs"}, concurrency=2, timeout=5
    )
    try:
        yield processes
    finally:
        processes.stop()


def invoke(processes: ProcessEnvironments, **event: Any) -> dict[str, Any]:
    answer: dict[str, Any] = processes(event, LambdaContext("reporter"))
    return answer


def test_events_run_in_at_most_concurrency_processes_with_the_functions_environment(
    environments: ProcessEnvironments,
) -> None:
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: invoke(environments, seconds=0.3), range(6)))
    pids = {answer["pid"] for answer in answers}
    assert len(pids) == 2
    assert os.getpid() not in pids
    assert pids == environments.pids
    assert {answer["setting"] for answer in answers} == {"theirs"}
    assert len({answer["request_id"] for answer in answers}) == 6


def test_a_function_that_raises_is_an_invocation_error_and_its_environment_stays(
    environments: ProcessEnvironments,
) -> None:
    first = invoke(environments)["pid"]
    with pytest.raises(FunctionError) as failed:
        invoke(environments, fail=True)
    assert failed.value.error_type == "ValueError"
    assert "asked to fail" in str(failed.value)
    assert invoke(environments)["pid"] == first


def test_an_environment_that_dies_is_replaced_at_the_next_event(environments: ProcessEnvironments) -> None:
    first = invoke(environments)["pid"]
    with pytest.raises(FunctionError) as died:
        invoke(environments, exit=True)
    assert died.value.error_type == "Runtime.ExitError"
    assert invoke(environments)["pid"] != first


def test_an_invocation_past_the_timeout_ends_its_environment() -> None:
    """As Lambda: the event is an error, and the function can do nothing more with it."""
    processes = ProcessEnvironments("reporter", f"{HERE}.report", dict(os.environ), concurrency=1, timeout=1)
    try:
        first = invoke(processes)["pid"]
        with pytest.raises(FunctionError) as timed_out:
            invoke(processes, seconds=30)
        assert timed_out.value.error_type == "Sandbox.Timedout"
        assert str(timed_out.value) == "reporter: Sandbox.Timedout: Task timed out after 1.00 seconds"
        with pytest.raises(ProcessLookupError):
            os.kill(first, 0)
        assert invoke(processes)["pid"] != first
    finally:
        processes.stop()
