"""End to end: the approver directory on the local stack, with `approvals approvers` and the
AWS CLI, as an operator and a new user meet it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from approvals.demo import wait_for_email
from approvals.local import approver
from tests.e2e.conftest import RunningStack, running_local_stack

pytestmark = pytest.mark.e2e

ADDED, STRANGER = "quinn@example.com", "typo@exmaple.com"
DIRECTORY_SECONDS = 2  # how long the pending stack's worker keeps a read of the directory


def directory_rows(stack: RunningStack, *addresses: str) -> dict[str, list[str]]:
    listed = stack.cli("approvers", "list", *addresses)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["APPROVER", "STATUS", "PROTECTED"]
    return {row.split()[0]: [cell.strip() for cell in row.split("  ") if cell.strip()][1:] for row in rows}


def start(stack: RunningStack, title: str, approvers: list[str]) -> str:
    return stack.start(title, approvers, requester="e2e@example.com")


def test_a_request_naming_an_unknown_address_fails_at_once_and_added_approvers_succeed(
    local_stack: RunningStack,
) -> None:
    added = local_stack.cli("approvers", "add", ADDED)
    assert added.returncode == 0, added.stderr
    assert directory_rows(local_stack)[ADDED] == ["confirmed", "yes"]  # the local stack confirms at once

    refused = local_stack.ended(start(local_stack, "Typo", [ADDED, STRANGER]))
    assert (refused["status"], refused["error"]) == ("FAILED", "Approval.InvalidRequest")
    assert refused["cause"] == f"request.approvers: cannot be emailed: {STRANGER} (no subscription)"

    arn = start(local_stack, "Only added", [ADDED])
    email = wait_for_email(local_stack.info, ADDED, "Only added")
    page = approver.open_link(email["links"][0])
    assert approver.submit(page, "approve").status == 200
    assert local_stack.ended(arn)["status"] == "SUCCEEDED"
    # A mail scanner opening the email's unsubscribe link cannot remove a protected subscription.
    assert approver.open_link(email["unsubscribe"]).status == 403
    assert directory_rows(local_stack)[ADDED] == ["confirmed", "yes"]


def test_removed_approvers_are_refused_and_errors_are_one_line(local_stack: RunningStack) -> None:
    leaving = "leaving@example.com"
    assert local_stack.cli("approvers", "add", leaving).returncode == 0
    removed = local_stack.cli("approvers", "remove", leaving)
    assert removed.returncode == 0, removed.stderr
    assert directory_rows(local_stack, leaving)[leaving] == ["no subscription", "no"]
    refused = local_stack.ended(start(local_stack, "After removal", [leaving]))
    assert refused["cause"] == f"request.approvers: cannot be emailed: {leaving} (no subscription)"

    again = local_stack.cli("approvers", "remove", leaving)
    assert (again.returncode, again.stderr) == (2, f"approvals: {leaving} has no subscription\n")
    bad = local_stack.cli("approvers", "add", "not-an-address")
    assert (bad.returncode, bad.stderr) == (2, "approvals: not valid email addresses: not-an-address\n")


@pytest.fixture(scope="module")
def pending_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_local_stack(
        tmp_path_factory.mktemp("pending"),
        "--pending-subscriptions",
        environment={"APPROVALS_DIRECTORY_SECONDS": str(DIRECTORY_SECONDS)},
    ) as stack:
        yield stack


def confirmation_link(stack: RunningStack, address: str) -> str:
    email = wait_for_email(stack.info, address, "Subscription Confirmation")
    (link,) = email["links"]
    return str(link)


def test_pending_subscriptions_are_refused_until_confirmed_by_their_link(pending_stack: RunningStack) -> None:
    clicked, protected = "click@example.com", "careful@example.com"
    assert pending_stack.cli("approvers", "add", clicked, protected).returncode == 0
    assert directory_rows(pending_stack) == {
        clicked: ["pending confirmation", "no"],
        protected: ["pending confirmation", "no"],
    }
    refused = pending_stack.ended(start(pending_stack, "Too early", [clicked]))
    assert refused["error"] == "Approval.InvalidRequest"
    assert refused["cause"].startswith(
        f"request.approvers: cannot be emailed: {clicked} (subscription pending confirmation since "
    )

    # Following the link, as the approver would in the email, confirms it (unprotected);
    # `approvers confirm` with the link confirms it so that only a signed call removes it.
    assert approver.open_link(confirmation_link(pending_stack, clicked)).status == 200
    confirmed = pending_stack.cli("approvers", "confirm", confirmation_link(pending_stack, protected))
    assert confirmed.returncode == 0, confirmed.stderr
    assert directory_rows(pending_stack) == {clicked: ["confirmed", "no"], protected: ["confirmed", "yes"]}

    arn = start(pending_stack, "Confirmed now", [clicked, protected])
    page = approver.open_link(wait_for_email(pending_stack.info, protected, "Confirmed now")["links"][0])
    assert approver.submit(page, "approve").status == 200
    assert pending_stack.ended(arn)["status"] == "SUCCEEDED"
    # The outbox holds what SNS would deliver: each approver their own email, nobody else's.
    emails = approver.request(pending_stack.info.outbox_url, headers={"Accept": "application/json"}).json()
    delivered = {e["to"]: e for e in emails if "Confirmed now" in e["subject"]}
    assert sorted(delivered) == sorted([clicked, protected])

    # The unsubscribe link in an email (a scanner, a forward) removes an unprotected subscription
    # and not a protected one; the next request naming the unsubscribed approver is refused.
    assert approver.open_link(delivered[protected]["unsubscribe"]).status == 403
    assert approver.open_link(delivered[clicked]["unsubscribe"]).status == 200
    assert directory_rows(pending_stack, clicked) == {
        clicked: ["no subscription", "no"],
        protected: ["confirmed", "yes"],
    }
    time.sleep(DIRECTORY_SECONDS)  # past the worker's last read (a warm worker notices no unsubscribe)
    refused = pending_stack.ended(start(pending_stack, "Unsubscribed", [clicked]))
    assert refused["cause"] == f"request.approvers: cannot be emailed: {clicked} (no subscription)"
