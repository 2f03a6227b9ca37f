"""Reading a run folder back: its spec and plan, its trials and epochs, its data, the runs there are.

Every reader turns a missing or damaged file into a :class:`DataError` that names it (or, where a
file may be absent, into None). Writing and the atomic commit are in ``results.py``.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.budget import RunPlan, plan_from_json
from search.compute import cluster_devices
from search.data import Splits, Table, load_table, only_rows, split_rows
from search.errors import DataError, HpsearchError
from search.metrics import METRICS
from search.run_folder.writing import BEST_CONFIG, CV, EPOCHS, EXPERIMENT_DIR, SPEC, TRIALS
from search.space import Space
from search.spec import RunSpec

KEPT_TABLE = "data.parquet"  # a DataFrame run's table, kept in its folder


def find_interrupted(run: str | Path) -> Path:
    """The partial folder of ``run``: a path to it, or a ``results/<name>`` whose run never finished."""
    given = Path(run).expanduser().resolve()
    candidates = [given, given.parent / f".{given.name}.partial"]
    found = next((c for c in candidates if c.is_dir() and c.name.endswith(".partial")), None)
    if found is None:
        if given.is_dir() and (given / CV).is_file():
            raise DataError(f"{run} is a finished run; there is nothing to resume. "
                            f"See `hpsearch report {run}`, or `hpsearch retrain {run}`.")
        raise DataError(f"{run}: no interrupted run there (looked for {candidates[1]}). "
                        f"Give the run's folder, e.g. results/NAME; `hpsearch runs` lists them.")
    return found

def read_run_spec(folder: Path, overrides: dict[str, Any] | None = None) -> tuple[RunSpec, RunPlan, dict]:
    """The RunSpec, RunPlan and ``spec.json`` of a run folder; a foreign or damaged folder is a DataError."""
    import json

    RunSpec.from_options(**(overrides or {}))  # a bad override is the user's flag, not a damaged folder
    try:
        described = json.loads((folder / SPEC).read_text())
        options = dict(described["options"])
        space = Space.from_dict(described["space"], source=f"{folder / SPEC}: space")
        options.update({k: v for k, v in (overrides or {}).items() if v is not None})
        if described["data"].get("kept_as"):  # the run's own copy of its table
            options["data"] = str(folder / described["data"]["kept_as"])
        spec = RunSpec.from_options(**{**options, "name": None})
        plan = plan_from_json(described["plan"], space, (overrides or {}).get("folds"))
        _ = described["data"]["sha256"], described["name"]  # needed later: a KeyError here is clearer
    except (OSError, ValueError, KeyError, TypeError, HpsearchError) as exc:
        raise DataError(
            f"{folder} is not an hpsearch run folder: {SPEC} is missing or damaged "
            f"({type(exc).__name__}: {str(exc)[:120]}). Give a folder written by `hpsearch run`."
        ) from None
    return spec, plan, described


def read_search_trials(folder: Path) -> pd.DataFrame:
    """The search's trial table, checked for the columns the CV stage needs."""
    try:
        trials = pd.read_csv(folder / TRIALS)
        _ = trials[["trial_id", "status", "best_epoch"]]  # the columns retrain needs
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"{folder / TRIALS} is missing or damaged ({type(exc).__name__}: {str(exc)[:120]}). "
            f"Give a finished run's folder (see `hpsearch runs`)."
        ) from None
    return trials


def reload_data(spec: RunSpec, described: dict) -> tuple[Table, Splits]:
    """The run's table, checked against its recorded SHA-256, and the same splits."""
    table = load_table(spec.data, spec.target, header=spec.header, drop=spec.drop, positive=spec.positive)
    if table.sha256 != described["data"]["sha256"]:
        raise DataError(f"{spec.data} changed since the run (SHA-256 differs). Restore it, or start a new run.")
    rows = described["data"].get("source_rows")
    if rows is not None:  # a part of the file (an outer run of `hpsearch evaluate`): that part only
        table = only_rows(table, np.asarray(rows, dtype=np.int64))
    if table.n_rows != described["data"]["rows"]:
        raise DataError(f"{spec.data} gives {table.n_rows} rows where the run had {described['data']['rows']}, "
                        f"and the run does not say which. Start a new run on the table as it is.")
    return table, split_rows(table.y, spec.test_size, spec.val_size, spec.seed)

def keep_table(folder: Path, source: str) -> None:
    """Copy the table into the run folder, for a run whose table lives nowhere else (a DataFrame given
    to ``search.run``): ``retrain`` and ``resume`` read it from there (:func:`read_run_spec`)."""
    import shutil

    shutil.copyfile(source, folder / KEPT_TABLE)


def describe_run(spec: RunSpec, plan: RunPlan, table: Table, splits: Splits, name: str,
                 table_kept: bool = False) -> dict[str, Any]:
    """The resolved run spec, as written to ``spec.json`` (with ``table_kept``, the table is the run
    folder's own copy, :func:`keep_table`)."""
    classes = np.bincount(table.y, minlength=2)
    return {
        "name": name,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "options": spec.model_dump(mode="json"),
        "max_epochs": plan.fidelity.max_epochs,
        "plan": plan.to_json(),
        "space": plan.space.to_dict(),
        "space_file": plan.space.source,
        "data": {
            "source": f"a DataFrame, kept as {KEPT_TABLE}" if table_kept else table.source,
            "sha256": table.sha256,
            "rows": table.n_rows,
            "target": table.target,
            "labels": {"0": table.labels[0], "1": table.labels[1]},
            "positive": table.labels[1],
            "class_counts": {table.labels[0]: int(classes[0]), table.labels[1]: int(classes[1])},
            "features": [{"name": f.name, "kind": f.kind} for f in table.schema],
            "dates": table.dates or {},
            **({"kept_as": KEPT_TABLE} if table_kept else {}),
            **({"source_rows": list(table.source_rows)} if table.source_rows is not None else {}),
        },
        "splits": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "devices": cluster_devices(),
        "versions": library_versions(),
    }


def library_versions() -> dict[str, str]:
    """The versions of what trains and reads a run, recorded in spec.json and the model's metadata."""
    found = {"python": platform.python_version()}
    for dist in ("hpsearch", "ray", "tensorflow", "keras", "scikit-learn", "pandas", "optuna"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found

def read_json(folder: Path, name: str) -> Any:
    path = folder / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError):
        raise DataError(f"{path} is damaged (not valid JSON). Re-run the step that writes it.") from None


def read_trials(folder: Path) -> pd.DataFrame:
    """trials.csv, or for an interrupted run a rough table rebuilt from Ray Tune's progress files."""
    path = folder / TRIALS
    if path.is_file():
        try:
            return pd.read_csv(path)
        except (ValueError, OSError):
            raise DataError(f"{path} is damaged (not a readable CSV). Re-run the search.") from None
    # An interrupted run: rebuild a rough table from Ray Tune's per-trial progress files.
    epochs = read_epochs(folder)
    if epochs.empty:
        return pd.DataFrame(columns=["trial_id", "status"])
    last = epochs.groupby("trial_id").tail(1).set_index("trial_id")
    return pd.DataFrame({"trial_id": last.index, "epochs": last["epoch"].to_numpy(),
                         "status": "interrupted"}).reset_index(drop=True)


def read_epochs(folder: Path, metric: str = "roc_auc") -> pd.DataFrame:
    """Per-trial, per-epoch scores: epochs.csv, or Ray Tune's progress files for an interrupted run."""
    if (folder / EPOCHS).is_file():
        return pd.read_csv(folder / EPOCHS)
    return epoch_history(folder, metric)

def epoch_history(run_dir: Path, metric: str) -> pd.DataFrame:
    """Every trial's per-epoch scores, read back from Ray's experiment folder."""
    frames = []
    for progress in sorted((run_dir / EXPERIMENT_DIR).glob("*/progress.csv")):
        try:
            df = pd.read_csv(progress)
        except (pd.errors.EmptyDataError, OSError):
            continue
        if "epoch" not in df and "training_iteration" in df:  # written before epochs were reported in fractions
            df = df.rename(columns={"training_iteration": "epoch"})
        keep = [c for c in ("trial_id", "epoch", *METRICS, "loss", "train_seconds") if c in df]
        frames.append(df[keep])
    if not frames:
        return pd.DataFrame(columns=["trial_id", "epoch", metric])
    # A trial continued from a checkpoint repeats the epochs after it: the later rows count.
    history = pd.concat(frames, ignore_index=True)
    return history.drop_duplicates(["trial_id", "epoch"], keep="last").reset_index(drop=True)

def list_runs(results_root: str | Path) -> list[dict[str, Any]]:
    """One entry per run folder under ``results_root`` (finished or partial), newest first."""
    root = Path(results_root).resolve()
    runs = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir():
            continue
        try:
            described = json.loads((folder / SPEC).read_text())
            trials = read_trials(folder)
            best = read_json(folder, BEST_CONFIG) if (folder / BEST_CONFIG).is_file() else None
            finished = (folder / CV).is_file() and not folder.name.endswith(".partial")
            runs.append({
                "name": folder.name,
                "date": described.get("started_at", ""),
                "data": described["data"]["source"],
                "trials": len(trials),
                "metric": described["options"]["metric"],
                "best": best["value"] if best else None,
                "status": "finished" if finished else "partial",
                "path": str(folder),
            })
        except (OSError, ValueError, KeyError, TypeError, AttributeError, DataError) as exc:
            why = "no spec.json" if isinstance(exc, FileNotFoundError) else f"{type(exc).__name__}"
            runs.append({"name": folder.name, "date": "", "data": "", "trials": 0, "metric": "", "best": None,
                         "status": f"damaged or not a run ({why})", "path": str(folder)})
    return sorted(runs, key=lambda r: r["date"], reverse=True)
