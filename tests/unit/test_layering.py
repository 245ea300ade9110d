"""Dependencies run one way: the import graph of the project's own packages has no cycle, and
the domain uses neither the CDK constructs nor the local stack.

Every ``import`` and ``from`` statement counts, wherever it sits in a module: an import inside
a function that dodges a cycle at load time is still a cycle in the design.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from approvals.local.info import LocalInfo

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("approvals", "approvals_cdk", "worker", "approval_api", "bench", "examples")
# Only the command line starts or finds a local stack (CONTRIBUTING.md).
COMMAND_LINE = ("approvals.cli", "approvals.demo", "approvals.target")
LOCAL_STACK = "approvals.local"
CONSTRUCTS = "approvals_cdk"
HANDLERS = ("worker", "approval_api")


def module_files(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules that the import statements anywhere in the file name (absolute form).

    ``from package import name`` depends on the submodule ``package.name`` if there is one, and
    on the package otherwise. A package's ``__init__`` that runs on the way to a submodule is
    not counted (the usual re-exporting ``__init__`` would make every package a cycle).
    """
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            names.update(
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            )
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each of the project's modules and the project's modules it imports."""
    return {
        module: {name for name in imported_names(module, path, modules) if name in modules and name != module}
        for module, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_packages_import_graph_has_no_cycle() -> None:
    assert cycles(import_graph(module_files())) == []


def within(name: str, packages: Iterable[str]) -> bool:
    return any(name == package or name.startswith(f"{package}.") for package in packages)


def imports_from(importers: Callable[[str], bool], imported: Iterable[str]) -> dict[str, list[str]]:
    """Each of the importing modules and what it imports from ``imported``, where it does."""
    modules = module_files()
    found = {
        module: sorted(name for name in imported_names(module, path, modules) if within(name, imported))
        for module, path in modules.items()
        if importers(module)
    }
    return {module: names for module, names in found.items() if names}


def test_the_domain_uses_neither_the_constructs_nor_the_local_stack() -> None:
    def domain(module: str) -> bool:
        return within(module, ["approvals"]) and not within(module, [LOCAL_STACK, *COMMAND_LINE])

    assert imports_from(domain, [CONSTRUCTS, LOCAL_STACK]) == {}


def test_the_handlers_and_the_constructs_use_neither_the_local_stack_nor_the_command_line() -> None:
    def handler_or_construct(module: str) -> bool:
        return within(module, [CONSTRUCTS, *HANDLERS])

    assert imports_from(handler_or_construct, [LOCAL_STACK, *COMMAND_LINE]) == {}


def test_the_approvals_package_imports_no_function_s_package() -> None:
    """Neither the domain nor the command line: an installed distribution carries the
    functions' packages under no top-level name, and the local stack runs them by the
    handler's name, as Lambda does (approvals.functions)."""
    assert imports_from(lambda module: within(module, ["approvals"]), HANDLERS) == {}


def test_a_cycle_hidden_in_a_function_is_found(tmp_path: Path) -> None:
    """The check itself: an import inside a function counts, relative imports resolve, and a
    cycle of three modules is reported whole."""
    package = tmp_path / "package"
    package.mkdir()
    (package / "__init__.py").write_text("from package.first import thing\n")
    (package / "first.py").write_text("from package import second\nthing = 1\n")
    (package / "second.py").write_text("def later() -> None:\n    from .third import other\n")
    (package / "third.py").write_text("import package.first\nother = 2\n")
    (package / "fourth.py").write_text("from package import thing\n")
    graph = import_graph(module_files(tmp_path, ("package",)))
    assert graph["package.fourth"] == {"package"}
    assert cycles(graph) == [["package.first", "package.second", "package.third"]]


def test_a_command_against_a_running_local_stack_does_not_load_moto(tmp_path: Path) -> None:
    """Every `approvals` command against a local stack reads its state file; moto, which the
    stack itself needs, takes about a second of CPU to import and is not needed for that."""
    state = tmp_path / "local.json"
    LocalInfo(*(f"http://127.0.0.1:1/{n}" for n in range(11))).write(state)
    probe = (
        "import sys; from pathlib import Path; from approvals import cli, target;"
        f" target.local(Path({str(state)!r})); print(sorted(m for m in sys.modules if m.startswith('moto')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout
