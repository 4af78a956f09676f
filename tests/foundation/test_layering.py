"""The shape of `flighttoken/`: imports flow one way, down the layers, and never in a circle.

Every module's imports are read with `ast` (nothing is imported, so this is a pure unit test):
top-level imports, imports inside functions, and imports under `if TYPE_CHECKING:`. The last two
count on purpose: an import moved into a function or behind TYPE_CHECKING still means the lower
module knows the higher one, and moving it there is how a cycle gets hidden rather than removed.
A lower module that needs only the shape of a higher object declares a Protocol instead.

LAYERS, lowest first, is the one place the layers are defined. Its entries are top-level packages
or modules of flighttoken ("__init__" is the package root), or a dotted submodule where a package
straddles layers: a module belongs to its longest matching entry. A module may import modules of
its own layer or a lower one, never of a higher one. Why the submodule entries:
- `devices.model`, `flights.model` are plain records that import nothing of flighttoken; the SQL
  in `db/queries` returns them.
- `services.Services` is what an instance holds; the flows and controllers take it, so it sits
  above the stores it holds (vault, galleries, watchlist state, key cache) and below the flows.
- HTTP controllers are wiring wherever they live (they record metrics, read every store).
`decisions` (the pure match rules and the touchpoint policy table) is a primitive: it imports only
settings and the vocabulary, and galleries, watchlist and journey all read it.
Cycles between units of one layer (today flights, journey, privacy) are printed by the script
below, not failed: the module graph itself must have none.
A new top-level package or module must be given a layer (`test_every_module_has_one_layer`).

Print the import graph between these units, each with its layer, and any cycle:
    .venv/bin/python -m tests.foundation.test_layering
"""

from __future__ import annotations

import ast
from collections.abc import Container, Iterator, Mapping
from pathlib import Path

ROOT = "flighttoken"
SOURCE = Path(__file__).resolve().parents[2] / ROOT

LAYERS: list[tuple[str, frozenset[str]]] = [
    ("foundation", frozenset({
        "__init__", "settings", "errors", "logs", "executor", "middleware", "vocabulary", "fieldtypes",
        "devices.model", "flights.model",
    })),
    ("primitives", frozenset({"boardingpass", "crypto", "db", "decisions", "faces", "production"})),
    ("domain stores", frozenset({
        "galleries", "devices", "privacy.vault", "watchlist.state", "watchlist.gallery", "watchlist.hub",
        "watchlist.schemas",
    })),
    ("instance", frozenset({"services"})),
    ("domain flows", frozenset({
        "flights", "galleries.loader", "tokens", "watchlist", "privacy", "journey", "sync", "dcs",
    })),
    ("wiring", frozenset({
        "lifecycle", "app", "admin", "ops", "metrics", "health", "listeners", "cli", "testing", "__main__",
        "flights.controller", "journey.controller", "privacy.controller", "watchlist.controller", "dcs.controller",
    })),
]

Graph = Mapping[str, frozenset[str]]


def layer_of() -> dict[str, int]:
    """Unit (a LAYERS entry) -> its layer's index (0 is the lowest)."""
    return {name: i for i, (_, names) in enumerate(LAYERS) for name in names}


def unit_of(module: str, units: Container[str]) -> str:
    """The longest LAYERS entry a module falls under: flighttoken.devices.model -> devices.model,
    flighttoken.devices.auth -> devices, flighttoken -> __init__ (the top-level name when unplaced)."""
    parts = module.split(".")[1:] or ["__init__"]
    for n in range(len(parts), 0, -1):
        if (name := ".".join(parts[:n])) in units:
            return name
    return parts[0]


def module_name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(SOURCE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SOURCE.rglob("*.py"))}


def _resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The flighttoken module an imported dotted name lands in (a name inside a module -> that module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, source: str, is_package: bool, modules: Mapping[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported flighttoken module, line) for every import anywhere in the source, TYPE_CHECKING included."""
    for node in ast.walk(ast.parse(source, filename=module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == ROOT and (target := _resolve(alias.name, modules)):
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ..y import z
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            if origin.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                # `from pkg import submodule` imports the submodule; `from mod import name` imports mod.
                target = _resolve(f"{origin}.{alias.name}", modules)
                if target:
                    yield target, node.lineno


def module_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}, self-imports left out."""
    modules = source_modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(module, path.read_text(), path.name == "__init__.py", modules):
            if target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def unit_graph(graph: Mapping[str, Mapping[str, int]]) -> dict[str, frozenset[str]]:
    """Unit (package, module or LAYERS submodule entry) -> the other units it imports."""
    layers = layer_of()
    units: dict[str, set[str]] = {}
    for module, edges in graph.items():
        mine = unit_of(module, layers)
        units.setdefault(mine, set()).update(t for e in edges if (t := unit_of(e, layers)) != mine)
    return {u: frozenset(ts) for u, ts in units.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted; sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _edges_within(component: list[str], graph: Mapping[str, Mapping[str, int]]) -> list[str]:
    members = set(component)
    return [f"{a} -> {b}" for a in component for b in sorted(graph.get(a, {})) if b in members]


def upward_imports(graph: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Every import of a higher layer, as 'module:line (layer) -> module (layer)'."""
    layers = layer_of()
    names = [name for name, _ in LAYERS]
    found = []
    for module, edges in sorted(graph.items()):
        mine = layers.get(unit_of(module, layers))
        for target, line in sorted(edges.items()):
            theirs = layers.get(unit_of(target, layers))
            if mine is not None and theirs is not None and theirs > mine:
                found.append(f"{module}:{line} ({names[mine]}) -> {target} ({names[theirs]})")
    return found


def test_every_module_has_one_layer() -> None:
    seen: dict[str, str] = {}
    twice = []
    for layer, names in LAYERS:
        for name in names:
            if name in seen:
                twice.append(f"{name} in {seen[name]} and {layer}")
            seen[name] = layer
    assert not twice, twice
    unplaced = sorted({unit_of(m, seen) for m in source_modules()} - seen.keys())
    assert not unplaced, f"give these a layer in LAYERS: {unplaced}"


def test_the_reader_sees_every_kind_of_import() -> None:
    """The reader itself: absolute, relative, in a function, under TYPE_CHECKING, `from pkg import module`."""
    modules = {m: Path() for m in ("flighttoken.a", "flighttoken.p", "flighttoken.p.b", "flighttoken.p.c")}
    code = (
        "from typing import TYPE_CHECKING\n"
        "import os\n"
        "from .c import thing\n"
        "from flighttoken.p import b\n"
        "if TYPE_CHECKING:\n"
        "    import flighttoken.a\n"
        "def f():\n"
        "    from .. import a\n"
    )
    found = sorted(imports_of("flighttoken.p.b", code, False, modules), key=lambda hit: hit[1])
    assert found == [("flighttoken.p.c", 3), ("flighttoken.p.b", 4), ("flighttoken.a", 6), ("flighttoken.a", 8)]


def test_no_import_cycle_between_modules() -> None:
    graph = module_graph()
    found = cycles({m: frozenset(e) for m, e in graph.items()})
    assert not found, "import cycles:\n" + "\n".join(
        f"{' <-> '.join(c)}\n    " + "\n    ".join(_edges_within(c, graph)) for c in found
    )


def test_no_lower_layer_imports_a_higher_one() -> None:
    found = upward_imports(module_graph())
    assert not found, "imports of a higher layer:\n" + "\n".join(found)


def print_unit_graph() -> None:
    graph = module_graph()
    units = unit_graph(graph)
    layers = layer_of()
    for i, (layer, names) in enumerate(LAYERS):
        print(f"{i} {layer}")
        for name in sorted(names & units.keys()):
            targets = sorted(units[name], key=lambda t: (-layers.get(t, -1), t))
            shown = [f"{t}{'!' if layers.get(t, -1) > i else ''}" for t in targets]
            print(f"    {name} -> {', '.join(shown) or '-'}")
    print("('!' marks an import of a higher layer; targets highest layer first)")
    for cycle in cycles(units):
        print("cycle between units (same layer if no '!'):", " <-> ".join(cycle))
    for cycle in cycles({m: frozenset(e) for m, e in graph.items()}):
        print("module cycle:", " <-> ".join(cycle))


if __name__ == "__main__":
    print_unit_graph()
