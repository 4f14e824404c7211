"""The shape of the code: no import cycle among our packages, no file over the line cap.

The graph is built with the standard library's ast from the source, so it sees every
import a module can run: at module level, inside functions (lazy loads of aiohttp, SPDK
or the compiled data plane included) and under ``if``/``try``. A function-local import
that only dodges a cycle is still a cycle here.

Edges: ``import a.b`` and ``from a.b import c`` point at the module they load, ``a.b.c``
when that is a module, else ``a.b`` (whose namespace the name comes from); relative
imports are resolved against the importing module's package. Importing a submodule also
runs its package's ``__init__``; that edge is left out, because a package's own modules
importing one another through their full names is how every package is written. A
submodule importing a name its package's ``__init__`` re-exports is an edge to the package,
and is caught.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("appliance", "web", "spdk_bindings", "dataplane")
MAX_LINES = 800


def _module_files() -> dict[str, Path]:
    """Module name -> its source file, for every .py file of PACKAGES."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _extension_modules() -> set[str]:
    """Compiled modules (dataplane._fastpath) once built: imports may name them."""
    out = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.so"):
            parts = list(path.relative_to(ROOT).parts)
            parts[-1] = parts[-1].split(".", 1)[0]
            out.add(".".join(parts))
    return out


def _known(name: str, modules: set[str]) -> str | None:
    """The longest prefix of a dotted name that is one of our modules."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, modules: set[str]) -> set[str]:
    """Our modules that module imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name, modules)
                if target is not None:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base.pop()
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                target = _known(f"{source}.{alias.name}", modules)
                if target is None or target != f"{source}.{alias.name}":
                    target = _known(source, modules)
                if target is not None:
                    found.add(target)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    files = _module_files()
    modules = set(files) | _extension_modules()
    return {name: imports_of(name, path, modules) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative DFS, deterministic order)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        colour[start] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = BLACK
                stack.pop()
            elif colour.get(child, BLACK) == GREY:
                path = [n for n, _ in stack]
                return path[path.index(child):] + [child]
            elif colour.get(child) == WHITE:
                colour[child] = GREY
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_the_graph_sees_our_packages() -> None:
    graph = import_graph()
    assert "appliance.cli" in graph and "web.server" in graph
    assert "dataplane.fastpath" in graph["dataplane.switch"]


def test_find_cycle_names_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_file_over_the_line_cap() -> None:
    long = {str(path.relative_to(ROOT)): n for path in _module_files().values()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"files over {MAX_LINES} lines: {long}"
