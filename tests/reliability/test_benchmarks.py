"""Every benchmark of `make bench` at a tiny size, for correctness only: a benchmark that no
longer runs (an API it drives changed under it) fails here rather than on the next
`make bench`. Nothing about its figures is asserted but that it writes them; each runs in a
process of its own, as `make bench` runs it, writing to a results file of the test's.

The processes are forked from one that has imported what every benchmark imports (moto,
boto3, the product), which took each of them about 1.5 CPU-seconds before its first step."""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
from collections.abc import Iterator
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
# Reads one benchmark a line (module, arguments, results file, log file), runs it in a forked
# child as `python -m` would, and answers its exit status. Only imports happen before the
# fork: this process starts no thread.
RUNNER = """
import json, os, runpy, sys, traceback
import boto3, moto, approvals.local.stack, bench.results
for line in sys.stdin:
    module, arguments, results, log = json.loads(line)
    child = os.fork()
    if child == 0:
        output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.environ["BENCH_RESULTS"] = results
        sys.argv = [module, *arguments]
        status = 1
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as exit:
            status = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, waited = os.waitpid(child, 0)
    print(os.waitstatus_to_exitcode(waited), flush=True)
"""
RUN_TIMEOUT = 600

# Run at a small size, with every outcome checked, by tests/reliability/test_load_small.py.
CHECKED_ELSEWHERE = {"bench.load", "bench.fanout_output"}  # test_load_small, test_fanout_scale


def make_bench_modules() -> set[str]:
    """The modules the Makefile's `bench` target runs."""
    recipe = re.search(r"^bench:.*\n((?:\t.*\n)+)", MAKEFILE.read_text(), re.MULTILINE)
    assert recipe is not None, "the Makefile has no bench target"
    return set(re.findall(r"-m (bench\.\w+)", recipe.group(1)))


def test_every_benchmark_of_make_bench_is_run_by_a_test() -> None:
    assert make_bench_modules() == TINY.keys() | CHECKED_ELSEWHERE


@pytest.fixture(scope="module")
def runner() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", RUNNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING"},
    )
    yield process
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=60)


def run_benchmark(runner: subprocess.Popen[str], module: str, results: Path, log: Path) -> int:
    assert runner.stdin is not None
    assert runner.stdout is not None
    runner.stdin.write(json.dumps([module, TINY[module], str(results), str(log)]) + "\n")
    runner.stdin.flush()
    with selectors.DefaultSelector() as waiting:
        waiting.register(runner.stdout, selectors.EVENT_READ)
        assert waiting.select(RUN_TIMEOUT), f"{module} still running after {RUN_TIMEOUT} s"
    return int(runner.stdout.readline())


@pytest.mark.parametrize("module", sorted(TINY))
def test_the_benchmark_runs_and_writes_its_figures(
    module: str, runner: subprocess.Popen[str], tmp_path: Path
) -> None:
    results, log = tmp_path / "results.json", tmp_path / "output.log"
    status = run_benchmark(runner, module, results, log)
    assert status == 0, log.read_text()[-4000:]
    ((benchmark, entry),) = json.loads(results.read_text()).items()
    assert benchmark.startswith(module.removeprefix("bench."))
    assert entry["figures"]
