"""The flow of one run: spec -> data and space -> encoded splits -> search -> results folder.

:func:`run_search` is the library's one entry point; the CLI is a thin layer over it.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search import results
from search.data import Splits, Table, load_table, split_rows
from search.errors import SearchError
from search.metrics import METRICS, is_better
from search.model import resolve_config
from search.space import Space, load_space
from search.spec import RunSpec
from search.tuning import Progress


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run produced."""

    run_dir: Path
    trials: pd.DataFrame
    best: dict[str, Any]
    searched: tuple[str, ...]


def prepare(spec: RunSpec) -> tuple[Space, Table, Splits]:
    """Everything that can fail on bad input, done before any folder is created or Ray started."""
    if spec.name:
        results.check_free(spec.results_root(), spec.name)
    space = load_space(spec.space)
    table = load_table(
        spec.data, spec.target, header=spec.header, drop=spec.drop, positive=spec.positive
    )
    splits = split_rows(table.y, spec.test_size, spec.val_size, spec.seed)
    return space, table, splits


def run_search(spec: RunSpec, on_progress: Callable[[Progress], None] | None = None) -> RunOutcome:
    """Run one search end to end and publish ``results/<name>/``.

    Raises:
        HpsearchError: bad input (before anything is written) or a search with no usable trial
            (its partial folder is removed).
    """
    space, table, splits = prepare(spec)
    partial, final = results.start_run(spec.results_root(), spec.run_name())
    try:
        data = encode_for_trials(spec, space, table, splits)
        results.write_json(partial / results.SPEC, describe_run(spec, space, table, splits, final.name))
        from search.tuning import epoch_history, run_trials

        trials = run_trials(spec, space, data, partial, on_progress)
        best = best_trial(trials, data.metric)
        best_config = {
            "trial_id": best["trial_id"],
            "hyperparameters": resolve_config({**data.fixed, **{k: best[k] for k in space.params}}),
            "metric": data.metric,
            "mode": METRICS[data.metric],
            "value": best[f"best_{data.metric}"],
            "best_epoch": best["best_epoch"],
            "epochs_trained": best["epochs"],
            "max_epochs": data.max_epochs,
            "seed": spec.seed,
            "data": table.source,
            "data_sha256": table.sha256,
        }
        results.write_csv(partial / results.TRIALS, trials)
        results.write_csv(partial / results.EPOCHS, epoch_history(partial, data.metric))
        results.write_json(partial / results.BEST_CONFIG, best_config)
        run_dir = results.commit_run(partial, final)
    except BaseException:
        results.abandon_run(partial)
        raise
    return RunOutcome(run_dir, trials, best_config, tuple(space.params))


def encode_for_trials(spec: RunSpec, space: Space, table: Table, splits: Splits) -> Any:
    """Fit the preprocessing on the trials' training part only, and encode train and validation once."""
    from search.preprocess import build_preprocessor, encode, fit_stats
    from search.trainable import TrialData

    train_rows = table.features.iloc[splits.train]
    preprocessor = build_preprocessor(fit_stats(train_rows, table.schema), table.schema)
    return TrialData(
        x_train=encode(preprocessor, train_rows, table.schema),
        y_train=table.y[splits.train].astype(np.float32),
        x_val=encode(preprocessor, table.features.iloc[splits.val], table.schema),
        y_val=table.y[splits.val],
        metric=spec.metric,
        max_epochs=spec.epochs(space.fixed),
        seed=spec.seed,
        cpus=spec.cpus_per_trial,
        fixed={k: v for k, v in space.fixed.items() if k != "epochs"},
    )


def best_trial(trials: pd.DataFrame, metric: str) -> dict[str, Any]:
    """The trial with the best validation score; fewer epochs wins a tie. No usable trial is an error."""
    column = f"best_{metric}"
    usable = trials[trials["status"].isin(["completed", "stopped early"]) & trials[column].notna()]
    if usable.empty:
        counts = trials["status"].value_counts().to_dict()
        errors = trials.loc[trials["error"].astype(str) != "", "error"].astype(str)
        first = f" First error: {errors.iloc[0]}" if len(errors) else ""
        raise SearchError(
            f"all {len(trials)} trials failed ({counts}).{first} "
            f"Check the space (e.g. a lower learning_rate) and the data."
        )
    best: dict[str, Any] | None = None
    for row in usable.to_dict("records"):
        if best is None or is_better(row[column], best[column], metric):
            best = row
    assert best is not None
    return best


def describe_run(spec: RunSpec, space: Space, table: Table, splits: Splits, name: str) -> dict[str, Any]:
    """The resolved run spec, as written to ``spec.json``."""
    classes = np.bincount(table.y, minlength=2)
    return {
        "name": name,
        "options": spec.model_dump(mode="json"),
        "max_epochs": spec.epochs(space.fixed),
        "space": space.to_dict(),
        "space_file": space.source,
        "data": {
            "source": table.source,
            "sha256": table.sha256,
            "rows": table.n_rows,
            "target": table.target,
            "labels": {"0": table.labels[0], "1": table.labels[1]},
            "positive": table.labels[1],
            "class_counts": {table.labels[0]: int(classes[0]), table.labels[1]: int(classes[1])},
            "features": [{"name": f.name, "kind": f.kind} for f in table.schema],
        },
        "splits": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("hpsearch", "ray", "tensorflow", "keras", "scikit-learn", "pandas", "optuna"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found
