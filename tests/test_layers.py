"""The package's import graph has layers and no cycles (docs/architecture.md, Layers).

Every ``import``/``from`` statement of every module is read with :mod:`ast`, including
imports inside functions and under ``TYPE_CHECKING``: a lazy import is still a dependency.
The test fails on any cycle between modules and on any import from a lower layer to a
higher one, naming the cycle or the edge.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import xdna_emu

PKG = "xdna_emu"
ROOT = Path(xdna_emu.__file__).resolve().parent

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def _doc_layers() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The layer table of docs/architecture.md (the one place it is written): each row's
    layer name and the backticked module prefixes of its third column (``xdna_emu`` itself
    is the empty prefix, the package's ``__init__``)."""
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].isdigit():
            continue
        mods = re.findall(r"`([^`]+)`", cells[2])
        rows.append((int(cells[0]), cells[1], tuple("" if m == PKG else m for m in mods)))
    assert [r[0] for r in rows] == list(range(len(rows))), f"{DOC}: layer rows out of order"
    return tuple((name, mods) for _, name, mods in rows)


#: Layers, lowest first: (name, module prefixes). A module belongs to the layer of its
#: longest matching prefix; a module may import only its own layer or lower ones.
LAYERS = _doc_layers()


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [PKG, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(mod: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that ``mod`` imports anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(mod, is_pkg, node)
            # `from pkg import sub` imports the submodule when one exists, else a name of pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]  # fmt: skip
        for target in targets:
            while target and target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]  # `import a.b.c` where c is a name
            if target in modules and target != mod:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def layer_of(mod: str) -> int:
    rel = mod[len(PKG) + 1 :] if mod != PKG else ""
    best, best_len = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for pre in prefixes:
            hit = rel == pre or (pre and rel.startswith(pre + "."))
            if hit and len(pre) > best_len:
                best, best_len = i, len(pre)
    return best


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def _one_cycle(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A concrete cycle through the first module of a strongly connected component."""
    start = min(comp)
    paths = {start: [start]}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & comp):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                todo.append(w)
    return sorted(comp)


def test_every_module_has_a_layer() -> None:
    orphans = [m for m in import_graph() if layer_of(m) < 0]
    assert not orphans, f"modules in no layer (add them to LAYERS and docs/architecture.md): {orphans}"


def test_no_import_cycle_between_modules() -> None:
    graph = import_graph()
    comps = find_cycles(graph)
    msg = [f"  {' -> '.join(_one_cycle(graph, set(c)))}   (modules in this knot: {', '.join(c)})"
           for c in comps]  # fmt: skip
    assert not comps, "import cycles:\n" + "\n".join(msg)


def test_lower_layers_never_import_higher_ones() -> None:
    bad = []
    for mod, deps in sorted(import_graph().items()):
        for dep in sorted(deps):
            if layer_of(dep) > layer_of(mod):
                bad.append(f"  {mod} ({LAYERS[layer_of(mod)][0]}) imports "
                           f"{dep} ({LAYERS[layer_of(dep)][0]})")  # fmt: skip
    assert not bad, "imports from a lower layer to a higher one:\n" + "\n".join(bad)


def test_the_checker_sees_lazy_imports_and_cycles() -> None:
    """The graph includes imports inside functions, and a planted cycle is reported."""
    graph = import_graph()
    assert "xdna_emu.daemon" in graph["xdna_emu.cli"]  # imported inside cmd_run only
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(planted) == [["a", "b", "c"]]
    assert _one_cycle(planted, {"a", "b", "c"}) == ["a", "b", "c", "a"]
    assert layer_of("xdna_emu.fuzz.ops") > layer_of("xdna_emu.testing.pydriver")
    assert layer_of("xdna_emu.cli") < layer_of("xdna_emu.testing.pydriver")
