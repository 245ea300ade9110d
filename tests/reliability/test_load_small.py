"""The load benchmark at a small size, for correctness only: every request emailed once,
every click answered 200, every execution ending where its vote says."""

from __future__ import annotations

import pytest

from bench.load import run

pytestmark = pytest.mark.xdist_group("local-stack")


def test_fifty_requests_nothing_lost_nothing_doubled() -> None:
    report = run(50, map_size=10, clickers=8, say=lambda _: None)
    assert report.problems == []
    assert sum(report.outcomes.values()) == 50
    assert report.outcomes == {"approved": 33, "rejected": 17}
