"""The approver directory: who can receive an approval email, read from the email topic.

SNS delivers an approver's email only through a confirmed email subscription whose filter
policy takes that approver's messages; anything else is dropped without a word. So the
directory is the topic's confirmed, filtered email subscriptions, and a request naming
anyone else is refused at once, by name, instead of waiting for an email never sent.

The worker asks for every message, so :class:`Directory` keeps what it read for a short
time and reads again when it is stale, or when an address is missing (someone added a
moment ago).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import ClientError

from approvals.notify import APPROVER_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

EMAIL_PROTOCOL = "email"
PENDING_ARN = "PendingConfirmation"  # what SNS lists instead of an unconfirmed subscription's ARN


class Reach(StrEnum):
    CONFIRMED = "confirmed"
    PENDING = "pending confirmation"
    UNFILTERED = "not filtered"
    NONE = "no subscription"


@dataclass(frozen=True)
class Subscription:
    """One email subscription on the topic, as SNS reports it."""

    address: str
    reach: Reach
    arn: str | None = None  # None while pending: SNS does not list a pending subscription's ARN
    protected: bool = False  # confirmed with AuthenticateOnUnsubscribe: only a signed call removes it


def filter_policy(address: str) -> str:
    """The filter policy that gives ``address`` its own messages and nobody else's."""
    return json.dumps({APPROVER_ATTRIBUTE: [address]})


def _takes_only(attributes: dict[str, str], address: str) -> bool:
    if attributes.get("FilterPolicyScope", "MessageAttributes") != "MessageAttributes":
        return False
    try:
        policy = json.loads(attributes.get("FilterPolicy") or "null")
    except ValueError:
        return False
    return bool(policy == {APPROVER_ATTRIBUTE: [address]})


def _listing(sns: SNSClient, topic_arn: str) -> dict[str, list[str]]:
    """Each address with an email subscription, and their ARNs (or ``PendingConfirmation``):
    one ListSubscriptionsByTopic per 100 subscriptions."""
    listing: dict[str, list[str]] = {}
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
        for listed in page.get("Subscriptions", []):
            if listed.get("Protocol") == EMAIL_PROTOCOL:
                address = listed.get("Endpoint", "").strip().lower()
                listing.setdefault(address, []).append(listed.get("SubscriptionArn", PENDING_ARN))
    return listing


def _describe(sns: SNSClient, address: str, arn: str) -> Subscription:
    """One subscription; a confirmed one costs a GetSubscriptionAttributes (its filter policy
    and protection are not listed)."""
    if arn == PENDING_ARN:
        return Subscription(address, Reach.PENDING)
    try:
        attributes = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NotFound":
            raise
        return Subscription(address, Reach.NONE)  # removed since it was listed
    return Subscription(
        address,
        Reach.CONFIRMED if _takes_only(attributes, address) else Reach.UNFILTERED,
        arn,
        protected=attributes.get("ConfirmationWasAuthenticated") == "true",
    )


def _best(subscriptions: list[Subscription]) -> Subscription:
    rank = list(Reach)
    return min(subscriptions, key=lambda subscription: rank.index(subscription.reach))


def read(sns: SNSClient, topic_arn: str) -> dict[str, Subscription]:
    """Every address with an email subscription on the topic (lowercase), with its best one."""
    return {
        address: _best([_describe(sns, address, arn) for arn in arns])
        for address, arns in _listing(sns, topic_arn).items()
    }


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


class Directory:
    """The topic's email subscriptions as one process last read them; safe across threads.

    The listing is read whole; a confirmed subscription's attributes only when an address
    is asked about, and kept until the next read, so a topic with many approvers costs a
    warm worker nothing and a refresh one call per address in question.
    """

    def __init__(self, sns: SNSClient, topic_arn: str, max_age: timedelta) -> None:
        self._sns = sns
        self._topic_arn = topic_arn
        self._max_age = max_age
        self._lock = threading.Lock()
        self._read_at: datetime | None = None
        self._listing: dict[str, list[str]] = {}
        self._described: dict[str, Subscription] = {}
        # SNS keeps no time for a pending subscription: this is when this process first saw it.
        self._pending_since: dict[str, datetime] = {}

    def refresh(self, now: datetime) -> None:
        listing = _listing(self._sns, self._topic_arn)
        with self._lock:
            self._listing, self._described, self._read_at = listing, {}, now
            self._pending_since = {
                address: self._pending_since.get(address, now)
                for address, arns in listing.items()
                if PENDING_ARN in arns
            }

    def unreachable(self, addresses: Collection[str], now: datetime) -> dict[str, str]:
        """Why each of ``addresses`` cannot receive an email, for those that cannot."""
        with self._lock:
            fresh = self._read_at is not None and now - self._read_at < self._max_age
            missing = fresh and any(self._reach(a) is not Reach.CONFIRMED for a in addresses)
        if missing or not fresh:
            self.refresh(now)
        with self._lock:
            return {a: why for a in addresses if (why := self._why(a))}

    def _reach(self, address: str) -> Reach:
        arns = self._listing.get(address)
        if not arns:
            return Reach.NONE
        for arn in arns:
            if arn not in self._described:
                self._described[arn] = _describe(self._sns, address, arn)
        return _best([self._described[arn] for arn in arns]).reach

    def _why(self, address: str) -> str | None:
        match self._reach(address):
            case Reach.CONFIRMED:
                return None
            case Reach.PENDING:
                return f"subscription pending confirmation since {_when(self._pending_since[address])}"
            case Reach.UNFILTERED:
                return f"its subscription has no filter policy taking only its own '{APPROVER_ATTRIBUTE}'"
            case Reach.NONE:
                return "no subscription"


def reasons(unreachable: dict[str, str]) -> str:
    """Each address and why it cannot be emailed, on one line."""
    return "; ".join(f"{address} ({why})" for address, why in unreachable.items())


def describe(unreachable: dict[str, str], field: str = "request.approvers") -> str:
    """The cause of ``Approval.InvalidRequest`` for a request naming such addresses in ``field``."""
    return f"{field}: cannot be emailed: {reasons(unreachable)}"


# -- managing the directory (the `approvals approvers` commands) ------------------------------


class DirectoryError(Exception):
    """An approver change that cannot be made; the message says why."""


def add(sns: SNSClient, topic_arn: str, address: str) -> str:
    """Subscribe ``address`` with its filter policy; SNS sends it the confirmation email.

    Returns the subscription's ARN (a pending one included). Adding an address already
    subscribed this way changes nothing.
    """
    return sns.subscribe(
        TopicArn=topic_arn,
        Protocol=EMAIL_PROTOCOL,
        Endpoint=address,
        Attributes={"FilterPolicy": filter_policy(address)},
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]


def remove(sns: SNSClient, topic_arn: str, address: str) -> Subscription:
    """Remove the address's confirmed subscription (an authenticated call, so a protected
    one too). SNS cannot remove a pending subscription: it deletes it after 48 hours."""
    held = read(sns, topic_arn).get(address)
    if held is None:
        raise DirectoryError(f"{address} has no subscription")
    if held.arn is None:
        raise DirectoryError(
            f"{address} is pending confirmation: SNS cannot remove a pending subscription,"
            " and deletes it by itself if it is not confirmed within 48 hours"
        )
    sns.unsubscribe(SubscriptionArn=held.arn)
    return held


def confirmation_token(url: str) -> tuple[str, str]:
    """(topic ARN, token) from the link in a subscription confirmation email."""
    query = parse_qs(urlsplit(url).query)
    topic, token = query.get("TopicArn", [""])[0], query.get("Token", [""])[0]
    if not topic or not token:
        raise DirectoryError("not a subscription confirmation link: it needs TopicArn and Token parameters")
    return topic, token


def confirm(sns: SNSClient, url: str) -> str:
    """Confirm a subscription from its confirmation link, so that only an authenticated call
    can remove it: neither a mail scanner nor whoever gets a forwarded email can."""
    topic_arn, token = confirmation_token(url)
    return sns.confirm_subscription(TopicArn=topic_arn, Token=token, AuthenticateOnUnsubscribe="true")[
        "SubscriptionArn"
    ]
