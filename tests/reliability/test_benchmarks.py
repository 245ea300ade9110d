"""Every benchmark of `make bench` at a tiny size, for correctness only: a benchmark that no
longer runs (an API it drives changed under it) fails here rather than on the next
`make bench`. Nothing about its figures is asserted but that it writes them; each runs in a
process of its own, as `make bench` runs it, writing to a results file of the test's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("local-stack")

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"
# Each benchmark's options for its smallest meaningful run.
TINY = {
    "bench.cold_start": ["--runs", "1"],
    "bench.floor": ["--requests", "2"],
    "bench.profile_floor": ["--requests", "2"],
    "bench.worker_batch": ["--rounds", "1", "--size", "2"],
    "bench.calls": ["--requests", "2"],
    "bench.bulk_vote": ["--requests", "2"],
    "bench.inbox_page": ["--entries", "60"],
    "bench.digest": ["--items", "12"],
    "bench.fanout_scale": ["--items", "3"],
    "bench.fanout_local": ["--items", "3", "--concurrency", "0"],
}
# Run at a small size, with every outcome checked, by tests/reliability/test_load_small.py.
CHECKED_ELSEWHERE = {"bench.load", "bench.fanout_output"}  # test_load_small, test_fanout_scale


def make_bench_modules() -> set[str]:
    """The modules the Makefile's `bench` target runs."""
    recipe = re.search(r"^bench:.*\n((?:\t.*\n)+)", MAKEFILE.read_text(), re.MULTILINE)
    assert recipe is not None, "the Makefile has no bench target"
    return set(re.findall(r"-m (bench\.\w+)", recipe.group(1)))


def test_every_benchmark_of_make_bench_is_run_by_a_test() -> None:
    assert make_bench_modules() == TINY.keys() | CHECKED_ELSEWHERE


@pytest.mark.parametrize("module", sorted(TINY))
def test_the_benchmark_runs_and_writes_its_figures(module: str, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", module, *TINY[module]],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING", "BENCH_RESULTS": str(results)},
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    ((benchmark, entry),) = json.loads(results.read_text()).items()
    assert benchmark.startswith(module.removeprefix("bench."))
    assert entry["figures"]
