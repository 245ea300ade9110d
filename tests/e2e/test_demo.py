"""`approvals demo` as a user runs it (`make demo`): the whole flow passes, and what it prints
shows the decision carrying the approvers' answers, the requester told, a reassignment, and a
request decided signed in at the local OpenID Connect provider."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN

pytestmark = pytest.mark.e2e


def test_the_demo_shows_answers_a_reassignment_the_requester_told_and_a_sign_in(
    tmp_path: Path,
) -> None:
    demo = subprocess.run(
        [str(BIN / "approvals"), "demo"], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    out = demo.stdout
    assert "Demo passed" in out
    # The deploy's decision, as the workflow got it, carries each vote's answers.
    assert "vote: alice@example.com approved “Looks good”, answers environment=production" in out
    assert "vote: bob@example.com approved, answers environment=production, replicas=4" in out
    assert "'data': {'environment': 'production'}" in out
    # Its requester, in the directory, is told the outcome with the votes and answers.
    assert "✉ to the requester ci@example.com: [Approved] Deploy v2.4 to production" in out
    assert "│ Your request was approved:" in out
    assert "│     environment: production" in out
    # Carol is away: her place goes to the stand-in, her old link is closed.
    assert "→ GET Carol's old link: 410" in out
    assert "reassigned: carol@example.com → judy@example.com by oncall@example.com" in out
    # A request that asks for sign-in: the link alone shows nothing; kim signs in, then votes,
    # and the decision says how the vote was proven.
    assert "→ GET the link: 401, a page that asks to sign in first" in out
    assert "→ signed in as kim@example.com at http://localhost:" in out
    assert "'proof': 'sign-in', 'issuer': 'http://localhost:" in out
