"""Cold-start benchmark: how long each Lambda handler module takes to import, next to
``import boto3`` alone (the design's budget: close to it). Each import runs in a fresh
interpreter, several times; the figures are medians.

    .venv/bin/python -m bench.cold_start
"""

from __future__ import annotations

import statistics
import subprocess
import sys

from bench.results import record

MODULES = {
    "boto3 alone": "boto3",
    "worker": "worker.handler",
    "dead letter": "worker.dead_letter",
    "sweeper": "worker.sweeper",
    "execution ended": "worker.execution_ended",
    "approval API": "approval_api.handler",
}
RUNS = 7


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {"POWERTOOLS_SERVICE_NAME": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)  # noqa: S603
    return float(out.stdout.strip())


def main() -> int:
    # Interleaved rounds, so that a busy moment of the machine weighs on every module alike.
    samples: dict[str, list[float]] = {name: [] for name in MODULES}
    for _ in range(RUNS):
        for name, module in MODULES.items():
            samples[name].append(import_seconds(module))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    baseline = medians["boto3 alone"]
    print(f"{'module':<16} {'import (median of ' + str(RUNS) + ')':>22} {'vs boto3':>9}")
    for name, seconds in medians.items():
        print(f"{name:<16} {seconds * 1000:>19.0f} ms {seconds / baseline:>8.2f}x")
    record(
        "cold_start",
        {name: {"ms": round(s * 1000), "vs_boto3": round(s / baseline, 2)} for name, s in medians.items()},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
