"""Approval emails through SNS.

One message per approver, each carrying an ``approver`` message attribute: every email
subscription has a filter policy on it, so each person gets only their own link.
Emails are plain text, so nothing a requester wrote can turn into markup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from approvals import shortlinks
from approvals.links import LinkClaims, SigningKey, link_for
from approvals.models import Approval, Identity, Status

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

APPROVER_ATTRIBUTE = "approver"
PUBLISH_BATCH_LIMIT = 10  # what SNS PublishBatch takes in one call...
PUBLISH_BATCH_BYTES = 256 * 1024  # ...and in all, each message with its subject and attributes
SUBJECT_LIMIT = 99  # SNS: "less than 100 characters long"
# Said wherever a link will ask to sign in, so that it surprises nobody (on a phone, say).
_SIGN_IN_WHY = ": the link alone decides nothing."


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    body: str

    @property
    def size(self) -> int:
        """What the email weighs in a PublishBatch: its text and its attribute, in UTF-8."""
        parts = (self.subject, self.body, APPROVER_ATTRIBUTE, "String", self.to)
        return sum(len(part.encode()) for part in parts)


def batches(emails: list[Email]) -> list[list[Email]]:
    """The emails in order, in batches PublishBatch takes: by count and by bytes."""
    batched: list[list[Email]] = []
    size = 0
    for email in emails:
        if not batched or len(batched[-1]) == PUBLISH_BATCH_LIMIT or size + email.size > PUBLISH_BATCH_BYTES:
            batched.append([])
            size = 0
        batched[-1].append(email)
        size += email.size
    return batched


def _one_line(text: str) -> str:
    # SNS subjects must be one line of printable ASCII-safe text.
    return " ".join(text.split())


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _subject(tag: str, approval: Approval) -> str:
    subject = _one_line(f"[{tag}] {approval.request.title} (from {approval.request.requester})")
    return subject if len(subject) <= SUBJECT_LIMIT else subject[: SUBJECT_LIMIT - 1] + "…"


def asks_sign_in(identity: Identity) -> bool:
    """A request's own rule (where no deployment rule is at hand: see Settings.needs_sign_in)."""
    return identity == "sign-in"


# Whether a request asking for an identity must be decided signed in (Settings.needs_sign_in).
NeedsSignIn = Callable[[Identity], bool]


def approval_email(
    approval: Approval, approver: str, link: str, needs_sign_in: NeedsSignIn = asks_sign_in
) -> Email:
    request = approval.request
    subject = _subject("Approval needed", approval)
    others = [a for a in approval.asked if a != approver]
    lines = [
        f"{request.requester} asks for your approval:",
        "",
        f"  {request.title}",
        "",
    ]
    if request.description:
        lines += [request.description, ""]
    if others:
        lines.append(f"Also asked: {', '.join(others)} (policy: {request.policy.value}).")
    lines += [
        f"Asked by the workflow {approval.workflow}, at its step {approval.state}.",
        f"Decide before {_when(approval.expires_at)}:",
        "",
        link,
        "",
        "The link opens a page where you can read the request and approve or reject it.",
    ]
    if needs_sign_in(request.identity):
        lines.append(f"It first asks you to sign in with your company account{_SIGN_IN_WHY}")
    lines.append("It is yours alone: do not forward it.")
    return Email(to=approver, subject=subject, body="\n".join(lines))


def _sign_in_asked(approvals: Sequence[Approval], needs_sign_in: NeedsSignIn) -> list[str]:
    """The digest's line on sign-in: how many of its requests ask for it (none: no line)."""
    asking = sum(needs_sign_in(approval.request.identity) for approval in approvals)
    if not asking:
        return []
    which = "Each asks" if asking == len(approvals) else f"{asking} of these ask{'s' if asking == 1 else ''}"
    return [f"{which} you to sign in with your company account{_SIGN_IN_WHY}"]


def reminder_email(
    approval: Approval, approver: str, link: str, needs_sign_in: NeedsSignIn = asks_sign_in
) -> Email:
    first = approval_email(approval, approver, link, needs_sign_in)
    return Email(
        to=approver,
        subject=_subject("Reminder", approval),
        body=f"A reminder: this request still waits for your decision.\n\n{first.body}",
    )


def handed_over_email(
    approval: Approval, approver: str, link: str, needs_sign_in: NeedsSignIn = asks_sign_in
) -> Email:
    """The approval email to one an operator asked in place of another (``approvals reassign``)."""
    first = approval_email(approval, approver, link, needs_sign_in)
    previous = next(change.from_ for change in reversed(approval.reassigned) if change.to == approver)
    return Email(
        to=approver,
        subject=first.subject,
        body=f"You are asked in place of {previous}, who no longer decides on this request.\n\n{first.body}",
    )


DIGEST_LISTED = 10  # requests a digest lists; the inbox shows them all


def digest_email(
    approver: str,
    approvals: Sequence[Approval],
    link: str,
    reminder: bool = False,
    needs_sign_in: NeedsSignIn = asks_sign_in,
) -> Email:
    """One email for the requests waiting on ``approver``: how many, the first ones listed,
    and one link to their inbox. Refuses a request that does not ask them: a digest names
    nobody else's items."""
    if strangers := [a.approval_id for a in approvals if approver not in a.asked]:
        raise ValueError(f"{approver} is not asked by {', '.join(strangers)}")
    count = len(approvals)
    listed = sorted(approvals, key=lambda a: a.expires_at)[:DIGEST_LISTED]
    intro = (
        f"A reminder: {count} requests still wait for your decision."
        if reminder
        else f"{count} requests wait for your decision."
    )
    lines = [intro, ""]
    for approval in listed:
        lines += [
            f"- {_one_line(approval.request.title)}",
            f"    from {approval.request.requester}, workflow {approval.workflow},"
            f" decide before {_when(approval.expires_at)}",
        ]
    if count > len(listed):
        lines.append(f"... and {count - len(listed)} more, soonest to expire first.")
    lines += [
        "",
        "Read, approve or reject them, one by one or together, on your page:",
        "",
        link,
        "",
        *_sign_in_asked(approvals, needs_sign_in),
        "The link is yours alone: do not forward it.",
    ]
    tag = "Reminder" if reminder else "Approvals needed"
    return Email(
        to=approver, subject=f"[{tag}] {count} requests wait for your decision", body="\n".join(lines)
    )


_ENDED = {
    Status.APPROVED: "was approved",
    Status.REJECTED: "was rejected",
    Status.EXPIRED: "expired before it was settled",
    Status.CANCELLED: "was cancelled: the workflow stopped waiting for it",
}


def outcome_email(approval: Approval, to: str) -> Email:
    """The requester's one email once their request has ended: the outcome, the votes with
    their comments and answers, and who was reassigned."""
    request = approval.request
    ended = _ENDED[approval.status]
    if approval.status is Status.EXPIRED and approval.votes and approval.decided_at:
        ended = "was decided too late: the workflow had stopped waiting"
    lines = [f"Your request {ended}:", "", f"  {request.title}", ""]
    if approval.decided_at:
        lines.append(f"Decided {_when(approval.decided_at)}.")
    lines.append("Votes:" if approval.votes else "Nobody voted.")
    for vote in sorted(approval.votes.values(), key=lambda v: v.at):
        by = f" (recorded by {vote.on_behalf_by})" if vote.on_behalf_by else ""
        lines.append(f"- {vote.approver} {vote.outcome.value} at {_when(vote.at)}{by}")
        if vote.comment:
            lines.append(f"    “{vote.comment}”")
        lines += [f"    {name}: {value}" for name, value in vote.data.items()]
    for change in approval.reassigned:
        lines.append(f"{change.from_}'s place went to {change.to} ({change.by}, {_when(change.at)}).")
    lines += ["", f"Asked by the workflow {approval.workflow}, at its step {approval.state}."]
    tag = approval.status.value.capitalize()
    return Email(to=to, subject=_subject(tag, approval), body="\n".join(lines))


def emails_for(
    approval: Approval,
    api_url: str,
    key: SigningKey,
    to: Sequence[str] | None = None,
    compose: Callable[[Approval, str, str, NeedsSignIn], Email] = approval_email,
    needs_sign_in: NeedsSignIn = asks_sign_in,
) -> list[Email]:
    """One email to each of ``to`` (by default everyone asked, backups who joined included),
    each with the approver's own link. Named, not left over from a list of those to skip: a
    list of the others misses whoever joined since (a backup), and they would be emailed too."""
    return [
        compose(approval, approver, approver_link(approval, approver, api_url, key), needs_sign_in)
        for approver in (approval.asked if to is None else to)
    ]


def approver_link(approval: Approval, approver: str, api_url: str, key: SigningKey) -> str:
    """The approver's short link, if the approval holds its hash; else a signed link (an
    approval stored before short links, or whose links were made under a key since rotated)."""
    token = shortlinks.token_for(key, approval.approval_id, approver)
    if approval.short_links.get(shortlinks.token_hash(token)) == approver:
        return shortlinks.short_link(api_url, token)
    expires = int(approval.expires_at.timestamp())
    return link_for(api_url, key, LinkClaims(approval.approval_id, approver, expires))


def publish(sns: SNSClient, topic_arn: str, emails: list[Email]) -> tuple[list[str], list[str]]:
    """Publish the emails in batches; returns (sent, failed) approver addresses."""
    sent, failed = publish_emails(sns, topic_arn, emails)
    return [email.to for email in sent], [email.to for email in failed]


def publish_emails(sns: SNSClient, topic_arn: str, emails: list[Email]) -> tuple[list[Email], list[Email]]:
    """Publish the emails in batches; returns (sent, failed) emails (one approver may have
    several in a batch: a digest and an urgent request's own)."""
    sent: list[Email] = []
    failed: list[Email] = []
    for batch in batches(emails):
        by_id = {str(i): email for i, email in enumerate(batch)}
        try:
            response = sns.publish_batch(
                TopicArn=topic_arn,
                PublishBatchRequestEntries=[
                    {
                        "Id": entry_id,
                        "Subject": email.subject,
                        "Message": email.body,
                        "MessageAttributes": {
                            APPROVER_ATTRIBUTE: {"DataType": "String", "StringValue": email.to}
                        },
                    }
                    for entry_id, email in by_id.items()
                ],
            )
        except (ClientError, BotoCoreError):
            # Throttled, down or out of reach after the client's own retries: this batch is
            # to be retried, but what earlier batches sent must still be remembered.
            failed += batch
            continue
        sent += [by_id[ok["Id"]] for ok in response.get("Successful", [])]
        failed += [by_id[bad["Id"]] for bad in response.get("Failed", [])]
    return sent, failed
