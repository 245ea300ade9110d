"""`FanoutMap`: a Distributed Map that reads its items from, and writes its results to, one
S3 bucket, granted only the key it reads and the prefix it writes.

CDK's own ``S3JsonItemReader`` and ``ResultWriter`` grant reading (and writing) the whole
bucket, and its ``ResultWriterV2`` renders only under a feature flag that a team's app may
not set: this one writes the same ``ItemReader`` and ``ResultWriter`` fields itself.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


class FanoutMap(sfn.DistributedMap):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        results_prefix: str,
        items_key: str | None = None,
        **props: Any,
    ) -> None:
        super().__init__(scope, construct_id, **props)
        self._bucket = bucket
        self._results_prefix = results_prefix
        self._items_key = items_key

    def to_state_json(self, query_language: sfn.QueryLanguage | None = None) -> dict[str, Any]:
        state: dict[str, Any] = dict(super().to_state_json(query_language))
        s3_action = f"arn:{Aws.PARTITION}:states:::s3:"
        if self._items_key is not None:
            state.pop("ItemsPath", None)
            state["ItemReader"] = {
                "Resource": f"{s3_action}getObject",
                "ReaderConfig": {"InputType": "JSON"},
                "Parameters": {"Bucket": self._bucket.bucket_name, "Key": self._items_key},
            }
        state["ResultWriter"] = {
            "Resource": f"{s3_action}putObject",
            "Parameters": {"Bucket": self._bucket.bucket_name, "Prefix": self._results_prefix},
        }
        return state

    def bind_to_graph(self, graph: sfn.StateGraph) -> None:
        super().bind_to_graph(graph)
        # Its result files, written in parts when large (as AWS's guide for ResultWriter says).
        graph.register_policy_statement(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
                resources=[self._bucket.arn_for_objects(f"{self._results_prefix}/*")],
            )
        )
        if self._items_key is not None:
            graph.register_policy_statement(
                iam.PolicyStatement(
                    actions=["s3:GetObject"], resources=[self._bucket.arn_for_objects(self._items_key)]
                )
            )
