"""Answers to the waiting workflow, through its task token."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from approvals.models import Decision

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

# The service's limits for SendTaskFailure.
ERROR_LIMIT = 256
CAUSE_LIMIT = 32_768

# What the service says when a task no longer waits: it timed out, its execution was
# stopped, or it has already been answered.
GONE = {"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"}


# What the service says to a caller not allowed to read an execution's history: another
# account's execution, or a policy that names only some state machines. Asking again
# cannot change it.
HISTORY_DENIED = {"AccessDeniedException", "AccessDenied"}


class HistoryDenied(Exception):
    """The execution's history may not be read by this caller."""


class TaskGone(Exception):
    """The workflow no longer waits on this token.

    ``resent`` says the SDK sent the call more than once (a reply was lost): then the token
    may be gone because an earlier copy of this very answer was taken.
    """

    def __init__(self, code: str, resent: bool) -> None:
        super().__init__(code)
        self.resent = resent


def _call(action, **kwargs: str) -> None:  # type: ignore[no-untyped-def]
    try:
        action(**kwargs)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in GONE:
            resent = error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0
            raise TaskGone(code, resent) from None
        raise


def took_answer(sfn: SFNClient, execution_arn: str, approval_id: str) -> bool:
    """Whether the execution took this approval's answer: its history holds a
    ``TaskSucceeded`` whose output names the approval. The service refuses a second answer
    and an answer after the task timed out alike; the history tells them apart. Raises
    :class:`HistoryDenied` if this caller may not read it."""
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn, reverseOrder=True)
    try:
        for page in pages:
            for event in page["events"]:
                output = event.get("taskSucceededEventDetails", {}).get("output")
                if output and json.loads(output).get("approval_id") == approval_id:
                    return True
    except ClientError as error:
        if error.response.get("Error", {}).get("Code", "") in HISTORY_DENIED:
            raise HistoryDenied(execution_arn) from None
        raise
    return False


def succeed(sfn: SFNClient, task_token: str, decision: Decision) -> None:
    _call(sfn.send_task_success, taskToken=task_token, output=decision.model_dump_json(exclude_none=True))


def fail(sfn: SFNClient, task_token: str, error: str, cause: str) -> None:
    _call(
        sfn.send_task_failure,
        taskToken=task_token,
        error=error[:ERROR_LIMIT],
        cause=cause[:CAUSE_LIMIT],
    )
