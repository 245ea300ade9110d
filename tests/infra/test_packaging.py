"""The Lambda asset build: what goes in, and when the cache is reused."""

from __future__ import annotations

import importlib.metadata
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
    assert {"worker/handler.py", "approval_api/handler.py", "approvals/models.py"} <= files
    assert any(name.startswith("approval_api/templates/") for name in files)
    assert not any(name.startswith("approvals/local/") for name in files)
    assert not any("__pycache__" in name for name in files)


def _project(root: Path) -> Path:
    for package in packaging.PROJECT_PACKAGES:
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text(f"# {package}\n")
    (root / "approvals" / "local").mkdir()
    (root / "approvals" / "local" / "stack.py").write_text("import moto\n")
    return root


def test_cache_key_follows_the_code_and_nothing_else(tmp_path: Path) -> None:
    root = _project(tmp_path)
    target = packaging.LambdaTarget()
    pinned = ["pydantic==2.0"]
    key = packaging.cache_key(target, pinned, root)
    assert packaging.cache_key(target, pinned, root) == key
    (root / "approvals" / "local" / "stack.py").write_text("import moto  # changed\n")
    assert packaging.cache_key(target, pinned, root) == key  # never deployed: no rebuild
    (root / "worker" / "__init__.py").write_text("# changed\n")
    changed = packaging.cache_key(target, pinned, root)
    assert changed != key
    assert packaging.cache_key(target, ["pydantic==2.1"], root) != changed
    assert packaging.cache_key(packaging.LambdaTarget(architecture="x86_64"), pinned, root) != changed


def test_a_built_asset_is_reused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    key = packaging.cache_key(packaging.LambdaTarget(), packaging.requirements())
    (cache / key).mkdir(parents=True)  # as a previous build left it
    asset = packaging.build(cache_root=cache)
    assert asset == packaging.Asset(cache / key, key)
