"""The whole run, as a user waits for it: ``hpsearch run`` against KerasTuner Hyperband plus a CV of its winner.

Run by hand, on a quiet machine (needs the ``bench`` extra and ``../shared/datasets``)::

    .venv/bin/python -m bench.end_to_end                         # the four tutorial tables, 1 round
    .venv/bin/python -m bench.end_to_end --tables sonar --rounds 3

Each leg is one process, timed by its wall clock from start to exit, in alternating order, in one sitting:

- **hpsearch**: ``hpsearch run DATA --metric accuracy --samples 40 --max-epochs 27`` (the issue's command);
- **KerasTuner**: a script as a user writes it: the same encoded splits (hpsearch's preprocessing, so the
  networks see the same numbers), ``kt.Hyperband`` (max_epochs 27, factor 3, objective val_accuracy) over
  the same space (``spaces/default.yaml``, the same network), then a 10-fold stratified CV of its winner
  at its best epoch on the non-test rows.

Then, untimed, both winners (configuration and epochs) are scored on the same 10 stratified folds of the
non-test rows (each fold's preprocessing fitted on its own rows; ROC AUC, and accuracy at each run's
threshold: hpsearch's chosen one, KerasTuner's 0.5): the quality check.
Writes ``bench/results/e2e-<stamp>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
RESULTS = Path(__file__).resolve().parent / "results"
TABLES = {
    "sonar": {"data": "sonar.csv", "args": ["--no-header", "--target", "-1"]},
    "pima": {"data": "pima-indians-diabetes.csv", "args": ["--no-header", "--target", "-1"]},
    "kyphosis": {"data": "kyphosis.csv", "args": ["--target", "Kyphosis", "--drop", "rownames", "--positive",
                                                   "present"]},
    "framingham": {"data": "framingham.csv", "args": ["--target", "TenYearCHD"]},
}
RUN = ["--metric", "accuracy", "--samples", "40", "--max-epochs", "27"]
MAX_EPOCHS = 27
CV_FOLDS = 10


def spec_for(table: str) -> Any:
    """The RunSpec ``hpsearch run`` builds for the table (data, target, drop, positive)."""
    from search.cli import spec_from

    options: dict[str, Any] = {"data": str(SHARED / TABLES[table]["data"]), "no_header": False, "drop": [],
                               "target": None, "positive": None, "quiet": True, "from_spec": None}
    args = TABLES[table]["args"]
    for i, arg in enumerate(args):
        if arg == "--no-header":
            options["no_header"] = True
        elif arg == "--drop":
            options["drop"].append(args[i + 1])
        elif arg.startswith("--"):
            options[arg[2:]] = args[i + 1]
    return spec_from({**options, "metric": "accuracy"})


def keras_tuner_leg(table: str, workdir: Path) -> None:
    """The KerasTuner user's script (run in its own process): Hyperband, then a 10-fold CV of the winner."""
    import keras
    import keras_tuner as kt
    from sklearn.model_selection import StratifiedKFold

    from bench.methods import keras_tuner_space, peer_network
    from search.data import fit_and_encode, load_table, split_rows

    spec = spec_for(table)
    t = load_table(spec.data, spec.target, header=spec.header, drop=spec.drop, positive=spec.positive)
    splits = split_rows(t.y, spec.test_size, spec.val_size, spec.seed)
    _, (x_tr, x_va) = fit_and_encode(t.features.iloc[splits.train], t.schema, t.features.iloc[splits.val])
    layout = {"numeric_columns": sum(f.kind == "numeric" for f in t.schema)}  # as hpsearch run sets it

    class MLP(kt.HyperModel):
        def build(self, hp: Any) -> Any:
            return peer_network({**keras_tuner_space(hp), **layout}, x_tr.shape[1], metrics=["accuracy"])

        def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            return model.fit(*args, batch_size=hp.get("batch_size"), **kwargs)

    tuner = kt.Hyperband(MLP(), objective="val_accuracy", max_epochs=MAX_EPOCHS, factor=3, seed=spec.seed,
                         overwrite=True, directory=str(workdir / "kt"), project_name=table)
    tuner.search(x_tr, t.y[splits.train], validation_data=(x_va, t.y[splits.val]), epochs=MAX_EPOCHS, verbose=0)
    best = tuner.oracle.get_best_trials(1)[0]
    history = best.metrics.get_history("val_accuracy")
    epochs = int(max(history, key=lambda o: float(np.mean(o.value))).step) + 1 if history else MAX_EPOCHS
    config = {**{k: v for k, v in best.hyperparameters.values.items() if not k.startswith("tuner/")}, **layout}
    rows = np.sort(np.concatenate([splits.train, splits.val]))
    scores = []
    for tr, va in StratifiedKFold(CV_FOLDS, shuffle=True, random_state=spec.seed).split(rows, t.y[rows]):
        _, (x_fold, x_held) = fit_and_encode(t.features.iloc[rows[tr]], t.schema, t.features.iloc[rows[va]])
        # a fold's own preprocessing may add a missing-value indicator: the winner built for its width
        model = peer_network(config, x_fold.shape[1], metrics=["accuracy"])
        model.fit(x_fold, t.y[rows[tr]], epochs=epochs, batch_size=config["batch_size"], verbose=0)
        scores.append(float(np.mean((np.asarray(model(x_held)).ravel() >= 0.5) == t.y[rows[va]])))
    del keras
    (workdir / "kt.json").write_text(json.dumps({"config": config, "epochs": epochs,
                                                 "own_cv_accuracy": float(np.mean(scores))}))


def timed(command: list[str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed: {done.stderr[-2000:]}")
    return time.perf_counter() - began


def common_cv(table: str, winners: dict[str, tuple[dict[str, Any], int, float]]) -> dict[str, dict[str, float]]:
    """Each winner at its epochs on the same 10 stratified folds of the non-test rows: mean ROC AUC, and
    mean accuracy at its run's threshold (hpsearch's chosen one, KerasTuner's 0.5: class weights shift
    a network's probabilities, and hpsearch chooses its threshold for them)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    from search.compute import Compute, use_backend
    from search.data import fit_and_encode, load_table, split_rows
    from search.network import fit_network

    use_backend(Compute())
    spec = spec_for(table)
    t = load_table(spec.data, spec.target, header=spec.header, drop=spec.drop, positive=spec.positive)
    splits = split_rows(t.y, spec.test_size, spec.val_size, spec.seed)
    rows = np.sort(np.concatenate([splits.train, splits.val]))
    folds = list(StratifiedKFold(CV_FOLDS, shuffle=True, random_state=spec.seed + 1).split(rows, t.y[rows]))
    out = {}
    for name, (config, epochs, threshold) in winners.items():
        accuracy, auc = [], []
        for f, (tr, va) in enumerate(folds):
            _, (x_fold, x_held) = fit_and_encode(t.features.iloc[rows[tr]], t.schema, t.features.iloc[rows[va]])
            model = fit_network(config, x_fold, t.y[rows[tr]].astype(np.float32), epochs, spec.seed + f)
            probability = np.asarray(model(x_held, training=False)).ravel()
            accuracy.append(float(np.mean((probability >= threshold) == t.y[rows[va]])))
            auc.append(float(roc_auc_score(t.y[rows[va]], probability)))
        out[name] = {"accuracy": float(np.mean(accuracy)), "roc_auc": float(np.mean(auc))}
    return out


def one_round(table: str, workdir: Path, order: tuple[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {"table": table}
    for leg in order:
        if leg == "hpsearch":
            name = f"{table}-{int(time.time())}"
            row["hpsearch_s"] = timed([str(ROOT / ".venv" / "bin" / "hpsearch"), "run",
                                       str(SHARED / TABLES[table]["data"]), *TABLES[table]["args"], *RUN,
                                       "--results", str(workdir / "runs"), "--name", name, "--quiet"])
            run = workdir / "runs" / name
            cv = json.loads((run / "cv.json").read_text())
            winner = next(c for c in cv["candidates"] if c["trial_id"] == cv["winner"])
            row["hpsearch_own_cv_accuracy"] = winner["mean"]["accuracy"]
            row["hpsearch_winner"] = (winner["hyperparameters"], int(winner["epochs"]), float(cv["threshold"]))
            row["hpsearch_stages"] = json.loads((run / "timing.json").read_text())
        else:
            row["keras_tuner_s"] = timed([sys.executable, "-m", "bench.end_to_end", "--keras-tuner-leg", table,
                                          str(workdir)])
            kt = json.loads((workdir / "kt.json").read_text())
            row["keras_tuner_own_cv_accuracy"] = kt["own_cv_accuracy"]
            row["keras_tuner_winner"] = (kt["config"], int(kt["epochs"]), 0.5)
    row["ratio"] = row["keras_tuner_s"] / row["hpsearch_s"]
    row["common_cv"] = common_cv(table, {"hpsearch": row["hpsearch_winner"],
                                                  "keras_tuner": row["keras_tuner_winner"]})
    return row


def to_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| table | round | hpsearch run (s) | KerasTuner Hyperband + 10-fold CV (s) | ratio | "
             "common 10-fold CV accuracy: hpsearch / KerasTuner | hpsearch stages (search, cv, report s) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        st = r["hpsearch_stages"]
        lines.append(f"| {r['table']} | {r['round']} | {r['hpsearch_s']:.1f} | {r['keras_tuner_s']:.1f} | "
                     f"**{r['ratio']:.1f}x** | {r['common_cv']['hpsearch']['accuracy']:.4f} / "
                     f"{r['common_cv']['keras_tuner']['accuracy']:.4f} (ROC AUC "
                     f"{r['common_cv']['hpsearch']['roc_auc']:.3f} / {r['common_cv']['keras_tuner']['roc_auc']:.3f}) | "
                     f"{st['search_s']:.1f}, {st['cv_s']:.1f}, "
                     f"{st['report_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keras-tuner-leg", nargs=2, metavar=("TABLE", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.keras_tuner_leg:
        keras_tuner_leg(args.keras_tuner_leg[0], Path(args.keras_tuner_leg[1]))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-e2e-") as tmp:
        for r in range(args.rounds):
            for table in args.tables.split(","):
                order = ("hpsearch", "keras_tuner") if r % 2 == 0 else ("keras_tuner", "hpsearch")
                try:
                    row = {**one_round(table, Path(tmp), order), "round": r + 1}
                except SystemExit as failed:  # a leg failed: say so, keep the other tables' figures
                    print(json.dumps({"table": table, "round": r + 1, "failed": str(failed)[:500]}), flush=True)
                    continue
                print(json.dumps({k: v for k, v in row.items() if not k.endswith("winner")}), flush=True)
                rows.append(row)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"e2e-{stamp}.json").write_text(json.dumps(rows, indent=2))
    (RESULTS / f"e2e-{stamp}.md").write_text(f"# End to end, 2 cores ({stamp})\n\n" + to_markdown(rows))
    print(f"bench/results/e2e-{stamp}.md")


if __name__ == "__main__":
    main()
