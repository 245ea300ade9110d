"""approvals_cdk/app.py with every cdk-nag acknowledgement taken out: its synth must fail on exactly
the findings the real app acknowledges (tests/infra/test_checks.py). Run like the CDK CLI
runs an app: CDK_OUTDIR and CDK_CONTEXT_JSON in the environment."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from constructs import IConstruct

from approvals_cdk import app, shared


def _ignore(scope: IConstruct | None, rule: str, reason: str) -> None:
    """Acknowledge nothing."""


if __name__ == "__main__":
    shared.acknowledge = _ignore
    sys.exit(app.main())
