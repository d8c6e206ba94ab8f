"""No import circles among rescue's modules.

Why: a circle makes the import order matter (a name used before its module has finished), and
the usual patch, an import inside a function, hides the circle instead of cutting it. The graph
is built from the source with ast: module-level imports only (an import inside a function is
not a dependency at import time), and those under `if TYPE_CHECKING:` count too, so a circle
cannot be hidden behind type hints either.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rescue"

# Circles that exist today in files another piece of work owns (rescue/layout/, rescue/config.py);
# each as its modules in cycle order, starting with the smallest name. Empty this as they are cut.
KNOWN_CIRCLES: set[tuple[str, ...]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_nodes(body: list[ast.stmt]) -> list[ast.stmt]:
    """The module's statements, with those of `if`/`try` blocks at module level (TYPE_CHECKING,
    optional imports) but not those inside functions or classes."""
    found: list[ast.stmt] = []
    for node in body:
        found.append(node)
        if isinstance(node, ast.If):
            found += _top_level_nodes(node.body) + _top_level_nodes(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                found += _top_level_nodes(block)
            for handler in node.handlers:
                found += _top_level_nodes(handler.body)
    return found


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The rescue modules that module `name` (at path) imports at module level."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _top_level_nodes(tree.body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            targets.add(source)
            targets.update(f"{source}.{alias.name}" for alias in node.names)
    found = set()
    for target in targets:
        # `import a.b.c` runs a, a.b and a.b.c; count the deepest rescue module named
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name and not name.startswith(target + "."):
            found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: _imports(path, name, modules) for name, path in paths.items()}


def circles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Every elementary circle reachable by a depth-first walk, each rotated to start at its
    smallest module (one per strongly connected knot is enough to fail; more helps to read)."""
    found: set[tuple[str, ...]] = set()
    done: set[str] = set()

    def walk(node: str, stack: list[str], on_stack: set[str]) -> None:
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_stack:
                cycle = stack[stack.index(nxt) :]
                start = cycle.index(min(cycle))
                found.add(tuple(cycle[start:] + cycle[:start]))
            elif nxt not in done:
                walk(nxt, stack, on_stack)
        stack.pop()
        on_stack.discard(node)
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            walk(node, [], set())
    return found


def test_the_graph_sees_rescue_modules() -> None:
    graph = import_graph()
    assert "rescue.process.execute" in graph["rescue.recovery.mounts"]
    assert "rescue.process.lifetime" in graph["rescue.process.execute"]


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == {("a", "b", "c")}


def test_no_import_circles() -> None:
    found = circles(import_graph())
    new = sorted(" -> ".join([*cycle, cycle[0]]) for cycle in found - KNOWN_CIRCLES)
    assert not new, "import circles: " + "; ".join(new)
    gone = sorted(" -> ".join(cycle) for cycle in KNOWN_CIRCLES - found)
    assert not gone, "cut, so remove from KNOWN_CIRCLES: " + "; ".join(gone)
