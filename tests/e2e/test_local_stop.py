"""`approvals local` stops on Ctrl-C (SIGINT) whichever of its threads the signal reaches.

A signal sent to a process goes to any one of its threads that does not block it (Linux
prefers the main thread, not always; macOS picks any). Python runs its handler only in the
main thread, when that thread runs: one blocked for good on a lock never does. A full run
of the suite once saw a stack ignore the SIGINT that ends it, its main thread still
waiting (py-spy), until it was killed a minute later.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN

pytestmark = pytest.mark.e2e

# The command run in the stack's process: the signal is sent to a thread other than the main
# one, a moment after the state file says the stack runs (its handlers are in place by then).
INTERRUPTED_FROM_ANOTHER_THREAD = """
import signal, sys, threading, time
from pathlib import Path
from approvals import cli

def interrupt_from_this_thread():
    while not Path(".approvals/local.json").exists():
        time.sleep(0.1)
    time.sleep(1)  # the main thread waits for a signal by now
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

threading.Thread(target=interrupt_from_this_thread, daemon=True).start()
sys.exit(cli.main(["local", "--moto-port", "0", "--api-port", "0"]))
"""


def test_a_sigint_that_reaches_another_thread_stops_the_stack(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [str(BIN / "python"), "-c", INTERRUPTED_FROM_ANOTHER_THREAD],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        printed, _ = process.communicate(timeout=60)  # a start takes seconds; a stop, about 2
    except subprocess.TimeoutExpired:
        process.kill()
        printed, _ = process.communicate()
        pytest.fail(f"the stack ignored the SIGINT:\n{printed}")
    assert process.returncode == 0, printed
    assert printed.rstrip().endswith("Local stack stopped."), printed
    assert "Traceback" not in printed
