"""The approvals table: the state of every approval and its audit trail."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from approvals.store.table import table_definition

# The attribute ApprovalStore.claim writes: when DynamoDB may delete a settled approval.
TTL_ATTRIBUTE = "ttl"


def approvals_table(scope: Construct, removal_policy: RemovalPolicy) -> dynamodb.Table:
    """The table the local stack creates (approvals.store.table.table_definition), so
    the key and the indexes the code queries are the same in both places."""
    definition = table_definition("unused")
    types = {a["AttributeName"]: a["AttributeType"] for a in definition["AttributeDefinitions"]}
    kinds = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER}

    def key(schema: list[dict[str, str]], kind: str) -> dynamodb.Attribute | None:
        names = [k["AttributeName"] for k in schema if k["KeyType"] == kind]
        return dynamodb.Attribute(name=names[0], type=kinds[types[names[0]]]) if names else None

    partition_key = key(definition["KeySchema"], "HASH")
    assert partition_key is not None
    table = dynamodb.Table(
        scope,
        "Table",
        partition_key=partition_key,
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        time_to_live_attribute=TTL_ATTRIBUTE,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        removal_policy=removal_policy,
        # The table is the audit trail: while it is retained, only a deliberate act deletes it.
        deletion_protection=removal_policy == RemovalPolicy.RETAIN,
    )
    for index in definition["GlobalSecondaryIndexes"]:
        table.add_global_secondary_index(
            index_name=index["IndexName"],
            partition_key=key(index["KeySchema"], "HASH"),
            sort_key=key(index["KeySchema"], "RANGE"),
            projection_type=dynamodb.ProjectionType[index["Projection"]["ProjectionType"]],
        )
    return table


def index_arns(table: dynamodb.Table) -> dict[str, str]:
    """The ARN of each of the table's indexes, by name (``approvals.store``'s ``*_INDEX``)."""
    return {
        index["IndexName"]: f"{table.table_arn}/index/{index['IndexName']}"
        for index in table_definition("unused")["GlobalSecondaryIndexes"]
    }
