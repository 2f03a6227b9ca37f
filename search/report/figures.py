"""The report's plots, drawn with matplotlib from the run folder's files and embedded as base64 PNGs.

One function a plot; each returns ``None`` when the run folder lacks what it needs, so that the
report of an interrupted run shows what there is.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search import run_folder
from search.metrics import METRICS, ranked_trials


def draw_figures(folder: Path, report: dict[str, Any]) -> dict[str, str]:
    """The report's plots as base64 PNGs, keyed by section."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = {
        "curves": _curves(plt, folder, report),
        "winner": _winner(plt, folder, report),
        "params": _params(plt, folder, report),
        "parallel": _parallel(plt, folder, report),
        "importance": _importance(plt, report),
        "test": _test(plt, folder, report),
        "cv": _cv(plt, report),
    }
    plt.close("all")
    return {key: png for key, png in drawn.items() if png is not None}


def _curves(plt: Any, folder: Path, report: dict[str, Any]) -> str | None:
    """Every trial's validation curve, with ASHA's rungs: where the poor trials were stopped. The y axis
    spans the good half of the trials' scores (the rest run off it), and the winner is drawn on top."""
    metric = report["metric"]
    epochs = run_folder.read_epochs(folder, metric)
    if metric not in epochs or not len(epochs):
        return None
    winner = _winner_id(report)
    fig, ax = plt.subplots(figsize=(8, 4))
    for trial_id, trial in epochs.groupby("trial_id"):
        if trial_id != winner:
            ax.plot(trial["epoch"], trial[metric], lw=0.8, alpha=0.5, color="#8aa")
    ours = epochs[epochs["trial_id"] == winner]
    if len(ours):
        ax.plot(ours["epoch"], ours[metric], lw=2.2, color="black", label=f"{winner} (the winner)")
        ax.legend(loc="lower right" if METRICS[metric] == "max" else "upper right", fontsize=8)
    ax.set_ylim(*_zoom(epochs, metric))
    sched = report["summary"]["scheduler"]
    rung = float(sched["grace_period"])
    while rung < sched["max_epochs"]:
        ax.axvline(rung, color="grey", ls="--", lw=0.8)
        rung *= sched["reduction_factor"]
    ax.set(xlabel="epoch", ylabel=f"validation {metric}", title="Every trial per epoch (dashed: ASHA rungs)")
    return _png(fig)


def _zoom(epochs: pd.DataFrame, metric: str) -> tuple[float, float]:
    """The y range where the good trials differ: from the worst score the better half of the trials
    reached, after their first epoch, to the best of all, with a margin."""
    best = epochs.groupby("trial_id")[metric].agg("max" if METRICS[metric] == "max" else "min").dropna()
    if best.empty:
        return 0.0, 1.0
    good = best[best >= best.median()] if METRICS[metric] == "max" else best[best <= best.median()]
    values = epochs[epochs["trial_id"].isin(good.index) & (epochs["epoch"] > epochs["epoch"].min())][metric].dropna()
    values = values if len(values) else epochs[metric].dropna()
    low, high = float(values.quantile(0.05)), float(values.max())
    low, high = (low, high) if METRICS[metric] == "max" else (float(values.min()), float(values.quantile(0.95)))
    margin = max(1e-3, 0.08 * (high - low))
    return low - margin, high + margin


def _winner_id(report: dict[str, Any]) -> str:
    """The CV's winner, else (before the CV) the search's best trial."""
    return (report.get("cv") or {}).get("winner") or (report.get("best") or {}).get("trial_id", "")


def _winner(plt: Any, folder: Path, report: dict[str, Any]) -> str | None:
    """The winner's own curves: its training loss and validation log loss in the search, and its CV mean
    score per epoch, whose peak chose the epochs the final fit trains."""
    cv, metric = report.get("cv"), report["metric"]
    winner = next((c for c in (cv or {}).get("candidates", []) if c["trial_id"] == cv["winner"]), None)
    epochs = run_folder.read_epochs(folder, metric)
    if winner is None or "trial_id" not in epochs:
        return None
    ours = epochs[epochs["trial_id"] == winner["trial_id"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for column, label in (("loss", "training loss"), ("log_loss", "validation log loss")):
        if column in ours and ours[column].notna().any():
            left.plot(ours["epoch"], ours[column], label=label)
    left.set(xlabel="epoch", ylabel="loss", title=f"{winner['trial_id']} in the search")
    left.legend(fontsize=8)
    curve = winner.get("cv_curve") or []
    if curve:
        right.plot(range(1, len(curve) + 1), curve, color="black")
        right.axvline(winner["epochs"], color="tab:red", ls="--", lw=1)
        right.annotate(f"epoch {winner['epochs']}", (winner["epochs"], curve[winner["epochs"] - 1]),
                       textcoords="offset points", xytext=(6, -12), fontsize=8, color="tab:red")
    right.set(xlabel="epoch", ylabel=f"mean held-out {metric}", title="Its CV folds' mean (dashed: the epochs kept)")
    fig.tight_layout()
    return _png(fig)


def _params(plt: Any, folder: Path, report: dict[str, Any]) -> str | None:
    """Each hyperparameter against the trials' best score, three to a row: which values pay."""
    metric = report["metric"]
    trials = run_folder.read_trials(folder)
    space = report["summary"]["space"]["params"]
    column = f"best_{metric}"
    if column not in trials or not space:
        return None
    cols = min(3, len(space))
    rows = -(-len(space) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    usable = trials.dropna(subset=[column])
    for ax, name in zip(axes.flat, space, strict=False):
        x = usable[name]
        if x.dtype == object:
            x = x.astype(str)
        ax.scatter(x, usable[column], s=14, alpha=0.7)
        if space[name].get("log"):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(plt.NullFormatter())  # minor labels of a short log axis overlap
        ax.set(xlabel=name, ylabel=f"best {metric}")
    for ax in list(axes.flat)[len(space):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


def _parallel(plt: Any, folder: Path, report: dict[str, Any]) -> str | None:
    """Parallel coordinates: one line per usable trial across the hyperparameters, coloured by its rank
    (not its score: one outlier would give every other line the same colour), the best trial drawn
    thick; each axis runs from the space's low bound to its high one."""
    metric = report["metric"]
    space = report["summary"]["space"]["params"]
    trials = ranked_trials(run_folder.read_trials(folder), metric)
    if len(trials) < 2 or len(space) < 2:
        return None
    names = list(space)
    scaled = np.column_stack([_unit(trials[name], space[name]) for name in names])
    ranks = np.arange(1, len(trials) + 1)  # ranked_trials: the best first
    fig, ax = plt.subplots(figsize=(max(8.0, 1.6 * len(names)), 4.8))
    colours = plt.get_cmap("viridis_r")
    norm = plt.Normalize(1, len(trials))
    for i in range(len(trials))[::-1]:  # the best last, on top
        ax.plot(range(len(names)), scaled[i], color=colours(norm(ranks[i])), lw=2.6 if i == 0 else 1.0,
                alpha=1.0 if i == 0 else 0.6)
    for j, name in enumerate(names):
        ax.axvline(j, color="grey", lw=0.6)
        low, high = _bounds(space[name])
        ax.annotate(low, (j, -0.04), ha="center", va="top", fontsize=8)
        ax.annotate(high, (j, 1.04), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=9)
    ax.set(yticks=[], ylim=(-0.15, 1.15), title=f"Trials across the hyperparameters (thick: the best by {metric})")
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=colours), ax=ax, label=f"rank by best validation {metric}")
    bar.ax.invert_yaxis()  # rank 1 at the top
    fig.tight_layout()
    return _png(fig)


def _unit(values: pd.Series, param: dict[str, Any]) -> np.ndarray:
    """A hyperparameter's values on [0, 1] of its axis (log axes for log params, evenly spaced choices)."""
    if param["type"] == "choice":
        order = {str(v): i for i, v in enumerate(param["values"])}
        return np.array([order.get(str(v), np.nan) for v in values], dtype=float) / max(1, len(order) - 1)
    x, low, high = values.to_numpy(dtype=float), float(param["low"]), float(param["high"])
    if param.get("log"):
        x, low, high = np.log(x), np.log(low), np.log(high)
    return (x - low) / (high - low) if high > low else np.zeros_like(x)


def _bounds(param: dict[str, Any]) -> tuple[str, str]:
    if param["type"] == "choice":
        return str(param["values"][0]), str(param["values"][-1])
    return f"{param['low']:g}", f"{param['high']:g}"


def _importance(plt: Any, report: dict[str, Any]) -> str | None:
    importance = report["importance"]
    if not importance:
        return None
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(importance) + 1))
    names = list(importance)[::-1]
    ax.barh(names, [importance[n] for n in names])
    ax.set(xlabel="importance (fANOVA)", title="Hyperparameter importance")
    return _png(fig)


def _test(plt: Any, folder: Path, report: dict[str, Any]) -> str | None:
    """The final model on the test part: its ROC curve and its confusion at the chosen threshold."""
    test = run_folder.read_json(folder, run_folder.TEST)
    if test is None or not (folder / run_folder.TEST_PREDICTIONS).is_file():
        return None
    from sklearn.metrics import roc_curve

    predictions = pd.read_parquet(folder / run_folder.TEST_PREDICTIONS)
    fpr, tpr, _ = roc_curve(predictions["y"], predictions["probability"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.6))
    ax1.plot(fpr, tpr, label=f"network (AUC {test['roc_auc']:.3f})")
    ax1.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
    ax1.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on the test part")
    ax1.legend(loc="lower right")
    cm = test["confusion_matrix"]
    grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    ax2.imshow(grid, cmap="Blues")
    for (i, j), v in np.ndenumerate(grid):
        ax2.text(j, i, str(v), ha="center", va="center")
    labels = list(report["summary"]["class_counts"])  # label of class 0, then of class 1
    ax2.set(xticks=[0, 1], yticks=[0, 1], xticklabels=labels, yticklabels=labels, xlabel="predicted",
            ylabel="true", title=f"Confusion at threshold {test['threshold']:.3f}")
    fig.tight_layout()
    return _png(fig)


def _cv(plt: Any, report: dict[str, Any]) -> str | None:
    if "cv" not in report:
        return None
    metric = report["metric"]
    candidates = report["cv"]["candidates"]
    fig, ax = plt.subplots(figsize=(6, 3))
    for i, cand in enumerate(candidates):
        ax.scatter([i] * len(cand["folds"]), cand["folds"], s=14)
        ax.hlines(cand["mean"][metric], i - 0.25, i + 0.25, color="black")
    ax.set_xticks(range(len(candidates)), [c["trial_id"] for c in candidates])
    ax.set(ylabel=f"CV {metric}", title="Top configurations: fold scores and mean")
    return _png(fig)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")  # no label clipped at the edge
    return base64.b64encode(buffer.getvalue()).decode()
