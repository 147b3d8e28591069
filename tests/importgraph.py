"""The import graph of the ``remediator`` package, read from the source with :mod:`ast`.

Every import counts: module level, inside functions, and under ``if TYPE_CHECKING:``. An edge
goes from the importing module to the most specific ``remediator`` module named
(``from remediator.store import records`` -> ``remediator.store.records``;
``from remediator.store import Store`` -> ``remediator.store``). Used by
``tests/test_architecture.py`` and ``python -m bench structure``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
PACKAGE: Final = "remediator"


@dataclass(frozen=True)
class Import:
    """One import statement's target inside the package, or an outside top-level name."""

    source: str
    target: str
    line: int


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """``remediator.x.y`` -> its file, for every module of the package."""
    base = root / PACKAGE
    out: dict[str, Path] = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(module: str, *, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (level - 1)]
    return ".".join([*anchor, name] if name else anchor)


def _closest(name: str, modules: Mapping[str, Path]) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> list[Import]:
    """Every import in one module: inner targets as module names, outer ones as top-level names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package=is_package, level=node.level, name=node.module)
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                target = _closest(name, modules)
                if target is not None and target != module:
                    found.append(Import(module, target, node.lineno))
            else:
                found.append(Import(module, name.split(".")[0], node.lineno))
    return found


def all_imports(root: Path = ROOT) -> list[Import]:
    modules = module_files(root)
    out: list[Import] = []
    for module, path in modules.items():
        out += imports_of(module, path, modules)
    return out


def graph(imports: Iterable[Import], root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the package modules it imports (every package module is a key)."""
    edges: dict[str, set[str]] = {m: set() for m in module_files(root)}
    for imp in imports:
        if imp.target in edges:
            edges[imp.source].add(imp.target)
    return edges


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work: list[tuple[str, list[str]]] = [(start, sorted(edges[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(edges[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return sorted(found)


def longest_chain(edges: Mapping[str, set[str]]) -> list[str]:
    """The longest import chain, modules of one cycle folded into one node (named by its first)."""
    owner = {m: m for m in edges}
    for component in cycles(edges):
        for member in component:
            owner[member] = component[0]
    dag: dict[str, set[str]] = {}
    for src, targets in edges.items():
        dag.setdefault(owner[src], set())
        dag[owner[src]].update(owner[t] for t in targets if owner[t] != owner[src])
    best: dict[str, list[str]] = {}

    def chain(node: str) -> list[str]:
        if node not in best:
            tails = [chain(t) for t in sorted(dag[node])]
            best[node] = [node, *max(tails, key=len, default=[])]
        return best[node]

    for node in sorted(dag):
        # deepest first, without recursion depth trouble: the package is a few hundred modules
        chain(node)
    return max(best.values(), key=len, default=[])
