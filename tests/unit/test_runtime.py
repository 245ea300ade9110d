"""One process, one set of services: every thread that asks gets the same clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import pytest

from approvals import runtime
from approvals.runtime import Services
from approvals.settings import Settings


@pytest.fixture
def slow_build(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Settings]]:
    """``build`` as slow as creating four boto3 clients, counting its calls."""
    monkeypatch.setenv("APPROVALS_TABLE", "approvals")
    monkeypatch.setenv("APPROVALS_SIGNING_SECRET", "approvals/signing-key")
    built: list[Settings] = []
    real_build = runtime.build

    def build(settings: Settings, credentials: Mapping[str, str] | None = None) -> Services:
        built.append(settings)
        time.sleep(0.05)
        return real_build(settings, credentials)

    monkeypatch.setattr(runtime, "build", build)
    runtime.reset()
    yield built
    runtime.reset()


def test_threads_asking_first_at_once_share_one_set_of_services(slow_build: list[Settings]) -> None:
    """The local stack's pollers, sweeper and HTTP server may all ask first at the same
    moment: they must get the very clients a test hooks its faults on."""
    start = threading.Barrier(4)

    def first_call(_: int) -> Services:
        start.wait()
        return runtime.from_environment()

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(first_call, range(4)))
    assert len(slow_build) == 1
    assert all(services is got[0] for services in got)
    assert runtime.from_environment() is got[0]


def test_reset_builds_anew_from_the_environment(
    slow_build: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = runtime.from_environment()
    monkeypatch.setenv("APPROVALS_TABLE", "other")
    assert runtime.from_environment() is first
    runtime.reset()
    assert runtime.from_environment().settings.table_name == "other"
    assert len(slow_build) == 2


def test_each_function_environment_has_services_of_its_own(slow_build: list[Settings]) -> None:
    """The local stack runs a template's functions in one process, each with its own
    environment: each gets the services its variables name, built once."""
    process = runtime.from_environment()
    worker_environment = {
        "APPROVALS_TABLE": "worker-table",
        "APPROVALS_SIGNING_SECRET": "worker/key",
        "APPROVALS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:emails",
    }
    token = runtime.function_environment.set(worker_environment)
    try:
        worker = runtime.from_environment()
        assert runtime.from_environment() is worker
    finally:
        runtime.function_environment.reset(token)
    assert worker is not process
    assert (worker.settings.table_name, worker.settings.topic_arn) == (
        "worker-table",
        worker_environment["APPROVALS_TOPIC_ARN"],
    )
    assert runtime.from_environment() is process, "outside an invocation: the process's own"
    assert len(slow_build) == 2
