"""The service limits moto leaves out, as the local stack adds them (approvals.local.moto_fixes),
so that a request that would fail in AWS fails here first; and the one moto keeps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from approvals import runtime
from tests.integration.conftest import Stack

if TYPE_CHECKING:
    from mypy_boto3_sns.type_defs import PublishBatchRequestEntryTypeDef

KIB = 1024


def test_publish_batch_refuses_more_than_256_kib_in_all(stack: Stack) -> None:
    sns = runtime.from_environment().sns
    entries: list[PublishBatchRequestEntryTypeDef] = [
        {"Id": str(i), "Message": "字" * 10_000} for i in range(9)
    ]  # 30,000 bytes each
    with pytest.raises(ClientError) as refused:
        sns.publish_batch(TopicArn=stack.resources.topic_arn, PublishBatchRequestEntries=entries)
    assert refused.value.response["Error"]["Code"] == "BatchRequestTooLong"
    assert stack.emails() == []
    fits = sns.publish_batch(TopicArn=stack.resources.topic_arn, PublishBatchRequestEntries=entries[:8])
    assert len(fits["Successful"]) == 8
