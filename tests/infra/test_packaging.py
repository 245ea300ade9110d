"""The Lambda asset build: what goes in, and when the cache is reused."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from approvals_cdk import packaging

pytestmark = pytest.mark.xdist_group("infra")


def test_requirements_leave_out_what_lambda_provides_and_pin_what_was_tested() -> None:
    pinned = packaging.requirements()
    names = {line.split("==")[0].lower() for line in pinned}
    assert names == {"pydantic", "aws-lambda-powertools", "jinja2", "joserfc"}
    for line in pinned:
        name, version = line.split("==")
        assert importlib.metadata.version(name) == version


def test_asset_holds_the_handlers_the_domain_and_the_page_templates_but_not_the_local_stack() -> None:
    files = {path.as_posix() for path in packaging.project_files()}
    assert "approvals/functions/__init__.py" not in files
    assert {"worker/handler.py", "approval_api/handler.py", "approvals/models.py"} <= files
    assert any(name.startswith("approval_api/templates/") for name in files)
    assert not any(name.startswith("approvals/local/") for name in files)
    assert not any("__pycache__" in name for name in files)


def _project(root: Path) -> dict[str, Path]:
    for package in packaging.PROJECT_PACKAGES:
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text(f"# {package}\n")
    (root / "approvals" / "local").mkdir()
    (root / "approvals" / "local" / "stack.py").write_text("import moto\n")
    return {package: root / package for package in packaging.PROJECT_PACKAGES}


def test_cache_key_follows_the_code_and_nothing_else(tmp_path: Path) -> None:
    packages = _project(tmp_path)
    target = packaging.LambdaTarget()
    pinned = ["pydantic==2.0"]
    key = packaging.cache_key(target, pinned, packages)
    assert packaging.cache_key(target, pinned, packages) == key
    (tmp_path / "approvals" / "local" / "stack.py").write_text("import moto  # changed\n")
    assert packaging.cache_key(target, pinned, packages) == key  # never deployed: no rebuild
    (tmp_path / "worker" / "__init__.py").write_text("# changed\n")
    changed = packaging.cache_key(target, pinned, packages)
    assert changed != key
    assert packaging.cache_key(target, ["pydantic==2.1"], packages) != changed
    assert packaging.cache_key(packaging.LambdaTarget(architecture="x86_64"), pinned, packages) != changed


def test_an_installed_distribution_s_copy_of_the_functions_goes_to_the_asset_s_root(tmp_path: Path) -> None:
    """Installed, the functions' packages are inside approvals (approvals.functions): the
    asset has them at its root, once, as a build from the tree does."""
    installed = tmp_path / "site-packages" / "approvals"
    for package in ("", "functions", "functions/worker", "functions/approval_api"):
        (installed / package).mkdir(parents=True, exist_ok=True)
        (installed / package / "__init__.py").write_text("")
    packages = {
        "approvals": installed,
        "worker": installed / "functions" / "worker",
        "approval_api": installed / "functions" / "approval_api",
    }
    assert sorted(path.as_posix() for path in packaging.project_files(packages)) == [
        "approval_api/__init__.py",
        "approvals/__init__.py",
        "worker/__init__.py",
    ]


def test_a_built_asset_is_reused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    key = packaging.cache_key(packaging.LambdaTarget(), packaging.requirements())
    (cache / key).mkdir(parents=True)  # as a previous build left it
    asset = packaging.build(cache_root=cache)
    assert asset == packaging.Asset(cache / key, packaging.content_hash(cache / key))


def test_the_asset_hash_follows_what_was_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two builds from the same inputs can differ: an indirect dependency released in between
    (only the direct ones are pinned), or bytecode from another interpreter. CDK deploys an
    asset only when its hash changes, so the hash is the built directory's, not the inputs'."""
    release = ["1.0"]

    def fetched(target: packaging.LambdaTarget, pinned: list[str], into: Path) -> None:
        into.mkdir(parents=True, exist_ok=True)
        (into / "indirect.py").write_text(f"VERSION = {release[0]!r}\n")

    monkeypatch.setattr(packaging, "_pip_install", fetched)
    first = packaging.build(cache_root=tmp_path / "one")
    release[0] = "1.1"
    second = packaging.build(cache_root=tmp_path / "two")
    assert first.path.name == second.path.name  # the same inputs
    assert first.key != second.key
    assert packaging.build(cache_root=tmp_path / "one") == first  # reused, and the same hash


def test_an_environment_that_runs_the_target_builds_without_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a Linux machine with the functions' Python and architecture, the dependencies are
    copied from the distributions installed here (what the tests ran against): no registry,
    no network, no pip."""

    def no_pip(*_: object) -> None:
        raise AssertionError("pip was run")

    monkeypatch.setattr(packaging, "_pip_install", no_pip)
    # Without sign-in's joserfc: its cryptography is installed here from a wheel for a newer
    # glibc (manylinux_2_34) than Lambda's, which does not fit the runtime, so pip fetches
    # one that does (the build's other path).
    declared = ["boto3", "pydantic", "aws-lambda-powertools", "jinja2"]
    monkeypatch.setattr(packaging, "_declared_dependencies", lambda _: declared)
    here = packaging.LambdaTarget(
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}", architecture=platform.machine()
    )
    asset = packaging.build(here, cache_root=tmp_path)
    top = {path.name for path in asset.path.iterdir()}
    assert {"pydantic", "pydantic_core", "aws_lambda_powertools", "jinja2", "markupsafe", "worker"} <= top
    assert not {"boto3", "botocore", "bin"} & top  # the runtime's own; no console scripts
    assert list(asset.path.glob("pydantic_core/*.so"))  # the native extension, as installed here


PYPROJECT = tomllib.loads((packaging.PROJECT_ROOT / "pyproject.toml").read_text())["project"]


def test_the_distribution_ships_its_license_and_is_classified() -> None:
    """pyproject.toml's license-files: the wheel carries LICENSE (tests/infra/test_distribution.py)."""
    license_text = (packaging.PROJECT_ROOT / "LICENSE").read_text()
    assert license_text.split()[:3] == ["Apache", "License", "Version"]
    assert PYPROJECT["license"] == "Apache-2.0"  # PEP 639: an SPDX expression
    assert PYPROJECT["license-files"] == ["LICENSE"]
    assert "Framework :: AWS CDK :: 2" in PYPROJECT["classifiers"]


def test_the_cdk_extra_leaves_cdk_nag_to_those_who_want_it() -> None:
    """Teams on cdk-nag v2 (or none) can install the construct: the checks are opt-in, and
    the product's own app runs them when cdk-nag is installed."""
    extras = PYPROJECT["optional-dependencies"]
    assert not [r for r in extras["cdk"] if r.startswith("cdk-nag")]
    assert [r for r in extras["nag"] if r.startswith("cdk-nag")]
    assert "stepfunctions-approvals[nag]" in " ".join(extras["dev"])  # the tests run the checks


def test_syntheses_at_once_build_the_asset_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several `cdk synth` runs starting together (a fresh clone's test run starts six) wait
    for the first one's build and reuse it, rather than each fetching and copying it."""
    fetches: list[str] = []
    first_fetch_started, release_first = threading.Event(), threading.Event()

    def fetched(target: packaging.LambdaTarget, pinned: list[str], into: Path) -> None:
        fetches.append(into.name)
        first_fetch_started.set()
        release_first.wait(timeout=30)
        into.mkdir(parents=True, exist_ok=True)
        (into / "dependency.py").write_text("")

    monkeypatch.setattr(packaging, "_install_from_environment", lambda *_: False)
    monkeypatch.setattr(packaging, "_pip_install", fetched)
    with ThreadPoolExecutor(max_workers=3) as pool:
        builds = [pool.submit(packaging.build, cache_root=tmp_path)]
        assert first_fetch_started.wait(timeout=30)
        builds += [pool.submit(packaging.build, cache_root=tmp_path) for _ in range(2)]
        time.sleep(0.2)  # the later builds reach the cache meanwhile (a pause, not a timing)
        release_first.set()
        assets = {build.result(timeout=60) for build in builds}
    assert len(fetches) == 1
    assert len(assets) == 1
