"""Dependencies point one way: no import cycles, Starlette only in the HTTP layer, and a layer
table that every module sits in and imports downwards only.

Every import counts, including those inside functions and under ``if TYPE_CHECKING:``
(``tests/importgraph.py`` reads them with :mod:`ast`).
The table is the one in docs/architecture.md; change both together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from tests import importgraph

# The layer table, top -> down. A layer holds groups; a group is a package (or a set of
# modules) named by module prefixes. A module may import its own group and any group of a
# LOWER layer; never a higher layer, nor another group of its own layer. docs/architecture.md
# shows the same table.
Layer = tuple[str, Sequence[Sequence[str]]]
CONFIG_LEAVES: Final = (
    "remediator.config.targets",
    "remediator.config.durations",
    "remediator.config.regex",
    "remediator.config.promql",
    "remediator.config.secretfile",
    "remediator.config.commands",
    "remediator.config.windows",
    "remediator.config.approvals",
)
LAYERS: Final[Sequence[Layer]] = (
    ("cli", (("remediator.cli", "remediator.__main__"),)),
    ("http", (("remediator.http",),)),
    (
        "runtime",
        (
            ("remediator.runtime", "remediator.plugins", "remediator.reload", "remediator.policy"),
            # the Prometheus rules rendered from the config (imported by the CLI only)
            ("remediator.alertrules",),
        ),
    ),
    ("engine", (("remediator.engine",),)),
    # The configuration file's model: it gathers the step models and channel sections that the
    # families declare, so it sits above them.
    ("config", (("remediator.config",),)),
    (
        "families",
        (("remediator.actions",), ("remediator.checks",), ("remediator.notifiers",)),
    ),
    # The technology helpers shared by actions and checks (one module per technology).
    ("tech", (("remediator.tech",),)),
    ("store", (("remediator.store",),)),
    ("audit", (("remediator.audit",),)),
    # The configuration's leaf vocabulary: target models, durations, matchers, templates.
    ("vocabulary", (CONFIG_LEAVES,)),
    (
        "base",
        (
            (
                "remediator.errors",
                "remediator.clock",
                "remediator.logs",
                "remediator.metrics",
                "remediator.alerts",
                "remediator.clients",
                "remediator.redaction",
                "remediator.tracing",
            ),
        ),
    ),
)
# The package's own __init__ (a version string) sits under every layer.
ROOT_MODULE: Final = "remediator"
HTTP_ONLY: Final = frozenset({"starlette", "uvicorn"})
HTTP_PACKAGE: Final = "remediator.http"


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def place(module: str, layers: Sequence[Layer] = LAYERS) -> tuple[int, int] | None:
    """(layer index, group index) of the longest prefix naming ``module``; None if unplaced."""
    best: tuple[int, int, int] | None = None
    for li, (_, groups) in enumerate(layers):
        for gi, group in enumerate(groups):
            for prefix in group:
                if _under(module, prefix) and (best is None or len(prefix) > best[2]):
                    best = (li, gi, len(prefix))
    return None if best is None else (best[0], best[1])


def unplaced(edges: Mapping[str, set[str]], layers: Sequence[Layer] = LAYERS) -> list[str]:
    return sorted(m for m in edges if m != ROOT_MODULE and place(m, layers) is None)


def upward(edges: Mapping[str, set[str]], layers: Sequence[Layer] = LAYERS) -> list[str]:
    """Every import that points up the table or sideways to another group of the same layer."""
    found: list[str] = []
    for source, targets in sorted(edges.items()):
        here = place(source, layers)
        for target in sorted(targets):
            there = place(target, layers)
            if here is None or there is None or here == there:
                continue
            if there[0] < here[0] or (there[0] == here[0] and there[1] != here[1]):
                found.append(
                    f"{source} ({layers[here[0]][0]}) imports {target} ({layers[there[0]][0]})"
                )
    return found


def new_cycles(edges: Mapping[str, set[str]]) -> list[tuple[str, ...]]:
    return [tuple(c) for c in importgraph.cycles(edges)]


def outside_http(imports: Sequence[importgraph.Import]) -> list[str]:
    return sorted(
        {
            f"{imp.source}:{imp.line} imports {imp.target}"
            for imp in imports
            if imp.target in HTTP_ONLY and not _under(imp.source, HTTP_PACKAGE)
        }
    )


def _tree(root: Path, files: Mapping[str, str]) -> dict[str, set[str]]:
    for name, text in files.items():
        path = root / "remediator" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return importgraph.graph(importgraph.all_imports(root), root)


# --- the real package ---------------------------------------------------------------------------


def test_remediator_has_no_import_cycles() -> None:
    edges = importgraph.graph(importgraph.all_imports())
    assert new_cycles(edges) == []


def test_only_the_http_package_imports_starlette_or_uvicorn() -> None:
    assert outside_http(importgraph.all_imports()) == []


def test_every_module_has_a_place_in_the_layer_table() -> None:
    assert unplaced(importgraph.graph(importgraph.all_imports())) == []


def test_every_import_points_down_the_layer_table() -> None:
    assert upward(importgraph.graph(importgraph.all_imports())) == []


# --- the checks themselves, on small packages ---------------------------------------------------


def test_the_cycle_check_counts_imports_in_functions_and_under_type_checking(
    tmp_path: Path,
) -> None:
    edges = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "def f() -> None:\n    from remediator import b\n",
            "b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from remediator.pkg.c import C\n"
            ),
            "pkg/__init__.py": "",
            "pkg/c.py": "from .. import a\nclass C: ...\n",
            "d.py": "import remediator.a\n",
        },
    )
    assert importgraph.cycles(edges) == [["remediator.a", "remediator.b", "remediator.pkg.c"]]
    assert importgraph.longest_chain(edges)[0] == "remediator.d"


def test_the_layer_check_finds_an_import_up_the_table_or_across_a_layer(tmp_path: Path) -> None:
    layers: Sequence[Layer] = (
        ("top", (("remediator.http",),)),
        ("middle", (("remediator.actions",), ("remediator.checks",))),
        ("bottom", (("remediator.errors",),)),
    )
    edges = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "http/__init__.py": "from remediator.actions import docker\n",
            "actions/__init__.py": "",
            "actions/docker.py": "from remediator import errors\nfrom remediator.checks import x\n",
            "checks/__init__.py": "",
            "checks/x.py": "def f() -> None:\n    import remediator.http\n",
            "errors.py": "",
            "stray.py": "",
        },
    )
    assert upward(edges, layers) == [
        "remediator.actions.docker (middle) imports remediator.checks.x (middle)",
        "remediator.checks.x (middle) imports remediator.http (top)",
    ]
    assert unplaced(edges, layers) == ["remediator.stray"]


def test_the_starlette_check_allows_it_in_the_http_package_only(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "__init__.py": "",
            "http/__init__.py": "import starlette\n",
            "http/routes.py": "from starlette.routing import Route\n",
            "engine.py": "def f() -> None:\n    import uvicorn\n",
        },
    )
    assert outside_http(importgraph.all_imports(tmp_path)) == [
        "remediator.engine:2 imports uvicorn"
    ]


MAX_LINES: Final = 500


def test_no_module_is_over_500_lines() -> None:
    """Small one-noun modules (the house style): split a module before it crosses 500 lines."""
    root = Path(__file__).resolve().parent.parent / "remediator"
    long = {
        str(path.relative_to(root)): n
        for path in sorted(root.rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
