"""The distribution as a team installs it: a wheel built from this tree and installed on its
own, with neither the repository nor its editable install on the path.

Installing it puts only the project's own top-level names on a team's path (a team's own
`worker.py` neither shadows nor is shadowed by the functions' packages), yet the Lambda
asset a team's app synthesizes and the local stack both find the functions' code it carries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from approvals_cdk import packaging

pytestmark = pytest.mark.xdist_group("infra")

ROOT = Path(__file__).resolve().parents[2]
# What a build reads from the tree: its configuration, the files the metadata names, the packages.
BUILD_INPUTS = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "approvals",
    "approvals_cdk",
    "worker",
    "approval_api",
)
PACKAGES = ("approvals", "approvals_cdk")
# Where the wheel carries the functions' packages: inside the project's own.
FUNCTIONS = {"worker": "approvals/functions/worker", "approval_api": "approvals/functions/approval_api"}


@dataclass(frozen=True)
class Installed:
    wheel: Path
    site: Path  # the directory pip installed the wheel into


def _run(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Built from a copy of the tree, so the build's own files (build/, *.egg-info) stay out of it."""
    work = tmp_path_factory.mktemp("distribution")
    source = work / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work), str(source)]
    )
    (wheel,) = work.glob("*.whl")
    site = work / "site"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheel),
        ]
    )
    return Installed(wheel, site)


def _environment(installed: Installed, **extra: str) -> dict[str, str]:
    """For a Python run with -S, which sees the installed copy and its dependencies and
    nothing of the repository: -S skips site-packages' .pth files, the editable install's
    among them, and the tree's own PYTHONPATH is replaced."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(installed.site), sysconfig.get_paths()["purelib"]]),
        **extra,
    }


def _wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if not name.split("/", 1)[0].endswith(".dist-info")}


def test_the_wheel_puts_only_the_project_s_own_names_on_the_path(installed: Installed) -> None:
    assert {name.split("/", 1)[0] for name in _wheel_files(installed.wheel)} == set(PACKAGES)


def test_the_wheel_ships_its_license(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as archive:
        names = archive.namelist()
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        (license_file,) = [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
        assert "License-Expression: Apache-2.0" in archive.read(metadata).decode().splitlines()
        assert archive.read(license_file) == (ROOT / "LICENSE").read_bytes()


def test_the_wheel_carries_every_file_of_the_project_s_packages(installed: Installed) -> None:
    """The functions' packages inside the project's own, the rest where it is in the tree."""
    expected = set()
    for package in (*PACKAGES, *FUNCTIONS):
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                relative = path.relative_to(ROOT / package).as_posix()
                expected.add(f"{FUNCTIONS.get(package, package)}/{relative}")
    assert _wheel_files(installed.wheel) == expected, (
        "a new package or data directory? list it under [tool.setuptools] in pyproject.toml"
    )


def test_an_install_alone_does_not_import_the_functions_by_their_names(
    installed: Installed, tmp_path: Path
) -> None:
    """Nothing but what puts the functions' root on its own path (an asset, the local stack)."""
    check = (
        "import importlib.util;"
        " print([importlib.util.find_spec(name) is None for name in ('worker', 'approval_api')])"
    )
    done = _run([sys.executable, "-S", "-c", check], cwd=tmp_path, env=_environment(installed))
    assert done.stdout.strip() == "[True, True]"


def test_the_local_stack_of_an_install_runs_the_functions_it_carries(
    installed: Installed, tmp_path: Path
) -> None:
    """As the local stack's environments import a function: by the handler's name."""
    (tmp_path / "worker.py").write_text("raise SystemExit('a team’s own worker.py was imported')\n")
    check = (
        "import json, sys; from approvals.local import environments;"
        " handlers = ['worker.handler.lambda_handler', 'approval_api.handler.lambda_handler'];"
        " [environments.entry_point(h, None) for h in handlers];"
        " print(json.dumps([sys.modules[h.rsplit('.', 1)[0]].__file__ for h in handlers]))"
    )
    done = _run([sys.executable, "-S", "-c", check], cwd=tmp_path, env=_environment(installed))
    files = [Path(file) for file in json.loads(done.stdout)]
    assert files == [
        installed.site / FUNCTIONS["worker"] / "handler.py",
        installed.site / FUNCTIONS["approval_api"] / "handler.py",
    ]


def test_an_install_of_the_cdk_extra_synthesizes_with_this_tree_s_functions(
    installed: Installed, tmp_path: Path
) -> None:
    """The product's app from the install alone, and without cdk-nag (`[cdk]` does not bring
    it: the app says it skips the checks). Each function's asset holds the project's files
    exactly as a build from the tree does (which tests/infra/test_assets.py imports), the
    functions' packages at its root, where Lambda imports them by the handler's name."""
    script = (
        "import runpy, sys; sys.modules['cdk_nag'] = None;"  # as if not installed
        " runpy.run_module('approvals_cdk.app', run_name='__main__')"
    )
    outdir = tmp_path / "cdk.out"
    environment = _environment(
        installed,
        CDK_OUTDIR=str(outdir),
        CDK_CONTEXT_JSON=json.dumps({"approvers": "alice@example.com"}),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    done = _run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=environment)
    assert "cdk-nag is not installed: synthesizing without its checks" in done.stderr
    template = json.loads((outdir / "ApprovalsStack.template.json").read_text())
    files = json.loads((outdir / "ApprovalsStack.assets.json").read_text())["files"]
    tree = {relative: path.read_bytes() for relative, path in packaging.project_files().items()}
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert functions
    for function in functions:
        properties = function["Properties"]
        asset = outdir / files[properties["Code"]["S3Key"].removesuffix(".zip")]["source"]["path"]
        built = {
            path.relative_to(asset): path.read_bytes()
            for package in ("approvals", *FUNCTIONS)
            for path in (asset / package).rglob("*")
            if path.is_file() and path.suffix != ".pyc"
        }
        assert built == tree
        module = properties["Handler"].rsplit(".", 1)[0]
        assert (asset / f"{module.replace('.', '/')}.py").is_file()
