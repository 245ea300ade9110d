"""The product's CDK app: `npx cdk synth` / `npx cdk deploy -c approvers=a@x,b@y` from the
repository root.

cdk.json runs this module (`python -m approvals_cdk.app`) with the project's virtual
environment. Context parameters are described in approvals_cdk/config.py and the README's
"Deploy to AWS" section. cdk-nag's AWS Solutions pack, when installed (the `nag` extra),
checks the app on every synth: an unacknowledged finding fails it.
"""

from __future__ import annotations

import sys

import aws_cdk as cdk

from approvals_cdk.config import ConfigError, from_context
from approvals_cdk.stack import ApprovalsStack

try:
    from cdk_nag import AwsSolutionsChecks
except ModuleNotFoundError:  # optional: `pip install ".[cdk,nag]"` for the checks
    AwsSolutionsChecks = None  # type: ignore[assignment,misc]


def main() -> int:
    app = cdk.App()
    try:
        config = from_context(app.node.get_all_context())
    except ConfigError as error:
        # One readable message and no traceback: this is the deployer's input, not a bug.
        print(f"\nCannot synthesize the approvals stack:\n{error}\n", file=sys.stderr)
        return 2
    ApprovalsStack(app, "ApprovalsStack", config)
    # The AWS Solutions checks fail the synth on any finding not acknowledged in the code;
    # the acknowledgements and their reasons are also written into the template's metadata,
    # where a reviewer (and tests/infra) can read them.
    if AwsSolutionsChecks is None:
        print("cdk-nag is not installed: synthesizing without its checks", file=sys.stderr)
    else:
        cdk.Validations.of(app).add_plugins(
            AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True)
        )
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
