"""The approval gate for AWS Step Functions, as CDK constructs.

``ApprovalService`` deploys the shared service (queue, worker, email topic, approval API,
table); its ``approval_step`` method gives any state machine of yours a chainable state that
waits for people's approval, an ``ApprovalTask`` (its keyword arguments typed as
``StepOptions``; ``ApprovalTask.json_path`` / ``.jsonata`` make one from a queue).
``ApprovalErrors`` names what that state can fail with. ``ApprovalService.from_attributes``
gives a service deployed elsewhere (an ``IApprovalService``) for the same step;
``approvals_cdk.outputs`` exports what it takes, and ``ForwardExecutionEnds`` sends another
account's executions' ends to it.
"""

from importlib.metadata import version

from approvals_cdk.approval_service import ApprovalService, ApprovalServiceProps
from approvals_cdk.interface import IApprovalService
from approvals_cdk.sharing import ForwardExecutionEnds, WatchExecutions
from approvals_cdk.step import ApprovalErrors, ApprovalTask, StepOptions

__all__ = [
    "ApprovalErrors",
    "ApprovalService",
    "ApprovalServiceProps",
    "ApprovalTask",
    "ForwardExecutionEnds",
    "IApprovalService",
    "StepOptions",
    "WatchExecutions",
    "__version__",
]
__version__ = version("stepfunctions-approvals")
