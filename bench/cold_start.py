"""Cold-start benchmark: how long each Lambda handler module takes to import from the
functions' asset, next to ``import boto3`` alone (the design's budget: close to it).

The asset is the one ``cdk synth`` deploys (approvals_cdk/packaging.py: the project's
packages and pinned dependencies, precompiled), built for this interpreter and machine;
each import runs as Lambda runs it, in a fresh interpreter that sees only the standard
library, the asset and the runtime's own boto3 (``-I -S``). One more figure adds the
approval API's first request to its import: what is left for later is not gone. Several
interleaved rounds; the figures are medians.

    .venv/bin/python -m bench.cold_start
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from approvals.local.http import proxy_event
from approvals_cdk import packaging
from bench.results import record

MODULES = {
    "boto3 alone": "boto3",
    "worker": "worker.handler",
    "dead letter": "worker.dead_letter",
    "sweeper": "worker.sweeper",
    "execution ended": "worker.execution_ended",
    "approval API": "approval_api.handler",
}
# What the approver waits for on a cold click is the import and then the first request:
# a page for an unknown address renders a page (Jinja) through Powertools' resolver and
# needs no AWS service, so it can run here without one.
FIRST_PAGE = "approval API + first page"
RUNS = 7
IMPORT = """
import sys, time
sys.path[:0] = sys.argv[1:3]
t = time.perf_counter()
import {module}
{then}
print(time.perf_counter() - t)
"""
THEN_FIRST_PAGE = """
import json

class Context:
    function_name = "approval-api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:approval-api"
    aws_request_id = "bench"

approval_api.handler.lambda_handler(json.loads(sys.argv[3]), Context())
"""


def import_seconds(module: str, asset: Path, runtime_site: Path, then: str = "") -> float:
    code = IMPORT.format(module=module, then=then)
    event = proxy_event("GET", "/prod/nothing/here", {"accept": "text/html"}, b"", "203.0.113.9")
    env = {
        "POWERTOOLS_SERVICE_NAME": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-I", "-S", "-c", code, str(asset), str(runtime_site), json.dumps(event)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)  # noqa: S603
    return float(out.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="interleaved rounds (the figures are medians)")
    args = parser.parse_args()
    this_machine = packaging.LambdaTarget(
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}", architecture=platform.machine()
    )
    asset = packaging.build(this_machine).path
    samples: dict[str, list[float]] = {name: [] for name in (*MODULES, FIRST_PAGE)}
    with tempfile.TemporaryDirectory() as scratch:
        runtime_site = packaging.runtime_site(Path(scratch) / "runtime")
        # Interleaved rounds, so that a busy moment of the machine weighs on every module alike.
        for _ in range(args.runs):
            for name, module in MODULES.items():
                samples[name].append(import_seconds(module, asset, runtime_site))
            first_page = import_seconds("approval_api.handler", asset, runtime_site, THEN_FIRST_PAGE)
            samples[FIRST_PAGE].append(first_page)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    baseline = medians["boto3 alone"]
    print(f"{'module':<26} {'import (median of ' + str(args.runs) + ')':>22} {'vs boto3':>9}")
    for name, seconds in medians.items():
        print(f"{name:<26} {seconds * 1000:>19.0f} ms {seconds / baseline:>8.2f}x")
    record(
        "cold_start",
        {name: {"ms": round(s * 1000), "vs_boto3": round(s / baseline, 2)} for name, s in medians.items()},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
