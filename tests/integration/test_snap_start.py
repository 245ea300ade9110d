"""With SnapStart the approval API makes at import what its first request would make, so that
the snapshot holds it; without SnapStart the import stays as light as it was.

Each case imports the handler in a fresh interpreter, with the environment Lambda gives it.
``snapshot_restore_py`` exists only in Lambda's Python runtimes: a stand-in records the hooks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

RECORDING_HOOKS = """
after_restore = []


def register_after_restore(function, *args, **kwargs):
    after_restore.append(f"{function.__module__}.{function.__qualname__}")
    return function
"""

REPORT = """
import json, sys
import approval_api.handler
from approval_api import pages
from approvals import runtime

services = list(runtime._services.values())
made = pages._environment.cache_info().currsize  # before asking for it, which would make it
hooks = sys.modules.get("snapshot_restore_py")
print(json.dumps({
    "services": len(services),
    "keys_read": any(s.keys._ring is not None for s in services),
    "templates": sorted(name for _, name in pages._environment().cache.keys()) if made else [],
    "hooks": hooks.after_restore if hooks else None,
}))
"""


def _import_handler(tmp_path: Path, initialization_type: str) -> dict[str, object]:
    (tmp_path / "snapshot_restore_py.py").write_text(RECORDING_HOOKS)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
        "AWS_DEFAULT_REGION": "us-east-1",
        "APPROVALS_TABLE": "approvals",
        "APPROVALS_SIGNING_SECRET": "arn:aws:secretsmanager:us-east-1:123456789012:secret:key",
    }
    done = subprocess.run(
        [sys.executable, "-c", REPORT],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return report


TEMPLATES = Path(__file__).resolve().parents[2] / "approval_api" / "templates"


def test_with_snap_start_the_clients_and_templates_are_made_before_the_snapshot(tmp_path: Path) -> None:
    report = _import_handler(tmp_path, "snap-start")
    assert report["services"] == 1
    # Every page's template: the approval's, the inbox's and its bulk votes', the messages'.
    assert report["templates"] == sorted(p.name for p in TEMPLATES.glob("*.html"))
    # Read after the restore, at the first use: a snapshot must not keep a retired key.
    assert report["keys_read"] is False
    assert report["hooks"] == ["random.Random.seed"]  # random.seed: each restored environment reseeds


@pytest.mark.parametrize("initialization_type", ["on-demand", "provisioned-concurrency"])
def test_without_snap_start_the_import_makes_nothing(tmp_path: Path, initialization_type: str) -> None:
    report = _import_handler(tmp_path, initialization_type)
    assert report == {"services": 0, "keys_read": False, "templates": [], "hooks": None}
