"""The package's shape (docs/architecture.md): packages by noun, each reached through its face; no
import circles; arrows only towards earlier parts of the flow; Ray imported only where a step needs
it; no product code reading a test variable."""

from __future__ import annotations

import ast
import importlib
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "search"
# The parts in the order of the flow, callees before callers: the shared values, then the rooms of a
# run, then the conductors, the commands and the Python API. A part may import only itself and parts
# before it. A part is a module directly in search/ or a subpackage.
FLOW = [
    "errors", "metrics", "progress", "compute", "space", "data", "network", "spec", "budget", "run_folder",
    "export", "tracking", "cluster", "tuning", "selection", "report", "pipeline", "evaluate", "cli", "api",
    "__init__", "__main__",
]
# Old paths that Ray pickled into runs made before the move to subpackages, kept for one release.
ALIASES = {"trainable": "search.tuning.trainable", "callbacks": "search.tuning.callbacks"}
# Where `import ray` may stand, and why: the session and the cluster's job client, the search and its
# trial, the CV and final-fit tasks, the devices' view of the cluster, and Tune's MLflow logger.
IMPORTS_RAY = {"cluster.session", "cluster.jobs", "tuning.tuner", "tuning.callbacks", "tuning.trainable",
               "selection.fold_fits", "selection.cv", "selection.head_start", "selection.final_fit",
               "compute.devices", "tracking.runs"}
RAY_SEAM = {"cluster.session", "tuning.tuner", "tuning.callbacks", "tuning.trainable", "selection.fold_fits",
            "selection.cv", "selection.head_start", "selection.final_fit"}
MOST_TOP_LEVEL_MODULES = 12  # besides the aliases


def _name(path: Path) -> str:
    """``search/data/table.py`` -> ``data.table``; ``search/data/__init__.py`` -> ``data``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


MODULES = {_name(p): p for p in PACKAGE.rglob("*.py")}
PACKAGES = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}


def _part(module: str) -> str:
    return module.split(".")[0]


def _face(package: str) -> dict[str, str]:
    """A face's names and the module that holds each one (the ``_FACE`` of its ``__init__``)."""
    return {name: f"{package}.{module}" for name, module in importlib.import_module(f"search.{package}")._FACE.items()}


def _imports(module: str) -> tuple[set[str], set[str], set[str]]:
    """(modules of the package it reaches, resolved through faces; the faces' modules it names directly
    from outside their package; top-level third-party packages), lazily imported or not."""
    own, around_face, other = set(), set(), set()
    here = _part(module) if "." in module or module in PACKAGES else None

    def resolve(target: str, names: list[str]) -> None:
        if target in PACKAGES:
            face = _face(target) if target != here else {}
            for name in names:
                own.add(face.get(name) or (f"{target}.{name}" if f"{target}.{name}" in MODULES else target))
        elif target in MODULES:
            own.add(target)
            if "." in target and _part(target) != here and module not in ALIASES:
                around_face.add(target)

    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "search":
                for alias in node.names:
                    if alias.name in PACKAGES:  # ``from search import run_folder``: what it uses of it
                        used = re.findall(rf"(?<![\w.]){alias.asname or alias.name}\.(\w+)", MODULES[module].read_text())
                        resolve(alias.name, used)
                    else:
                        resolve(alias.name, [])
            elif node.module.startswith("search."):
                resolve(node.module.removeprefix("search."), [a.name for a in node.names])
            elif node.level == 0:
                other.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("search."):
                    resolve(alias.name.removeprefix("search."), [])
                elif alias.name != "search":
                    other.add(alias.name.split(".")[0])
    own.discard(module)
    own.discard("__init__")  # ``from search import _lazy_face``: the top package, already imported
    return own, around_face, other


def _graph() -> dict[str, set[str]]:
    return {m: _imports(m)[0] for m in MODULES}


def test_every_part_has_its_place_in_the_flow_and_the_top_level_stays_small():
    parts = {_part(m) for m in MODULES} - set(ALIASES)
    assert sorted(FLOW) == sorted(parts)
    top = [p.stem for p in PACKAGE.glob("*.py") if p.stem not in ALIASES]
    assert len(top) <= MOST_TOP_LEVEL_MODULES, top


def test_each_alias_is_one_line_that_names_its_new_home():
    for old, new in ALIASES.items():
        lines = (PACKAGE / f"{old}.py").read_text().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"from {new} import *"), old


def test_every_face_name_is_defined_where_its_face_says():
    for package in PACKAGES:
        for name, module in _face(package).items():
            assert name in vars(importlib.import_module(f"search.{module}")), f"search.{package}.{name}"


def test_other_packages_reach_a_package_only_through_its_face():
    against = {m: sorted(_imports(m)[1]) for m in MODULES if _imports(m)[1]}
    assert not against, f"imports of a package's private module from outside it: {against}"


def test_parts_import_only_earlier_parts_and_there_are_no_circles():
    graph = _graph()
    against = [f"{m} -> {d}" for m, deps in graph.items() if m not in ALIASES for d in deps
               if FLOW.index(_part(d)) > FLOW.index(_part(m))]
    assert not against, f"imports against the flow: {against}"
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as circle:
        pytest.fail(f"an import circle: {circle.args[1]}")


def test_ray_is_imported_only_where_a_step_needs_it():
    importing = {m for m in MODULES if "ray" in _imports(m)[2]}
    assert importing <= IMPORTS_RAY, importing - IMPORTS_RAY


def test_the_report_the_run_folder_and_the_export_reach_no_module_of_the_ray_seam():
    graph = _graph()
    for start in (m for m in MODULES if _part(m) in ("report", "run_folder", "export")):
        reached, todo = set(), [start]
        while todo:
            for dep in graph[todo.pop()] - reached:
                reached.add(dep)
                todo.append(dep)
        assert not reached & RAY_SEAM, f"{start} reaches {sorted(reached & RAY_SEAM)}"


def test_no_product_code_reads_a_test_variable():
    for path in PACKAGE.rglob("*.py"):
        assert not re.search(r"HPSEARCH_(TEST|FAKE)_", path.read_text()), path.name


def test_the_file_a_model_folder_ships_stands_alone():
    """``data/model_inputs.py`` is copied beside model.keras as inputs.py: no hpsearch, only NumPy and pandas."""
    own, _, other = _imports("data.model_inputs")
    assert not own and other - {"__future__"} <= {"json", "re", "warnings", "pathlib", "typing", "numpy", "pandas"}


# Where the whole run request may be named: where it is made (spec, cli, api), conducted (pipeline,
# evaluate, the top package's face), planned (budget), recorded and read back (run_folder.reading) or
# shipped whole to a cluster (cluster.jobs). A stage gets the options it uses (spec.CvOptions, ...).
NAMES_RUNSPEC = {"spec", "budget", "pipeline", "evaluate", "api", "__init__", "cli.app", "run_folder.reading",
                 "cluster.jobs"}


def test_the_whole_run_request_stays_with_those_that_make_conduct_or_record_it():
    naming = {m for m, path in MODULES.items() if re.search(r"\bRunSpec\b", path.read_text())}
    assert naming <= NAMES_RUNSPEC, sorted(naming - NAMES_RUNSPEC)
