"""A second `approvals local` beside a running one, on a port the first holds: it stops at
once with one line that names the port and what to do, and leaves the first one running."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, RunningStack, running_local_stack

pytestmark = pytest.mark.e2e
# Far more than a refusal needs (the command's own start-up); a second stack that waits
# for the port instead would be stopped here and fail the test.
BOUND = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack on fixed ports, as `approvals local` runs by default."""
    ports = ["--moto-port", str(free_port()), "--api-port", str(free_port())]
    with running_local_stack(tmp_path_factory.mktemp("first"), *ports) as stack:
        yield stack


def second(first: RunningStack, workdir: Path, *ports: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "approvals"), "local", *ports],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=first.env,
        timeout=BOUND,
        check=False,
    )


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_a_second_stack_on_the_aws_endpoints_port_stops_at_once_and_says_what_to_do(
    first: RunningStack, tmp_path: Path
) -> None:
    port = port_of(first.info.endpoint_url)
    result = second(first, tmp_path, "--moto-port", str(port), "--api-port", "0")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"approvals: port {port} (the AWS endpoint) is in use, perhaps by another `approvals local`:"
        " stop that one, or pass --moto-port with another port (0: any free port)\n"
    )
    assert not (tmp_path / ".approvals").exists()
    assert first.process.poll() is None


def test_a_second_stack_on_the_apis_port_stops_at_once_and_says_what_to_do(
    first: RunningStack, tmp_path: Path
) -> None:
    port = port_of(first.info.api_url)
    result = second(first, tmp_path, "--moto-port", "0", "--api-port", str(port))
    assert result.returncode == 2
    assert result.stderr == (
        f"approvals: port {port} (the approval API) is in use, perhaps by another `approvals local`:"
        " stop that one, or pass --api-port with another port (0: any free port)\n"
    )
    assert first.process.poll() is None
