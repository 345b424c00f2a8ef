"""The estimator package's layout: no file imports one that imports it back (STYLE.md).

Read from the source with ``ast``, not by importing: an import inside a
function would hide a cycle from an import-time check.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pirtune.estimator

PACKAGE = "pirtune.estimator"
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _sources() -> dict[str, str]:
    """Every module of the package by dotted name → its source."""
    folder = Path(pirtune.estimator.__file__).parent
    return {PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}": path.read_text()
            for path in sorted(folder.glob("*.py"))}


def _imported(node: ast.Import | ast.ImportFrom, module: str, known: set[str]) -> set[str]:
    """The package's modules an import statement in ``module`` names."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    base = node.module or ""
    if node.level:  # relative: from the package (a module's parent, or __init__ itself)
        package = module if module == PACKAGE else module.rpartition(".")[0]
        base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1],
                         *([base] if base else [])])
    names = {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names & known


def _imports(sources: dict[str, str]) -> tuple[dict[str, set[str]], list[str]]:
    """(module → the package's modules it imports at module level, function-level imports)."""
    known = set(sources)
    graph: dict[str, set[str]] = {name: set() for name in sources}
    hidden: list[str] = []

    def visit(node: ast.AST, module: str, in_function: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            targets = _imported(node, module, known)
            if in_function and targets:
                hidden.append(f"{module}, line {node.lineno}: imports {sorted(targets)} "
                              "inside a function")
            elif not in_function:
                graph[module] |= targets - {module}
        for child in ast.iter_child_nodes(node):
            visit(child, module, in_function or isinstance(node, FUNCTIONS))

    for name, source in sources.items():
        visit(ast.parse(source), name, False)
    return graph, hidden


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, …, a], or ``None`` when the graph is acyclic."""
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph[node]):
            found = walk(nxt, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = walk(start, [])
        if found:
            return found
    return None


def test_no_estimator_file_imports_one_that_imports_it_back():
    graph, _ = _imports(_sources())
    assert f"{PACKAGE}.network" in graph and f"{PACKAGE}.files" in graph
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_no_estimator_import_hides_inside_a_function():
    _, hidden = _imports(_sources())
    assert not hidden, "\n".join(hidden)


def test_the_check_finds_a_cycle_and_a_hidden_import():
    sources = {
        PACKAGE: "from pirtune.estimator.a import A\n",
        f"{PACKAGE}.a": "from pirtune.estimator.b import B\n",
        f"{PACKAGE}.b": "from . import a\ndef f():\n    from pirtune.estimator import c\n",
        f"{PACKAGE}.c": "import pirtune.errors\n",
    }
    graph, hidden = _imports(sources)
    assert graph == {PACKAGE: {f"{PACKAGE}.a"}, f"{PACKAGE}.a": {f"{PACKAGE}.b"},
                     f"{PACKAGE}.b": {PACKAGE, f"{PACKAGE}.a"}, f"{PACKAGE}.c": set()}
    assert _cycle(graph) == [PACKAGE, f"{PACKAGE}.a", f"{PACKAGE}.b", PACKAGE]
    assert len(hidden) == 1 and hidden[0].startswith(f"{PACKAGE}.b, line 3")
