"""The approver directory's pure parts: which subscription takes only its approver's email,
the refusal cause, the confirmation link, and when a request can still be approved."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from approvals import directory
from approvals.directory import DirectoryError
from approvals.models import Outcome, Unreachable, Vote, timeline
from approvals.policy import can_still_be_approved
from tests.unit.samples import sample_approval

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attributes", "takes_only_alice"),
    [
        ({"FilterPolicy": directory.filter_policy(ALICE)}, True),
        ({"FilterPolicy": directory.filter_policy(ALICE), "FilterPolicyScope": "MessageAttributes"}, True),
        ({}, False),  # no filter: every approver's email, links included
        ({"FilterPolicy": json.dumps({"approver": [ALICE, BOB]})}, False),  # Bob's links too
        ({"FilterPolicy": directory.filter_policy(BOB)}, False),
        ({"FilterPolicy": directory.filter_policy(ALICE), "FilterPolicyScope": "MessageBody"}, False),
        ({"FilterPolicy": "{not json"}, False),
    ],
)
def test_only_a_filter_on_the_approvers_own_address_counts(
    attributes: dict[str, str], takes_only_alice: bool
) -> None:
    assert directory._takes_only(attributes, ALICE) is takes_only_alice


def test_the_cause_names_each_address_and_why() -> None:
    unreachable = {BOB: "no subscription", CAROL: "subscription pending confirmation since X"}
    assert directory.describe(unreachable) == (
        f"request.approvers: cannot be emailed: {BOB} (no subscription);"
        f" {CAROL} (subscription pending confirmation since X)"
    )


def test_the_confirmation_link_gives_its_topic_and_token() -> None:
    link = (
        "https://sns.us-east-1.amazonaws.com/confirmation.html?TopicArn=arn%3Aaws%3Asns%3Aus-east-1"
        "%3A123456789012%3AApprovals&Token=2336412f37fb&Endpoint=alice%40example.com"
    )
    topic = "arn:aws:sns:us-east-1:123456789012:Approvals"
    assert directory.confirmation_token(link) == (topic, "2336412f37fb")
    for broken in ("https://sns.us-east-1.amazonaws.com/confirmation.html?Token=x", "not a link"):
        with pytest.raises(DirectoryError, match="not a subscription confirmation link"):
            directory.confirmation_token(broken)


def approval(policy: dict[str, Any], lost: list[str], votes: dict[str, Outcome] | None = None) -> Any:
    return sample_approval(
        NOW - timedelta(hours=1),
        timedelta(days=1),
        {"approvers": [ALICE, BOB, CAROL], **policy},
        unreachable={who: Unreachable(at=NOW, why="no subscription") for who in lost},
        votes={who: Vote(approver=who, outcome=outcome, at=NOW) for who, outcome in (votes or {}).items()},
    )


@pytest.mark.parametrize(
    ("policy", "lost", "votes", "still"),
    [
        ({"policy": "all"}, [], {}, True),
        ({"policy": "all"}, [BOB], {}, False),
        ({"policy": "first_response"}, [BOB, CAROL], {}, True),
        ({"policy": "first_response"}, [ALICE, BOB, CAROL], {}, False),
        ({"policy": "quorum", "quorum": 2}, [BOB], {}, True),
        ({"policy": "quorum", "quorum": 2}, [BOB, CAROL], {}, False),
        # Bob approved before he left: his vote still counts.
        ({"policy": "quorum", "quorum": 2}, [BOB, CAROL], {BOB: Outcome.APPROVED}, True),
    ],
)
def test_a_request_can_still_be_approved_while_enough_approvers_can(
    policy: dict[str, Any], lost: list[str], votes: dict[str, Outcome], still: bool
) -> None:
    assert can_still_be_approved(approval(policy, lost, votes), NOW) is still


def test_an_unreachable_approver_is_in_the_timeline() -> None:
    events = [(e.kind, e.actor, e.detail) for e in timeline(approval({}, [BOB]))]
    assert ("unreachable", BOB, "cannot be emailed: no subscription") in events
