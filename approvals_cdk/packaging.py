"""The Lambda functions' code: one asset directory, built without Docker.

Dependencies come from PyPI as wheels built for the function's platform (`pip install
--platform manylinux2014_<arch> --only-binary=:all: --python-version X.Y --implementation cp
--target DIR`), never compiled on this machine, so the directory is what Lambda needs
whatever machine runs `cdk synth`. The project's own packages are copied beside them: the
domain, and the functions' packages at the asset's root, where Lambda imports them by the
handler's name (``worker.handler.lambda_handler``). They come from the tree, or from their
copy inside an installed distribution (``approvals.functions``), the same files either way.

The directory is cached under ``build/lambda/<key>``, where the key hashes everything that
goes into it (the target runtime, the pinned requirements, the project's source files), so
a repeated synth reuses it and any change builds a new one. The asset's hash, which decides
whether CDK deploys it again, is the hash of the built directory itself: the same inputs can
build different bytes (an indirect dependency released in between, bytecode of another
interpreter), and the functions must change whenever their code does.

Why Python 3.13 on arm64: Graviton functions cost about 20% less, and python3.13 runs on
Amazon Linux 2023 until mid-2029 (python3.11 is deprecated in mid-2027). pip fetches wheels
for any platform, so the asset is built here for 3.13 on aarch64; but this x86_64 build
machine cannot load aarch64 code, so what proves the asset is split: its native extensions
are checked by wheel tag, ELF machine and extension suffix against the runtime (version,
architecture, glibc 2.34), and each handler is imported, with a Python 3.13 interpreter,
from an asset built the same way from the same pins for this machine's architecture
(tests/infra/test_assets.py). On an arm64 machine with Python 3.13 the deployed asset
itself is imported. pip can fetch every wheel for python3.14 too, but no 3.14 interpreter
is at hand to import them, so 3.13 is the newest runtime proven here. The platform tags
asked of pip run from the runtime's glibc down to manylinux2014, so the newest wheel that
fits is taken.
"""

from __future__ import annotations

import compileall
import hashlib
import importlib.metadata
import importlib.util
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

import approvals
from approvals import functions

DISTRIBUTION = "stepfunctions-approvals"
# The repository (a clone, or an editable install), or site-packages when a team's CDK app
# installed this distribution.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_ROOT = (
    PROJECT_ROOT / "build" / "lambda"
    if functions.IN_SOURCE_TREE
    else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / DISTRIBUTION / "lambda"
)
KEEP_BUILDS = 3
FORMAT = "2"  # bump when the layout of a build changes, to invalidate the cache

LAMBDA_PYTHON_VERSION = "3.13"
LAMBDA_ARCHITECTURE = "aarch64"  # as `uname -m` names it; "x86_64" for x86_64 functions
# The glibc of each runtime's Amazon Linux: the newest manylinux a wheel may need.
# python3.11 runs on Amazon Linux 2 (glibc 2.26); python3.12+ on Amazon Linux 2023 (2.34).
RUNTIME_GLIBC = {"3.11": (2, 26), "3.12": (2, 34), "3.13": (2, 34), "3.14": (2, 34)}
OLDEST_MANYLINUX = 17  # manylinux2014, glibc 2.17: what pip calls the oldest wheels worth taking

# The project's packages that run in Lambda, by their name in the asset, and where they are.
PROJECT_PACKAGES = {
    "approvals": Path(approvals.__file__).resolve().parent,
    **{name: functions.ROOT / name for name in functions.PACKAGES},
}
# What inside them must not run there: the local stack needs moto and a server, and is never
# deployed; an installed distribution's copy of the functions' packages is at the asset's root.
EXCLUDED_PATHS = (Path("approvals") / "local", Path("approvals") / "functions")
# The Lambda Python runtime ships boto3 with these, so the asset leaves them out (and the
# asset test puts the interpreter's own copies on the path, as Lambda does).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
RUNTIME_PROVIDED_DISTRIBUTIONS = ("boto3", "botocore")
# What those need, also in the runtime: left out when the dependencies are gathered here.
_RUNTIME_PROVIDED_DEPENDENCIES = ("s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a requirement's distribution name


@dataclass(frozen=True)
class LambdaTarget:
    python_version: str = LAMBDA_PYTHON_VERSION
    architecture: str = LAMBDA_ARCHITECTURE

    @property
    def platforms(self) -> tuple[str, ...]:
        """What pip may take, newest first: every manylinux the runtime's glibc accepts
        (pip does not widen a --platform to older glibcs by itself)."""
        major, newest = RUNTIME_GLIBC[self.python_version]
        return (
            *(
                f"manylinux_{major}_{minor}_{self.architecture}"
                for minor in range(newest, OLDEST_MANYLINUX - 1, -1)
            ),
            f"manylinux2014_{self.architecture}",
        )

    @property
    def matches_this_interpreter(self) -> bool:
        return self.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"


def _declared_dependencies(pyproject: Path) -> list[str]:
    """The runtime dependencies: from pyproject.toml in a source tree, else from the installed
    distribution's metadata (leaving out the extras, which never run in Lambda)."""
    if pyproject.is_file():
        return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])
    return [line for line in importlib.metadata.requires(DISTRIBUTION) or [] if "extra ==" not in line]


def requirements(pyproject: Path = PROJECT_ROOT / "pyproject.toml") -> list[str]:
    """The project's runtime dependencies minus what Lambda provides, pinned to the versions
    installed here, so what is deployed is what the tests ran against."""
    declared = _declared_dependencies(pyproject)
    pinned = []
    for line in declared:
        name = _NAME.match(line)
        if name is None or name.group(0).lower() in RUNTIME_PROVIDED_DISTRIBUTIONS:
            continue
        try:
            pinned.append(f"{name.group(0)}=={importlib.metadata.version(name.group(0))}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(line)
    return sorted(pinned)


def runtime_site(directory: Path) -> Path:
    """What the Lambda Python runtime provides beside the asset (boto3 and what it needs),
    as links to this interpreter's copies: a path entry to import an asset as Lambda does."""
    directory.mkdir()
    for name in RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"{name} is not installed here")
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (directory / source.name).symlink_to(source)
    return directory


def _excluded(relative: Path) -> bool:
    return any(relative == path or path in relative.parents for path in EXCLUDED_PATHS)


def project_files(packages: Mapping[str, Path] = PROJECT_PACKAGES) -> dict[Path, Path]:
    """The project files that go into the asset: each one's path in the asset and where it is,
    in a stable order."""
    found: dict[Path, Path] = {}
    for package, directory in packages.items():
        for path in sorted(directory.rglob("*")):
            relative = Path(package, path.relative_to(directory))
            if not path.is_file() or _excluded(relative) or "__pycache__" in relative.parts:
                continue
            if path.suffix in (".pyc", ".pyo"):
                continue
            found[relative] = path
    return found


def cache_key(
    target: LambdaTarget, pinned: list[str], packages: Mapping[str, Path] = PROJECT_PACKAGES
) -> str:
    digest = hashlib.sha256()
    for part in (FORMAT, target.python_version, target.architecture, *pinned):
        digest.update(part.encode() + b"\0")
    for relative, path in project_files(packages).items():
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:32]


def _fits(tag: str, target: LambdaTarget) -> bool:
    """Whether a wheel tag (``interpreter-abi-platform``) runs on the target runtime."""
    interpreter, abi, platform = tag.split("-")
    cpython = f"cp{target.python_version.replace('.', '')}"
    return (
        interpreter in ("py3", cpython)
        and abi in ("none", "abi3", cpython)
        and (platform == "any" or platform in target.platforms)
    )


def _installed_closure(pinned: list[str]) -> list[importlib.metadata.Distribution] | None:
    """The installed distributions of the pinned requirements and of everything they need
    (their extras aside), or None if one is missing."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [line for line in pinned]
    while todo:
        line = todo.pop()
        name = _NAME.match(line)
        if name is None or "extra ==" in line:
            continue
        key = name.group(0).lower().replace("_", "-")
        if key in found or key in RUNTIME_PROVIDED_DISTRIBUTIONS or key in _RUNTIME_PROVIDED_DEPENDENCIES:
            continue
        try:
            found[key] = importlib.metadata.distribution(name.group(0))
        except importlib.metadata.PackageNotFoundError:
            if ";" in line:  # a marker (another Python or platform): not needed here
                continue
            return None
        todo += found[key].requires or []
    return list(found.values())


def _install_from_environment(target: LambdaTarget, pinned: list[str], into: Path) -> bool:
    """Copy the dependencies from this environment instead of fetching them, if it runs the
    target (Linux, same Python and architecture) and every installed wheel fits the runtime.
    No network, no pip: what was tested is what is deployed."""
    if not (
        sys.platform == "linux"
        and target.matches_this_interpreter
        and os.uname().machine == target.architecture
    ):
        return False
    distributions = _installed_closure(pinned)
    if distributions is None:
        return False
    for distribution in distributions:
        wheel = distribution.read_text("WHEEL") or ""
        tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
        if not any(_fits(tag, target) for tag in tags) or distribution.files is None:
            return False  # built on this machine, or for another platform: pip fetches it
    for distribution in distributions:
        for file in distribution.files or []:
            relative = Path(file)
            if ".." in relative.parts or "__pycache__" in relative.parts:
                continue  # console scripts (bin/), and bytecode: compiled afresh
            destination = into / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(str(distribution.locate_file(file))), destination)
    return True


def _pip_install(target: LambdaTarget, pinned: list[str], into: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "install",
        "--quiet", "--disable-pip-version-check", "--no-compile",
        "--target", str(into),
        *(option for platform in target.platforms for option in ("--platform", platform)),
        "--implementation", "cp",
        "--python-version", target.python_version,
        "--only-binary=:all:",
        *pinned,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(
            f"pip could not fetch the Lambda dependencies for {target.platforms[0]} / Python"
            f" {target.python_version}:\n{result.stderr.strip()}"
        )


def _copy_project(packages: Mapping[str, Path], into: Path) -> None:
    for relative, path in project_files(packages).items():
        destination = into / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)


def _precompile(into: Path) -> None:
    """Bytecode for every module, so a cold start spends no time compiling (Lambda's
    /var/task is read-only: without these, every cold start compiles everything it imports).

    Unchecked-hash pycs with the paths Lambda sees make the build reproducible: the same
    inputs give the same bytes, so the asset hash only changes when the code does.
    """
    compileall.compile_dir(
        into,
        quiet=2,
        workers=0,
        stripdir=str(into),
        prependdir="/var/task",
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )


def _prune(cache_root: Path, keep: Path) -> None:
    builds = sorted(
        (p for p in cache_root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in builds[KEEP_BUILDS:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
            old.with_name(f".{old.name}.lock").unlink(missing_ok=True)


def content_hash(directory: Path) -> str:
    """The hash of every file in the directory, by relative path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class Asset:
    path: Path
    key: str  # the built directory's content hash: CDK uses it as the asset hash


def build(
    target: LambdaTarget | None = None,
    packages: Mapping[str, Path] = PROJECT_PACKAGES,
    cache_root: Path = CACHE_ROOT,
) -> Asset:
    """The asset directory for ``target``, built once per distinct content."""
    target = target or LambdaTarget()
    pinned = requirements()
    key = cache_key(target, pinned, packages)
    final = cache_root / key
    if final.is_dir():
        os.utime(final)  # most recently used: kept by the pruning
        return Asset(final, content_hash(final))
    cache_root.mkdir(parents=True, exist_ok=True)
    # Syntheses started together (parallel pipelines, a test run) wait for the first one's
    # build and reuse it.
    with FileLock(cache_root / f".{key}.lock"):
        if not final.is_dir():
            _build_into(final, target, pinned, packages)
    _prune(cache_root, keep=final)
    return Asset(final, content_hash(final))


def _build_into(final: Path, target: LambdaTarget, pinned: list[str], packages: Mapping[str, Path]) -> None:
    staging = final.with_name(f".building-{final.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        if not _install_from_environment(target, pinned, staging):
            _pip_install(target, pinned, staging)
        shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts: nothing runs them
        _copy_project(packages, staging)
        if target.matches_this_interpreter:  # bytecode is specific to the Python version
            _precompile(staging)
        staging.rename(final)  # atomic: a synth elsewhere sees all of it or none
    finally:
        shutil.rmtree(staging, ignore_errors=True)
