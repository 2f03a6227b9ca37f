"""The package's shape (docs/architecture.md): no import circles, arrows only towards earlier steps,
Ray imported only where a step needs it, and no product code reading a test variable."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "search"
# The modules in the order of the flow, callees before callers: shared values first, then the steps
# of a run, then the conductors and the commands. A module may import only modules before it.
FLOW = [
    "errors", "model_inputs", "metrics", "progress", "signals", "devices", "space", "hypermodel", "epochs", "model",
    "fit", "worker", "results", "reading", "dates", "data", "spec", "preprocess", "budget", "run_folder",
    "export", "ray_session", "trainable", "callbacks", "tuning", "final_fit", "cv_fits", "retrain", "baseline", "head_start",
    "figures", "report_layout", "report", "predict", "mlflow_pyfunc", "tracking",
    "pipeline", "evaluate", "console", "api", "cli_app", "cluster", "cli_cluster", "cli", "__init__", "__main__",
]
# Where `import ray` may stand, and why: the session, the search and its trial, the CV and final-fit
# tasks, the cluster's job client, the devices' view of the cluster's resources, and Tune's MLflow logger.
IMPORTS_RAY = {"ray_session", "tuning", "callbacks", "trainable", "cv_fits", "retrain", "head_start", "final_fit",
               "cluster", "devices", "tracking"}
RAY_SEAM = {"ray_session", "tuning", "callbacks", "trainable", "cv_fits", "retrain", "head_start", "final_fit"}


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(package modules, top-level third-party packages) a module imports, lazily or not."""
    own, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "search":
                own |= {a.name for a in node.names}
            elif node.module.startswith("search."):
                own.add(node.module.split(".")[1])
            elif node.level == 0:
                other.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("search."):
                    own.add(alias.name.split(".")[1])
                else:
                    other.add(alias.name.split(".")[0])
    own.discard(path.stem)
    return own, other


def _graph() -> dict[str, set[str]]:
    return {p.stem: _imports(p)[0] for p in PACKAGE.glob("*.py")}


def test_every_module_has_its_place_in_the_flow():
    assert sorted(FLOW) == sorted(p.stem for p in PACKAGE.glob("*.py"))


def test_modules_import_only_earlier_steps_so_there_are_no_circles():
    graph = _graph()
    against = [f"{m} -> {d}" for m, deps in graph.items() for d in deps if FLOW.index(d) > FLOW.index(m)]
    assert not against, f"imports against the flow: {against}"


def test_ray_is_imported_only_where_a_step_needs_it():
    importing = {p.stem for p in PACKAGE.glob("*.py") if "ray" in _imports(p)[1]}
    assert importing <= IMPORTS_RAY, importing - IMPORTS_RAY


def test_the_report_and_the_run_folder_readers_reach_no_module_of_the_ray_seam():
    graph = _graph()
    for start in ("report", "report_layout", "figures", "run_folder", "export", "predict"):
        reached, todo = set(), [start]
        while todo:
            for dep in graph[todo.pop()] - reached:
                reached.add(dep)
                todo.append(dep)
        assert not reached & RAY_SEAM, f"{start} reaches {sorted(reached & RAY_SEAM)}"


def test_no_product_code_reads_a_test_variable():
    for path in PACKAGE.glob("*.py"):
        assert not re.search(r"HPSEARCH_(TEST|FAKE)_", path.read_text()), path.name


def test_the_file_a_model_folder_ships_stands_alone():
    """``model_inputs.py`` is copied beside model.keras as inputs.py: no hpsearch, only NumPy and pandas."""
    own, other = _imports(PACKAGE / "model_inputs.py")
    assert not own and other - {"__future__"} <= {"json", "re", "warnings", "pathlib", "typing", "numpy", "pandas"}
