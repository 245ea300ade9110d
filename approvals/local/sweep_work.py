"""Whether the local stack's sweep would find any work, seen in moto's memory.

The sweep finds all its work in two indexes of the approvals table: the open index (pending
approvals, undelivered decisions, digests, bulk jobs) and the tell index (requesters to
tell); tests/integration/test_sweep_work.py holds it to that. While both are empty a sweep
does nothing but query them, four calls every two seconds for an idle stack: the local
stack's sweeper looks at the table in this process instead, and sweeps once there is work.
"""

from __future__ import annotations

import os
from typing import cast

from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table
from moto.iam.models import get_account_id_from

from approvals.local.info import LOCAL_CREDENTIALS
from approvals.store.items import OPEN_INDEX, TELL_INDEX

SWEPT_INDEXES = (OPEN_INDEX, TELL_INDEX)


def _table(table_name: str, region: str) -> Table:
    # The account moto serves the stack's calls as (moto.core.responses.get_current_account).
    account = os.environ.get("MOTO_ACCOUNT_ID") or get_account_id_from(LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"])
    return dynamodb_backends[account][region].get_table(table_name)


def nothing_to_sweep(table_name: str, region: str) -> bool:
    """Whether the swept indexes are empty: no item of the table has an index's key."""
    table = _table(table_name, region)
    keys = [index.schema_key_attrs for index in table.global_indexes if index.name in SWEPT_INDEXES]
    # A copy taken in one step (the server's threads write meanwhile); without a range key,
    # moto holds one item per hash key (typed as for a table with one).
    items = cast("list[Item]", list(table.items.values()))
    return not any(all(attribute in item.attrs for attribute in key) for item in items for key in keys)
