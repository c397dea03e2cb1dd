"""The layout reads as the pipeline: `models/` stands alone, nothing imports in a circle.

Read from the source with `ast` (nothing is imported): every `import` and `from ... import`
anywhere in a module counts for the direction rule; the imports a module runs when it is
loaded (module level, including `if TYPE_CHECKING:` blocks) count for circles. Imports inside
functions are deliberately lazy (heavy modules, optional libraries) and cannot form a circle
at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("models", "streamer")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module a `from X import ...` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports(path: Path, module_level_only: bool) -> set[str]:
    """Project modules imported by the file (``pkg.mod`` and, for `from pkg import mod`, that too)."""
    tree = ast.parse(path.read_text())
    nodes = list(ast.walk(tree)) if not module_level_only else _module_level(tree.body)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            target = resolve(module_name(path), node, path.name == "__init__.py")
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run at import: the body, and the bodies of its if/try blocks."""
    out = []
    for node in body:
        out.append(node)
        if isinstance(node, (ast.If, ast.Try)):
            out += _module_level(node.body + node.orelse + getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                out += _module_level(handler.body)
    return out


SOURCES = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def test_models_import_nothing_from_streamer() -> None:
    offenders = {
        name: sorted(i for i in imports(path, module_level_only=False) if i.split(".")[0] == "streamer")
        for name, path in SOURCES.items() if name.split(".")[0] == "models"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_circles() -> None:
    graph = {name: {i for i in imports(path, module_level_only=True) if i in SOURCES and i != name}
             for name, path in SOURCES.items()}
    # A package's __init__ may gather its submodules; a submodule importing a sibling through the
    # package is not a circle through __init__, so edges into a package's own __init__ from its
    # submodules are left out.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(f"{t}.")}
    circles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert circles == []


def test_the_checker_sees_imports() -> None:
    """The parsing above finds what it looks for (else the tests prove nothing): a plain import,
    a relative one, one under TYPE_CHECKING, and a lazy one only when asked for all of them."""
    display = imports(ROOT / "streamer" / "sinks" / "display.py", module_level_only=True)
    assert "streamer.sinks.summary" in display
    assert "models.predictor" in imports(ROOT / "streamer" / "context.py", module_level_only=True)
    session = ROOT / "streamer" / "session.py"
    assert "streamer.sinks.base" in imports(session, module_level_only=True)
    cli = ROOT / "streamer" / "cli.py"
    assert "streamer.session" in imports(cli, module_level_only=False) - imports(cli, module_level_only=True)
