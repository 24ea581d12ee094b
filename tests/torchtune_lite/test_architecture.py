"""The package keeps the layer order of docs/architecture.md: no import runs upward, and no import cycle.

Reads every module's imports with `ast` (top-level and function-level alike: a deferred import is still
a dependency) and the layer table from the document itself, so the rule and its description cannot drift.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "torchtune_lite"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for the package and the recipes shipped in it (`recipes/` is `torchtune_lite.recipes`)."""
    found = {}
    for path in [*REPO.glob(f"{PACKAGE}/**/*.py"), *REPO.glob("recipes/*.py")]:
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[0] == "recipes":
            parts.insert(0, PACKAGE)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file (the package root itself left out)."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:  # `from pkg import submodule` depends on the submodule, else on `pkg`
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target not in (name, PACKAGE):
            resolved.add(target)
    return resolved


def layer_table() -> list[tuple[str, list[str]]]:
    """(layer, module-name prefixes) rows, top layer first, from the table in docs/architecture.md."""
    rows = []
    for line in (REPO / "docs" / "architecture.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[1].startswith("`"):
            continue
        prefixes = []
        for folder in re.findall(r"`([^`]+)`", cells[1]):
            dotted = folder.removesuffix("/").removesuffix(".py").replace("/", ".")
            prefixes.append(f"{PACKAGE}.recipes" if dotted == "recipes" else dotted)
        rows.append((cells[0], prefixes))
    return rows


def layer_of(module: str, rows: list[tuple[str, list[str]]]) -> int:
    """Index of the row whose longest prefix names `module`."""
    best = (-1, -1)
    for index, (_, prefixes) in enumerate(rows):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), index)
    return best[1]


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def package_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imported_modules(name, path, files) for name, path in files.items()}


def test_every_module_has_a_layer_and_imports_only_from_its_own_or_earlier_layers():
    rows = layer_table()
    assert len(rows) >= 5, "docs/architecture.md lost its layer table"
    graph = package_graph()
    assert "torchtune_lite.modules.peft" in graph["torchtune_lite.models._decoder"]  # imports are really read
    unplaced = sorted(m for m in graph if m != PACKAGE and layer_of(m, rows) < 0)
    assert not unplaced, f"modules in no layer of docs/architecture.md: {unplaced}: add them to the table"
    upward = [
        f"{m} ({rows[layer_of(m, rows)][0]}) imports {t} ({rows[layer_of(t, rows)][0]})"
        for m in sorted(graph) if m != PACKAGE
        for t in sorted(graph[m]) if layer_of(t, rows) > layer_of(m, rows)
    ]  # fmt: skip
    assert not upward, "imports against the layer order of docs/architecture.md:\n" + "\n".join(upward)


def test_no_import_cycles():
    assert import_cycles(package_graph()) == []


def test_the_checks_catch_what_they_are_for():
    # A cycle and an upward import, on a made-up graph and table: the checks above can fail.
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    rows = [("low", [f"{PACKAGE}.x"]), ("high", [f"{PACKAGE}.y"])]
    assert layer_of(f"{PACKAGE}.y.w", rows) == 1 and layer_of(f"{PACKAGE}.x", rows) == 0 and layer_of("other", rows) == -1
