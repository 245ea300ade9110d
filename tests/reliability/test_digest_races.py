"""An approver's digest under races, against moto: a worker batch and the sweep, or two worker
batches, both finding the approver's window closed with a request waiting in their digest at
the same moment. The window's claim decides which of them emails: the waiting request goes
out in exactly one email, and no request is dropped (each is emailed, or still waits in the
digest for the window's close).

The race is made deterministic: the racer runs to its end just as the first side is about
to publish, when the first has read (and, fixed, claimed) the approver's window."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from approvals import digest, request, runtime
from approvals.models import utcnow
from approvals.runtime import Services
from approvals.sweep import sweep
from tests.conftest import Stack
from tests.integration.test_digest import WINDOW, ask, handle, listed, queued

ALICE = "alice@example.com"


@pytest.fixture
def windowed(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Services:
    monkeypatch.setenv("APPROVALS_DIGEST_SECONDS", str(WINDOW))
    runtime.reset()
    return runtime.from_environment()


def titles_emailed(stack: Stack) -> Iterator[str]:
    """Every request title emailed to Alice: a digest's listed items, an own email's title."""
    for email in stack.emails():
        if email.to != ALICE:
            continue
        items = listed(email.body)
        yield from items or [email.subject.removeprefix("[Approval needed] ").split(" (from ")[0]]


def waiting_in_digest(stack: Stack) -> set[str]:
    ids = {i for d in stack.digests() for i in d.get("pending", {}).get("SS", [])}
    return {a.request.title for a in stack.approvals() if a.approval_id in ids}


def racing_at_publish(services: Services, racer: Callable[[], Any]) -> None:
    """Run ``racer`` once, when the next publish is about to go."""
    raced: list[bool] = []

    def race(**_: Any) -> None:
        if not raced:
            raced.append(True)
            racer()

    services.sns.meta.events.register("before-call.sns.PublishBatch", race)


def batch_for_alice(stack: Stack, services: Services, title: str, at: datetime) -> Callable[[], None]:
    """A worker batch of one request to Alice, claimed now, to be emailed at ``at``."""
    claimed = [
        request.claim_message(services, m["Body"], utcnow(), utcnow())
        for m in queued(stack, [ask(title, [ALICE])])
    ]
    to_email = [c for c in claimed if isinstance(c, digest.ToEmail)]
    assert len(to_email) == 1

    def run() -> None:
        assert digest.email_batch(services, to_email, at) == set()

    return run


def a_request_waits_in_alices_closed_window(stack: Stack) -> datetime:
    handle(stack, queued(stack, [ask("First", [ALICE])]))
    handle(stack, queued(stack, [ask("Waiting", [ALICE])]))
    assert list(titles_emailed(stack)) == ["First"]
    assert waiting_in_digest(stack) == {"Waiting"}
    return utcnow() + timedelta(seconds=WINDOW + 1)


def test_a_worker_batch_racing_the_sweep_emails_the_waiting_request_once(
    stack: Stack, windowed: Services
) -> None:
    closed = a_request_waits_in_alices_closed_window(stack)
    batch = batch_for_alice(stack, windowed, "Next", closed)
    racing_at_publish(windowed, lambda: sweep(windowed, closed))
    batch()

    emailed = list(titles_emailed(stack))
    assert emailed.count("Waiting") == 1
    assert {"Next"} <= set(emailed) | waiting_in_digest(stack)  # emailed, or waiting its turn


def test_the_sweep_racing_a_worker_batch_emails_the_waiting_request_once(
    stack: Stack, windowed: Services
) -> None:
    closed = a_request_waits_in_alices_closed_window(stack)
    batch = batch_for_alice(stack, windowed, "Next", closed)
    racing_at_publish(windowed, batch)
    sweep(windowed, closed)

    emailed = list(titles_emailed(stack))
    assert emailed.count("Waiting") == 1
    assert "Next" in set(emailed) | waiting_in_digest(stack)
    # What lost the race waits for the window the winner opened, and goes when it closes.
    sweep(windowed, closed + timedelta(seconds=WINDOW + 1))
    assert sorted(titles_emailed(stack)) == ["First", "Next", "Waiting"]


def test_two_worker_batches_at_once_email_the_waiting_request_once(stack: Stack, windowed: Services) -> None:
    closed = a_request_waits_in_alices_closed_window(stack)
    one = batch_for_alice(stack, windowed, "One", closed)
    other = batch_for_alice(stack, windowed, "Other", closed)
    racing_at_publish(windowed, other)
    one()

    emailed = list(titles_emailed(stack))
    assert emailed.count("Waiting") == 1
    assert emailed.count("One") + emailed.count("Other") == 1  # one email to Alice in the window
    sweep(windowed, closed + timedelta(seconds=WINDOW + 1))
    assert sorted(titles_emailed(stack)) == ["First", "One", "Other", "Waiting"]
    assert waiting_in_digest(stack) == set()
