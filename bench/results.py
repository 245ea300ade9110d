"""``bench/results.json``: every benchmark's latest figures, with when and where they were taken."""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from approvals.local.environments import DEFAULT_CONCURRENCY

DEFAULT_RESULTS = Path(__file__).with_name("results.json")


def _results_file() -> Path:
    # A test that runs a benchmark for correctness points this elsewhere, so a small run
    # never overwrites the figures of a real one.
    return Path(os.environ.get("BENCH_RESULTS", DEFAULT_RESULTS))


def record(benchmark: str, figures: dict[str, Any]) -> None:
    """Replace one benchmark's entry, keeping the others'."""
    file = _results_file()
    results = json.loads(file.read_text()) if file.exists() else {}
    results[benchmark] = {
        "taken": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "figures": figures,
    }
    file.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def name(benchmark: str, concurrency: int) -> str:
    """A local stack benchmark's entry: one per environments setting, to compare them."""
    return f"{benchmark}_concurrency_{concurrency}"


def add_concurrency_option(parser: argparse.ArgumentParser) -> None:
    """``--concurrency``: the local stack's environments per function, as ``name`` records it."""
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="environments per function (0: in process)",
    )
