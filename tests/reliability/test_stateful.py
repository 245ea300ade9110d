"""A model-based test of the newest features against each other (issue 17): Hypothesis'
rule-based state machine drives the same domain functions the handlers call, on moto, with
a clock of its own, and checks after every step what must always hold.

Rules are the operations: a request with any policy (first response, all, quorum,
sequence; with or without escalation, fields, recurring reminders; the requester among
the approvers or not), several asked of the same people at once and taken by the worker in
one batch, the worker delivering it (its claim and emails, once or again),
a page view and a vote through a link the approver was emailed (short or signed) or by an
operator on an approver's behalf, a bulk vote on several requests from the approver's
inbox (each vote signed in as the approver or not, for requests that may need it), a
reassignment, the sweep (escalation, reminders, owed links, expiry, telling the requester),
time passing, a key rotation, the workflow's own delivery confirmation, and a publish that
fails once (a throttle, or a dropped connection).

Each execution is real (moto runs the state machine); every answer to a task is
recorded from the Step Functions client the domain calls (``SendTaskSuccess`` and
``SendTaskFailure`` the service accepted, per token). A small model kept here (who holds
each place, who joined by escalation, the votes, the status) predicts which views, votes
and reassignments must be taken, and the invariants hold the table, the executions and the
outbox to it.

The default profile runs in the normal suite; ``APPROVALS_STATEFUL=long`` (``make
stateful``) runs many more, longer examples.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.exceptions import EndpointConnectionError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from approvals import (
    answers,
    bulk,
    bulkjob,
    decision,
    digest,
    directory,
    executions,
    inboxlinks,
    keys,
    reassign,
    request,
    shortlinks,
)
from approvals.answers import as_form
from approvals.digest import ToEmail
from approvals.directory import Directory
from approvals.keys import Keys
from approvals.links import KeyRing, approval_id_for
from approvals.local.outbox import Outbox, SentEmail
from approvals.models import (
    Approval,
    ApprovalRequest,
    Escalation,
    FieldSpec,
    FieldType,
    Outcome,
    Policy,
    Reassignment,
    Status,
    Vote,
    utcnow,
)
from approvals.requester import tell_requesters
from approvals.runtime import Services, build
from approvals.settings import Settings
from approvals.signin import Session
from approvals.statemachine import INVALID_REQUEST
from approvals.store import approval_from_item, beside_approvals, is_inbox_entry, is_job
from approvals.sweep import sweep
from tests.conftest import Stack, approval_id_of, eventually, token_of
from tests.reliability.faults import error

pytestmark = pytest.mark.xdist_group("stateful")

settings.register_profile(
    "stateful",
    max_examples=4,
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
settings.register_profile(
    "stateful-long",
    max_examples=int(os.environ.get("APPROVALS_STATEFUL_EXAMPLES", "400")),
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
PROFILE = "stateful-long" if os.environ.get("APPROVALS_STATEFUL") == "long" else "stateful"

HOUR = 3600
APPROVERS = ["ann@example.com", "ben@example.com", "cat@example.com", "dan@example.com"]
BACKUPS = ["lee@example.com", "max@example.com"]
NEWCOMER = "new@example.com"
REQUESTER = "req@example.com"
OPERATOR = "oncall@example.com"
EVERYONE = [*APPROVERS, *BACKUPS, NEWCOMER, REQUESTER]
DIGEST_SECONDS = 60  # the deployed default
# Never called: a rule that signs an approver in gives the session as the API would read it.
ISSUER = "https://id.example.test"
# Escalation steps and recurring reminders at multiples of the sweep's interval (300 s by
# default), as the worker requires.
STEP_SECONDS = [600, 1800]
# How long moto's executor may take to queue a message or end an execution: its threads
# share this process, and on a loaded machine they wait their turn.
EXECUTOR_SECONDS = 60
# Requests waiting at once, and asked in all, in one example.
MAX_WAITING, MAX_ASKED = 4, 10
TICKET = FieldSpec(name="ticket", label="Ticket", type=FieldType.TEXT)


@st.composite
def approval_requests(draw: st.DrawFn) -> ApprovalRequest:
    policy = draw(st.sampled_from(Policy))
    approvers = draw(st.lists(st.sampled_from(APPROVERS), min_size=1, max_size=3, unique=True))
    requester = draw(st.sampled_from([REQUESTER, "nightly deploy", approvers[0]]))
    escalation: list[Escalation] = []
    if policy is not Policy.SEQUENCE and draw(st.booleans()):
        after = draw(st.sampled_from(STEP_SECONDS))
        backups = draw(st.permutations(BACKUPS))
        escalation.append(Escalation(after_seconds=after, approvers=[backups[0]]))
        if draw(st.booleans()):
            escalation.append(Escalation(after_seconds=after + 1800, approvers=[backups[1]]))
    return ApprovalRequest(
        title="untitled",  # each request's title is its number, given when it is asked
        approvers=approvers,
        policy=policy,
        quorum=draw(st.integers(1, len(approvers))) if policy is Policy.QUORUM else None,
        timeout_seconds=draw(st.sampled_from([2 * HOUR, 4 * HOUR])),
        requester=requester,
        escalation=escalation,
        fields=draw(st.sampled_from([[], [TICKET]])),
        remind_every_seconds=draw(st.sampled_from([None, 1800])),
        identity=draw(st.sampled_from(["link", "sign-in"])),
    )


@dataclass
class Tracked:
    """The model of one request: what must be true of it, kept apart from the table."""

    title: str
    request: ApprovalRequest
    execution: str
    body: str
    sent_at: datetime
    approval_id: str
    stored: bool = False  # the worker's claim wrote it
    invalid: bool = False  # the worker refused it through its token
    holders: list[str] = field(default_factory=list)  # who holds each approver's place now
    excluded: list[str] = field(default_factory=list)
    joined: set[int] = field(default_factory=set)  # escalation steps whose backups joined
    votes: dict[str, Outcome] = field(default_factory=dict)
    status: Status = Status.PENDING

    @property
    def expires_at(self) -> datetime:
        return self.sent_at + timedelta(seconds=self.request.timeout_seconds)

    @property
    def asked(self) -> list[str]:
        steps = self.request.escalation
        return self.holders + [a for i in sorted(self.joined) for a in steps[i].approvers]

    @property
    def voters(self) -> list[str]:
        return [a for a in self.asked if a not in self.excluded]

    def status_at(self, now: datetime) -> Status:
        return Status.EXPIRED if self.status is Status.PENDING and now >= self.expires_at else self.status

    def waiting_on(self, now: datetime) -> list[str]:
        """Who may vote now: the undecided voters, or in a sequence the one whose turn it is."""
        if not self.stored or self.status_at(now) is not Status.PENDING:
            return []
        undecided = [a for a in self.voters if a not in self.votes]
        return undecided[:1] if self.request.policy is Policy.SEQUENCE else undecided

    def may_vote(self, who: str, now: datetime) -> bool:
        return who in self.waiting_on(now)

    def settle(self) -> None:
        """The status the votes in give, over everyone who may vote now."""
        voters = len(self.voters)
        approve_at, reject_at = {
            Policy.FIRST_RESPONSE: (1, 1),
            Policy.ALL: (voters, 1),
            Policy.SEQUENCE: (voters, 1),
            Policy.QUORUM: (self.request.quorum or 0, voters - (self.request.quorum or 0) + 1),
        }[self.request.policy]
        tally = Counter(self.votes.values())
        if tally[Outcome.APPROVED] >= approve_at:
            self.status = Status.APPROVED
        elif tally[Outcome.REJECTED] >= reject_at:
            self.status = Status.REJECTED


@dataclass
class Answers:
    """The decisions sent to Step Functions, per task token, read off the domain's client.

    Only sent, not taken: moto takes a second answer to a token that AWS refuses (the
    executions' own outcomes tell what was taken)."""

    sent: Counter[str] = field(default_factory=Counter)

    def watch(self, sfn: Any) -> None:
        sfn.meta.events.register("provide-client-params.sfn.SendTaskSuccess", self._count)

    def _count(self, params: dict[str, Any], **_: Any) -> None:
        self.sent[params["taskToken"]] += 1


class PublishFault:
    """One publish that fails: SNS throttling (a ClientError), or a connection dropped after
    the SDK's retries (any other exception)."""

    def __init__(self) -> None:
        self.armed: str | None = None
        self.fired = False

    def __call__(self, **_: Any) -> Any:
        kind, self.armed = self.armed, None
        if kind is None:
            return None
        self.fired = True
        if kind == "throttle":
            return error("Throttled", 400, "Rate exceeded")
        raise EndpointConnectionError(endpoint_url="https://sns.us-east-1.amazonaws.com/")


def email_approval_id(email: SentEmail) -> str | None:
    return approval_id_of(email.links[0]) if email.links else None


def digest_titles(email: SentEmail) -> list[str]:
    """The requests a digest lists (its one link opens the approver's inbox); none for an
    email about one request."""
    if not email.links or inboxlinks.PATH_PREFIX not in email.links[0]:
        return []
    return re.findall(r"^- (.+)$", email.body, re.MULTILINE)


class Approvals(RuleBasedStateMachine):
    """Requests, the worker, approvers, operators and the sweep, on one moto stack. Each
    example starts from an empty table, an empty outbox and a container of its own (its
    key ring and directory read afresh, on the example's clock)."""

    def __init__(
        self, stack: Stack, services: Services, answers: Answers, fault: PublishFault, ran: Counter[str]
    ) -> None:
        super().__init__()
        self.stack, self.answers, self.fault, self.ran = stack, answers, fault, ran
        ran["examples"] += 1
        fault.armed = None
        self.now = utcnow()
        # The container's key ring on this example's clock: a rotation reaches the functions
        # within keys.MAX_AGE_SECONDS of it, as in AWS.
        config = services.settings
        self.services = dataclasses.replace(
            services,
            keys=Keys(services.secrets, config.signing_secret_id, clock=lambda: self.now.timestamp()),
            directory=Directory(services.sns, config.topic_arn, timedelta(seconds=config.directory_seconds)),
        )
        Outbox(stack.sqs, stack.resources.outbox_queue_url).collect()  # what earlier examples sent
        self.outbox = Outbox(stack.sqs, stack.resources.outbox_queue_url)
        self.tracked: list[Tracked] = []
        self.executions_ended: dict[str, dict[str, Any]] = {}
        self.ended_before: set[str] = set()  # the requests ended at the last check
        self.mail_checked = 0  # how many emails the invariants have looked at
        self.keys_made = [self.ring().current]
        # "All matching" jobs the next sweep runs: the key, the voter, the decision, whether
        # the voter confirmed signed in, how many the confirmed POST took itself, and the
        # requests left to the job.
        self.jobs: list[tuple[str, str, Outcome, bool, int, list[Tracked]]] = []

    def teardown(self) -> None:
        """Answer every task still waiting, so that no execution outlives its example, and
        empty the table for the next."""
        for tracked in self.tracked:
            if not self.ended(tracked):
                self.services.sfn.send_task_failure(taskToken=token_of({"Body": tracked.body}), error="End")
        for tracked in self.tracked:
            eventually(partial(self.ended, tracked), EXECUTOR_SECONDS, f"{tracked.title}'s execution to end")
        table = self.stack.resources.table_name
        for item in self.stack.dynamodb.scan(TableName=table, ProjectionExpression="approval_id")["Items"]:
            self.stack.dynamodb.delete_item(TableName=table, Key={"approval_id": item["approval_id"]})

    # Helpers ---------------------------------------------------------------------------

    def ring(self) -> KeyRing:
        return keys.fetch(self.services.secrets, self.services.settings.signing_secret_id)

    def mail(self) -> list[SentEmail]:
        """Every email sent so far (not the subscriptions' confirmations)."""
        return [e for e in self.outbox.emails() if e.kind == "Notification"]

    def emails(self, tracked: Tracked, to: str, mail: list[SentEmail] | None = None) -> list[SentEmail]:
        return [
            e for e in (self.mail() if mail is None else mail) if tracked.title in e.subject and e.to == to
        ]

    def link_emails(self, tracked: Tracked, to: str, mail: list[SentEmail] | None = None) -> list[SentEmail]:
        """The emails that brought ``to`` a link to this approval: its own, or a digest
        listing it (whose link opens their inbox, where it is)."""
        mail = self.mail() if mail is None else mail
        own = [e for e in self.emails(tracked, to, mail) if email_approval_id(e) == tracked.approval_id]
        return own + [e for e in mail if e.to == to and tracked.title in digest_titles(e)]

    def stored(self, tracked: Tracked) -> Approval:
        approval = self.services.store.get(tracked.approval_id)
        assert approval is not None, f"{tracked.title}: no item"
        return approval

    def link_holds(self, tracked: Tracked, who: str, link: str) -> bool | None:
        """Whether a link emailed to ``who`` still opens their page: a signed link while its
        key is current or previous; a short link while its hash is bound to them. None when
        it is not this model's to say: a signed link while the container still holds a key
        ring older than the secret's (it reads the secret again within minutes of a
        rotation), a short link whose key was retired (whether it still works is the
        rotation's business)."""
        token = shortlinks.token_in(link)
        ring = self.ring()
        if token is None:
            kid = dict(parse_qsl(urlsplit(link).query)).get("kid", "")
            held = self.services.keys.verifying(kid).knows(kid)  # what the API's check reads
            return ring.knows(kid) if held == ring.knows(kid) else None
        made_by = [k for k in self.keys_made if shortlinks.token_for(k, tracked.approval_id, who) == token]
        return None if made_by and not ring.knows(made_by[0].key_id) else True

    def settle_answers(self) -> None:
        """Once a task is answered, its execution moves on (and confirms the delivery): wait
        for it to end, so that every step leaves the stack still."""
        for tracked in self.tracked:
            if tracked.status is not Status.PENDING or tracked.invalid:
                eventually(
                    partial(self.ended, tracked), EXECUTOR_SECONDS, f"{tracked.title}'s execution to end"
                )

    def ended(self, tracked: Tracked) -> bool:
        status: str = self.execution(tracked)["status"]
        return status != "RUNNING"

    def execution(self, tracked: Tracked) -> dict[str, Any]:
        """The request's execution as Step Functions describes it (read once it has ended:
        an ended execution does not change)."""
        if tracked.execution not in self.executions_ended:
            described = dict(self.services.sfn.describe_execution(executionArn=tracked.execution))
            if described["status"] == "RUNNING":
                return described
            self.executions_ended[tracked.execution] = described
        return self.executions_ended[tracked.execution]

    def pick(self, index: int, only: Callable[[Tracked], bool] | None = None) -> Tracked | None:
        chosen = [t for t in self.tracked if only is None or only(t)]
        return chosen[index % len(chosen)] if chosen else None

    def room_for(self, many: int) -> bool:
        """Whether ``many`` more requests may be asked: a few may wait at once, and new ones
        come as those end (so that a long example keeps something to decide), up to a bound
        on the steps' cost (each step checks every request)."""
        waiting = [t for t in self.tracked if not t.invalid and t.status_at(self.now) is Status.PENDING]
        return len(waiting) + many <= MAX_WAITING and len(self.tracked) + many <= MAX_ASKED

    # Rules -----------------------------------------------------------------------------

    @precondition(lambda self: self.room_for(1))
    @rule(asked=approval_requests())
    def ask(self, asked: ApprovalRequest) -> None:
        """A workflow asks: its execution queues the message (taken here for the worker)."""
        self._ask(asked)

    @precondition(lambda self: self.room_for(3))
    @rule(asked=approval_requests(), many=st.integers(2, 3))
    def ask_together(self, asked: ApprovalRequest, many: int) -> None:
        """Several workflows (or a Map's items) ask the same people at once, and the worker
        takes their messages in one batch (an approver's digest): the inbox of several
        requests that a bulk vote of "all matching" works on."""
        self._ask_together(asked, many)

    @initialize(asked=approval_requests(), many=st.integers(2, 3))
    def begin(self, asked: ApprovalRequest, many: int) -> None:
        """Every example starts with requests asked together: the rules an example draws
        (Hypothesis leaves some out of each) may include neither way to ask."""
        self._ask_together(asked, many)

    def _ask_together(self, asked: ApprovalRequest, many: int) -> None:
        asking = self._ask(asked, many)
        claimed: list[ToEmail] = []
        for tracked in asking:
            try:
                taken = request.claim_message(self.services, tracked.body, tracked.sent_at, self.now)
            except (request.RetryLater, EndpointConnectionError):
                continue  # back to the queue: a later delivery retries
            if isinstance(taken, ToEmail):
                claimed.append(taken)
            elif taken is request.Handled.INVALID:
                tracked.invalid = True
        # A dropped connection: every claimed message is retried (worker.handler), here by
        # a later delivery.
        with contextlib.suppress(EndpointConnectionError):
            digest.email_batch(self.services, claimed, self.now)
        for tracked in asking:
            self._took(tracked)

    def _ask(self, asked: ApprovalRequest, many: int = 1) -> list[Tracked]:
        """Start ``many`` executions of the request, each titled by its number, and take
        the messages they queue (all started first: their executions run together). Each is
        asked a second after the one before: requests asked in the same second are ordered
        by their ids, which differ from run to run, and Hypothesis must replay each run."""
        started: dict[str, tuple[ApprovalRequest, datetime]] = {}
        for number in range(len(self.tracked), len(self.tracked) + many):
            self.now += timedelta(seconds=1)
            titled = asked.model_copy(update={"title": f"Req-{number:03d}"})
            arn = executions.start(self.services.sfn, self.stack.resources.state_machine_arn, titled)
            started[arn] = (titled, self.now)
        queued = [self.stack.queued_message(EXECUTOR_SECONDS) for _ in started]
        bodies = {json.loads(message["Body"])["execution"]: message["Body"] for message in queued}
        asking = [
            Tracked(
                title=titled.title,
                request=titled,
                execution=arn,
                body=bodies[arn],
                sent_at=sent_at,
                approval_id=approval_id_for(token_of({"Body": bodies[arn]})),
                holders=list(titled.approvers),
            )
            for arn, (titled, sent_at) in started.items()
        ]
        self.tracked += asking
        return asking

    @precondition(lambda self: self.tracked)
    @rule(index=st.integers(0, 9))
    def deliver(self, index: int) -> None:
        """The worker takes the message (again, for a redelivery)."""
        tracked = self.pick(index)
        assert tracked is not None
        try:
            handled = request.handle_message(self.services, tracked.body, tracked.sent_at, self.now)
            if handled is request.Handled.INVALID:
                assert not tracked.stored, f"{tracked.title}: refused after it was stored"
                tracked.invalid = True
        except (request.RetryLater, EndpointConnectionError):
            pass  # back to the queue: a later delivery retries
        self._took(tracked)

    def _took(self, tracked: Tracked) -> None:
        """What the worker stored of a request it took, once."""
        stored = self.services.store.get(tracked.approval_id)
        if stored is not None and not tracked.stored:
            tracked.stored = True
            tracked.excluded = stored.excluded
            requester = tracked.request.requester
            assert tracked.excluded == ([requester] if requester in tracked.request.approvers else [])

    @precondition(lambda self: any(t.stored for t in self.tracked))
    @rule(index=st.integers(0, 9), who=st.sampled_from(EVERYONE), latest=st.booleans())
    def view(self, index: int, who: str, latest: bool) -> None:
        """An approver (or their mail scanner) opens a link they were emailed."""
        tracked = self.pick(index, lambda t: t.stored)
        assert tracked is not None
        sent = self.link_emails(tracked, who)
        if not sent:
            return
        link = (sent[-1] if latest else sent[0]).links[0]
        holds = self.link_holds(tracked, who, link)
        if holds is None:
            return
        expected = holds and self.now < tracked.expires_at and who in tracked.asked
        seen = self._open(tracked, link)
        if isinstance(seen, decision.Problem):
            assert not expected, f"{tracked.title}: {who}'s page refused: {seen.message}"
        else:
            assert expected, f"{tracked.title}: {who}'s page shown, though {who} is not asked"
            assert seen.approver == who

    def _open(self, tracked: Tracked, link: str) -> decision.Viewing | decision.Problem:
        token = shortlinks.token_in(link)
        try:
            if token is not None:
                return decision.view_by_link(self.services, token, self.now)
            fields = dict(parse_qsl(urlsplit(link).query))
            return decision.view(self.services, tracked.approval_id, fields, self.now)
        except decision.Problem as refused:
            return refused

    @precondition(lambda self: any(t.stored for t in self.tracked))
    @rule(
        index=st.integers(0, 9),
        who=st.sampled_from(EVERYONE),
        approve=st.booleans(),
        channel=st.sampled_from(["latest email", "first email", "operator"]),
        signed_in=st.booleans(),
    )
    def vote(self, index: int, who: str, approve: bool, channel: str, signed_in: bool) -> None:
        """An approver decides through a link from their email (signed in or not), or an
        operator records an approver's decision on their behalf (``approvals decide``)."""
        tracked = self.pick(index, lambda t: t.stored)
        assert tracked is not None
        outcome = Outcome.APPROVED if approve else Outcome.REJECTED
        expected = tracked.may_vote(who, self.now)
        if channel == "operator":
            approval = self.stored(tracked)
            if who not in approval.asked or who in approval.excluded:
                return  # the command refuses before it records anything
            vote = Vote(approver=who, outcome=outcome, comment="by phone", at=self.now, on_behalf_by=OPERATOR)
            recorded = self._record(tracked, vote)
        else:
            sent = self.link_emails(tracked, who)
            if not sent:
                return
            link = (sent[-1] if channel == "latest email" else sent[0]).links[0]
            holds = self.link_holds(tracked, who, link)
            if holds is None:
                return
            expected = expected and holds and (signed_in or tracked.request.identity == "link")
            recorded = self._click(tracked, link, who, approve, self.session(who, signed_in))
        if isinstance(recorded, decision.Problem):
            assert not expected, f"{tracked.title}: {who} may vote, but was refused: {recorded.message}"
            return
        assert expected, f"{tracked.title}: {who}'s vote was taken, though {who} may not vote now"
        tracked.votes[who] = outcome
        tracked.settle()
        status = recorded.approval.status
        assert status is tracked.status, f"{tracked.title}: {status} after {who}'s vote, not {tracked.status}"
        if tracked.status is not Status.PENDING:
            assert recorded.delivery is decision.Delivery.DELIVERED, tracked.title

    def _record(self, tracked: Tracked, vote: Vote) -> decision.Recorded | decision.Problem:
        try:
            recorded = decision.record(self.services.store, self.services.sfn, tracked.approval_id, vote)
            decision.leave_inboxes(self.services.store, recorded)  # as `approvals decide` does
            return recorded
        except decision.Problem as refused:
            return refused

    def session(self, who: str, signed_in: bool) -> Session | None:
        """The approver's sign-in session, as the API reads it from their browser, if signed in."""
        return Session(who, ISSUER, int(self.now.timestamp()) + 600) if signed_in else None

    def _click(
        self, tracked: Tracked, link: str, who: str, approve: bool, session: Session | None
    ) -> decision.Recorded | decision.Problem:
        """Press Approve or Reject on the page the link opens (its form's fields)."""
        form = {"decision": "approve" if approve else "reject", "comment": "checked"}
        if tracked.request.fields:
            form |= as_form({"ticket": "T-1"})  # the page always sends its fields
        token = shortlinks.token_in(link)
        try:
            if token is not None:
                form |= {"approver": who}
                return decision.decide_by_link(self.services, token, form, self.now, session)
            fields = dict(parse_qsl(urlsplit(link).query))
            return decision.decide(self.services, tracked.approval_id, {**fields, **form}, self.now, session)
        except decision.Problem as refused:
            return refused

    @precondition(lambda self: any(t.stored for t in self.tracked))
    @rule(
        who=st.sampled_from(EVERYONE),
        approve=st.booleans(),
        picks=st.sets(st.integers(0, 9), min_size=1, max_size=4),
        signed_in=st.booleans(),
    )
    def bulk_vote(self, who: str, approve: bool, picks: set[int], signed_in: bool) -> None:
        """An approver decides several requests at once from their inbox (approvals.bulk),
        signed in or not: each item is taken exactly when a vote on its own page would be,
        and says so."""
        stored = [t for t in self.tracked if t.stored]
        chosen = list({t.approval_id: t for t in (stored[i % len(stored)] for i in sorted(picks))}.values())
        outcome = Outcome.APPROVED if approve else Outcome.REJECTED
        expected = {
            t.approval_id: t.may_vote(who, self.now) and (signed_in or t.request.identity == "link")
            for t in chosen
        }
        choices = [
            bulk.Choice(t.approval_id, outcome, "in bulk", {"ticket": "T-1"} if t.request.fields else {})
            for t in chosen
        ]
        session = self.session(who, signed_in)
        results = bulk.decide_many(self.services, inboxlinks.approver_id(who), choices, self.now, session)
        for tracked, result in zip(chosen, results, strict=True):
            taken = result.result in (bulk.Result.RECORDED, bulk.Result.SETTLED)
            assert taken is expected[tracked.approval_id], (
                f"{tracked.title}: {who}'s bulk vote {result.result.value}: {result.detail}"
            )
            if not taken:
                continue
            tracked.votes[who] = outcome
            tracked.settle()
            settled = result.result is bulk.Result.SETTLED
            assert settled is (tracked.status is not Status.PENDING), (
                f"{tracked.title}: {result.result.value}"
            )

    def awaited_twice(self) -> list[str]:
        """The approvers more than one request waits on now."""
        awaited = Counter(who for tracked in self.tracked for who in tracked.waiting_on(self.now))
        return sorted(who for who, many in awaited.items() if many > 1)

    @precondition(lambda self: self.awaited_twice())
    @rule(index=st.integers(0, 9), approve=st.booleans(), signed_in=st.booleans())
    def bulk_all(self, index: int, approve: bool, signed_in: bool) -> None:
        """An approver confirms "all matching" from their inbox, signed in or not: the newest
        request is voted at once and the rest by a job the next sweep runs (approvals.bulkjob;
        one request a POST here, so that the smallest inbox makes a job), proven as the POST
        was. Each is taken exactly when a vote on its own page would be, the job's when the
        sweep runs it."""
        awaited = self.awaited_twice()
        who = awaited[index % len(awaited)]
        # A second after whatever came before: the sweep takes the jobs due in the same
        # second in the order of their keys, which differ between runs (confirmed "approve
        # all" and then "reject all" within a second, either may win).
        self.now += timedelta(seconds=1)
        owner = inboxlinks.approver_id(who)
        outcome = Outcome.APPROVED if approve else Outcome.REJECTED
        form = {"all": "1", "decision": "approve" if approve else "reject", "comment": "all of them"}
        form["asof"] = str(int(self.now.timestamp()))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(bulk, "MAX_VOTES", 1)
            selection = bulk.selected(self.services, owner, list(form.items()), self.now)
            if not selection.approval_ids:
                return
            choices = bulk.choices_from_form(selection.approval_ids, form)
            session = self.session(who, signed_in)
            decided = bulkjob.decide_all(
                self.services, owner, choices, selection.rest, form, self.now, session
            )
        by_id = {t.approval_id: t for t in self.tracked}
        first_taken = 0
        for result in decided.results:
            taken = result.result in (bulk.Result.RECORDED, bulk.Result.SETTLED)
            tracked = by_id[result.approval_id]
            assert taken is self.takes(tracked, who, outcome, signed_in), (
                f"{tracked.title}: {who}'s vote of all matching {result.result.value}: {result.detail}"
            )
            if taken:
                self.voted(tracked, who, outcome)
                first_taken += 1
        if decided.job is not None and decided.results:  # not a confirmation posted again
            self.ran["all matching jobs"] += 1
            rest = [by_id[approval_id] for approval_id in decided.job.approval_ids[1:]]
            self.jobs.append((decided.job.key, who, outcome, signed_in, first_taken, rest))

    def takes(self, tracked: Tracked, who: str, outcome: Outcome, signed_in: bool) -> bool:
        """Whether a vote with no answers is taken now: "all matching" answers no fields, and
        a request that needs sign-in takes it only signed in."""
        try:
            answers.read(tracked.request.fields, answers.as_form({}), outcome)
        except answers.InvalidAnswer:
            return False
        return tracked.may_vote(who, self.now) and (signed_in or tracked.request.identity == "link")

    def voted(self, tracked: Tracked, who: str, outcome: Outcome) -> None:
        tracked.votes[who] = outcome
        tracked.settle()

    def _run_jobs(self) -> None:
        """What the sweep's jobs voted, before its expiries and escalations: every job's
        requests, each taken exactly when a vote on its own page would be."""
        for key, who, outcome, signed_in, first_taken, rest in self.jobs:
            taken = [tracked for tracked in rest if self.takes(tracked, who, outcome, signed_in)]
            for tracked in taken:
                self.voted(tracked, who, outcome)
            (job,) = [
                job
                for job in self.services.store.jobs_of(
                    inboxlinks.approver_id(who), self.now - timedelta(days=1)
                )
                if job.key == key
            ]
            assert job.finished_at is not None, f"{who}'s job not finished by the sweep"
            # The job's results count the confirmed POST's first vote too.
            recorded = job.counts.get("recorded", 0) + job.counts.get("settled", 0)
            expected = first_taken + len(taken)
            assert recorded == expected, f"{who}'s job took {recorded}, not {expected}: {job.counts}"
        self.jobs.clear()

    @precondition(lambda self: any(t.stored for t in self.tracked))
    @rule(index=st.integers(0, 9), place=st.integers(0, 3), to=st.sampled_from(EVERYONE))
    def hand_over(self, index: int, place: int, to: str) -> None:
        """An operator hands an approver's place to someone else (``approvals reassign``)
        and the new approver is emailed; a failed email is sent by running it again."""
        tracked = self.pick(index, lambda t: t.stored)
        assert tracked is not None
        from_ = tracked.holders[place % len(tracked.holders)]
        change = Reassignment.model_validate({"from": from_, "to": to, "by": OPERATOR, "at": self.now})
        expected = (
            tracked.status_at(self.now) is Status.PENDING
            and from_ not in tracked.excluded
            and from_ not in tracked.votes
            and to not in tracked.holders
            and to not in tracked.request.backups
            and to != tracked.request.requester
        )
        self.fault.fired = False
        outcome = self._reassign(tracked, change)
        if outcome is None:
            # A failed email: the operator runs the same command again, which sends it.
            assert self.fault.fired, f"{tracked.title}: {to} not emailed"
            outcome = self._reassign(tracked, change)
            assert outcome is not None, f"{tracked.title}: {to} not emailed, the command run twice"
        if isinstance(outcome, reassign.ReassignError):
            assert not expected, f"{tracked.title}: {from_} -> {to} refused: {outcome}"
            return
        assert expected, f"{tracked.title}: {from_} -> {to} was made, though it must be refused"
        tracked.holders = [to if who == from_ else who for who in tracked.holders]

    def _reassign(self, tracked: Tracked, change: Reassignment) -> Approval | reassign.ReassignError | None:
        """What ``approvals reassign`` does; None when the new approver's email failed."""
        signing, config = self.services.keys.signing(), self.services.settings
        try:
            approval = reassign.reassign(
                self.services.store, self.services.directory, signing, tracked.approval_id, change
            )
            sent = reassign.email_new_approver(
                self.services.store,
                self.services.sns,
                config.topic_arn,
                config.api_url,
                signing,
                approval,
                change.to,
            )
        except reassign.ReassignError as refused:
            return refused
        except EndpointConnectionError:
            return None
        return approval if sent else None

    @rule(seconds=st.sampled_from([60, 300, 900, 1800]))
    def wait(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def run_sweep(self) -> None:
        """The scheduled sweep: expiry, escalation, owed links, reminders, the requester told."""
        self.fault.fired = False
        sweep(self.services, self.now)
        self._run_jobs()
        self._after_sweep()
        self._requesters_told()

    @precondition(lambda self: any(t.stored for t in self.tracked))
    @rule(index=st.integers(0, 9))
    def expire(self, index: int) -> None:
        """Time runs out on a request, and the sweep ends it."""
        tracked = self.pick(index, lambda t: t.stored)
        assert tracked is not None
        self.now = max(self.now, tracked.expires_at + timedelta(seconds=1))
        self.run_sweep()

    def _after_sweep(self) -> None:
        for tracked in self.tracked:
            if not tracked.stored or tracked.status is not Status.PENDING:
                continue
            if self.now >= tracked.expires_at:
                tracked.status = Status.EXPIRED
                continue
            for step, due in enumerate(tracked.request.escalation):
                if tracked.sent_at + timedelta(seconds=due.after_seconds) <= self.now:
                    tracked.joined.add(step)

    def _requesters_told(self) -> None:
        """Once a sweep whose emails all went out has run, every ended request's requester
        (an address in the directory) has been told."""
        if self.fault.fired:
            return
        mail = self.mail()
        for tracked in self.tracked:
            approval = self.services.store.get(tracked.approval_id) if tracked.stored else None
            if (
                approval is None
                or approval.status is Status.PENDING
                or tracked.request.requester != REQUESTER
            ):
                continue
            assert self.emails(tracked, REQUESTER, mail), f"{tracked.title}: ended, the requester not told"

    @rule()
    def tell(self) -> None:
        """The requester told the outcome (the sweep's last part, alone)."""
        self.fault.fired = False
        tell_requesters(self.services, self.now)
        self._requesters_told()

    @precondition(lambda self: len(self.keys_made) < 4)
    @rule()
    def rotate_key(self) -> None:
        """An operator rotates the link key (``approvals rotate-key``)."""
        self.keys_made.append(
            keys.rotate(self.services.secrets, self.services.settings.signing_secret_id).current
        )

    @precondition(lambda self: any(t.stored for t in self.tracked))
    @rule(index=st.integers(0, 9))
    def confirm_delivery(self, index: int) -> None:
        """The workflow's ConfirmDelivery write, again (a retry of that state)."""
        tracked = self.pick(index, lambda t: t.stored)
        assert tracked is not None
        self.services.store.confirm_delivery(tracked.approval_id)

    @rule(kind=st.sampled_from(["throttle", "connection"]))
    def publish_fails_once(self, kind: str) -> None:
        self.fault.armed = kind

    # Invariants ------------------------------------------------------------------------
    # Checked after every step from one read of the table and of the outbox.

    @invariant()
    def hold(self) -> None:
        self.ran["checks"] += 1  # after each step, and once before the first
        self.settle_answers()
        store, table = self.services.store, self.stack.resources.table_name
        # Every item stays readable, and so do the sweep's and the requester's indexes.
        scanned = [
            dict(item) for item in self.stack.dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
        ]
        items = {item["approval_id"]["S"]: item for item in scanned if not beside_approvals(item)}
        approvals = {approval_id: approval_from_item(item) for approval_id, item in items.items()}
        entries = [item for item in scanned if is_inbox_entry(item) and not is_job(item)]
        self.inboxes_hold_what_waits(approvals, entries)
        list(store.open_approvals())
        list(store.to_tell())
        mail = self.mail()
        self.links_only_to_voters(mail[self.mail_checked :])
        self.mail_checked = len(mail)
        self.ended_before = {t.title for t in self.tracked if t.status_at(self.now) is not Status.PENDING}
        for tracked in self.tracked:
            self.answered_once(tracked)
            approval = approvals.get(tracked.approval_id)
            assert (approval is not None) is tracked.stored, f"{tracked.title}: stored is {tracked.stored}"
            if approval is not None:
                self.agrees_with_the_model(tracked, approval)
                self.confirmed_once_taken(tracked, approval)
                self.someone_can_settle(tracked, approval, items[tracked.approval_id], mail)
            self.requester_told_once(tracked, approval, mail)

    def inboxes_hold_what_waits(self, approvals: dict[str, Approval], entries: list[dict[str, Any]]) -> None:
        """A request leaves an approver's inbox once it no longer waits on them: their vote
        taken, or the request settled or cancelled (an expired one is not counted, and goes
        with its approval)."""
        for entry in entries:
            approval = approvals[entry["approval"]["S"]]
            title, who = approval.request.title, entry["approver"]["S"]
            assert approval.status in (Status.PENDING, Status.EXPIRED), (
                f"{title}: {approval.status} in {who}'s inbox"
            )
            assert who not in approval.votes, f"{title}: in {who}'s inbox after their vote"

    def links_only_to_voters(self, sent: list[SentEmail]) -> None:
        """Nobody is emailed a link they may not use (yet): each link goes to a voter whose
        decision is awaited now (in a sequence, the one whose turn it is), and none to a
        request that had ended before this step."""
        by_id = {t.approval_id: t for t in self.tracked}
        by_title = {t.title: t for t in self.tracked}
        for email in sent:
            listed: list[Tracked | None] = [by_title[title] for title in digest_titles(email)]  # a digest
            for tracked in listed or [by_id.get(email_approval_id(email) or "")]:
                if tracked is None:
                    continue
                assert tracked.title not in self.ended_before, (
                    f"{tracked.title}: a link to {email.to} once ended"
                )
                if tracked.status_at(self.now) is not Status.PENDING:
                    continue
                awaited = tracked.waiting_on(self.now)
                if email.to in tracked.holders and email.body.startswith("You are asked in place of"):
                    continue  # a place handed over is emailed at once, even before its turn (README)
                assert email.to in awaited, f"{tracked.title}: a link to {email.to}, while awaiting {awaited}"

    def answered_once(self, tracked: Tracked) -> None:
        """Each task is answered at most once (with no fault on Step Functions, no decision
        is sent twice), and once it has ended, the workflow took the answer it should."""
        sent = self.answers.sent[token_of({"Body": tracked.body})]
        assert sent <= 1, f"{tracked.title}: its decision sent {sent} times"
        ended = self.execution(tracked)
        status = ended["status"]
        if tracked.invalid:
            assert (status, ended.get("error")) == ("FAILED", INVALID_REQUEST), tracked.title
        elif tracked.status is Status.PENDING:
            assert status == "RUNNING", f"{tracked.title}: pending, and the workflow {status}"
        else:
            outcome = json.loads(ended.get("output") or "{}").get("outcome")
            assert (status, outcome) == ("SUCCEEDED", tracked.status.value), tracked.title

    def confirmed_once_taken(self, tracked: Tracked, approval: Approval) -> None:
        """A decision its workflow has taken (every answer is, here) is confirmed delivered:
        by the workflow's own write, or by the bulk vote that answered it, whose decision
        told the workflow to skip its own. Nothing is left for the sweep to repeat."""
        if approval.decision() is not None:
            assert not approval.unconfirmed, f"{tracked.title}: {approval.status.value}, never confirmed"

    def agrees_with_the_model(self, tracked: Tracked, approval: Approval) -> None:
        assert approval.status_at(self.now) is tracked.status_at(self.now), tracked.title
        assert approval.request.approvers == tracked.holders, tracked.title
        assert set(approval.escalated) == tracked.joined, tracked.title
        assert {who: vote.outcome for who, vote in approval.votes.items()} == tracked.votes, tracked.title
        # Nobody votes who is not a current voter.
        assert set(approval.votes) <= set(tracked.voters), tracked.title

    def someone_can_settle(
        self, tracked: Tracked, approval: Approval, item: dict[str, Any], mail: list[SentEmail]
    ) -> None:
        """Until it settles or expires (and the sweep ends it), a request has a voter whose
        vote the table's condition takes (in a sequence, the one whose turn it is), and
        everyone awaited has their link, or the next sweep sends it."""
        if tracked.status_at(self.now) is not Status.PENDING or not approval.emailed:
            return  # (not emailed yet: the worker's retry sends the first emails)
        undecided = [a for a in tracked.voters if a not in tracked.votes]
        assert undecided, f"{tracked.title}: pending, and nobody left to vote"
        turns = item.get("turns", {}).get("M")
        able = [
            who
            for who in undecided
            if who in item.get("voters", {}).get("SS", [])
            and (turns is None or turns.get(who, {}).get("N") == item["approvals"]["N"])
        ]
        assert able, f"{tracked.title}: nobody's vote would be taken ({', '.join(undecided)} undecided)"
        owed = approval.owed_link(self.now)
        digests = self.services.store.digest_states(approval.awaiting_digest)
        for who in approval.waiting_on(self.now):
            has_link = bool(self.link_emails(tracked, who, mail))
            # Or their email waits in their digest, which the sweep sends once its window closes.
            waits = who in approval.awaiting_digest and tracked.approval_id in digests[who].pending
            assert has_link or who in owed or waits, (
                f"{tracked.title}: {who} is awaited with no link, none owed"
            )
        for who in approval.notified:
            assert self.link_emails(tracked, who, mail), f"{tracked.title}: {who} noted emailed, and was not"

    def requester_told_once(self, tracked: Tracked, approval: Approval | None, mail: list[SentEmail]) -> None:
        if tracked.request.requester != REQUESTER:
            return
        told = self.emails(tracked, REQUESTER, mail)
        assert len(told) <= 1, f"{tracked.title}: the requester told {len(told)} times"
        if approval is not None and approval.requester_told_at is not None:
            assert told, f"{tracked.title}: noted told, and not emailed"


def test_the_features_hold_together(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    # With the deployed digest window: a request for an approver emailed within it waits in
    # their digest for the sweep.
    # With a provider (the sign-in rules apply) that is never called.
    signing_in = {"oidc_issuer": ISSUER, "oidc_client_id": "approvals-test"}
    services = build(Settings.from_env().model_copy(update={"digest_seconds": DIGEST_SECONDS, **signing_in}))
    answers, fault = Answers(), PublishFault()
    answers.watch(services.sfn)
    services.sns.meta.events.register_first("before-call.sns.PublishBatch", fault)
    for address in EVERYONE:
        directory.add(services.sns, services.settings.topic_arn, address)

    ran: Counter[str] = Counter()

    class OnThisStack(Approvals):
        def __init__(self) -> None:
            super().__init__(stack, services, answers, fault, ran)

    run_state_machine_as_test(OnThisStack, settings=settings.get_profile(PROFILE))
    with capsys.disabled():  # how much the run covered, for the long run's report
        steps = ran["checks"] - ran["examples"]
        jobs = ran["all matching jobs"]
        print(f"\nstateful: {ran['examples']} examples, {steps} steps, {jobs} bulk jobs, all invariants held")
