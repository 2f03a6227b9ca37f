"""The flow of one run: spec -> data and space -> encoded splits -> search -> results folder.

:func:`run_search` is the library's one entry point; the CLI is a thin layer over it.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search import results
from search.data import Splits, Table, load_table, split_rows
from search.devices import Compute, cluster_devices
from search.errors import DataError, HpsearchError, Interrupted, SearchError
from search.metrics import METRICS, is_better, score_all
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
    final: dict[str, Any]
    devices: dict[str, Any]


def prepare(spec: RunSpec) -> tuple[Space, Table, Splits]:
    """Everything that can fail on bad input, done before any folder is created or Ray started."""
    if spec.name and not spec.is_remote_results():
        results.check_free(spec.results_root(), spec.name)
    space = load_space(spec.space)
    table = load_table(
        spec.data, spec.target, header=spec.header, drop=spec.drop, positive=spec.positive
    )
    splits = split_rows(table.y, spec.test_size, spec.val_size, spec.seed)
    if "class_weight" not in space.params and "class_weight" not in space.fixed:
        space = replace(space, fixed={**space.fixed, "class_weight": spec.class_weights(table.y)})
    return space, table, splits


def run_search(spec: RunSpec, on_progress: Callable[[Progress], None] | None = None,
               prepared: tuple[Space, Table, Splits] | None = None) -> RunOutcome:
    """Run one search end to end (search, CV retrain, export) and publish ``results/<name>/``.

    Args:
        spec: the validated run request.
        on_progress: called with a :class:`Progress` snapshot as trials start and finish.
        prepared: what :func:`prepare` returned for ``spec``, when the caller already has it.

    Raises:
        HpsearchError: bad input (before anything is written) or a search with no usable trial
            (its partial folder is removed).
        Interrupted: Ctrl-C once the search had started; the partial folder stays for ``resume``.
    """
    space, table, splits = prepared or prepare(spec)
    partial, final = results.start_run(spec.results_root(), spec.run_name())
    from search.tuning import ray_session, run_trials

    started = time.time()
    try:
        with ray_session(spec):
            data = encode_for_trials(spec, space, table, splits)
            results.write_json(partial / results.SPEC, describe_run(spec, space, table, splits, final.name))
            trials = run_trials(spec, space, data, partial, on_progress)
            return _finish(spec, space, table, splits, data, trials, partial, final, started, resumed=False)
    except BaseException as exc:
        _keep_if_resumable(partial, exc)
        raise


def resume_run(run: str | Path, on_progress: Callable[[Progress], None] | None = None) -> RunOutcome:
    """Continue an interrupted run (a ``results/.<name>.partial`` folder): the search, then the rest.

    Raises:
        DataError: ``run`` is not an interrupted run, or its data changed since.
        Interrupted: stopped again; the folder stays for another ``resume``.
    """
    from search.tuning import can_resume, ray_session, resume_trials

    partial = find_interrupted(run)
    spec, space, described = _read_run_spec(partial)
    if not can_resume(partial):
        raise DataError(f"{partial} holds no search state to resume (no Ray Tune experiment in it). "
                        f"Start a new run with `hpsearch run`.")
    table, splits = _reload_data(spec, described)
    final = partial.parent / described["name"]
    results.check_free(partial.parent, final.name)
    started = time.time()
    try:
        with ray_session(spec):
            data = encode_for_trials(spec, space, table, splits)
            trials = resume_trials(spec, space, data, partial, on_progress)
            return _finish(spec, space, table, splits, data, trials, partial, final, started, resumed=True)
    except BaseException as exc:
        _keep_if_resumable(partial, exc)
        raise


def find_interrupted(run: str | Path) -> Path:
    """The partial folder of ``run``: a path to it, or a ``results/<name>`` whose run never finished."""
    given = Path(run).expanduser().resolve()
    candidates = [given, given.parent / f".{given.name}.partial"]
    found = next((c for c in candidates if c.is_dir() and c.name.endswith(".partial")), None)
    if found is None:
        if given.is_dir() and (given / results.CV).is_file():
            raise DataError(f"{run} is a finished run; there is nothing to resume. "
                            f"See `hpsearch report {run}`, or `hpsearch retrain {run}`.")
        raise DataError(f"{run}: no interrupted run there (looked for {candidates[1]}). "
                        f"Give the run's folder, e.g. results/NAME; `hpsearch runs` lists them.")
    return found


def _finish(spec: RunSpec, space: Space, table: Table, splits: Splits, data: Any, trials: pd.DataFrame,
            partial: Path, final: Path, started: float, *, resumed: bool) -> RunOutcome:
    """After the search: trials and best config, CV retrain and export, report, then publish the folder."""
    from search.tuning import epoch_history

    searched = time.time()
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
    finished = retrain_and_export(partial, spec, space, table, splits, trials)
    now = time.time()
    results.write_json(partial / results.TIMING, {
        "search_s": searched - started, "retrain_and_export_s": now - searched, "total_s": now - started,
        "resumed": resumed})
    from search.report import render_report

    render_report(partial)
    run_dir = results.commit_run(partial, final)
    if spec.is_remote_results():
        run_dir = results.upload_run(run_dir, spec.results)  # type: ignore[assignment]
    return RunOutcome(run_dir, trials, best_config, tuple(space.params), finished, cluster_devices())


def _keep_if_resumable(partial: Path, exc: BaseException) -> None:
    """On Ctrl-C after the search started, keep the partial folder; otherwise remove it."""
    from search.tuning import EXPERIMENT_DIR

    if isinstance(exc, Interrupted):
        return
    if isinstance(exc, KeyboardInterrupt) and (partial / EXPERIMENT_DIR).is_dir():
        raise Interrupted("stopped by Ctrl-C.", partial) from None
    results.abandon_run(partial)


def retrain_run(run_dir: str | Path, *, top_k: int | None = None, folds: int | None = None,
                repeats: int | None = None, threshold: float | None = None,
                threshold_rule: str | None = None) -> dict[str, Any]:
    """Redo the CV retrain and the export of a finished search, from its folder alone (and its data)."""
    from search.tuning import ray_session

    folder = Path(run_dir).resolve()
    overrides = {"top_k": top_k, "folds": folds, "repeats": repeats, "threshold": threshold,
                 "threshold_rule": threshold_rule}
    spec, space, described = _read_run_spec(folder, overrides)
    trials = _read_trials(folder)
    table, splits = _reload_data(spec, described)
    with ray_session(spec):
        finished = retrain_and_export(folder, spec, space, table, splits, trials)
    from search.report import render_report

    render_report(folder)
    return finished


def _read_run_spec(folder: Path, overrides: dict[str, Any] | None = None) -> tuple[RunSpec, Space, dict]:
    """The RunSpec, Space and ``spec.json`` of a run folder; a foreign or damaged folder is a DataError."""
    import json

    RunSpec.from_options(**(overrides or {}))  # a bad override is the user's flag, not a damaged folder
    try:
        described = json.loads((folder / results.SPEC).read_text())
        options = dict(described["options"])
        space = Space.from_dict(described["space"], source=f"{folder / results.SPEC}: space")
        options.update({k: v for k, v in (overrides or {}).items() if v is not None})
        spec = RunSpec.from_options(**{**options, "name": None})
        _ = described["data"]["sha256"], described["name"]  # needed later: a KeyError here is clearer
    except (OSError, ValueError, KeyError, TypeError, HpsearchError) as exc:
        raise DataError(
            f"{folder} is not an hpsearch run folder: {results.SPEC} is missing or damaged "
            f"({type(exc).__name__}: {str(exc)[:120]}). Give a folder written by `hpsearch run`."
        ) from None
    return spec, space, described


def _read_trials(folder: Path) -> pd.DataFrame:
    try:
        trials = pd.read_csv(folder / results.TRIALS)
        _ = trials[["trial_id", "status", "best_epoch"]]  # the columns retrain needs
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"{folder / results.TRIALS} is missing or damaged ({type(exc).__name__}: {str(exc)[:120]}). "
            f"Give a finished run's folder (see `hpsearch runs`)."
        ) from None
    return trials


def _reload_data(spec: RunSpec, described: dict) -> tuple[Table, Splits]:
    """The run's table, checked against its recorded SHA-256, and the same splits."""
    table = load_table(spec.data, spec.target, header=spec.header, drop=spec.drop, positive=spec.positive)
    if table.sha256 != described["data"]["sha256"]:
        raise DataError(f"{spec.data} changed since the run (SHA-256 differs). Restore it, or start a new run.")
    return table, split_rows(table.y, spec.test_size, spec.val_size, spec.seed)


def retrain_and_export(run_dir: Path, spec: RunSpec, space: Space, table: Table, splits: Splits,
                       trials: pd.DataFrame) -> dict[str, Any]:
    """CV of the top-k configurations, the final fit on all non-test rows, the test score and the export.

    Writes ``cv.json``, ``test.json`` (when a test part was held out) and ``model/``; returns a summary.
    """
    from search.export import INPUT_FORM, join_model, save_model
    from search.preprocess import build_preprocessor, encode, fit_stats, input_name, raw_inputs
    from search.retrain import cross_validate, fit_final, pick_candidates

    fixed = {k: v for k, v in space.fixed.items() if k != "epochs"}
    candidates = pick_candidates(trials, spec.metric, spec.top_k, list(space.params), fixed)
    cv = cross_validate(table, splits, candidates, metric=spec.metric, folds=spec.folds,
                        repeats=spec.cv_repeats(len(splits.train) + len(splits.val)),
                        seed=spec.seed, compute=Compute.of(spec), threshold=spec.threshold,
                        max_epochs=spec.epochs(space.fixed), threshold_rule=spec.threshold_rule)
    rows = np.sort(np.concatenate([splits.train, splits.val]))
    from search.baseline import score_baselines

    baselines = score_baselines(table, rows, cv.fold_rows, splits.test)
    results.write_json(run_dir / results.CV, {**cv.to_json(), "baselines": baselines})

    train = table.features.iloc[rows]
    preprocessor = build_preprocessor(fit_stats(train, table.schema), table.schema)
    network = fit_final(cv.winner.hyperparameters, encode(preprocessor, train, table.schema),
                        table.y[rows].astype(np.float32), cv.winner.epochs, spec.seed,
                        Compute.of(spec))
    model = join_model(preprocessor, network)
    winner_cv = next(c for c in cv.candidates if c["trial_id"] == cv.winner.trial_id)
    test: dict[str, Any] | None = None
    if len(splits.test):
        probability = np.asarray(model(raw_inputs(table.features.iloc[splits.test], table.schema))).ravel()
        test = score_test(table.y[splits.test], probability, cv.threshold)
        baseline_test = {name: b["test"] for name, b in baselines.items()}
        results.write_json(run_dir / results.TEST, {
            **test, "baselines": baseline_test,
            "y": table.y[splits.test].tolist(), "probability": probability.tolist(),
        })
    metadata = {
        "input_form": INPUT_FORM,
        "features": [{"name": f.name, "input": input_name(f.name), "kind": f.kind} for f in table.schema],
        "target": table.target,
        "labels": {"0": table.labels[0], "1": table.labels[1]},
        "header": spec.header,
        "threshold": cv.threshold,
        "threshold_rule": cv.threshold_rule,
        "hyperparameters": cv.winner.hyperparameters,
        "epochs": cv.winner.epochs,
        "trial_id": cv.winner.trial_id,
        "metric": spec.metric,
        "cv": {"folds": cv.folds, "repeats": cv.repeats, "mean": winner_cv["mean"], "std": winner_cv["std"]},
        "test": test,
        "seed": spec.seed,
        "data": table.source,
        "data_sha256": table.sha256,
        "versions": _versions(),
    }
    check = raw_inputs(table.features.iloc[: min(256, table.n_rows)], table.schema)
    save_model(run_dir, model, metadata, check, savedmodel=spec.export_savedmodel)
    return {"winner": cv.winner.trial_id, "cv_mean": winner_cv["mean"], "cv_std": winner_cv["std"],
            "threshold": cv.threshold, "test": test}


def score_test(y: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, Any]:
    """The final model's scores on the held-out test part, at the chosen threshold."""
    from sklearn.metrics import confusion_matrix, precision_score, recall_score

    predicted = (probability >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    return {
        "rows": int(len(y)),
        "threshold": threshold,
        **score_all(y, probability, threshold),
        "precision": float(precision_score(y, predicted, zero_division=0.0)),
        "recall": float(recall_score(y, predicted, zero_division=0.0)),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


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
        fixed={k: v for k, v in space.fixed.items() if k != "epochs"},
        checkpoint_every=spec.checkpoint_every,
        compute=Compute.of(spec),
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
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
        "devices": cluster_devices(),
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
