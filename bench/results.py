"""``bench/results.json``: every benchmark's latest figures, with when and where they were taken."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.json")


def record(benchmark: str, figures: dict[str, Any]) -> None:
    """Replace one benchmark's entry, keeping the others'."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[benchmark] = {
        "taken": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "figures": figures,
    }
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def name(benchmark: str, concurrency: int) -> str:
    """A local stack benchmark's entry: one per environments setting, to compare them."""
    return f"{benchmark}_concurrency_{concurrency}"
