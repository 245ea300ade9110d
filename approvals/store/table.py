"""The approvals table's definition: its key and the indexes the store queries.

The store owns it; the local stack creates the table from it and the CDK stack declares it
from it, so the three cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from approvals.store.items import (
    EXECUTION_INDEX,
    INBOX_ATTRIBUTE,
    INBOX_INDEX,
    INBOX_ORDER,
    OPEN_ATTRIBUTE,
    OPEN_INDEX,
    TELL_ATTRIBUTE,
    TELL_INDEX,
)


def table_definition(table_name: str) -> dict[str, Any]:
    """The approvals table: keyed by approval id, with the sweep's, the canceller's, the
    requester's and the approvers' inboxes' indexes."""

    def index(name: str, *key: tuple[str, str]) -> dict[str, Any]:
        return {
            "IndexName": name,
            "KeySchema": [{"AttributeName": a, "KeyType": k} for a, k in key],
            "Projection": {"ProjectionType": "ALL"},
        }

    return {
        "TableName": table_name,
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": kind}
            for name, kind in (
                ("approval_id", "S"),
                (OPEN_ATTRIBUTE, "S"),
                ("expires_at", "N"),
                ("execution", "S"),
                (TELL_ATTRIBUTE, "S"),
                (INBOX_ATTRIBUTE, "S"),
                (INBOX_ORDER, "S"),
            )
        ],
        "KeySchema": [{"AttributeName": "approval_id", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            index(OPEN_INDEX, (OPEN_ATTRIBUTE, "HASH"), ("expires_at", "RANGE")),
            index(EXECUTION_INDEX, ("execution", "HASH")),
            index(TELL_INDEX, (TELL_ATTRIBUTE, "HASH")),
            index(INBOX_INDEX, (INBOX_ATTRIBUTE, "HASH"), (INBOX_ORDER, "RANGE")),
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
