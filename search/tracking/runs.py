"""MLflow tracking of a run (``--mlflow``; ``pip install 'hpsearch[mlflow]'``).

The run is an MLflow parent run; each trial a child run that Ray Tune's ``MLflowLoggerCallback``
logs (its hyperparameters, its metrics at every report, its end), tagged with the trial's status
from ``trials.csv`` when the search ends. The parent gets the winner's hyperparameters, the CV and
test scores, the report and the CV files as artifacts, and the exported model as a pyfunc
(``mlflow.pyfunc.load_model(...).predict(df)`` on a DataFrame of the raw columns).

The default store is ``sqlite:///mlflow.db`` in the current folder, MLflow's own default since its
file store (``./mlruns``) went into maintenance mode; artifacts go to ``./mlruns``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.errors import SpecError

if TYPE_CHECKING:
    from search.export import RunSummary

DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT = "hpsearch"
PACKAGE = Path(__file__).resolve().parents[1]  # search/, which the logged model's code carries


@dataclass(frozen=True)
class Tracking:
    uri: str
    experiment: str
    run_id: str


def check_available(uri: str | None = None) -> None:
    """Refuse ``--mlflow`` before anything is written when MLflow is not installed. A file store
    (``file://...`` or a folder), which MLflow 3 refuses unless told otherwise, is what the user chose:
    it is opted into (``MLFLOW_ALLOW_FILE_STORE``)."""
    import os

    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise SpecError("--mlflow needs MLflow: pip install 'hpsearch[mlflow]' (or mlflow itself).") from None
    if is_file_store(uri or DEFAULT_URI):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def is_file_store(uri: str) -> bool:
    """Whether a tracking URI names MLflow's file store: ``file:`` or a plain path, not a database or a server."""
    scheme = uri.split(":", 1)[0].lower() if "://" in uri or uri.startswith("file:") else ""
    return scheme in ("", "file")


def start(uri: str | None, name: str, options: dict[str, Any]) -> Tracking:
    """Open the parent run before the search (so that the trials nest under it)."""
    import mlflow

    from search.errors import first_line

    uri = uri or DEFAULT_URI
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(EXPERIMENT)
        experiment = found.experiment_id if found else client.create_experiment(EXPERIMENT)
    except Exception as exc:  # MlflowException, or the database's own error (SQLAlchemy's)
        raise SpecError(f"--mlflow-uri {uri}: MLflow cannot use this tracking store ({first_line(exc)[:200]}). "
                        f"Give a store MLflow opens, e.g. sqlite:///mlflow.db or http://HOST:5000.") from None
    run = client.create_run(experiment, run_name=name, tags={"hpsearch.run": name})
    client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, str(v)[:500]) for k, v in options.items()
                                               if v is not None])
    return Tracking(uri, EXPERIMENT, run.info.run_id)


def trial_logger(tracking: Tracking) -> Any:
    """Ray Tune's callback that logs each trial as a child of the parent run."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return MLflowLoggerCallback(tracking_uri=tracking.uri, experiment_name=tracking.experiment,
                                tags={"mlflow.parentRunId": tracking.run_id})


SERVING_PACKAGES = ("keras", "tensorflow", "numpy", "pandas")  # what the logged model imports to predict


def input_example(table: Any, rows: int = 5) -> Any:
    """The first rows of the table's raw columns, as the logged model takes them (a missing category as
    ''), or None for a table with date columns, whose raw columns are not the features."""
    if table.dates:
        return None
    example = table.features.head(rows).copy()
    for feature in table.schema:
        if feature.kind == "categorical":
            example[feature.name] = example[feature.name].fillna("").astype(str)
    return example


def finish(tracking: Tracking, run_dir: Path, trials: Any, final: RunSummary, example: Any = None) -> None:
    """Tag the trials' statuses and log their best scores; log the winner, its scores, the report and
    the model (with its signature, ``example`` as its input example, pinned requirements and Keras
    backend) on the parent run."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking.uri)
    children = client.search_runs([client.get_run(tracking.run_id).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{tracking.run_id}'")
    statuses = dict(zip(trials["trial_id"].astype(str), trials["status"].astype(str), strict=True))
    for child in children:
        trial = next((t for t in statuses if t in child.info.run_name), None)
        if trial is not None:
            client.set_tag(child.info.run_id, "hpsearch.status", statuses[trial])
            _log_best(client, child.info.run_id, trials[trials["trial_id"].astype(str) == trial].iloc[0])
    metrics = {f"cv_{k}": v for k, v in final.cv_mean.items()}
    metrics |= {f"cv_{k}_std": v for k, v in final.cv_std.items()}
    metrics |= {f"test_{k}": v for k, v in (final.test or {}).items() if isinstance(v, (int, float))}
    mlflow.set_tracking_uri(tracking.uri)
    with mlflow.start_run(run_id=tracking.run_id):
        mlflow.log_metrics(metrics)
        mlflow.log_param("threshold", final.threshold)
        mlflow.set_tag("hpsearch.winner", final.winner)
        ensemble = final.ensemble
        members = ensemble.get("members", []) if ensemble.get("chosen") else []
        mlflow.set_tag("hpsearch.model", " + ".join(f"{m['weight']:.2f} x {m['trial_id']}" for m in members)
                       or "the winner alone")
        if not run_dir.is_dir():  # results went to a storage URI: the files are there, the scores here too
            mlflow.set_tag("hpsearch.results", str(run_dir))
            return
        for name in ("report.html", "report.md", "report.json", "cv.json", "best_config.json", "trials.csv"):
            if (run_dir / name).is_file():
                mlflow.log_artifact(str(run_dir / name))
        signature = None
        if example is not None:
            from search.export import load_model, predict_frame

            model, metadata = load_model(run_dir)
            signature = mlflow.models.infer_signature(example, predict_frame(model, metadata, example)[0])
        mlflow.pyfunc.log_model(
            name="model", python_model=str(PACKAGE / "tracking" / "pyfunc.py"), code_paths=[str(PACKAGE)],
            artifacts={"model": str(run_dir / "model" / "model.keras"),
                       "metadata": str(run_dir / "model" / "metadata.json")},
            signature=signature, input_example=example, pip_requirements=pinned_requirements(),
            metadata={"keras_backend": "tensorflow",
                      "hpsearch_model": "ensemble" if final.ensemble.get("chosen") else "network"})


def pinned_requirements() -> list[str]:
    """The logged model's requirements, at the versions that built and checked it: its environment
    predicts as this one did (TensorFlow: Keras takes the model's text inputs only there)."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for name in SERVING_PACKAGES:
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pinned


def _log_best(client: Any, run_id: str, trial: Any) -> None:
    """A child run's best scores and epoch (Ray's callback logs each report's, so the run's last value
    is its last epoch's: MLflow's compare view would sort ASHA's trials by where they were stopped)."""
    import math

    best = {str(k): float(v) for k, v in trial.items() if str(k).startswith("best_") and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(float(v))}
    for name, value in best.items():
        client.log_metric(run_id, name, value)


def fail(tracking: Tracking) -> None:
    """End the parent run as failed (a stopped or failed run; a resumed one gets a parent run of its own)."""
    import mlflow

    mlflow.MlflowClient(tracking_uri=tracking.uri).set_terminated(tracking.run_id, status="FAILED")
