"""The house keeps its layers: a module imports only from the layers below its own.

The layers, top first (DESIGN.md draws the same graph): the command line and its rendering,
the pipeline that orchestrates the stages (with its fetch and answering stages and the demo's
showcase), the typed results the stages return, the runtime (recommending, serving), the
evaluation, the towers (training, the content mapping), the one ranking engine (numpy), data
input and output (which writes ``processed/``), the workspace's artifacts, the vector indexes,
and the leaves every layer may use. A package may import its own modules freely; an import
that points up, or two packages importing each other, fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gamerec

SOURCE = Path(gamerec.__file__).parent

#: top first; each entry is one layer (its packages or modules may not import each other's
#: layer-mates upward either: within a layer, listed order is the order of dependence)
LAYERS: list[list[str]] = [
    ["cli"],
    ["render"],
    ["pipeline", "answers", "fetching", "showcase"],
    ["results"],
    ["runtime"],
    ["evaluation"],
    ["towers"],
    ["ranking"],
    ["dataio"],
    ["artifacts"],
    ["index"],
    ["settings"],
    ["atomic", "errors", "progress"],
]
#: the package's front door and entry point may reach anything
EXEMPT = {"__init__", "__main__"}


def _unit(path: Path) -> str:
    return path.relative_to(SOURCE).parts[0].removesuffix(".py")


def imports_between_units() -> dict[tuple[str, str], set[str]]:
    """(importer, imported) -> the files where it happens, for every gamerec import that
    crosses a package or top-level module, at module level or inside functions alike."""
    found: dict[tuple[str, str], set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        importer = _unit(path)
        if importer in EXEMPT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] != "gamerec" or len(parts) < 2:
                    continue
                imported = parts[1]
                if imported != importer:
                    found.setdefault((importer, imported), set()).add(str(path.relative_to(SOURCE)))
    return found


def test_every_unit_has_a_layer() -> None:
    units = {_unit(p) for p in SOURCE.rglob("*.py")} - EXEMPT
    placed = {unit for layer in LAYERS for unit in layer}
    assert units == placed, f"unplaced: {units - placed}, gone: {placed - units}"


def test_imports_point_down_only() -> None:
    rank = {
        unit: (depth, position)
        for depth, layer in enumerate(LAYERS)
        for position, unit in enumerate(layer)
    }
    upward = [
        f"{importer} -> {imported} ({', '.join(sorted(files))})"
        for (importer, imported), files in imports_between_units().items()
        if imported not in EXEMPT and rank[imported] <= rank[importer]
    ]
    assert not upward, "imports that point up or sideways:\n" + "\n".join(sorted(upward))


def test_no_two_packages_import_each_other() -> None:
    pairs = set(imports_between_units())
    cycles = sorted({tuple(sorted(pair)) for pair in pairs if pair[::-1] in pairs})
    assert not cycles, f"packages importing each other: {cycles}"


def test_the_check_catches_an_upward_import(tmp_path: Path, monkeypatch) -> None:
    """The checks can fail: a dataio module importing the runtime is caught."""
    fake = tmp_path / "gamerec"
    for unit in ("dataio", "runtime"):
        (fake / unit).mkdir(parents=True)
        (fake / unit / "__init__.py").write_text("")
    (fake / "dataio" / "bad.py").write_text("from gamerec.runtime import recommender\n")
    (fake / "runtime" / "recommender.py").write_text("from gamerec.dataio import bad\n")
    monkeypatch.setattr(__import__(__name__), "SOURCE", fake)
    found = imports_between_units()
    assert ("dataio", "runtime") in found and ("runtime", "dataio") in found
