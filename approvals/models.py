"""The contracts, one pydantic model each, shared by the worker, the API, the CLI and the tests."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

# Deliberately simple: one @, no spaces or angle brackets, a dot in the domain. SES and SNS
# reject anything stranger, and the address also ends up in a message attribute.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
MAX_APPROVERS = 50
DEFAULT_TIMEOUT_SECONDS = 86_400
MAX_TIMEOUT_SECONDS = 31_536_000  # the service's one-year limit for a task
# Longer than the approval API function may run: by then a settling request has delivered
# its decision or failed trying.
REDELIVERY_GRACE = timedelta(seconds=60)
# Caps in bytes of UTF-8, not characters: the services' limits are in bytes, and a CJK
# character is three of them, an emoji four. Each email carries the description and must
# leave room for others in one PublishBatch (256 KiB in all); the whole request, kept in
# the execution's state beside the decision, must leave room in its 256 KiB, and in the
# table's 400 KB item beside the votes.
TITLE_BYTES = 600
REQUESTER_BYTES = 600
DESCRIPTION_BYTES = 30_000
REQUEST_BYTES = 64 * 1024  # the whole request, as JSON
MAX_TASK_TOKEN = 1024  # the service's limit


def _email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value


def email_address(value: str) -> str | None:
    """``value`` as an email address (trimmed, lower case), or None if it is none."""
    try:
        return _email(value)
    except ValueError:
        return None


def _no_control_characters(value: str) -> str:
    # Newlines and tabs are fine in prose; other control characters only hide things.
    if any(unicodedata.category(c) == "Cc" and c not in "\n\r\t" for c in value):
        raise ValueError("must not contain control characters")
    return value


def _only_text(value: dict[str, Any]) -> dict[str, Any]:
    # Free-form JSON, but its strings must be text: JSON can escape a lone surrogate
    # ("\udc80"), which can be neither stored nor shown.
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ValueError("must hold only valid Unicode text") from None
    return value


# Validation context for a request read back from the table: it was accepted under the
# caps of its day, and an approval in flight must stay readable whatever they are now.
STORED: dict[str, bool] = {"stored": True}


def _is_new(info: ValidationInfo) -> bool:
    return not (info.context or {}).get("stored")


def _at_most_bytes(limit: int) -> AfterValidator:
    def check(value: str, info: ValidationInfo) -> str:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > limit and _is_new(info):
            raise ValueError(f"at most {limit:,} bytes of UTF-8, not {size:,}")
        return value

    return AfterValidator(check)


Email = Annotated[str, AfterValidator(_email)]
Text = Annotated[str, AfterValidator(_no_control_characters)]


class FieldType(StrEnum):
    CHOICE = "choice"
    TEXT = "text"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"


# EventBridge Scheduler's finest rate: no sweep, hence no recurring reminder, comes oftener.
# A deployment's own sweep interval is checked by the worker (approvals.request).
MIN_REMIND_EVERY_SECONDS = 60
MAX_FIELDS = 20
FIELD_TEXT_LENGTH = 1_000  # the most a text field may allow, in characters
# An approver's answers, as JSON with non-ASCII escaped (how the local engine measures a
# state, the stricter count): like the comment, they go into the decision, in the
# execution's 256 KiB state beside the request, and into the table's 400 KB item, once per
# vote. 50 votes at both caps, beside a 64 KiB request, still fit.
DATA_BYTES = 1_000
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Label = Annotated[Text, _at_most_bytes(200)]


class Contract(BaseModel):
    """A contract model whose validator is built at its first use, not at import: each
    function pays only for the models its own path uses (the dead-letter function reads
    one message, a forged link is refused before any approval is read)."""

    model_config = ConfigDict(defer_build=True)


class FieldSpec(Contract):
    """One thing the approver answers with their vote, shown as a labelled input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: FieldName = Field(description="The key of the answer in the vote's data")
    label: Label = Field(min_length=1)
    type: FieldType
    required: bool = Field(
        default=False, description="Needed to approve (a boolean: ticked); a rejection may omit it"
    )
    options: list[Label] | None = Field(default=None, min_length=1, max_length=50, description="choice only")
    max_length: int | None = Field(
        default=None, ge=1, le=FIELD_TEXT_LENGTH, description="text only, in characters (default 200)"
    )
    min: float | None = Field(default=None, allow_inf_nan=False, description="number only")
    max: float | None = Field(default=None, allow_inf_nan=False, description="number only")

    @model_validator(mode="after")
    def _fits_its_type(self) -> FieldSpec:
        allowed = {
            FieldType.CHOICE: {"options"},
            FieldType.TEXT: {"max_length"},
            FieldType.NUMBER: {"min", "max"},
        }.get(self.type, set())
        for name in ("options", "max_length", "min", "max"):
            if getattr(self, name) is not None and name not in allowed:
                raise ValueError(f"{name}: not allowed for a {self.type.value} field")
        if self.type is FieldType.CHOICE:
            if not self.options:
                raise ValueError("options: a choice field needs options")
            if len(set(self.options)) != len(self.options):
                raise ValueError("options: each option may be listed once")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min: must not exceed max")
        return self


Answer = bool | int | float | str  # an answer to a field; a date is its ISO text, YYYY-MM-DD


class Policy(StrEnum):
    FIRST_RESPONSE = "first_response"
    ALL = "all"
    QUORUM = "quorum"
    SEQUENCE = "sequence"  # every approver, one after another in the listed order


MAX_ESCALATIONS = 5


class Escalation(Contract):
    """Backups asked when the request is still unsettled this long after it was queued."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after_seconds: int = Field(gt=0, strict=True, description="From when the request was queued")
    approvers: list[Email] = Field(
        min_length=1, max_length=MAX_APPROVERS, description="Emailed then, and may vote from then on"
    )


class Outcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


# How a vote is proven: by holding the emailed link, or by signing in with the company's
# OpenID Connect provider as the approver the link was issued to (approvals.signin).
Identity = Literal["link", "sign-in"]


class ApprovalRequest(Contract):
    """What a workflow asks for: the ``request`` of the execution input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: Annotated[Text, _at_most_bytes(TITLE_BYTES)] = Field(min_length=1)
    description: Annotated[Text, _at_most_bytes(DESCRIPTION_BYTES)] = ""
    approvers: list[Email] = Field(min_length=1, max_length=MAX_APPROVERS)
    policy: Policy = Policy.FIRST_RESPONSE
    quorum: int | None = Field(default=None, ge=1)
    timeout_seconds: int = Field(default=DEFAULT_TIMEOUT_SECONDS, ge=1, le=MAX_TIMEOUT_SECONDS)
    requester: Annotated[Text, _at_most_bytes(REQUESTER_BYTES)] = Field(min_length=1)
    details: Annotated[dict[Text, Any], AfterValidator(_only_text)] = Field(
        default_factory=dict, max_length=50
    )
    remind_every_seconds: int | None = Field(
        default=None,
        ge=MIN_REMIND_EVERY_SECONDS,
        description="Remind those who have not decided this often, until the request settles or expires"
        " (at least as long as the deployment's sweep interval)",
    )
    fields: list[FieldSpec] = Field(
        default_factory=list,
        max_length=MAX_FIELDS,
        description="What each approver answers with their vote; each vote's data holds the answers",
    )
    escalation: list[Escalation] = Field(
        default_factory=list,
        max_length=MAX_ESCALATIONS,
        description="Backups asked, step by step, while the request stays unsettled"
        " (each step later than the last, before timeout_seconds; not with policy sequence)",
    )
    identity: Identity = Field(
        default="link",
        description="How a vote is proven: by the emailed link alone, or (sign-in) also by signing in"
        " with the deployment's OpenID Connect provider as that approver",
    )
    digest: bool = Field(
        default=True,
        description="Let the email join each approver's digest (one email for the requests waiting on"
        " them, with one link to their inbox); false for an urgent request: emailed at once, on its own",
    )

    @property
    def requester_address(self) -> str | None:
        """The requester as an email address, if it is one: then they are told the outcome."""
        return email_address(self.requester)

    @model_validator(mode="before")
    @classmethod
    def _numbers_not_flags(cls, data: Any) -> Any:
        # JSON's true is not 1 approval nor 1 second, though pydantic would read it so.
        for name in ("quorum", "timeout_seconds", "remind_every_seconds"):
            if isinstance(data, dict) and isinstance(data.get(name), bool):
                raise ValueError(f"{name}: must be a number, not true or false")
        return data

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ApprovalRequest:
        if len(set(self.approvers)) != len(self.approvers):
            raise ValueError("approvers: each approver may be listed once")
        if self.remind_every_seconds is not None and self.remind_every_seconds >= self.timeout_seconds:
            raise ValueError("remind_every_seconds: must be shorter than timeout_seconds, or it never fires")
        if len({spec.name for spec in self.fields}) != len(self.fields):
            raise ValueError("fields: each field name may be used once")
        self._check_escalation()
        if self.policy is Policy.QUORUM:
            if self.quorum is None:
                raise ValueError("quorum: required when policy is quorum")
            if self.quorum > len(self.approvers):
                raise ValueError("quorum: cannot exceed the number of approvers")
        elif self.quorum is not None:
            raise ValueError("quorum: only allowed when policy is quorum")
        size = len(self.model_dump_json().encode()) if _is_new(info) else 0
        if size > REQUEST_BYTES:
            raise ValueError(f"at most {REQUEST_BYTES:,} bytes as JSON, not {size:,}")
        return self

    def _check_escalation(self) -> None:
        if not self.escalation:
            return
        if self.policy is Policy.SEQUENCE:
            # A backup has no place in an order the requester chose: refused, not guessed.
            raise ValueError("escalation: not allowed with policy sequence, whose order is the listed one")
        times = [step.after_seconds for step in self.escalation]
        if any(later <= earlier for earlier, later in pairwise(times)):
            raise ValueError("escalation: each step's after_seconds must be later than the one before")
        if times[-1] >= self.timeout_seconds:
            raise ValueError(
                f"escalation: after_seconds {times[-1]} must be shorter than timeout_seconds,"
                " or it never fires"
            )
        backups = self.backups
        if len(set(backups)) != len(backups):
            raise ValueError("escalation: each backup may be listed once")
        if already := sorted(set(backups) & set(self.approvers)):
            raise ValueError(f"escalation: already approvers: {', '.join(already)}")
        if len(self.approvers) + len(backups) > MAX_APPROVERS:
            raise ValueError(f"escalation: at most {MAX_APPROVERS} approvers and backups in all")

    @property
    def backups(self) -> list[str]:
        """Everyone the escalation steps may ask, in order."""
        return [backup for step in self.escalation for backup in step.approvers]


class QueueMessage(Contract):
    """The body an approval Task sends to the request queue (``sqs:sendMessage.waitForTaskToken``).

    ``request`` is validated apart, so that a bad request can still be answered through its
    task token. docs/queue-message.schema.json is generated from this model.
    """

    model_config = ConfigDict(
        extra="ignore",
        title="Approval request queue message",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    task_token: str = Field(
        min_length=1,
        max_length=MAX_TASK_TOKEN,
        description="`$$.Task.Token` (never shown to anyone)",
    )
    execution: str = Field(min_length=1, description="The execution's ARN: `$$.Execution.Id`")
    state: str = Field(min_length=1, description="The asking state's name: `$$.State.Name`")
    # Whatever the execution input held, judged by ApprovalRequest (and documented as one).
    request: Any = Field(
        description="What is asked of whom (a timeout_seconds in it must equal the message's)"
    )
    timeout_seconds: int = Field(
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        strict=True,
        description="The Task's own timeout (TimeoutSeconds), in seconds: the links expire with the task",
    )

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The contract for hand-written Tasks (SAM, Terraform, the console)."""
        schema = cls.model_json_schema()
        request = ApprovalRequest.model_json_schema()
        schema["$defs"] = {**request.pop("$defs", {}), "ApprovalRequest": request}
        schema["properties"]["request"] = {
            "$ref": "#/$defs/ApprovalRequest",
            "description": schema["properties"]["request"]["description"],
        }
        return schema


class Vote(Contract):
    approver: Email
    outcome: Outcome
    comment: str = ""
    at: datetime
    on_behalf_by: str | None = None
    data: dict[str, Answer] = Field(default_factory=dict)  # the answers to the request's fields
    proof: Identity = Field(default="link", description="How the vote was proven")
    issuer: str | None = Field(default=None, description="sign-in: the OpenID Connect issuer")


class Reassignment(Contract):
    """An approver's place handed to someone else by an operator (``approvals reassign``)."""

    # "from" is a Python keyword: the field is from_ here, "from" in JSON.
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True, validate_by_alias=True)

    from_: Email = Field(alias="from", description="The approver whose place was handed over")
    to: Email = Field(description="Who was asked in their place")
    by: str = Field(min_length=1, description="The operator who made the change")
    at: datetime


def handed_over(approvers: list[str], reassigned: list[Reassignment]) -> list[str]:
    """The approvers after the reassignments, in order: each takes the place of the one before."""
    current = list(approvers)
    for change in reassigned:
        current = [change.to if who == change.from_ else who for who in current]
    return current


class Decision(Contract):
    """The task output: what the workflow's Choice branches on."""

    # Which approval answered: the execution's history then tells whether this answer was
    # taken when the service refuses a repeat of it (see approvals.decision.deliver).
    approval_id: str
    outcome: Outcome
    votes: list[Vote]
    decided_at: datetime
    # Absent unless an operator reassigned someone: a plain decision stays as it was.
    reassigned: list[Reassignment] | None = Field(
        default=None, description="Approvers' places handed to others, in order (absent if none)"
    )
    # A bulk vote answers many tasks and then records their deliveries itself, 100 in one
    # write, rather than each workflow spending a write of its own.
    confirmed_by_service: bool | None = Field(
        default=None,
        description="true when the service itself records that the workflow has this decision (a bulk"
        " vote): the workflow skips its own delivery confirmation (absent otherwise, never false)",
    )


class InboxItem(Contract):
    """One request waiting on the approver, as their batch page lists it."""

    approval_id: str
    title: str
    requester: str
    workflow: str = Field(description="The state machine that asked")
    created_at: datetime
    expires_at: datetime
    description: str
    details: dict[str, Any]
    fields: list[FieldSpec] = Field(description="What the approver answers to approve it")
    policy: Policy
    sign_in: bool = Field(
        description="Decided signed in only: unless this browser is signed in as the approver, its"
        " description, details and fields are left out here, as its own page shows them only to"
        " the approver signed in"
    )


class BulkProgress(Contract):
    """An approver's "all N matching" vote: the first 100 decided by the confirmed POST, the
    rest by the sweep in the background. How far it got."""

    decision: Literal["approve", "reject"]
    workflow: str | None = Field(description="The filter the approver chose (null: every workflow)")
    confirmed_at: datetime = Field(description="When the approver confirmed: nothing asked since is decided")
    count: int = Field(description="How many requests the approver confirmed")
    decided: int = Field(description="How many of them have been decided so far, whatever the result")
    remaining: int = Field(description="How many are still to be decided")
    counts: dict[str, int] = Field(description="The results so far by kind, named as in a bulk vote")
    finished_at: datetime | None = Field(description="When the last was decided (null: still going)")


class Inbox(Contract):
    """The batch page's answer (``GET /i/{token}``): one page of what waits on the approver."""

    approver: str | None = Field(description="The address the requests ask (null when nothing waits)")
    link_expires_at: datetime = Field(description="When the inbox link stops working")
    workflow: str | None = Field(description="The filter: only this workflow's requests (null: all)")
    total: int = Field(description="How many requests wait on the approver under the filter, on every page")
    workflows: list[str] = Field(description="The workflows something waits on the approver in")
    items: list[InboxItem] = Field(description="This page, newest first")
    next_cursor: str | None = Field(description="The next page's cursor query parameter (null: last page)")
    signed_in: bool = Field(
        description="This browser is signed in as the approver: every request is shown in full"
    )
    sign_in_needed: int = Field(
        description="How many of the total must be decided signed in (GET /signin?to=i/{token} to sign in)"
    )
    bulk_votes: list[BulkProgress] = Field(
        default_factory=list,
        description='The approver\'s "all matching" votes going on, or done within the hour, newest first',
    )


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Unreachable(Contract):
    """An approver SNS cannot email: found when the request came (it was then refused), or
    while it waited (unsubscribed, removed)."""

    at: datetime
    why: str


class Approval(Contract):
    """One stored approval: the request, its token (server side only) and its votes."""

    approval_id: str
    task_token: str = Field(repr=False)
    execution: str
    state: str
    request: ApprovalRequest
    created_at: datetime
    expires_at: datetime
    status: Status = Status.PENDING
    votes: dict[str, Vote] = Field(default_factory=dict)
    decided_at: datetime | None = None
    decided_by: str | None = None  # the approver whose vote settled it
    emailed_at: datetime | None = None
    delivery_failed: bool = False  # the first delivery failed: retry at once
    unconfirmed: bool = False  # settled, and no sweep has yet confirmed the workflow has it
    closed_at: datetime | None = None  # when it was marked expired or cancelled
    viewed: dict[str, datetime] = Field(default_factory=dict)  # approver: first opened
    reminded: dict[str, datetime] = Field(default_factory=dict)  # reminder: when sent
    # The last recurring reminder (the Nth period of remind_every_seconds) and when it was
    # sent: one number, not one entry each, so a year of them cannot outgrow the item.
    recurring_reminder: int = 0
    recurring_reminded_at: datetime | None = None
    excluded: list[str] = Field(default_factory=list)  # approvers who may not vote (the requester)
    unreachable: dict[str, Unreachable] = Field(default_factory=dict)  # no longer emailable
    # Places handed over, in order; ``request.approvers`` already names who holds each now.
    reassigned: list[Reassignment] = Field(default_factory=list)
    requester_told_at: datetime | None = None  # when the requester was emailed the outcome
    # The short links emailed (approvals.shortlinks): SHA-256 of each token, and its approver.
    short_links: dict[str, str] = Field(default_factory=dict, repr=False)
    escalated: dict[int, datetime] = Field(default_factory=dict)  # escalation step: when its backups joined
    # Who got their link after the request was emailed (a backup, a sequence's next voter), and when.
    notified: dict[str, datetime] = Field(default_factory=dict)
    # Approvers whose first email waits in their digest (approvals.digest), until it goes.
    awaiting_digest: list[str] = Field(default_factory=list)
    # A sequence: the API's URL the worker linked to, for the approval API to email the next
    # voter (it cannot know its own URL at deploy time).
    link_base: str = ""

    @property
    def emailed(self) -> bool:
        return self.emailed_at is not None

    def originally_asked(self) -> list[str]:
        """The approvers the request named, before any reassignment."""
        approvers = list(self.request.approvers)
        for change in reversed(self.reassigned):
            approvers = [change.from_ if who == change.to else who for who in approvers]
        return approvers

    def reassigned_away(self, approver: str) -> bool:
        """Whether ``approver`` was asked, and an operator handed their place to someone else."""
        return approver not in self.request.approvers and any(r.from_ == approver for r in self.reassigned)

    @property
    def workflow(self) -> str:
        """The name of the state machine that asked, read from its execution's ARN
        (``...:execution:NAME:RUN``; a Distributed Map's child, ``...:execution:NAME/MAP:RUN``)."""
        parts = self.execution.split(":")
        if len(parts) >= 8 and parts[0] == "arn" and parts[5] in ("execution", "express"):
            return parts[6].split("/")[0]
        return self.execution

    @property
    def state_machine_arn(self) -> str | None:
        parts = self.execution.split(":")
        if self.workflow == self.execution:
            return None
        return ":".join([*parts[:5], "stateMachine", self.workflow])

    def decision(self, confirmed_by_service: bool = False) -> Decision | None:
        """The decision as the workflow receives it; ``confirmed_by_service``: its sender
        records the delivery itself (see Decision.confirmed_by_service)."""
        if self.status not in (Status.APPROVED, Status.REJECTED) or self.decided_at is None:
            return None
        votes = sorted(self.votes.values(), key=lambda v: v.at)
        return Decision(
            approval_id=self.approval_id,
            outcome=Outcome(self.status.value),
            votes=votes,
            decided_at=self.decided_at,
            reassigned=self.reassigned or None,
            confirmed_by_service=confirmed_by_service or None,
        )

    def needs_redelivery(self, now: datetime) -> bool:
        """Whether a sweep or a late click should send the decision again: at once after a
        failed delivery, otherwise only once the settling request has surely finished its
        own (so a repeat never overtakes it and makes it look too late)."""
        if self.decision() is None or not self.unconfirmed:
            return False
        assert self.decided_at is not None
        return self.delivery_failed or now - self.decided_at >= REDELIVERY_GRACE

    def is_expired(self, now: datetime) -> bool:
        return self.status is Status.EXPIRED or (self.status is Status.PENDING and now >= self.expires_at)

    def status_at(self, now: datetime) -> Status:
        """The status as people should see it: expired once the time is up, even before
        the sweep has written it down."""
        return Status.EXPIRED if self.is_expired(now) else self.status

    @property
    def asked(self) -> list[str]:
        """Everyone asked so far: the approvers, then the backups of each escalation step taken."""
        steps = self.request.escalation
        return self.request.approvers + [a for i in sorted(self.escalated) for a in steps[i].approvers]

    @property
    def first_asked(self) -> list[str]:
        """Those the worker emails: every approver who may vote, or a sequence's first (who
        holds each place now: an operator's reassignment emails the new holder itself)."""
        return self._first_of(self.request.approvers)

    def emailed_first(self) -> list[str]:
        """Those the worker did email: as :attr:`first_asked`, before any reassignment."""
        return self._first_of(self.originally_asked())

    def _first_of(self, approvers: list[str]) -> list[str]:
        voters = [a for a in approvers if a not in self.excluded]
        return voters[:1] if self.request.policy is Policy.SEQUENCE else voters

    @property
    def voters(self) -> list[str]:
        """Those who may vote now: everyone asked but the excluded."""
        return [a for a in self.asked if a not in self.excluded]

    def undecided(self, now: datetime) -> list[str]:
        """The voters who have not decided, while the request is pending."""
        if self.status_at(now) is not Status.PENDING:
            return []
        return [a for a in self.voters if a not in self.votes]

    def waiting_on(self, now: datetime) -> list[str]:
        """The approvers whose decision is awaited now: in a sequence, only the one whose
        turn it is."""
        undecided = self.undecided(now)
        return undecided[:1] if self.request.policy is Policy.SEQUENCE else undecided

    def owed_link(self, now: datetime) -> list[str]:
        """Those awaited now whom no email has yet brought their link: backups just joined,
        a sequence's next voter (the worker emails the first asked, once)."""
        if not self.emailed:
            return []  # the worker's own retry sends the first emails
        return [
            a
            for a in self.waiting_on(now)
            if a not in self.first_asked and a not in self.notified and a not in self.unreachable
        ]

    def escalations_due(self, now: datetime) -> list[int]:
        """The escalation steps whose time has come and whose backups have not yet joined."""
        if self.status_at(now) is not Status.PENDING:
            return []
        return [
            i
            for i, step in enumerate(self.request.escalation)
            if i not in self.escalated and self.created_at + timedelta(seconds=step.after_seconds) <= now
        ]


EventKind = Literal[
    "requested",
    "escalated",  # before "emailed": the backups' emails follow the escalation at the same second
    "emailed",
    "reassigned",
    "unreachable",
    "reminded",
    "viewed",
    "voted",
    "settled",
    "expired",
    "cancelled",
    "told",
]
EVENT_ORDER = {kind: i for i, kind in enumerate(get_args(EventKind))}  # ties at the same second


class Event(Contract):
    """One line of an approval's timeline."""

    at: datetime
    kind: EventKind
    actor: str
    detail: str = ""


def timeline(approval: Approval) -> list[Event]:
    """Every event of an approval in order, derived from what the store keeps."""
    request = approval.request
    events = [Event(at=approval.created_at, kind="requested", actor=request.requester, detail=request.title)]
    if approval.emailed_at:
        events.append(
            Event(
                at=approval.emailed_at,
                kind="emailed",
                actor="system",
                detail=", ".join(approval.emailed_first()),
            )
        )
    events += [
        Event(at=change.at, kind="reassigned", actor=change.by, detail=f"{change.from_} -> {change.to}")
        for change in approval.reassigned
    ]
    events += [
        Event(
            at=at,
            kind="escalated",
            actor="system",
            detail=f"step {step + 1}: asked {', '.join(request.escalation[step].approvers)}",
        )
        for step, at in approval.escalated.items()
    ]
    events += [
        Event(at=at, kind="emailed", actor="system", detail=who) for who, at in approval.notified.items()
    ]
    events += [
        Event(at=lost.at, kind="unreachable", actor=who, detail=f"cannot be emailed: {lost.why}")
        for who, lost in approval.unreachable.items()
    ]
    events += [
        Event(at=at, kind="reminded", actor="system", detail=f"reminder {name}")
        for name, at in approval.reminded.items()
    ]
    if approval.recurring_reminded_at:
        every = approval.request.remind_every_seconds
        detail = f"recurring reminder {approval.recurring_reminder} (every {every} s; the latest shown)"
        events.append(
            Event(at=approval.recurring_reminded_at, kind="reminded", actor="system", detail=detail)
        )
    events += [
        Event(at=at, kind="viewed", actor=who, detail="link opened (perhaps by a mail scanner)")
        for who, at in approval.viewed.items()
    ]
    for vote in approval.votes.values():
        detail = vote.outcome.value + (f": {vote.comment}" if vote.comment else "")
        if vote.data:
            detail += " (" + ", ".join(f"{name}={value}" for name, value in vote.data.items()) + ")"
        if vote.on_behalf_by:
            detail += f" (recorded by {vote.on_behalf_by} on the approver's behalf)"
        elif vote.proof == "sign-in":
            detail += f" (signed in with {vote.issuer})"
        events.append(Event(at=vote.at, kind="voted", actor=vote.approver, detail=detail))
    if approval.decided_at:
        # The votes tell the outcome even when the workflow had gone before it arrived.
        settled = approval.status.value
        if approval.status is Status.EXPIRED:
            last = max(approval.votes.values(), key=lambda v: v.at).outcome.value
            settled = f"{last}, too late for the workflow"
        events.append(Event(at=approval.decided_at, kind="settled", actor="system", detail=settled))
    if approval.closed_at and approval.status in (Status.EXPIRED, Status.CANCELLED):
        closed: EventKind = "expired" if approval.status is Status.EXPIRED else "cancelled"
        events.append(Event(at=approval.closed_at, kind=closed, actor="system"))
    if approval.requester_told_at:
        events.append(
            Event(
                at=approval.requester_told_at,
                kind="told",
                actor="system",
                detail=f"emailed {request.requester}",
            )
        )
    return sorted(events, key=lambda e: (e.at, EVENT_ORDER[e.kind]))


def reminder_time(spec: str, created: datetime, expires: datetime) -> datetime:
    """When a reminder is due: ``"50%"`` of the time allowed, or ``"1h"``/``"30m"`` before expiry."""
    units = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
    if spec.endswith("%") and spec[:-1].isdigit() and 0 < int(spec[:-1]) < 100:
        return created + (expires - created) * int(spec[:-1]) / 100
    if spec[-1:] in units and spec[:-1].isdigit():
        return expires - timedelta(seconds=int(spec[:-1]) * units[spec[-1]])
    raise ValueError(f"reminder {spec!r}: use a share of the time like '50%' or a lead like '1h', '30m'")


def recurring_reminder_due(approval: Approval, now: datetime) -> int | None:
    """The period of ``remind_every_seconds`` that has begun by ``now`` and whose reminder
    is not yet sent, or None. However many periods a late sweep missed, one is due."""
    every = approval.request.remind_every_seconds
    if every is None:
        return None
    period = int((now - approval.created_at).total_seconds()) // every
    return period if period > approval.recurring_reminder else None


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def describe_validation_error(error: ValidationError, prefix: str = "request") -> str:
    """One readable line per problem, each naming its field: ``request.approvers.0: ...``."""
    lines = []
    for problem in error.errors(include_url=False):
        location = ".".join(str(part) for part in (prefix, *problem["loc"]))
        message = re.sub(r" or instance of \w+", "", problem["msg"].removeprefix("Value error, "))
        # A model's own check names the field it is about: "quorum: ...".
        if problem["type"] == "value_error" and (named := re.match(r"([a-z_]+): (.*)", message, re.S)):
            location, message = f"{location}.{named[1]}", named[2]
        lines.append(f"{location}: {message}")
    return "; ".join(lines)


DecisionChoice = Literal["approve", "reject"]
