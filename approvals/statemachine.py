"""The approval state machines, as Amazon States Language.

One definition serves the CDK stack and the local stack, so what is tested locally is
what is deployed. The queue URL, the table name, the fan-out's bucket and the partition in
the integrations' ARNs are placeholders (``${QueueUrl}``, ``${TableName}``,
``${FanoutBucket}``, ``${Partition}``) filled by CDK (the stack's partition, and definition
substitutions) or by :func:`render` locally.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from approvals.models import DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS
from approvals.store.close import CONFIRM_DELIVERY

QUEUE_URL_PLACEHOLDER = "${QueueUrl}"
TABLE_NAME_PLACEHOLDER = "${TableName}"
PARTITION_PLACEHOLDER = "${Partition}"  # aws, aws-cn, aws-us-gov: the stack's
LOCAL_PARTITION = "aws"  # what moto runs
FANOUT_BUCKET_PLACEHOLDER = "${FanoutBucket}"
FANOUT_SUMMARY_FUNCTION_PLACEHOLDER = "${FanoutSummaryFunction}"
FANOUT_SUMMARY_TIMEOUT_SECONDS = 300  # the function's own timeout is a little shorter
# What Lambda's Invoke answers when the service, not the function, failed: worth a retry
# (AWS's advice for lambda:invoke tasks).
LAMBDA_SERVICE_ERRORS = [
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
# Where the fan-out writes its results in its bucket, and the one place it reads requests from.
FANOUT_RESULTS_PREFIX = "fanout"
FANOUT_REQUESTS_PREFIX = "requests/"
# A Distributed Map runs at most this many child executions at once (an inline Map, 40).
MAX_FANOUT_CONCURRENCY = 10_000

INVALID_REQUEST = "Approval.InvalidRequest"
DELIVERY_FAILED = "Approval.DeliveryFailed"
# The sweep's answer to a task still waiting once its links expired (a Task whose own
# timeout is longer than the message's timeout_seconds).
EXPIRED = "Approval.Expired"
TIMEOUT = "States.Timeout"
CONFIRM_REFUSED = "DynamoDB.ConditionalCheckFailedException"
CONFIRMED_BY_SERVICE = "confirmed_by_service"  # approvals.models.Decision's field
# The Outcome Choice's rules: the decision approves; it says nothing of its confirmation.
_APPROVED = {"Variable": "$.decision.outcome", "StringEquals": "approved"}
_UNCONFIRMED = {"Not": {"Variable": f"$.decision.{CONFIRMED_BY_SERVICE}", "IsPresent": True}}
TIMEOUT_PATH = "$.approval_timeout"  # where the state machine keeps the timeout it applies

State = dict[str, Any]


def _approval_states(
    *,
    default_timeout_seconds: int,
    approved: State,
    rejected: State,
    expired: State,
    invalid: State,
    undelivered: State,
) -> dict[str, State]:
    """The states that ask for one approval; the caller supplies the five ends.

    Input is ``{"request": {...}}``. The timeout is read into ``$.approval_timeout`` (the
    request itself is passed on untouched, whatever it holds, for the worker to judge); a
    missing one gets the default, and one the service would refuse (not a whole number of
    seconds from 1 to a year) is answered with ``Approval.InvalidRequest`` before anything
    is queued.
    """
    given = "$.request.timeout_seconds"
    seconds, text = f"{TIMEOUT_PATH}.seconds", f"{TIMEOUT_PATH}.text"
    return {
        "CheckTimeout": {
            "Type": "Choice",
            "Choices": [
                {"Not": {"Variable": given, "IsPresent": True}, "Next": "DefaultTimeout"},
                {"Variable": given, "IsNumeric": True, "Next": "ReadTimeout"},
            ],
            "Default": "TimeoutOutOfRange",
        },
        "DefaultTimeout": {
            "Type": "Pass",
            "Result": {"seconds": default_timeout_seconds, "text": str(default_timeout_seconds)},
            "ResultPath": TIMEOUT_PATH,
            "Next": "RequestApproval",
        },
        # A number's text tells a whole number (86400) from a fraction (1.5, 1.0, 1e3),
        # which the task's timeout would refuse with States.Runtime.
        "ReadTimeout": {
            "Type": "Pass",
            "Parameters": {"seconds.$": given, "text.$": f"States.Format('{{}}', {given})"},
            "ResultPath": TIMEOUT_PATH,
            "Next": "CheckTimeoutRange",
        },
        "CheckTimeoutRange": {
            "Type": "Choice",
            "Choices": [
                {
                    "And": [
                        *({"Not": {"Variable": text, "StringMatches": f"*{c}*"}} for c in ".eE"),
                        {"Variable": seconds, "NumericGreaterThanEquals": 1},
                        {"Variable": seconds, "NumericLessThanEquals": MAX_TIMEOUT_SECONDS},
                    ],
                    "Next": "RequestApproval",
                }
            ],
            "Default": "TimeoutOutOfRange",
        },
        "TimeoutOutOfRange": {
            "Type": "Pass",
            "Result": {
                "Error": INVALID_REQUEST,
                "Cause": (
                    "request.timeout_seconds: must be a whole number of seconds"
                    f" from 1 to {MAX_TIMEOUT_SECONDS}"
                ),
            },
            "ResultPath": "$.error",
            "Next": "InvalidRequest",
        },
        "RequestApproval": {
            "Type": "Task",
            "Resource": f"arn:{PARTITION_PLACEHOLDER}:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {
                "QueueUrl": QUEUE_URL_PLACEHOLDER,
                "MessageBody": {
                    "task_token.$": "$$.Task.Token",
                    "execution.$": "$$.Execution.Id",
                    "state.$": "$$.State.Name",
                    "request.$": "$.request",
                    # The timeout the task applies, so that the links expire with it.
                    "timeout_seconds.$": seconds,
                },
            },
            "TimeoutSecondsPath": seconds,
            "ResultPath": "$.decision",
            "Catch": [
                {"ErrorEquals": [TIMEOUT, EXPIRED], "ResultPath": "$.error", "Next": "Expired"},
                {"ErrorEquals": [INVALID_REQUEST], "ResultPath": "$.error", "Next": "InvalidRequest"},
                {"ErrorEquals": [DELIVERY_FAILED], "ResultPath": "$.error", "Next": "Undelivered"},
            ],
            "Next": "Outcome",
        },
        # The decision's branch, and whether the workflow confirms it has the decision first:
        # it does unless the decision says the service does (a bulk vote, which confirms its
        # items 100 in one write). One Choice for both, so that neither path takes a state
        # more than the outcome alone would; absence is tested, never compared (a comparison
        # with a missing field is a runtime error).
        "Outcome": {
            "Type": "Choice",
            "Choices": copy.deepcopy(  # each definition its own, as the rest of it
                [
                    {"And": [_UNCONFIRMED, _APPROVED], "Next": "ConfirmApproved"},
                    {**_UNCONFIRMED, "Next": "ConfirmRejected"},
                    {**_APPROVED, "Next": "Approved"},
                ]
            ),
            "Default": "Rejected",
        },
        "ConfirmApproved": _confirm_delivery(then="Approved"),
        "ConfirmRejected": _confirm_delivery(then="Rejected"),
        "Approved": approved,
        "Rejected": rejected,
        "Expired": expired,
        "InvalidRequest": invalid,
        "Undelivered": undelivered,
    }


def _confirm_delivery(*, then: str) -> State:
    """The workflow says it has the decision, so that the sweep need not ask Step Functions
    (a second SendTaskSuccess) and write it down (an UpdateItem) for every approval: one
    write instead of two calls, off the approver's path. A workflow without this state (a
    hand-written Task, or one whose write fails) is confirmed by the sweep."""
    return {
        "Type": "Task",
        "Resource": f"arn:{PARTITION_PLACEHOLDER}:states:::dynamodb:updateItem",
        "Parameters": {
            "TableName": TABLE_NAME_PLACEHOLDER,
            "Key": {"approval_id": {"S.$": "$.decision.approval_id"}},
            **copy.deepcopy(CONFIRM_DELIVERY),  # each state its own, as the rest of the definition
        },
        "ResultPath": None,
        "Retry": [
            # No longer settled (closed meanwhile): nothing to confirm, nothing to retry.
            {"ErrorEquals": [CONFIRM_REFUSED], "MaxAttempts": 0},
            {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2},
        ],
        # The decision is the workflow's either way: a failed confirmation only leaves the
        # approval for the sweep to confirm.
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": then}],
        "Next": then,
    }


def approval_definition(default_timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS) -> dict[str, Any]:
    """One approval: input ``{"request": ...}``, output the decision.

    Approved and rejected both succeed (a rejection is an answer, not a fault) with the
    decision as output; expiry succeeds with ``{"outcome": "expired"}``; an invalid request
    and an undeliverable one fail with their named errors.
    """
    return {
        "Comment": "Human approval gate: waits for approvers' decision on one request",
        "StartAt": "CheckTimeout",
        "States": _approval_states(
            default_timeout_seconds=default_timeout_seconds,
            approved={"Type": "Pass", "OutputPath": "$.decision", "End": True},
            rejected={"Type": "Pass", "OutputPath": "$.decision", "End": True},
            expired={"Type": "Pass", "Result": {"outcome": "expired"}, "End": True},
            invalid={"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
            undelivered={"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
        ),
    }


def fanout_map(
    item_states: dict[str, State],
    start_at: str,
    *,
    max_concurrency: int,
    results_bucket: str,
    results_prefix: str,
    items_path: str | None = None,
    item_reader: State | None = None,
    item_selector: State | None = None,
) -> State:
    """A Distributed Map whose state never grows with its items.

    Its items come from the state (``items_path``) or from S3 (``item_reader``, an
    ``ItemReader`` field); its results go to S3 (``ResultWriter``: a ``manifest.json`` and
    the result files under ``results_prefix/MAP-RUN-ID/``), so that its output is only
    ``{"MapRunArn": ..., "ResultWriterDetails": {"Bucket": ..., "Key": manifest}}`` however
    many items it ran. It replaces the state it is given (``ResultPath`` ``$``), so that a
    large input is not carried on beside it either. Each item is a standard child execution
    (they wait up to a year, which Express cannot).
    """
    if not 1 <= max_concurrency <= MAX_FANOUT_CONCURRENCY:
        raise ValueError(f"max_concurrency: {max_concurrency} is not from 1 to {MAX_FANOUT_CONCURRENCY}")
    if (items_path is None) == (item_reader is None):
        raise ValueError("give the items either by items_path or by item_reader")
    source: State = {"ItemsPath": items_path} if items_path is not None else {"ItemReader": item_reader}
    return {
        "Type": "Map",
        **source,
        **({"ItemSelector": item_selector} if item_selector is not None else {}),
        "MaxConcurrency": max_concurrency,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": start_at,
            "States": item_states,
        },
        "ResultWriter": {
            "Resource": f"arn:{PARTITION_PLACEHOLDER}:states:::s3:putObject",
            "Parameters": {"Bucket": results_bucket, "Prefix": results_prefix},
        },
        "ResultPath": "$",
    }


def fanout_definition(
    default_timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS, max_concurrency: int = MAX_FANOUT_CONCURRENCY
) -> dict[str, Any]:
    """Many approvals at once: input ``{"requests": [...]}``, or ``{"requests_from":
    {"bucket": ..., "key": ...}}`` naming a JSON array of requests in S3 (under
    :data:`FANOUT_REQUESTS_PREFIX` of the service's fan-out bucket: the only place the
    fan-out may read); output a summary that says where the decisions are (see
    :mod:`approvals.fanout`), however many requests there were.

    A Distributed Map with a standard child execution per request, so up to
    ``max_concurrency`` approvals are in flight at once: an inline Map would run 40 and
    hold the rest of a batch back. Each item ends in a result of its own, written to S3
    with its index, so one expiring or invalid item leaves the others standing.
    """
    item_end = {"Type": "Pass", "End": True}
    items = _approval_states(
        default_timeout_seconds=default_timeout_seconds,
        approved={**item_end, "OutputPath": "$.decision"},
        rejected={**item_end, "OutputPath": "$.decision"},
        expired={**item_end, "Result": {"outcome": "expired"}},
        invalid={**item_end, "Parameters": {"outcome": "invalid", "error.$": "$.error.Cause"}},
        undelivered={**item_end, "Parameters": {"outcome": "undelivered", "error.$": "$.error.Cause"}},
    )

    def approve_each(**source: Any) -> State:
        return {
            **fanout_map(
                copy.deepcopy(items),
                "CheckTimeout",
                max_concurrency=max_concurrency,
                results_bucket=FANOUT_BUCKET_PLACEHOLDER,
                results_prefix=FANOUT_RESULTS_PREFIX,
                # The index goes into each result file's Input: the results come back in order.
                item_selector={"request.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
                **source,
            ),
            "Next": "Summary",
        }

    return {
        "Comment": "Human approval gate: one approval per request, all in flight at once",
        "StartAt": "RequestsFrom",
        "States": {
            "RequestsFrom": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.requests_from", "IsPresent": True, "Next": "ApproveEachFromS3"}],
                "Default": "ApproveEach",
            },
            "ApproveEach": approve_each(items_path="$.requests"),
            "ApproveEachFromS3": approve_each(
                item_reader={
                    "Resource": f"arn:{PARTITION_PLACEHOLDER}:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSON"},
                    "Parameters": {"Bucket.$": "$.requests_from.bucket", "Key.$": "$.requests_from.key"},
                }
            ),
            # The counts come from reading the result files, which no state may hold: a
            # function of the service reads them. If it cannot, the decisions stay where they
            # are and the execution still succeeds, saying why the counts are missing.
            "Summary": {
                "Type": "Task",
                "Resource": f"arn:{PARTITION_PLACEHOLDER}:states:::lambda:invoke",
                "Parameters": {"FunctionName": FANOUT_SUMMARY_FUNCTION_PLACEHOLDER, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "TimeoutSeconds": FANOUT_SUMMARY_TIMEOUT_SECONDS,
                "Retry": [
                    {
                        "ErrorEquals": LAMBDA_SERVICE_ERRORS,
                        "IntervalSeconds": 2,
                        "MaxAttempts": 5,
                        "BackoffRate": 2,
                    }
                ],
                "Catch": [
                    {
                        "ErrorEquals": ["States.ALL"],
                        "ResultPath": "$.counts_error",
                        "Next": "SummaryWithoutCounts",
                    }
                ],
                "End": True,
            },
            "SummaryWithoutCounts": {
                "Type": "Pass",
                "Parameters": {
                    "map_run.$": "$.MapRunArn",
                    "decisions": {
                        "bucket.$": "$.ResultWriterDetails.Bucket",
                        "manifest.$": "$.ResultWriterDetails.Key",
                    },
                    "counts_error.$": "$.counts_error.Error",
                },
                "End": True,
            },
        },
    }


def render(
    definition: dict[str, Any],
    queue_url: str,
    table_name: str,
    fanout_bucket: str = "",
    fanout_summary_function: str = "",
) -> str:
    """The definition as JSON with the queue URL, table name, fan-out bucket and summary
    function, and (moto's) partition filled in, as CDK's substitutions do."""
    return (
        json.dumps(definition)
        .replace(QUEUE_URL_PLACEHOLDER, queue_url)
        .replace(TABLE_NAME_PLACEHOLDER, table_name)
        .replace(PARTITION_PLACEHOLDER, LOCAL_PARTITION)
        .replace(FANOUT_BUCKET_PLACEHOLDER, fanout_bucket)
        .replace(FANOUT_SUMMARY_FUNCTION_PLACEHOLDER, fanout_summary_function)
    )
