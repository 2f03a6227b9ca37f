"""The best-config report: ``report.json``, ``report.md`` and a self-contained ``report.html``.

Built from the files of a results folder alone (no training, no Keras, no Ray), so it can be
rebuilt at any time, also for an interrupted run, whose missing parts are named as such.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from search import run_folder
from search.compute import trials_on_gpu
from search.errors import DataError
from search.metrics import METRICS, ranked_trials
from search.report.figures import draw_figures
from search.selection import TUNED_BOOSTING, TUNED_CANDIDATES
from search.space import Space

REPORT_JSON, REPORT_MD, REPORT_HTML = "report.json", "report.md", "report.html"
IMPORTANCE_METHOD = (
    "Optuna's fANOVA evaluator (a random forest fitted to the trials' best validation scores, "
    "variance decomposed per hyperparameter); only trials that were not errored or diverged"
)


def render_report(run_dir: str | Path) -> dict[str, Any]:
    """Write report.json, report.md and report.html into ``run_dir``; return the report's content."""
    folder = Path(run_dir).resolve()
    report = collect(folder)
    figures = draw_figures(folder, report)
    from search.report.layout import to_html, to_markdown

    run_folder.write_json(folder / REPORT_JSON, report)
    run_folder.write_text(folder / REPORT_MD, to_markdown(report))
    run_folder.write_text(folder / REPORT_HTML, to_html(report, figures))
    return report


def summary_json(report: dict[str, Any]) -> dict[str, Any]:
    """A run's outcome for scripts (``hpsearch report --json``): the stable keys that docs/cli.md lists,
    unlike ``report.json``, which holds everything the report shows and may grow."""
    from search.export import MODEL_DIR, MODEL_FILE

    cv, test, best = report.get("cv"), report.get("test"), report.get("best")
    winner = next((c for c in cv["candidates"] if c["trial_id"] == cv["winner"]), None) if cv else None
    ensemble = (report.get("model") or {}).get("ensemble") or {}
    folder = Path(report["folder"])
    exported = report.get("model") is not None
    return {
        "schema": 1,
        "name": report["name"],
        "folder": str(folder),
        "complete": not report["partial"],
        "missing": report["missing"],
        "metric": report["metric"],
        "best_trial": {"trial_id": best["trial_id"], "value": best["value"], "epoch": best["best_epoch"]}
        if best else None,
        "winner": cv["winner"] if cv else None,
        "cv": {"mean": winner["mean"], "std": winner["std"]} if winner else None,
        "threshold": cv["threshold"] if cv else None,
        "test": {k: test[k] for k in ("rows", "roc_auc", "accuracy", "f1", "log_loss") if k in test} if test else None,
        "model": {"kind": "ensemble" if ensemble.get("chosen") else "network",
                  "members": ensemble.get("members") or ([{"trial_id": cv["winner"], "weight": 1.0}] if cv else []),
                  "path": str(folder / MODEL_DIR / MODEL_FILE)} if exported else None,
        "report": str(folder / REPORT_HTML),
        "against_boosting": report.get("against_boosting", ""),
    }


def collect(folder: Path) -> dict[str, Any]:
    """Everything the report says, as plain data."""
    spec = run_folder.read_json(folder, run_folder.SPEC)
    if spec is None:
        raise DataError(f"{folder} has no {run_folder.SPEC}: it is not an hpsearch run folder. Give results/NAME.")
    best = run_folder.read_json(folder, run_folder.BEST_CONFIG)
    cv = run_folder.read_json(folder, run_folder.CV)
    test = run_folder.read_json(folder, run_folder.TEST)
    timing = run_folder.read_json(folder, run_folder.TIMING)
    trials = run_folder.read_trials(folder)
    metric = spec["options"]["metric"]
    missing = [name for name, part in (("best_config.json", best), ("cv.json", cv), ("test.json", test))
               if part is None and not (name == "test.json" and spec["splits"]["test"] == 0)]
    report: dict[str, Any] = {
        "name": spec.get("name", folder.name),
        "folder": str(_published(folder, spec.get("name", folder.name))),
        "partial": bool(missing),
        "missing": missing,
        "metric": metric,
        "mode": METRICS[metric],
        "summary": _summary(spec, trials, timing),
        "best": best,
        "top_trials": _top_trials(trials, metric),
        "rungs": _rungs(trials, spec),
        "importance": _importance(trials, spec, metric),
        "importance_method": IMPORTANCE_METHOD,
        "model": _model(folder),
    }
    if cv is not None:
        report["cv"] = _cv_section(cv, metric)
        report["why"] = _why(report["cv"], metric)
        report["verdict"] = _verdict(report["cv"], metric)
    if test is not None:
        report["test"] = {k: v for k, v in test.items() if k not in ("y", "probability")}
    if cv is not None:
        report["against_boosting"] = against_boosting(report, metric)
    return report


def _summary(spec: dict[str, Any], trials: pd.DataFrame, timing: dict[str, Any] | None) -> dict[str, Any]:
    """The run's set-up: the data, the space, the scheduler and its plan, the resources, the versions."""
    options, data = spec["options"], spec["data"]
    kinds = pd.Series([f["kind"] for f in data["features"]]).value_counts().to_dict()
    plan = spec.get("plan") or {}
    return {
        "data": data["source"],
        "sha256": data["sha256"],
        "rows": data["rows"],
        "features": {"total": len(data["features"]), **kinds},
        "target": data["target"],
        "positive": data["positive"],
        "class_counts": data["class_counts"],
        "splits": spec["splits"],
        "space": spec["space"],
        "searcher": options["searcher"],
        "scheduler": {"name": "ASHA", "max_epochs": spec["max_epochs"],
                      "grace_period": plan.get("grace_period", options["grace_period"]),
                      "reduction_factor": options["reduction_factor"],
                      "reports_per_epoch": plan.get("reports_per_epoch", 1)},
        "plan": spec.get("plan"),
        "samples": options["samples"],
        "resources": {"cpus": options.get("cpus"), "cpus_per_trial": options["cpus_per_trial"],
                      "gpus_per_trial": options["gpus_per_trial"],
                      "backend": options.get("backend", "jax"),
                      "mixed_precision": bool(options.get("mixed_precision", False)),
                      "devices": spec.get("devices"),
                      "trials_on_gpu": trials_on_gpu(trials)},
        "nodes": _nodes(trials),
        "timing": timing,
        "trials_by_status": trials["status"].value_counts().to_dict() if len(trials) else {},
        "versions": spec.get("versions", {}),
    }


def _cv_section(cv: dict[str, Any], metric: str) -> dict[str, Any]:
    """cv.json as the report shows it: each scored candidate's fold scores of the run's metric, the
    candidates without a fold score (cut by the budget, or every fold diverged), the baselines' times."""
    return {
        "folds": cv["folds"], "repeats": cv["repeats"], "winner": cv["winner"], "tie_rule": cv["tie_rule"],
        "rule": cv.get("rule", "kfold"), "method": cv.get("method", ""),
        "epochs_rule": cv["epochs_rule"], "threshold": cv["threshold"], "threshold_rule": cv["threshold_rule"],
        "candidates": [{k: c[k] for k in ("trial_id", "hyperparameters", "epochs", "mean", "std")}
                       | {"folds": [f[metric] for f in c["fold_scores"]], "cv_curve": c.get("cv_curve", []),
                          "diverged_folds": c.get("diverged_folds", 0)} for c in cv["candidates"] if c["fold_scores"]],
        # a budgeted run's deadline can come before a candidate's first fold ends
        "unscored": [f"{c['trial_id']} ({'every fold diverged' if c.get('diverged_folds') else 'the budget ran out'})"
                     for c in cv["candidates"] if not c["fold_scores"]],
        "baselines": {n: {"mean": b["mean"], "std": b["std"],
                          "seconds": b.get("cv_seconds", 0.0) + b.get("test_seconds", 0.0)}
                      for n, b in cv.get("baselines", {}).items()},
    }


def _published(folder: Path, name: str) -> Path:
    """Where the run's folder is once published: a report is written in ``.NAME.partial`` just before the
    rename to ``NAME``, and its paths (the model's, in "Use this model") must name the final folder."""
    return folder.parent / name if folder.name == f".{name}.partial" else folder


def _model(folder: Path) -> dict[str, Any] | None:
    """What the "use this model" code needs to know of the exported model, or None before the export."""
    from search.export import METADATA_FILE, MODEL_DIR

    metadata = run_folder.read_json(folder / MODEL_DIR, METADATA_FILE)
    if metadata is None:
        return None
    return {"dates": metadata.get("dates") or {},
            "categorical": any(f["kind"] == "categorical" for f in metadata["features"]),
            "ensemble": metadata.get("ensemble"),
            "levels": {f["name"]: f["levels"] for f in metadata["features"] if f.get("levels")}}


def against_boosting(report: dict[str, Any], metric: str) -> str:
    """One plain sentence: the network or scikit-learn's gradient boosting, on this table's CV and test part."""
    cv = report["cv"]
    boost = cv["baselines"].get("gradient boosting")
    if boost is None:
        return ""
    win = next(c for c in cv["candidates"] if c["trial_id"] == cv["winner"])
    sign = 1 if METRICS[metric] == "max" else -1
    gap = sign * (win["mean"][metric] - boost["mean"][metric])
    spread = max(win["std"][metric], boost["std"][metric])
    test = report.get("test") or {}
    boost_test = (test.get("baselines") or {}).get("gradient boosting")
    on_test = ""
    if boost_test and metric in test:
        on_test = (f"; test {metric} {test[metric]:.4f} against {boost_test[metric]:.4f}")
    tuned = (test.get("baselines") or {}).get(TUNED_BOOSTING)
    tuned_gap = sign * (tuned[metric] - test[metric]) if tuned and metric in test else -math.inf
    if tuned_gap > -math.inf:
        tried = (test.get("tuned_boosting") or {}).get("candidates", TUNED_CANDIDATES)
        on_test += f", and {tuned[metric]:.4f} for boosting tuned by a random search of {tried}"
    figures = (f"CV {metric} {win['mean'][metric]:.4f} against {boost['mean'][metric]:.4f} for "
               f"gradient boosting (scikit-learn's HistGradientBoostingClassifier, defaults, "
               f"{boost.get('seconds', 0):.1f} s){on_test}")
    tuned_wins = (f" Tuned boosting beats the network on the test part by {tuned_gap:.4f}: deploy it here, or give "
                  f"the search more time." if tuned_gap > spread else "")
    if abs(gap) <= spread:
        return (f"Network and gradient boosting are level here (within the folds' spread of {spread:.4f}): "
                f"{figures}.{tuned_wins}")
    if gap > 0:
        return f"The network beats gradient boosting on this table: {figures}.{tuned_wins}"
    return (f"Gradient boosting wins on this table, by {abs(gap):.4f} (more than the folds' spread of {spread:.4f}): "
            f"{figures}. Deploy boosting here, or give the search more time.")


def _nodes(trials: pd.DataFrame) -> list[str]:
    """The nodes trials ran on, as ``IP (node id prefix)``: several nodes can share one IP."""
    if "node_ip" not in trials:
        return []
    ids = trials["node_id"] if "node_id" in trials else pd.Series([""] * len(trials))
    pairs = {(str(ip), str(nid)[:8] if isinstance(nid, str) else "") for ip, nid in zip(trials["node_ip"], ids,
                                                                                       strict=True)}
    return sorted(f"{ip} ({nid})" if nid else ip for ip, nid in pairs if ip and ip != "nan")


def _why(cv: dict[str, Any], metric: str) -> str:
    ranked = sorted(cv["candidates"], key=lambda c: c["mean"][metric], reverse=METRICS[metric] == "max")
    win = next(c for c in cv["candidates"] if c["trial_id"] == cv["winner"])
    text = (f"Trial {win['trial_id']} won: mean CV {metric} {win['mean'][metric]:.4f} ± {win['std'][metric]:.4f} "
            f"over {len(win['folds'])} folds")
    others = [c for c in ranked if c is not win]
    if others:
        gap = abs(win["mean"][metric] - others[0]["mean"][metric])
        spread = max(win["std"][metric], others[0]["std"][metric])
        sure = ("a clear margin" if gap > spread else
                "a margin within one standard deviation, so the top configurations are about equally good")
        text += f", ahead of {others[0]['trial_id']} by {gap:.4f} ({sure})"
    return text + "."


def _verdict(cv: dict[str, Any], metric: str) -> str:
    win = next(c for c in cv["candidates"] if c["trial_id"] == cv["winner"])["mean"][metric]
    sign = 1 if METRICS[metric] == "max" else -1
    beaten = [n for n, b in cv["baselines"].items() if sign * (b["mean"][metric] - win) >= 0]
    if not cv["baselines"]:
        return "No baseline was scored."
    if beaten:
        return (f"The network does not beat the {' and the '.join(beaten)} on mean CV {metric}: "
                f"a simpler model is as good here.")
    best_name, best = max(cv["baselines"].items(), key=lambda kv: sign * kv[1]["mean"][metric])
    spread = max(best["std"][metric], next(c for c in cv["candidates"] if c["trial_id"] == cv["winner"])["std"][metric])
    if abs(win - best["mean"][metric]) <= spread:
        return (f"The network and the {best_name} are level on mean CV {metric} ({win:.4f} against "
                f"{best['mean'][metric]:.4f}, within the folds' spread of {spread:.4f}).")
    return (f"The network beats every baseline on mean CV {metric} ({win:.4f} against {best['mean'][metric]:.4f} "
            f"for the {best_name}).")


def _rungs(trials: pd.DataFrame, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """ASHA's rungs (grace period, times the reduction factor, up to a full trial) and how many trials
    trained to each: where the search spent its epochs."""
    options, plan = spec["options"], spec.get("plan") or {}
    grace = float(plan.get("grace_period", options["grace_period"]) or 0)
    factor, full = float(options["reduction_factor"]), float(spec["max_epochs"])
    if not len(trials) or "epochs" not in trials or grace <= 0:
        return []
    epochs = pd.to_numeric(trials["epochs"], errors="coerce").fillna(0)
    rungs, rung = [], grace
    while rung < full - 1e-9:
        rungs.append(rung)
        rung *= factor
    return [{"epoch": r, "trials": int((epochs >= r - 1e-9).sum()), "of": len(trials),
             "full": r == full} for r in [*rungs, full]]


def _top_trials(trials: pd.DataFrame, metric: str, n: int = 10) -> list[dict[str, Any]]:
    top = ranked_trials(trials, metric, usable_only=False).head(n)
    return top.drop(columns=["error", "traceback"], errors="ignore").to_dict("records")


def _importance(trials: pd.DataFrame, spec: dict[str, Any], metric: str) -> dict[str, float]:
    """fANOVA importance of each searched hyperparameter for the best validation score."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    column = f"best_{metric}"
    if column not in trials:
        return {}
    usable = trials.dropna(subset=[column])
    params = spec["space"]["params"]
    if len(usable) < 4 or not params:
        return {}
    distributions = {}
    for name, p in params.items():
        if p["type"] == "choice":
            distributions[name] = CategoricalDistribution(p["values"])
        elif p["type"] == "int":
            distributions[name] = IntDistribution(p["low"], p["high"], log=p.get("log", False))
        else:
            distributions[name] = FloatDistribution(p["low"], p["high"], log=p.get("log", False))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize" if METRICS[metric] == "max" else "minimize")
    space = Space.from_dict(spec["space"])
    for row in usable.to_dict("records"):
        values = space.values_of(row)  # a hypermodel's param outside its conditional scope is left out
        study.add_trial(optuna.trial.create_trial(params=values, distributions={k: distributions[k] for k in values},
                                                  value=float(row[column])))
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError):
        return {}
    return {k: float(v) for k, v in found.items()}


# --- text --------------------------------------------------------------------------------------
