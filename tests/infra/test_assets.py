"""The Lambda assets in the cloud assembly would import on Lambda.

Every native extension in an asset is built for the function's architecture and Python
version (ELF machine, extension suffix, wheel tags, glibc), and each handler imports from
its asset directory alone, with an interpreter of the runtime's version and with boto3
from the interpreter, as Lambda provides it. A machine of another architecture than the
functions' cannot load their native code: there the handlers are imported from an asset
built the same way, from the same pins, for this machine (see approvals_cdk/packaging.py), and the
deployed asset's native code is proven by the checks on tags and ELF headers alone.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from approvals.local.http import proxy_event
from approvals_cdk import packaging
from tests.infra.conftest import Synthesis
from tests.infra.lookup import HANDLERS

pytestmark = pytest.mark.xdist_group("infra")

ELF_MACHINES = {"x86_64": 62, "arm64": 183}  # e_machine: EM_X86_64, EM_AARCH64
UNAME = {"x86_64": "x86_64", "arm64": "aarch64"}
EXTENSION = re.compile(r"\.cpython-(?P<version>\d+)-(?P<arch>[a-z0-9_]+)-linux-gnu\.so$")
# The newest glibc each Lambda Python runtime offers (Amazon Linux 2 / 2023).
RUNTIME_GLIBC = {"python3.11": (2, 26), "python3.12": (2, 34), "python3.13": (2, 34)}
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def functions(synthesis: Synthesis) -> list[dict[str, Any]]:
    """Each function's handler, runtime, architecture and asset directory."""
    files = synthesis.asset_manifest["files"]
    found = []
    for fn in synthesis.resources("AWS::Lambda::Function").values():
        properties = fn["Properties"]
        asset_hash = properties["Code"]["S3Key"].removesuffix(".zip")
        found.append(
            {
                "handler": properties["Handler"],
                "runtime": properties["Runtime"],
                "architecture": properties["Architectures"][0],
                "asset": synthesis.outdir / files[asset_hash]["source"]["path"],
            }
        )
    return found


def elf_machine(path: Path) -> int | None:
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        return None
    assert header[4] == 2, f"{path}: not a 64-bit ELF"  # Lambda runs 64-bit only
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def test_functions_run_a_runtime_that_lasts_on_graviton(synthesis: Synthesis) -> None:
    """python3.11 is deprecated in mid-2027; arm64 costs about 20% less than x86_64."""
    for fn in functions(synthesis):
        version = tuple(map(int, fn["runtime"].removeprefix("python").split(".")))
        assert version >= (3, 13), fn
        assert fn["architecture"] == "arm64", fn


def test_every_function_has_an_asset_in_the_assembly(synthesis: Synthesis) -> None:
    found = functions(synthesis)
    assert len(found) == len(HANDLERS)
    for fn in found:
        assert fn["asset"].is_dir(), fn
        assert not (fn["asset"] / "approvals" / "local").exists()  # moto's local stack stays home
        assert not (fn["asset"] / "boto3").exists()  # the runtime provides it


def test_native_extensions_match_each_functions_architecture_and_runtime(synthesis: Synthesis) -> None:
    checked = 0
    for fn in functions(synthesis):
        version = fn["runtime"].removeprefix("python").replace(".", "")
        for path in fn["asset"].rglob("*.so*"):
            machine = elf_machine(path)
            if machine is None:
                continue
            assert machine == ELF_MACHINES[fn["architecture"]], f"{path} is not {fn['architecture']}"
            named = EXTENSION.search(path.name)
            if named:  # a CPython extension names its interpreter and platform
                assert named["version"] == version, f"{path} is not for {fn['runtime']}"
                assert named["arch"] == UNAME[fn["architecture"]], path
            else:
                assert path.name.endswith(".abi3.so") or ".libs" in path.parent.name, path
            checked += 1
    assert checked, "no native extension found: pydantic-core should have one"


def _tag_fits(tag: str, version: str, architecture: str, glibc: tuple[int, int]) -> bool:
    python, abi, platform_tag = tag.split("-")
    major, minor = int(version[0]), int(version[1:])
    pythons = {f"py{major}", f"cp{version}", *(f"cp{major}{m}" for m in range(minor + 1) if abi == "abi3")}
    if not set(python.split(".")) & pythons or abi not in ("none", "abi3", f"cp{version}"):
        return False
    if platform_tag == "any":
        return True
    for single in platform_tag.split("."):
        legacy = re.fullmatch(r"(manylinux\d+)_(\w+)", single)
        modern = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", single)
        if legacy and legacy[1] in LEGACY_MANYLINUX:
            needs, arch = LEGACY_MANYLINUX[legacy[1]], legacy[2]
        elif modern:
            needs, arch = (int(modern[1]), int(modern[2])), modern[3]
        else:
            continue
        if arch == UNAME[architecture] and needs <= glibc:
            return True
    return False


def test_every_wheel_in_an_asset_fits_the_runtime(synthesis: Synthesis) -> None:
    for fn in functions(synthesis):
        version = fn["runtime"].removeprefix("python").replace(".", "")
        for wheel in fn["asset"].glob("*.dist-info/WHEEL"):
            tags = [
                line.split(":", 1)[1].strip()
                for line in wheel.read_text().splitlines()
                if line.startswith("Tag:")
            ]
            assert any(
                _tag_fits(tag, version, fn["architecture"], RUNTIME_GLIBC[fn["runtime"]]) for tag in tags
            ), f"{wheel.parent.name} {tags} does not fit {fn['runtime']} on {fn['architecture']}"


def _runs(command: str) -> bool:
    return subprocess.run([command, "-c", "pass"], capture_output=True, check=False).returncode == 0


def _interpreter(runtime: str) -> str:
    """An interpreter of the runtime's Python version: this one, one on PATH, or one pyenv
    installed (its shim on PATH runs only the selected version)."""
    version = runtime.removeprefix("python")
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":
        return sys.executable
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    installed = sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"))
    for candidate in (shutil.which(f"python{version}"), *map(str, installed)):
        if candidate and _runs(candidate):
            return candidate
    pytest.fail(
        f"the functions run {runtime} but no python{version} runs here: importing the asset"
        " needs the runtime's own Python version (see approvals_cdk/packaging.py)"
    )


# Runs in a fresh interpreter that sees no site-packages at all (-I -S): only the stdlib,
# the asset, and the runtime's boto3. Imports each handler, then calls the API handler the
# way API Gateway would for an unknown path: its page comes from templates in the asset.
IMPORT_CHECK = """
import importlib, json, sys
asset, runtime_site, handlers, event, report = sys.argv[1:6]
sys.path[:0] = [asset, runtime_site]
for handler in json.loads(handlers):
    module, attribute = handler.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), attribute)), handler

class Context:
    function_name = "approval-api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:approval-api"
    aws_request_id = "request-id"

import approval_api.handler, sysconfig
response = approval_api.handler.lambda_handler(json.loads(event), Context())
files = {name: getattr(m, "__file__", None) for name, m in list(sys.modules.items())}
stdlib = [sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")]
with open(report, "w") as out:
    json.dump({"files": files, "response": response, "stdlib": stdlib}, out)
"""


def _importable(asset: Path, runtime: str, architecture: str) -> Path:
    """The asset itself where this machine can load its native code; else the same build
    (same sources, same pins, same Python version) for this machine's architecture."""
    if platform.machine() == UNAME[architecture]:
        return asset
    here = packaging.LambdaTarget(
        python_version=runtime.removeprefix("python"), architecture=platform.machine()
    )
    return packaging.build(here).path


def test_each_handler_imports_from_its_asset_alone(synthesis: Synthesis, tmp_path: Path) -> None:
    by_asset: dict[tuple[Path, str, str], list[str]] = {}
    for fn in functions(synthesis):
        by_asset.setdefault((fn["asset"], fn["runtime"], fn["architecture"]), []).append(fn["handler"])
    runtime_site = packaging.runtime_site(tmp_path / "runtime")
    event = proxy_event("GET", "/prod/nothing/here", {"accept": "text/html"}, b"", "203.0.113.9")
    for (deployed, runtime, architecture), handlers in by_asset.items():
        asset = _importable(deployed, runtime, architecture)
        report = tmp_path / "report.json"
        result = subprocess.run(
            [
                *(_interpreter(runtime), "-I", "-S", "-B", "-c", IMPORT_CHECK),
                *(str(asset), str(runtime_site), json.dumps(handlers), json.dumps(event), str(report)),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        found = json.loads(report.read_text())
        stdlib = {Path(path) for path in found["stdlib"]}
        for name, file in found["files"].items():
            if file is None:
                continue  # built into the interpreter
            where = Path(file)
            assert any(where.is_relative_to(root) for root in (asset, runtime_site, *stdlib)), (name, file)
        files = found["files"]
        assert Path(files["pydantic_core._pydantic_core"]).is_relative_to(asset)
        assert (
            f"cpython-{runtime.removeprefix('python').replace('.', '')}"
            in files["pydantic_core._pydantic_core"]
        )
        assert Path(files["boto3"]).is_relative_to(runtime_site)
        response = found["response"]
        assert response["statusCode"] == 404
        assert "There is nothing at this address." in response["body"]
