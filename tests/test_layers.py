"""The import layers, read with `ast` (module-level AND function-level imports, so that a deferred import cannot hide a
dependency): the CLI sits on top, the core never reaches into adapters' private modules, no import goes up a layer,
and no import cycle joins the units (subpackages, top-level modules) of `tokbench`.

The known debt (issue 16) is listed below: each entry is reported as an expected failure while it lasts; a *new*
violation fails. When a refactor removes an entry, the report shows it as XPASS: delete it from the list.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import lru_cache
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"tokbench": ROOT / "tokbench", "tokbench_adapters": ROOT / "adapters"}

# Layers, lowest first: a unit may import its own layer or lower ones. A unit is `tokbench.<subpackage or module>`, or
# `tokbench_adapters`. The README's "Repository layout" gives the same picture.
LAYERS: list[set[str]] = [
    {"tokbench.api", "tokbench.errors", "tokbench.io", "tokbench.dist", "tokbench.progress", "tokbench.suite_files"},
    {"tokbench.weights", "tokbench.weight_files", "tokbench.data", "tokbench.nn"},
    {"tokbench.perturb", "tokbench.metrics", "tokbench.fid", "tokbench.results", "tokbench.result_identity"},
    {"tokbench.registry", "tokbench.published"},
    {"tokbench_adapters", "tokbench.models", "tokbench.baselines", "tokbench.testing"},
    {"tokbench.gen", "tokbench.tokenizer_training", "tokbench.runner", "tokbench.report"},
    {"tokbench.experiments"},  # the in-house experiment pipeline
    {"tokbench.commands", "tokbench.cli", "tokbench.__main__"},
]
FACADE = "tokbench"  # the package root re-exports api + registry; importing it is importing those

# Issue 16 removed the last known violations (upward imports, library code importing commands, module cycles):
# the tests below allow none.


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is package)."""
    out = {}
    for pkg, base in PACKAGES.items():
        for path in sorted(base.rglob("*.py")):
            parts = [pkg, *path.relative_to(base).with_suffix("").parts]
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def imported_modules(source: str, here: str, known) -> list[tuple[str, int]]:
    """(project module, line) for every import statement anywhere in `source` (module `here`'s package)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import a.b.c` of a name inside a module → that module
                t = t.rpartition(".")[0]
            if t:
                out.append((t, node.lineno))
    return out


@lru_cache(maxsize=1)
def import_edges() -> list[tuple[str, str, int]]:
    """(importer, imported project module, line) over both packages."""
    mods = _modules()
    edges = []
    for name, (path, is_pkg) in mods.items():
        here = name if is_pkg else name.rpartition(".")[0]
        edges += [(name, t, line) for t, line in imported_modules(path.read_text(), here, mods) if t != name]
    return edges


def unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "tokbench_adapters" or len(parts) == 1:
        return parts[0]
    return ".".join(parts[:2])


def layer_of(u: str) -> int:
    for i, layer in enumerate(LAYERS):
        if u in layer:
            return i
    raise AssertionError(f"{u} has no layer: add it to LAYERS in tests/test_layers.py (issue 16)")


@lru_cache(maxsize=1)
def unit_edges() -> dict[tuple[str, str], list[str]]:
    """(importer unit, imported unit) -> where ('module:line')."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for a, b, line in import_edges():
        ua, ub = unit(a), unit(b)
        if ua != ub and ub != FACADE and ua != FACADE:
            if f"{a}:{line}" not in out[(ua, ub)]:
                out[(ua, ub)].append(f"{a}:{line}")
    return dict(out)


def strongly_connected(edges) -> list[tuple[str, ...]]:
    """Components with more than one node (Tarjan, iterative enough for a few hundred nodes)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(tuple(sorted(comp)))

    for v in sorted(list(graph)):
        if v not in index:
            visit(v)
    return sorted(found)


# ----------------------------------------------------------------------------------------------------------------------
def test_the_scan_sees_every_kind_of_import():
    source = ("import tokbench.api\nfrom .. import weights\nfrom ..fid.stats import x\n"
              "def f():\n    if True:\n        from tokbench.experiments import pipeline\n"
              "class C:\n    def m(self):\n        import numpy\n")
    known = {"tokbench.api", "tokbench.weights", "tokbench.fid.stats", "tokbench.experiments",
             "tokbench.experiments.pipeline"}
    assert sorted(imported_modules(source, "tokbench.runner", known)) == [
        ("tokbench.api", 1), ("tokbench.experiments.pipeline", 6), ("tokbench.fid.stats", 3), ("tokbench.weights", 2)]
    assert len(import_edges()) > 100  # the real tree is read


def test_only_the_cli_imports_commands():
    bad = {(a, b) for a, b, _ in import_edges()
           if b.startswith("tokbench.commands") and not a.startswith(("tokbench.commands", "tokbench.cli"))}
    assert not bad, f"library code imports the CLI's commands: {sorted(bad)}"


def test_the_registry_names_no_plugin_by_string():
    """Plugins are found by package scan (`_PLUGIN_PACKAGES`); a module named as a string would be an import the layer
    scan cannot see (the shipped zoo presets were one: now `tokbench.models.shipped_zoo`)."""
    source = (ROOT / "tokbench" / "registry.py").read_text()
    assert "tokbench.experiments" not in source and "_PLUGIN_MODULES" not in source


def test_core_never_imports_adapters_private_modules():
    bad = [f"{a}:{line} imports {b}" for a, b, line in import_edges()
           if a.startswith("tokbench.") and b.startswith("tokbench_adapters")
           and any(p.startswith("_") for p in b.split(".")[1:])]
    assert not bad, bad


def test_no_import_goes_up_a_layer():
    up = {e: where for e, where in unit_edges().items() if layer_of(e[0]) < layer_of(e[1])}
    assert not up, f"imports that go up a layer: {up}"


def test_no_cycle_between_units():
    cycles = strongly_connected(unit_edges())
    assert not cycles, f"import cycles between units: {cycles}"


def test_no_cycle_between_modules():
    cycles = strongly_connected((a, b) for a, b, _ in import_edges())
    assert not cycles, f"import cycles between modules: {cycles}"
