"""The load benchmark at a small size, for correctness only: every request emailed once,
every click answered 200, every execution ending where its vote says. It runs as the
benchmark does, in a process of its own (its local stack owns that process's moto)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("local-stack")


def test_thirty_requests_nothing_lost_nothing_doubled(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.load", "--requests", "30", "--map-size", "10", "--clickers", "8"],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "BENCH_RESULTS": str(tmp_path / "results.json"),
        },
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "result           OK: nothing lost, nothing doubled" in result.stdout
    assert "outcomes         {'approved': 20, 'rejected': 10}" in result.stdout
    assert (tmp_path / "results.json").exists()  # the bench's figures, kept out of bench/
