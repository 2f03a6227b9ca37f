"""How the report's content is laid out: its sections, as Markdown (``report.md``), as one
self-contained HTML page (``report.html``) and for the console (``hpsearch report``).

It takes the plain data of :func:`search.report.content.collect` and the figures of :mod:`search.report.figures`;
it reads no file.
"""

from __future__ import annotations

import html
from typing import Any, NamedTuple

import numpy as np

from search.compute import describe


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
    figures: tuple[str, ...] = ()  # keys of its plots in draw_figures' output
    code: str = ""  # a code block (Python) after the paragraphs


def sections(report: dict[str, Any]) -> list[Section]:
    """The report's sections, in order; those the run folder has nothing for are left out."""
    built = [_run_summary(report), _best_configuration(report), _use_this_model(report), _cross_validation(report),
             _ensemble(report), _test_part(report), _top_trials_section(report), _rungs_section(report),
             _hyperparameters(report)]
    return [section for section in built if section is not None]


def status_line(report: dict[str, Any]) -> str:
    """What the report covers: ``Complete run.``, or which files an interrupted run lacks."""
    if report["partial"]:
        return f"Partial run: missing {', '.join(report['missing'])}; the sections below show what exists."
    return "Complete run."


def _level_row(report: dict[str, Any]) -> list[list[str]]:
    """The numeric columns of a few whole numbers that the model also reads as levels, if any."""
    levels = (report.get("model") or {}).get("levels") or {}
    if not levels:
        return []
    named = ", ".join(f"{name} ({len(values)})" for name, values in list(levels.items())[:10])
    named += f" and {len(levels) - 10} more" if len(levels) > 10 else ""
    return [["also as levels", f"{named}: few whole numbers, each also one-hot over its training values"]]


def _run_summary(report: dict[str, Any]) -> Section:
    s = report["summary"]
    timing = s["timing"] or {}
    rows = [["item", "value"],
            ["data", f"{s['data']} ({s['rows']} rows, SHA-256 {s['sha256'][:12]}…)"],
            ["features", ", ".join(f"{v} {k}" for k, v in s["features"].items())],
            *_level_row(report),
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
        exported = ("The exported ensemble's networks are under Ensemble; this one, the CV winner, is"
                    if _ensemble_chosen(report) else "The exported model uses this configuration")
        paragraphs.append(report["why"] + f" {exported}:")
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
    if cv.get("unscored"):
        text.append(f"Not scored in CV, so not in the table: {', '.join(cv['unscored'])}.")
    return Section("Cross-validation and baselines", text, rows, ("cv", "winner"))


def _ensemble_chosen(report: dict[str, Any]) -> bool:
    return bool(((report.get("model") or {}).get("ensemble") or {}).get("chosen"))


def _ensemble(report: dict[str, Any]) -> Section | None:
    """The ensemble's members, weights and configurations, and the ensemble against its best network and
    the baselines, out of fold and on the test part; or why one network was exported."""
    e, metric = (report.get("model") or {}).get("ensemble"), report["metric"]
    if not e or "cv" not in report:
        return None
    if not e["chosen"]:
        folds = sum(n.get("fold_models", 0) for n in e.get("networks", []))
        bagged = (f" It is bagged: the mean of its {folds} fold models, each trained on one CV fold's training rows."
                  if folds > 1 else "")
        return Section("Ensemble", [f"One network is exported, not an ensemble: {e['reason']}.{bagged} Selection: "
                                    f"{e['rule']}."], None)
    tested = (report.get("test") or {}).get("networks", {})
    shown = ("depth", "width", "dropout", "learning_rate", "batch_size", "numeric_embedding")
    rows = [["network", "weight", "epochs", f"CV mean {metric}", f"test {metric}", "configuration"]]
    rows += [[n["trial_id"] + (" (winner)" if n["trial_id"] == report["cv"]["winner"] else ""), f"{n['weight']:.2f}",
              n["epochs"], _fmt(n["cv_mean"][metric]), _fmt(tested.get(n["trial_id"], {}).get(metric, float("nan"))),
              ", ".join(f"{k} {_fmt(n['hyperparameters'][k])}" for k in shown if k in n["hyperparameters"])]
             for n in e["networks"]]
    test = report.get("test") or {}
    winner = tested.get(report["cv"]["winner"], {})
    bagged = sum(n.get("fold_models", 0) for n in e["networks"])
    kept = (f", each bagged as its fold models ({bagged} in the file, each trained on one CV fold's training rows)"
            if bagged else "")
    text = [f"The exported model is the weighted mean of {len(e['networks'])} networks{kept} ({e['rule']}): "
            f"out of fold, "
            f"{metric} {e['oof_score']:.4f} against {e['single_oof_score']:.4f} for the CV winner alone"
            + (f"; cross-validated (weights chosen on all parts of the rows but one, scored on the one left out) "
               f"{e['held_out_score']:.4f} against {e['held_out_single_score']:.4f} for the best single network "
               f"chosen the same way" if "held_out_score" in e else "")
            + (f"; on the test part {test[metric]:.4f} against {winner[metric]:.4f}" if winner and metric in test
               else "") + "."]
    cost = e.get("cost")
    if cost:
        text.append(f"Its file is {cost['bytes'] / 1e3:.0f} kB against {cost['single_bytes'] / 1e3:.0f} kB for "
                    f"its heaviest network alone; it predicts 1,000 rows in {cost['ms_per_1000_rows']:.1f} ms "
                    f"against {cost['single_ms_per_1000_rows']:.1f} ms (measured when it was built).")
    return Section("Ensemble", text, rows)


def _test_part(report: dict[str, Any]) -> Section | None:
    if "test" not in report:
        return None
    t = report["test"]
    rows = [["model", "ROC AUC", "accuracy", "F1", "log loss"],
            ["ensemble" if _ensemble_chosen(report) else "network", _fmt(t["roc_auc"]), _fmt(t["accuracy"]),
             _fmt(t["f1"]), _fmt(t["log_loss"])]]
    rows += [[n, _fmt(b["roc_auc"]), _fmt(b["accuracy"]), _fmt(b["f1"]), _fmt(b["log_loss"])]
             for n, b in t.get("baselines", {}).items()]
    cm = t["confusion_matrix"]
    text = [f"The final model, trained on {t.get('trained_on', 'all non-test rows')}, scored once on "
            f"{t['rows']} held-out rows at threshold "
            f"{t['threshold']:.3f}: precision {t['precision']:.3f}, recall {t['recall']:.3f}; confusion "
            f"TN {cm['tn']}, FP {cm['fp']}, FN {cm['fn']}, TP {cm['tp']}. Baselines use threshold 0.5."]
    return Section("Test part", text, rows, ("test",))


def _top_trials_section(report: dict[str, Any]) -> Section | None:
    if not report["top_trials"]:
        return None
    keys = ["trial_id", f"best_{report['metric']}", "best_epoch", "epochs", "status",
            *report["summary"]["space"]["params"]]
    rows = [keys] + [[_fmt(t.get(k, "")) for k in keys] for t in report["top_trials"]]
    return Section("Top 10 trials", [], rows)


def _rungs_section(report: dict[str, Any]) -> Section | None:
    rungs = report.get("rungs") or []
    if not rungs:
        return None
    rows = [["rung (epoch)", "trials that reached it", "share"]]
    rows += [[f"{r['epoch']:g}" + (" (a full trial)" if r["full"] else ""), f"{r['trials']} of {r['of']}",
              f"{r['trials'] / max(1, r['of']):.0%}"] for r in rungs]
    s = report["summary"]["scheduler"]
    text = [f"ASHA stops a trial at a rung unless it is in the best 1/{s['reduction_factor']:g} of the trials that "
            f"reached it; below, every trial's validation curve (the winner in black)."]
    return Section("Trials per epoch and the ASHA rungs", text, rows, ("curves",))


def _hyperparameters(report: dict[str, Any]) -> Section | None:
    if not report["importance"]:
        return None
    rows = [["hyperparameter", "importance"]] + [[k, f"{v:.3f}"] for k, v in report["importance"].items()]
    return Section("Hyperparameters", [f"Importance: {report['importance_method']}. Below: every usable trial "
                                       f"across the hyperparameters (colour: its best validation score), then "
                                       f"each hyperparameter against the score."], rows,
                   ("importance", "parallel", "params"))


MODEL_CODE = '''import json, os, sys
os.environ.setdefault("KERAS_BACKEND", "{backend}")  # before Keras is imported{backend_note}
import keras, numpy as np, pandas as pd

run = "{folder}"
sys.path.insert(0, f"{{run}}/model")
from inputs import to_inputs  # model/inputs.py: a DataFrame to the model's inputs, date parts included

model = keras.saving.load_model(f"{{run}}/model/model.keras", safe_mode=True, compile=False)
meta = json.load(open(f"{{run}}/model/metadata.json"))
rows = pd.read_csv("new.csv")  # a table with the columns the model was trained on
probability = np.asarray(model(to_inputs(rows, meta))).ravel()
label = np.where(probability >= meta["threshold"], meta["labels"]["1"], meta["labels"]["0"])'''


def _use_this_model(report: dict[str, Any]) -> Section | None:
    """The exact code that loads and scores with this run's model, with hpsearch or without it."""
    model = report.get("model")
    if not model:
        return None
    folder = report["folder"]
    text = [f"Score a new table from the command line: hpsearch predict {folder} new.csv --out predictions.csv "
            f"(probability and label per row). In Python, with Keras and pandas alone (hpsearch need not be "
            f"installed), through the model folder's inputs.py:"]
    if model.get("dates"):
        parts = ", ".join(f"{c}.{p}" for c, ps in model["dates"].items() for p in ps[:2])
        text.append(f"The model takes the parts of its date columns as inputs ({parts}, ...); to_inputs derives "
                    f"them from the raw columns.")
    categorical = model.get("categorical", False)
    code = MODEL_CODE.format(folder=folder, backend="tensorflow" if categorical else "jax",
                             backend_note=" (its text inputs run on TensorFlow only)" if categorical else "")
    return Section("Use this model", text, None, (), code)


def markdown_table(rows: list[list[Any]]) -> list[str]:
    """A header row and its rows as Markdown table lines."""
    return (["| " + " | ".join(map(str, rows[0])) + " |", "|" + "---|" * len(rows[0])]
            + ["| " + " | ".join(map(str, r)) + " |" for r in rows[1:]])


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# hpsearch report: {report['name']}", "", status_line(report), ""]
    for section in sections(report):
        lines += [f"## {section.title}", ""] + [p + "\n" for p in section.paragraphs]
        if section.code:
            lines += ["```python", section.code, "```", ""]
        if section.rows:
            lines += markdown_table(section.rows) + [""]
    return "\n".join(lines) + "\n"


# Everything fits a 1280 px window: cells wrap long values, code wraps, images shrink (a Chromium test checks it).
# Numbers and ids never break inside (cells wrap at spaces only); a table wider than the page scrolls
# inside its own box, so the page itself never does, at 1280 px or on a phone (tests/test_report.py).
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
.scroll{overflow-x:auto;max-width:100%;margin:.5em 0 1em}
table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;overflow-wrap:normal;word-break:normal}
td.n{white-space:nowrap;font-variant-numeric:tabular-nums}
th{background:#f2f2f2}.partial{color:#a40}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
p,h1,h2{overflow-wrap:break-word}
@media (max-width:600px){body{margin:1em auto;padding:0 .6em}table{font-size:.8em}}"""
def _cell(value: Any) -> str:
    """A cell of one word (a number, an id, a name) never wraps; text wraps at its spaces only."""
    text = html.escape(str(value))
    return f"<td class='n'>{text}</td>" if " " not in str(value).strip() else f"<td>{text}</td>"


def alt_text(key: str, report: dict[str, Any]) -> str:
    """What a figure shows, for a reader who cannot see it."""
    metric, winner = report["metric"], (report.get("cv") or {}).get("winner", "")
    texts = {
        "curves": f"Line chart: every trial's validation {metric} per epoch, zoomed to the range of the better "
                  f"half of the trials, the winner {winner} in black, ASHA's rungs as dashed vertical lines.",
        "winner": f"Two line charts of the winner {winner}: its training loss and validation log loss per epoch "
                  f"in the search, and its CV folds' mean {metric} per epoch with the epoch the final fit kept.",
        "params": f"Scatter plots, one per hyperparameter: each trial's value against its best validation {metric}.",
        "parallel": "Parallel coordinates: one line per trial across the hyperparameters' ranges, coloured by its "
                    f"rank by best validation {metric}, the best trial thick.",
        "importance": "Bar chart: each hyperparameter's importance (fANOVA) for the validation score.",
        "test": "The exported model on the test part: its ROC curve against the baselines', and its confusion "
                "matrix at the decision threshold.",
        "cv": f"Each CV candidate's and baseline's fold scores of {metric}, as points around their mean.",
    }
    return texts.get(key, key)


def to_html(report: dict[str, Any], figures: dict[str, str]) -> str:
    """One self-contained page: inline styles, images as data URIs, no external resource."""
    esc = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>hpsearch report: {esc(report['name'])}</title><style>{CSS}</style></head><body>"
             f"<h1>hpsearch report: {esc(report['name'])}</h1>"]
    cls = " class='partial'" if report["partial"] else ""
    parts.append(f"<p{cls}>{esc(status_line(report))}</p>")
    shown = set()
    for title, paragraphs, rows, keys, code in sections(report):
        parts.append(f"<section><h2>{esc(title)}</h2>")
        parts += [f"<p>{esc(p)}</p>" for p in paragraphs]
        if code:
            parts.append(f"<pre><code>{esc(code)}</code></pre>")
        if rows:
            # a header may break after an underscore (numeric_embedding): a table of many params fits the page
            parts.append("<div class='scroll'><table><tr>" +
                         "".join(f"<th>{esc(str(c)).replace('_', '_<wbr>')}</th>" for c in rows[0]) + "</tr>")
            parts += ["<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in rows[1:]]
            parts.append("</table></div>")
        for key in keys:
            if key in figures:
                parts.append(f"<img data-figure='{key}' alt='{esc(alt_text(key, report))}' "
                             f"src='data:image/png;base64,{figures[key]}'>")
                shown.add(key)
        parts.append("</section>")
    if "curves" in figures and "curves" not in shown:
        parts.append("<section><h2>Trials per epoch</h2>"
                     f"<img data-figure='curves' alt='{esc(alt_text('curves', report))}' "
                     f"src='data:image/png;base64,{figures['curves']}'>"
                     "</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


