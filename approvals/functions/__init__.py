"""Where the Lambda functions' own packages are, for what runs them outside Lambda (the local
stack) or packages them (the CDK asset).

Lambda imports them by their top-level names (``worker.handler.lambda_handler``): an asset's
root is on the function's path. Those names are generic, so an installed distribution does
not put them on a team's path: it carries them here, inside this package, and only what puts
``ROOT`` on its own path imports them by those names. In a source tree (a clone, or an
editable install) they are at the repository's root.
"""

from __future__ import annotations

from pathlib import Path

PACKAGES = ("worker", "approval_api")

_HERE = Path(__file__).resolve().parent
_REPOSITORY = _HERE.parents[1]
IN_SOURCE_TREE = (_REPOSITORY / "pyproject.toml").is_file()
# The directory that holds PACKAGES.
ROOT = _REPOSITORY if IN_SOURCE_TREE else _HERE
