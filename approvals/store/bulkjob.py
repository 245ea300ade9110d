"""Bulk jobs: an approver's "all N matching" vote, the part the confirmed POST leaves to the sweep.

One item per confirmation (``bulk#<approver id>#<confirmation>``), written once, on the
condition that it does not exist: a double submit finds the job the first one made. It
holds what waited when the approver confirmed (their ids, newest first), the decision and
comment, how many have been voted so far (``done``, in order) and their results by kind.

Found without an index of its own, as the digests are: while it has votes left it is in the
open index under a key of its own (``sweep`` = "bulk", sorted by ``expires_at``: when the
sweep may take it up), and in the inbox index under ``bulk#<approver id>`` (so that the
approver's inbox lists it, and their entries' query never meets it). Whoever votes holds a
lease: ``expires_at`` moves past the time one batch can take, and each checkpoint is
conditional on the lease, so two sweeps never run one job at once and a sweep that dies
midway leaves it to the next once the lease runs out.

Where the approver was signed in when they confirmed, the job keeps what proved it
(``proof``: the verified address, the issuer, and when): the approver proved who they were
when they confirmed, and the job applies that confirmation, its votes proven by that
sign-in as the POST's were. Never a token or a secret: only what the votes record. A job
written without it (no sign-in, or by an earlier version) votes as proven by the link.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from approvals.models import Outcome
from approvals.signin import SignedIn
from approvals.store.items import (
    DIGEST_AT,
    INBOX_ATTRIBUTE,
    INBOX_INDEX,
    INBOX_ORDER,
    OPEN_ATTRIBUTE,
    Item,
    Table,
    epoch,
    failed_condition_item,
    from_epoch,
    write_id,
)

JOB_PREFIX = "bulk#"
DUE = {"S": "bulk"}  # the job's key in the open index, apart from approvals' and digests'
# The ids as 16 bytes each (they are 32 hex digits): 10,000 of them take 160 KB of the 400 KB
# an item may hold, and every checkpoint rewrites the item.
ID_BYTES = 16


@dataclass(frozen=True)
class SignInProof(SignedIn):
    """The approver's sign-in as the confirmed POST saw it hold, ``at`` that moment."""

    at: datetime


@dataclass(frozen=True)
class BulkJob:
    key: str
    owner: str  # the approver's id (approvals.inboxlinks.approver_id)
    outcome: Outcome
    comment: str
    workflow: str | None  # the filter the approver chose, if any
    confirmed_at: datetime
    count: int  # how many items the approver confirmed
    done: int  # how many of them have been voted, in order
    counts: Mapping[str, int]  # the results so far, by kind (approvals.bulk.Result)
    finished_at: datetime | None
    approval_ids: tuple[str, ...] = ()  # read only by whoever runs the job
    proof: SignInProof | None = None  # the sign-in the confirmation had, if any; likewise


def is_job(item: Item) -> bool:
    """Whether a raw item of the table is a bulk job."""
    return str(item["approval_id"]["S"]).startswith(JOB_PREFIX)


def job_key(owner: str, confirmation: str) -> str:
    return f"{JOB_PREFIX}{owner}#{confirmation}"


def _jobs_of(owner: str) -> Item:
    return {"S": f"{JOB_PREFIX}{owner}"}


class BulkJobStore(Table):
    def start_job(self, job: BulkJob, approval_ids: list[str], hold_until: datetime) -> tuple[BulkJob, str]:
        """Write the job, held by the caller until ``hold_until``: the job and the caller's
        lease. If the confirmation has a job already (a double submit), that job and no lease."""
        lease = write_id()
        item: Item = {
            OPEN_ATTRIBUTE: DUE,
            DIGEST_AT: {"N": epoch(hold_until)},
            INBOX_ATTRIBUTE: _jobs_of(job.owner),
            INBOX_ORDER: {"S": f"{epoch(job.confirmed_at).zfill(10)}#{job.key}"},
            "owner": {"S": job.owner},
            "outcome": {"S": job.outcome.value},
            "comment": {"S": job.comment},
            "confirmed_at": {"N": epoch(job.confirmed_at)},
            "job_count": {"N": str(len(approval_ids))},
            "done": {"N": "0"},
            "counts": {"M": {}},
            "ids": {"B": b"".join(bytes.fromhex(approval_id) for approval_id in approval_ids)},
            "lease": lease,
            # Kept as long as an approval is, then gone with it.
            "ttl": {"N": epoch(job.confirmed_at + self._retention)},
        }
        if job.workflow is not None:
            item["workflow"] = {"S": job.workflow}
        if job.proof is not None:
            item["proof"] = {
                "M": {
                    "email": {"S": job.proof.email},
                    "issuer": {"S": job.proof.issuer},
                    "at": {"N": epoch(job.proof.at)},
                }
            }
        names = {f"#a{n}": name for n, name in enumerate(item)}
        values = {f":a{n}": value for n, value in enumerate(item.values())}
        try:
            # An update that creates the item: the API may update items, not put them.
            self._db.update_item(
                TableName=self._table,
                Key=self._key(job.key),
                UpdateExpression="SET " + ", ".join(f"#a{n} = :a{n}" for n in range(len(item))),
                ConditionExpression="attribute_not_exists(approval_id)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            existing = failed_condition_item(error)
            if existing.get("lease") != lease:  # not this call's own write, sent again
                return _job(existing), ""
        return _job({**item, **self._key(job.key)}), lease["S"]

    def due_jobs(self, now: datetime) -> Iterator[BulkJob]:
        """The jobs with votes left whose lease, if any, has run out."""
        return (_job(item) for item in self._due(DUE, now))

    def take_job(self, key: str, now: datetime, hold_until: datetime) -> str | None:
        """The lease of a due job, held until ``hold_until``; None if another took it first."""
        lease = write_id()
        taken: str = lease["S"]
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(key),
                UpdateExpression=f"SET lease = :lease, {DIGEST_AT} = :until",
                ConditionExpression=f"{OPEN_ATTRIBUTE} = :bulk AND {DIGEST_AT} <= :now",
                ExpressionAttributeValues={
                    ":lease": lease,
                    ":until": {"N": epoch(hold_until)},
                    ":bulk": DUE,
                    ":now": {"N": epoch(now)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            return taken if failed_condition_item(error).get("lease") == lease else None
        return taken

    def checkpoint_job(
        self,
        key: str,
        lease: str,
        done: int,
        counts: Mapping[str, int],
        now: datetime,
        next_due: datetime | None,
    ) -> bool:
        """Note how far the job got, if the lease is still the caller's; ``next_due``: when the
        next votes may go (None: the job is finished now, and leaves the open index)."""
        values: Item = {
            ":lease": {"S": lease},
            ":done": {"N": str(done)},
            ":counts": {"M": {kind: {"N": str(many)} for kind, many in counts.items()}},
        }
        if next_due is None:
            update = f"SET done = :done, counts = :counts, finished_at = :at REMOVE {OPEN_ATTRIBUTE}, lease"
            values[":at"] = {"N": epoch(now)}
        else:
            update = f"SET done = :done, counts = :counts, {DIGEST_AT} = :due"
            values[":due"] = {"N": epoch(next_due)}
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(key),
                UpdateExpression=update,
                ConditionExpression="lease = :lease",
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            failed_condition_item(error)
            return False
        return True

    def jobs_of(self, owner: str, since: datetime) -> list[BulkJob]:
        """The approver's jobs confirmed since ``since``, newest first, without their ids."""
        pages = self._db.get_paginator("query").paginate(
            TableName=self._table,
            IndexName=INBOX_INDEX,
            KeyConditionExpression=f"{INBOX_ATTRIBUTE} = :jobs AND {INBOX_ORDER} >= :since",
            ExpressionAttributeValues={":jobs": _jobs_of(owner), ":since": {"S": epoch(since).zfill(10)}},
            # Not the ids: up to 160 KB a job, which only the sweep reads.
            ProjectionExpression=", ".join(f"#{name}" for name in _SHOWN),
            ExpressionAttributeNames={f"#{name}": name for name in _SHOWN},
            ScanIndexForward=False,
        )
        return [_job(item) for page in pages for item in page["Items"]]


_SHOWN = (
    "approval_id",
    "owner",
    "outcome",
    "comment",
    "workflow",
    "confirmed_at",
    "job_count",
    "done",
    "counts",
    "finished_at",
)


def _job(item: Mapping[str, Any]) -> BulkJob:
    ids = bytes(item["ids"]["B"]) if "ids" in item else b""
    return BulkJob(
        key=item["approval_id"]["S"],
        owner=item["owner"]["S"],
        outcome=Outcome(item["outcome"]["S"]),
        comment=item["comment"]["S"],
        workflow=item["workflow"]["S"] if "workflow" in item else None,
        confirmed_at=from_epoch(item["confirmed_at"]["N"]),
        count=int(item["job_count"]["N"]),
        done=int(item["done"]["N"]),
        counts={kind: int(many["N"]) for kind, many in item["counts"]["M"].items()},
        finished_at=from_epoch(item["finished_at"]["N"]) if "finished_at" in item else None,
        approval_ids=tuple(ids[start : start + ID_BYTES].hex() for start in range(0, len(ids), ID_BYTES)),
        proof=_proof(item["proof"]["M"]) if "proof" in item else None,
    )


def _proof(fields: Mapping[str, Any]) -> SignInProof:
    return SignInProof(
        email=fields["email"]["S"], issuer=fields["issuer"]["S"], at=from_epoch(fields["at"]["N"])
    )
