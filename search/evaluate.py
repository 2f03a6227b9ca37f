"""Nested cross-validation of the whole procedure: the honest estimate of what a run delivers.

A run's own CV score is optimistic: the same rows chose the configuration, its epochs and its
threshold. Here, for each of K stratified outer folds, a complete run (search, CV retrain,
threshold, final fit, export) sees only the other folds, and its exported model scores the
held-out fold at its own threshold. The logistic-regression and majority baselines are scored
on the same outer folds. Each outer run keeps its folder (``outer-1`` ... ``outer-K``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from search import run_folder
from search.data import Table, only_rows, split_rows
from search.errors import DataError, Interrupted
from search.metrics import METRICS, mean_and_std, score_all
from search.spec import RunSpec

EVALUATION = "evaluation.json"
EVALUATION_MD = "evaluation.md"


def evaluate(spec: RunSpec, outer_folds: int, on_fold: Callable[[int, dict[str, Any]], None] | None = None,
             on_progress: Callable[[Any], None] | None = None) -> Path:
    """Run the nested CV; publish ``RESULTS/NAME/`` with ``evaluation.json``/``.md`` and the outer runs."""
    from sklearn.model_selection import StratifiedKFold

    from search.cluster import ray_session
    from search.pipeline import prepare, run_search
    from search.selection import score_baselines

    space, table, _ = prepare(spec)
    counts = np.bincount(table.y, minlength=2)
    if counts.min() < outer_folds * 2:
        raise DataError(f"--outer-folds {outer_folds}: class {int(counts.argmin())} has only {int(counts.min())} "
                        f"rows, too few to put some in every fold. Use fewer outer folds.")
    partial, final = run_folder.start_run(spec.results_root(), spec.run_name())
    plan = list(StratifiedKFold(outer_folds, shuffle=True, random_state=spec.seed).split(table.y, table.y))
    started = time.time()
    folds: list[dict[str, Any]] = []
    try:
        with ray_session(spec.session_options()):
            for k, (outer_train, held_out) in enumerate(plan, start=1):
                inner = only_rows(table, outer_train)
                inner_spec = spec.model_copy(update={"name": f"outer-{k}", "results": str(partial), "test_size": 0.0})
                splits = split_rows(inner.y, 0.0, inner_spec.val_size, inner_spec.seed)
                fold_started = time.time()
                outcome = run_search(inner_spec, on_progress, prepared=(space, inner, splits))
                fold = score_held_out(outcome.run_dir, table, held_out)
                fold.update(outer_fold=k, rows=held_out.tolist(), seconds=time.time() - fold_started,
                            inner_cv_mean=outcome.final.cv_mean, inner_cv_std=outcome.final.cv_std)
                folds.append(fold)
                if on_fold:
                    on_fold(k, fold)
        everything = np.arange(table.n_rows)
        plan = [(np.setdiff1d(everything, f["rows"]), np.asarray(f["rows"])) for f in folds]
        baselines = score_baselines(table, plan, np.array([], int))
        summary = summarise(spec, table, folds, baselines, outer_folds, time.time() - started)
        run_folder.write_json(partial / EVALUATION, summary)
        run_folder.write_text(partial / EVALUATION_MD, to_markdown(summary))
        return run_folder.commit_run(partial, final)
    except BaseException as exc:
        run_folder.abandon_run(partial)
        if isinstance(exc, Interrupted):
            raise KeyboardInterrupt from None  # no outer run to resume: nothing is kept
        raise


def score_held_out(run_dir: Path, table: Table, rows: np.ndarray) -> dict[str, Any]:
    """The exported model's scores on the held-out rows, at the run's own threshold."""
    from search.data import raw_inputs
    from search.export import load_model, probabilities

    model, metadata = load_model(run_dir)
    probability = probabilities(model, raw_inputs(table.features.iloc[rows], table.schema))
    threshold = float(metadata["threshold"])
    return {"threshold": threshold, "scores": score_all(table.y[rows], probability, threshold),
            "scores_at_0.5": score_all(table.y[rows], probability),
            "hyperparameters": metadata["hyperparameters"], "epochs": metadata["epochs"]}


def summarise(spec: RunSpec, table: Table, folds: list[dict[str, Any]], baselines: dict[str, Any],
              outer_folds: int, seconds: float) -> dict[str, Any]:
    return {
        "method": "nested cross-validation: each outer fold scored by a complete run on the other folds",
        "data": table.source,
        "data_sha256": table.sha256,
        "rows": table.n_rows,
        "positive_share": float(np.mean(table.y)),
        "outer_folds": outer_folds,
        "options": spec.model_dump(mode="json"),
        **mean_and_std([f["scores"] for f in folds]),
        "baselines": {name: {"mean": b["mean"], "std": b["std"]} for name, b in baselines.items()},
        "folds": folds,
        "seconds": seconds,
    }


def to_markdown(summary: dict[str, Any]) -> str:
    from search.report import markdown_table

    scores = [["", *METRICS]] + [
        [name, *(f"{s['mean'][m]:.4f} ± {s['std'][m]:.4f}" for m in METRICS)]
        for name, s in [("hpsearch", summary)] + [(f"baseline: {n}", b) for n, b in summary["baselines"].items()]]
    folds = [["outer fold", "rows", "threshold", "roc_auc", "accuracy", "minutes"]] + [
        [f["outer_fold"], len(f["rows"]), f"{f['threshold']:.3f}", f"{f['scores']['roc_auc']:.4f}",
         f"{f['scores']['accuracy']:.4f}", f"{f['seconds'] / 60:.1f}"] for f in summary["folds"]]
    lines = [f"# Nested CV of hpsearch on {summary['data']}", "",
             f"{summary['rows']} rows, {summary['positive_share']:.1%} positive; {summary['outer_folds']} outer "
             f"folds; each scored by a complete run on the other folds, at that run's threshold "
             f"({summary['seconds'] / 60:.1f} min in all).", "",
             *markdown_table(scores), "",
             "Baselines use a 0.5 threshold; hpsearch uses each outer run's chosen threshold.", "",
             *markdown_table(folds)]
    return "\n".join(lines) + "\n"
