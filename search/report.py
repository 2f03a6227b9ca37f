"""The best-config report: ``report.json``, ``report.md`` and a self-contained ``report.html``.

Built from the files of a results folder alone (no training, no Keras, no Ray), so it can be
rebuilt at any time, also for an interrupted run, whose missing parts are named as such.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from search import results, run_folder
from search.devices import describe, trials_on_gpu
from search.errors import DataError
from search.figures import draw_figures
from search.metrics import METRICS, ranked_trials

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
    results.write_json(folder / REPORT_JSON, report)
    results.write_text(folder / REPORT_MD, to_markdown(report))
    results.write_text(folder / REPORT_HTML, to_html(report, figures))
    return report


def collect(folder: Path) -> dict[str, Any]:
    """Everything the report says, as plain data."""
    spec = run_folder.read_json(folder, results.SPEC)
    if spec is None:
        raise DataError(f"{folder} has no {results.SPEC}: it is not an hpsearch run folder. Give results/NAME.")
    best = run_folder.read_json(folder, results.BEST_CONFIG)
    cv = run_folder.read_json(folder, results.CV)
    test = run_folder.read_json(folder, results.TEST)
    timing = run_folder.read_json(folder, results.TIMING)
    trials = run_folder.read_trials(folder)
    metric = spec["options"]["metric"]
    missing = [name for name, part in (("best_config.json", best), ("cv.json", cv), ("test.json", test))
               if part is None and not (name == "test.json" and spec["splits"]["test"] == 0)]
    report: dict[str, Any] = {
        "name": spec.get("name", folder.name),
        "folder": str(folder),
        "partial": bool(missing),
        "missing": missing,
        "metric": metric,
        "mode": METRICS[metric],
        "summary": _summary(spec, trials, timing),
        "best": best,
        "top_trials": _top_trials(trials, metric),
        "importance": _importance(trials, spec, metric),
        "importance_method": IMPORTANCE_METHOD,
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
    """cv.json as the report shows it: each candidate's fold scores of the run's metric, the baselines' times."""
    return {
        "folds": cv["folds"], "repeats": cv["repeats"], "winner": cv["winner"], "tie_rule": cv["tie_rule"],
        "rule": cv.get("rule", "kfold"), "method": cv.get("method", ""),
        "epochs_rule": cv["epochs_rule"], "threshold": cv["threshold"], "threshold_rule": cv["threshold_rule"],
        "candidates": [{k: c[k] for k in ("trial_id", "hyperparameters", "epochs", "mean", "std")}
                       | {"folds": [f[metric] for f in c["fold_scores"]],
                          "diverged_folds": c.get("diverged_folds", 0)} for c in cv["candidates"]],
        "baselines": {n: {"mean": b["mean"], "std": b["std"],
                          "seconds": b.get("cv_seconds", 0.0) + b.get("test_seconds", 0.0)}
                      for n, b in cv.get("baselines", {}).items()},
    }


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
    figures = (f"CV {metric} {win['mean'][metric]:.4f} against {boost['mean'][metric]:.4f} for "
               f"gradient boosting (scikit-learn's HistGradientBoostingClassifier, defaults, "
               f"{boost.get('seconds', 0):.1f} s){on_test}")
    if abs(gap) <= spread:
        return f"Network and gradient boosting are level here (within the folds' spread of {spread:.4f}): {figures}."
    if gap > 0:
        return f"The network beats gradient boosting on this table: {figures}."
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


def _top_trials(trials: pd.DataFrame, metric: str, n: int = 10) -> list[dict[str, Any]]:
    top = ranked_trials(trials, metric, usable_only=False).head(n)
    return top.drop(columns=["error"], errors="ignore").to_dict("records")


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
    for row in usable.to_dict("records"):
        values = {k: (type(params[k]["values"][0])(row[k]) if params[k]["type"] == "choice" else row[k])
                  for k in params}
        values = {k: (int(v) if params[k]["type"] == "int" else v) for k, v in values.items()}
        study.add_trial(optuna.trial.create_trial(params=values, distributions=distributions, value=float(row[column])))
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError):
        return {}
    return {k: float(v) for k, v in found.items()}


# --- text --------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "–" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def _resources(r: dict[str, Any], nodes: list[str]) -> str:
    text = (f"{r['cpus_per_trial']} CPU and {r['gpus_per_trial']} GPU per trial, Keras on {r['backend']}"
            f"{' in mixed precision' if r.get('mixed_precision') else ''}; nodes: {', '.join(nodes) or 'local'}")
    if r.get("devices"):
        text += f"; devices: {describe(r['devices'])}, {r.get('trials_on_gpu', 0)} trials trained on a GPU"
    return text


def _budget(plan: dict[str, Any] | None, timing: dict[str, Any]) -> str:
    """The budget's split between the stages, and what each stage used."""
    if not plan:
        return "not recorded"
    origin = "default for the table's size" if plan["budget_chosen"] else "--time-budget"
    split = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in plan["stages_s"].items() if seconds)
    used = timing.get("total_s")
    text = f"{plan['budget_s']:.0f} s ({origin}), split: {split}"
    return text + (f"; used {used:.0f} s" if used is not None else "")


class Section(NamedTuple):
    """One part of the report, as every renderer (Markdown, HTML, the console) shows it."""

    title: str
    paragraphs: list[str]
    rows: list[list[Any]] | None  # a header row, then the rows
    figure: str = ""  # key of its plot in draw_figures' output


def sections(report: dict[str, Any]) -> list[Section]:
    """The report's sections, in order; those the run folder has nothing for are left out."""
    built = [_run_summary(report), _best_configuration(report), _cross_validation(report), _test_part(report),
             _top_trials_section(report), _hyperparameters(report)]
    return [section for section in built if section is not None]


def status_line(report: dict[str, Any]) -> str:
    """What the report covers: ``Complete run.``, or which files an interrupted run lacks."""
    if report["partial"]:
        return f"Partial run: missing {', '.join(report['missing'])}; the sections below show what exists."
    return "Complete run."


def _run_summary(report: dict[str, Any]) -> Section:
    s = report["summary"]
    timing = s["timing"] or {}
    rows = [["item", "value"],
            ["data", f"{s['data']} ({s['rows']} rows, SHA-256 {s['sha256'][:12]}…)"],
            ["features", ", ".join(f"{v} {k}" for k, v in s["features"].items())],
            ["target", f"{s['target']} (positive: {s['positive']}); classes " +
             ", ".join(f"{k}: {v}" for k, v in s["class_counts"].items())],
            ["splits", ", ".join(f"{k} {v}" for k, v in s["splits"].items())],
            ["space", f"{s['space']['name']}: " + ", ".join(s["space"]["params"])],
            ["search", f"{s['samples']} trials, {s['searcher']} search, ASHA "
             f"(max {s['scheduler']['max_epochs']} epochs, grace {s['scheduler']['grace_period']}, "
             f"factor {s['scheduler']['reduction_factor']}, "
             f"{s['scheduler'].get('reports_per_epoch', 1)} report(s) per epoch)"],
            ["budget", _budget(s.get("plan"), timing)],
            ["resources", _resources(s['resources'], s['nodes'])],
            ["wall time", ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in timing.items()
                           if k.endswith("_s") and k != "budget_s") or "not recorded"],
            ["trials", ", ".join(f"{v} {k}" for k, v in s["trials_by_status"].items())]]
    return Section("Run summary", [], rows)


def _best_configuration(report: dict[str, Any]) -> Section | None:
    best, metric = report.get("best"), report["metric"]
    if not best:
        return None
    paragraphs = [f"Best search trial {best['trial_id']}: validation {metric} {_fmt(best['value'])} at epoch "
                  f"{best['best_epoch']} (one validation split: optimistic)."]
    chosen = best["hyperparameters"]
    if "cv" in report:
        winner = next(c for c in report["cv"]["candidates"] if c["trial_id"] == report["cv"]["winner"])
        chosen = {**winner["hyperparameters"], "epochs": winner["epochs"]}
        paragraphs.append(report["why"] + " The exported model uses this configuration:")
    rows = [["hyperparameter", "value"]] + [[k, _fmt(v)] for k, v in chosen.items()]
    return Section("Best configuration", paragraphs, rows)


def _cross_validation(report: dict[str, Any]) -> Section | None:
    if "cv" not in report:
        return None
    cv, metric = report["cv"], report["metric"]
    rows = [["configuration", f"mean {metric}", "std", "fold scores", "epochs"]]
    rows += [[c["trial_id"] + (" (winner)" if c["trial_id"] == cv["winner"] else ""), _fmt(c["mean"][metric]),
              _fmt(c["std"][metric]), " ".join(f"{v:.3f}" for v in c["folds"]), c["epochs"]]
             for c in cv["candidates"]]
    rows += [[name, _fmt(b["mean"][metric]), _fmt(b["std"][metric]), "", "baseline"]
             for name, b in cv["baselines"].items()]
    how = (f"{cv['method']}" if cv["rule"] == "holdout" else
           f"{cv['folds']}-fold stratified CV × {cv['repeats']} on the non-test rows")
    rule = (report["summary"].get("plan") or {}).get("cv_rule_text")
    text = [f"{how}{f' (rule: {rule})' if rule else ''}; "
            f"epochs: {cv['epochs_rule']}. Tie rule: {cv['tie_rule']}. "
            f"Threshold {cv['threshold']:.3f} ({cv['threshold_rule']}).",
            report["verdict"]]
    if report.get("against_boosting"):
        text.append(report["against_boosting"])
    diverged = [c["trial_id"] for c in cv["candidates"] if c.get("diverged_folds")]
    if diverged:
        text.append(f"Diverged in CV (not averaged in, cannot win): {', '.join(diverged)}.")
    return Section("Cross-validation and baselines", text, rows, "cv")


def _test_part(report: dict[str, Any]) -> Section | None:
    if "test" not in report:
        return None
    t = report["test"]
    rows = [["model", "ROC AUC", "accuracy", "F1", "log loss"],
            ["network", _fmt(t["roc_auc"]), _fmt(t["accuracy"]), _fmt(t["f1"]), _fmt(t["log_loss"])]]
    rows += [[n, _fmt(b["roc_auc"]), _fmt(b["accuracy"]), _fmt(b["f1"]), _fmt(b["log_loss"])]
             for n, b in t.get("baselines", {}).items()]
    cm = t["confusion_matrix"]
    text = [f"The final model, trained on {t.get('trained_on', 'all non-test rows')}, scored once on "
            f"{t['rows']} held-out rows at threshold "
            f"{t['threshold']:.3f}: precision {t['precision']:.3f}, recall {t['recall']:.3f}; confusion "
            f"TN {cm['tn']}, FP {cm['fp']}, FN {cm['fn']}, TP {cm['tp']}. Baselines use threshold 0.5."]
    return Section("Test part", text, rows, "test")


def _top_trials_section(report: dict[str, Any]) -> Section | None:
    if not report["top_trials"]:
        return None
    keys = ["trial_id", f"best_{report['metric']}", "best_epoch", "epochs", "status",
            *report["summary"]["space"]["params"]]
    rows = [keys] + [[_fmt(t.get(k, "")) for k in keys] for t in report["top_trials"]]
    return Section("Top 10 trials", [], rows, "curves")


def _hyperparameters(report: dict[str, Any]) -> Section | None:
    if not report["importance"]:
        return None
    rows = [["hyperparameter", "importance"]] + [[k, f"{v:.3f}"] for k, v in report["importance"].items()]
    return Section("Hyperparameters", [f"Importance: {report['importance_method']}."], rows, "params")


def markdown_table(rows: list[list[Any]]) -> list[str]:
    """A header row and its rows as Markdown table lines."""
    return (["| " + " | ".join(map(str, rows[0])) + " |", "|" + "---|" * len(rows[0])]
            + ["| " + " | ".join(map(str, r)) + " |" for r in rows[1:]])


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# hpsearch report: {report['name']}", "", status_line(report), ""]
    for section in sections(report):
        lines += [f"## {section.title}", ""] + [p + "\n" for p in section.paragraphs]
        if section.rows:
            lines += markdown_table(section.rows) + [""]
    return "\n".join(lines) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f2f2f2}img{max-width:100%;display:block;margin:.5em 0}.partial{color:#a40}"""


def to_html(report: dict[str, Any], figures: dict[str, str]) -> str:
    """One self-contained page: inline styles, images as data URIs, no external resource."""
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>hpsearch report: {esc(report['name'])}"
             f"</title><style>{CSS}</style></head><body><h1>hpsearch report: {esc(report['name'])}</h1>"]
    cls = " class='partial'" if report["partial"] else ""
    parts.append(f"<p{cls}>{esc(status_line(report))}</p>")
    shown = set()
    for title, paragraphs, rows, figure in sections(report):
        parts.append(f"<section><h2>{esc(title)}</h2>")
        parts += [f"<p>{esc(p)}</p>" for p in paragraphs]
        if rows:
            parts.append("<table><tr>" + "".join(f"<th>{esc(str(c))}</th>" for c in rows[0]) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows[1:]]
            parts.append("</table>")
        keys = [figure] + (["importance"] if figure == "params" else [])
        for key in keys:
            if key and key in figures:
                parts.append(f"<img alt='{esc(key)}' src='data:image/png;base64,{figures[key]}'>")
                shown.add(key)
        parts.append("</section>")
    if "curves" in figures and "curves" not in shown:
        parts.append("<section><h2>Trials per epoch</h2>"
                     f"<img alt='curves' src='data:image/png;base64,{figures['curves']}'></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


