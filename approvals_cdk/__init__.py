"""The approval gate for AWS Step Functions, as CDK constructs.

``ApprovalService`` deploys the shared service (queue, worker, email topic, approval API,
table); its ``approval_step`` method gives any state machine of yours a chainable state that
waits for people's approval, an ``ApprovalTask`` (its keyword arguments typed as
``StepOptions``; ``ApprovalTask.json_path`` / ``.jsonata`` make one from a queue).
``ApprovalErrors`` names what that state can fail with.
"""

from importlib.metadata import version

from approvals_cdk.approval_service import ApprovalService, ApprovalServiceProps
from approvals_cdk.step import ApprovalErrors, ApprovalTask, StepOptions

__all__ = [
    "ApprovalErrors",
    "ApprovalService",
    "ApprovalServiceProps",
    "ApprovalTask",
    "StepOptions",
    "__version__",
]
__version__ = version("stepfunctions-approvals")
