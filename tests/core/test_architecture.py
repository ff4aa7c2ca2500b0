"""The tree keeps the shape docs/ARCHITECTURE.md draws: no import circles, each package
importing only the packages below it, connectors only the plugin surface, short modules.

Imports inside functions count; imports under ``if TYPE_CHECKING:`` do not (they never
run). A failure names the import that breaks the rule, so that it can be moved, not
hidden.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import roomlink
from roomlink import connector as plugin_surface

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
CONNECTORS = ROOT / "connectors"

# package -> the packages it may import (besides itself and the root's __version__)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "message": {"errors"},
    "connector": {"errors", "message"},
    "store": {"errors", "message"},
    "record": {"errors", "message", "store"},
    "config": {"errors", "message", "connector", "store", "record"},
    "relay": {"errors", "message", "connector", "store"},
    "admin": {"errors", "message", "connector", "store", "record", "config", "relay"},
    "daemon": {"errors", "message", "connector", "store", "record", "config", "relay",
               "admin"},
    "__main__": {"cli"},
    "cli": {"errors", "message", "connector", "store", "record", "config", "relay", "admin",
            "daemon"},
}
MAX_MODULES_PER_FOLDER = 12
MAX_MODULE_LINES = 450


def _module_name(path: Path, base: Path, package: str) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts]) if parts else package


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "roomlink").rglob("*.py"):
        if "migrations" not in path.parts:
            found[_module_name(path, SRC / "roomlink", "roomlink")] = path
    return found


def _runtime_imports(path: Path, modules: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every import of a roomlink module that can run, TYPE_CHECKING
    blocks aside; ``from package import module`` names the module."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    sub = f"{child.module}.{alias.name}"
                    found.append((child.lineno, sub if sub in modules else child.module))
            elif isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return [(line, mod) for line, mod in found if mod.split(".")[0] == "roomlink"]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    names = set(modules)
    return {name: {mod for _, mod in _runtime_imports(path, names)
                   if mod in names and mod != name}
            for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for v in graph:
        if v not in index:
            strong(v)
    return circles


def _package(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def test_there_is_no_import_circle_between_modules() -> None:
    assert _circles(_graph()) == []


def test_each_package_imports_only_the_packages_below_it() -> None:
    broken = []
    for name, path in _modules().items():
        here = _package(name)
        if not here:
            continue
        for line, mod in _runtime_imports(path, set(_modules())):
            there = _package(mod) if mod.startswith("roomlink.") else ""
            if there and there != here and there not in ALLOWED[here]:
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert sorted(set(broken)) == []


def test_the_operator_surface_never_sees_the_daemon() -> None:
    """Not even for types: status, reload and the admin server get narrow typed pieces."""
    for path in (SRC / "roomlink" / "admin").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not any(n.startswith("roomlink.daemon") for n in names), path


def test_every_package_says_what_it_owns() -> None:
    for package in ALLOWED:
        init = SRC / "roomlink" / package / "__init__.py"
        if init.exists():
            assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), init


def test_connectors_import_only_the_plugin_surface_and_the_message() -> None:
    broken = []
    for path in CONNECTORS.rglob("*.py"):
        for line, mod in _runtime_imports(path, set(_modules())):
            if mod.startswith("roomlink.") and _package(mod) not in {"connector", "message"}:
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert sorted(set(broken)) == []


def test_no_folder_is_a_heap_and_no_module_a_tome() -> None:
    for folder in [SRC / "roomlink", *(p for p in (SRC / "roomlink").rglob("*") if p.is_dir())]:
        if "migrations" in folder.parts or folder.name == "__pycache__":
            continue
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= MAX_MODULES_PER_FOLDER, folder
    for path in [*(SRC / "roomlink").rglob("*.py"), *CONNECTORS.rglob("*.py")]:
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)}: {lines} lines"


def test_the_plugin_surface_is_one_module() -> None:
    for name in ["Connector", "ConnectorContext", "ConnectorOptions", "Limits",
                 "ConnectorError", "RoomDown", "RateLimited", "PermanentError", "NotSupported",
                 "BadInput", "ShuttingDown", "backoff", "TokenBucket"]:
        assert name in plugin_surface.__all__, name
        assert getattr(plugin_surface, name) is not None
    assert roomlink.__doc__


def test_a_daemon_without_replicas_loads_no_postgresql_driver() -> None:
    """The daemon and the command line load asyncpg (3.4 MiB) and the replicas' modules
    only for a PostgreSQL store or ``cluster.enabled``, not for every SQLite install."""
    probe = ("import sys, roomlink.cli.main, roomlink.daemon.app; "
             "print(sorted(m for m in sys.modules if m == 'asyncpg' or "
             "m.startswith(('roomlink.daemon.cluster', 'roomlink.store.postgres'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
