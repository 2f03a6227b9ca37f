"""The Python API, from a DataFrame to ``.predict``, on the same code path as ``hpsearch run``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import search
from search.errors import DataError
from tests.conftest import REPO, make_mixed_table

SCRIPT = """
import json, sys
import pandas as pd
import search

frame = pd.read_csv(sys.argv[1])
result = search.run(frame, target="label", samples=3, max_epochs=3, top_k=1, folds=2, repeats=1, cpus=2,
                    results=sys.argv[2], name="notebook", quiet=True)
mlflow_during_run = "mlflow" in sys.modules  # installed with the test extra; no run here logs to it
import importlib.util, ray.air.integrations.mlflow as ray_mlflow
mlflow_after_run = ray_mlflow.mlflow is not None or importlib.util.find_spec("mlflow") is None
again = search.load(result.run_dir)
predicted = again.predict(frame.drop(columns=["label"]))
print(json.dumps({"dir": str(result.run_dir), "winner": result.cv["winner"], "best": result.best_config["trial_id"],
                  "trials": len(result.trials), "test_rows": result.test["rows"],
                  "probability": predicted["probability"].tolist(), "labels": sorted(set(predicted["label"])),
                  "html": result._repr_html_(), "report": str(result.report_path),
                  "inputs": len(result.model.inputs), "mlflow": [mlflow_during_run, mlflow_after_run]}))
"""


@pytest.mark.slow
def test_a_dataframe_runs_to_predictions_and_a_notebook_summary(tmp_path):
    frame = make_mixed_table()
    frame.to_csv(tmp_path / "frame.csv", index=False)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "frame.csv"), str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["dir"] == str(tmp_path / "out" / "notebook") and got["trials"] == 3 and got["test_rows"] == 32
    assert got["labels"] == ["no", "yes"] and len(got["probability"]) == len(frame) and got["inputs"] == 4
    assert all(0 <= p <= 1 for p in got["probability"])
    # Tune's start did not import MLflow (2 s on 2 cores), and Ray's MLflow module finds it afterwards
    assert got["mlflow"] == [False, True]
    spec = json.loads((tmp_path / "out" / "notebook" / "spec.json").read_text())
    assert spec["data"]["kept_as"] == "data.parquet" and len(spec["data"]["sha256"]) == 64
    assert spec["data"]["source"] == "a DataFrame, kept as data.parquet"
    assert (tmp_path / "out" / "notebook" / "data.parquet").is_file()
    assert got["winner"] in got["html"] and "CV roc_auc" in got["html"] and "the full report" in got["html"]
    assert (tmp_path / "out" / "notebook" / "report.html").as_posix() == got["report"]
    # the same predictions as the command line's
    cli = subprocess.run([sys.executable, "-m", "search", "predict", got["dir"], str(tmp_path / "frame.csv")],
                         cwd=REPO, capture_output=True, text=True, timeout=180)
    assert cli.returncode == 0, cli.stderr[-2000:]
    expected = [float(line.split(",")[0]) for line in cli.stdout.strip().splitlines()[1:]]
    # both sides are rounded to 6 decimals: two roundings of values 1e-7 apart can differ by 1e-6
    assert got["probability"] == pytest.approx(expected, abs=2e-6)


def test_bad_input_is_the_clis_error_and_writes_nothing(tmp_path):
    with pytest.raises(DataError, match="target column 'nope' not found"):
        search.run(make_mixed_table(), target="nope", results=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="not an hpsearch run folder"):
        search.load(tmp_path)
