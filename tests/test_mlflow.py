"""--mlflow end to end, in a real local MLflow store: the trials as child runs, the run's scores and
report on the parent, and the model as a pyfunc that predicts what ``hpsearch predict`` does."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli

mlflow = pytest.importorskip("mlflow", reason="the MLflow extra is not installed (pip install -e '.[mlflow]')")
pytestmark = pytest.mark.slow


def test_a_tracked_run_logs_its_trials_scores_report_and_a_pyfunc_model(tmp_path, mixed_csv):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli(["run", str(mixed_csv), "--target", "label", "--samples", "3", "--max-epochs", "3",
                    "--top-k", "1", "--folds", "2", "--repeats", "1", "--cpus", "2", "--name", "tracked",
                    "--results", "out", "--mlflow", "--mlflow-uri", store], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "out" / "tracked"
    trials = pd.read_csv(run_dir / "trials.csv")

    client = mlflow.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("hpsearch")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.info.run_name == "tracked")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(children) == len(trials) == 3
    statuses = dict(zip(trials["trial_id"], trials["status"], strict=True))
    for child in children:
        trial = next(t for t in statuses if t in child.info.run_name)
        assert child.data.tags["hpsearch.status"] == statuses[trial]
        assert {"width", "depth", "learning_rate"} <= set(child.data.params)
        assert client.get_metric_history(child.info.run_id, "roc_auc")  # a value per report
        # and its best, as trials.csv has it: MLflow's compare view sorts ASHA's trials by what they reached
        row = trials[trials["trial_id"] == trial].iloc[0]
        assert child.data.metrics["best_roc_auc"] == pytest.approx(row["best_roc_auc"])
        assert child.data.metrics["best_epoch"] == pytest.approx(row["best_epoch"])
    assert parent.data.metrics["cv_roc_auc"] == pytest.approx(
        __import__("json").loads((run_dir / "cv.json").read_text())["candidates"][0]["mean"]["roc_auc"])
    assert "test_roc_auc" in parent.data.metrics and parent.data.tags["hpsearch.winner"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "report.md", "cv.json", "trials.csv"} <= artifacts  # the model: a logged model (below)

    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model(f"runs:/{parent.info.run_id}/model")
    # a signature and an input example of the raw columns, the requirements pinned, the Keras backend
    info = model.metadata
    assert [c.name for c in info.get_input_schema().inputs] == [c for c in pd.read_csv(mixed_csv).columns
                                                                if c != "label"]
    assert {c.name for c in info.get_output_schema().inputs} == {"probability", "label"}
    assert info.saved_input_example_info is not None and info.metadata["keras_backend"] == "tensorflow"
    requirements = Path(mlflow.artifacts.download_artifacts(f"runs:/{parent.info.run_id}/model/requirements.txt",
                                                            tracking_uri=store)).read_text()
    import keras

    assert f"keras=={keras.__version__}" in requirements and "tensorflow==" in requirements
    frame = pd.read_csv(mixed_csv).drop(columns=["label"])
    scored = model.predict(frame)
    predicted = run_cli(["predict", str(run_dir), str(mixed_csv)], cwd=tmp_path, timeout=180)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    expected = pd.read_csv(__import__("io").StringIO(predicted.stdout))
    # the CLI writes 6 decimals: a float32 value and its rounding differ by up to 5e-7, plus float error
    assert scored["probability"].tolist() == pytest.approx(expected["probability"].tolist(), abs=2e-6)
    assert scored["label"].astype(str).tolist() == expected["label"].astype(str).tolist()


def test_a_file_store_and_results_at_a_storage_uri_log_the_scores(tmp_path, mixed_csv, monkeypatch):
    """MLflow 3 refuses its file store unless told; hpsearch tells it, since the user named that store.
    With --results at a URI the run folder is uploaded, and the parent run still gets its scores."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    store = (tmp_path / "ml runs").as_uri()
    remote = (tmp_path / "remote").as_uri()
    proc = run_cli(["run", str(mixed_csv), "--target", "label", "--samples", "2", "--max-epochs", "2",
                    "--top-k", "1", "--folds", "2", "--repeats", "1", "--cpus", "2", "--name", "filed",
                    "--results", remote, "--mlflow", "--mlflow-uri", store, "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "remote" / "filed" / "cv.json").is_file()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.MlflowClient(tracking_uri=store)
    parent = next(r for r in client.search_runs([client.get_experiment_by_name("hpsearch").experiment_id])
                  if r.info.run_name == "filed")
    cv = __import__("json").loads((tmp_path / "remote" / "filed" / "cv.json").read_text())
    assert parent.data.metrics["cv_roc_auc"] == pytest.approx(cv["candidates"][0]["mean"]["roc_auc"])
    assert "test_roc_auc" in parent.data.metrics and parent.info.status == "FINISHED"


def test_a_store_mlflow_cannot_open_is_one_line_and_leaves_no_folder(tmp_path, mixed_csv):
    (tmp_path / "not a db").write_text("plain text")
    store = f"sqlite:///{tmp_path / 'not a db'}"
    proc = run_cli(["run", str(mixed_csv), "--target", "label", "--samples", "2", "--results", str(tmp_path / "out"),
                    "--name", "bad", "--mlflow", "--mlflow-uri", store], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"--mlflow-uri {store}: MLflow cannot use this tracking store" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not any((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else True
