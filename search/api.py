"""The Python API, for notebooks and scripts: ``search.run(...)`` runs what ``hpsearch run`` runs,
on the same code path, and returns a :class:`Result` read back from the run folder.

    import search
    result = search.run(df, target="churned", samples=20)   # a DataFrame, or a file path
    result.cv["winner"], result.test["roc_auc"]
    result.predict(new_rows)                                  # probability and label per row
    result                                                    # in a notebook: the report's summary

Errors are the CLI's: every bad input is an :class:`~search.errors.HpsearchError` subclass.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from search import run_folder
from search.data import DEFAULT_DATA


def run(data: str | Path | pd.DataFrame = DEFAULT_DATA, target: str | int | None = None, *, quiet: bool = False,
        **options: Any) -> Result:
    """Search, re-score, export and report, as ``hpsearch run`` does; ``options`` are its options
    (``samples=20``, ``metric="accuracy"``, ``time_budget=600``, ``results="results"``, ...).

    A DataFrame's run is self-contained: the table is kept in the run folder (``data.parquet``), where
    ``hpsearch retrain`` and ``resume`` read it, and no temporary file is left behind.

    Raises:
        HpsearchError: bad input (before anything is written), no usable trial, or a failed stage; its
            message names this function's keywords (``samples=0``), not the CLI's flags.
        Interrupted: a stop (Ctrl-C, SIGTERM, a notebook's interrupt); resume with ``hpsearch resume``.
    """
    from search.cli import progress_display
    from search.compute import quiet_tensorflow
    from search.pipeline import run_search
    from search.spec import RunSpec

    quiet_tensorflow()  # no TensorFlow or CUDA start-up lines in the cell (search.run(..., debug) has them)
    frame_folder = None
    try:
        with errors_named_by_keyword():
            if not isinstance(data, (str, Path, pd.DataFrame)) and hasattr(data, "to_pandas"):
                data = data.to_pandas()  # a polars or pyarrow table
            if isinstance(data, pd.DataFrame):
                frame_folder = Path(tempfile.mkdtemp(prefix="hpsearch-frame-"))
                path = frame_folder / "DataFrame.parquet"
                data.rename(columns=str).to_parquet(path, index=False)
                data = path
            if options.get("hypermodel"):
                from search.network import absolute

                options["hypermodel"] = absolute(str(options["hypermodel"]))
            spec = RunSpec.from_options(data=str(data), target=target, **options)
            with progress_display(quiet) as on_progress:
                outcome = run_search(spec, on_progress, keep_table=frame_folder is not None)
    finally:
        if frame_folder is not None:
            shutil.rmtree(frame_folder, ignore_errors=True)
    return Result(Path(outcome.run_dir))


@contextmanager
def errors_named_by_keyword() -> Iterator[None]:
    """Re-raise the CLI's errors with its flags as this API's keywords: ``--samples 0`` reads
    ``samples=0``, ``--no-header`` reads ``header=False``."""
    from search.errors import HpsearchError, Interrupted
    from search.spec import RunSpec

    flags = {"no-header": "header=False", **{f.replace("_", "-"): f for f in RunSpec.model_fields}}
    # a flag, and the value after it where a colon follows (the errors' shape: "--samples 0: ...")
    pattern = re.compile(r"--(" + "|".join(sorted(map(re.escape, flags), key=len, reverse=True)) +
                         r")\b(?: ([^\s:,;]+)(?=:))?")

    def keyword(match: re.Match[str]) -> str:
        name, value = flags[match.group(1)], match.group(2)
        return f"{name}={value}" if value and "=" not in name else name

    try:
        yield
    except Interrupted:
        raise
    except HpsearchError as exc:
        raise type(exc)(pattern.sub(keyword, str(exc))) from None


def load(run_dir: str | Path) -> Result:
    """The result of a finished run, from its folder (``results/NAME``)."""
    from search.errors import DataError

    folder = Path(run_dir).resolve()
    if not (folder / run_folder.SPEC).is_file():
        raise DataError(f"{folder} has no {run_folder.SPEC}: it is not an hpsearch run folder. Give results/NAME.")
    return Result(folder)


class Result:
    """A finished run, read from its folder: what the report shows, the model, and predictions."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def _json(self, name: str) -> Any:
        path = self.run_dir / name
        return json.loads(path.read_text()) if path.is_file() else None

    @cached_property
    def best_config(self) -> dict[str, Any]:
        """The best search trial: its hyperparameters, validation score and epoch."""
        return self._json(run_folder.BEST_CONFIG)

    @property
    def best_params(self) -> dict[str, Any]:
        """The exported winner's hyperparameters: the CV's pick among the search's best trials (which
        may differ from :attr:`best_config`, the search's best trial on its validation part)."""
        return dict(self._cv_winner["hyperparameters"])

    @property
    def best_score(self) -> float:
        """The exported winner's mean CV score on the run's metric (``best_config["value"]`` is the
        search's best trial's validation score)."""
        return float(self._cv_winner["mean"][self.best_config["metric"]])

    @cached_property
    def _cv_winner(self) -> dict[str, Any]:
        cv = self.cv or {}
        return next(c for c in cv.get("candidates", []) if c["trial_id"] == cv.get("winner"))

    @cached_property
    def cv(self) -> dict[str, Any]:
        """The CV of the top configurations: fold scores, the winner, its epochs and threshold, the baselines."""
        return self._json(run_folder.CV)

    @property
    def ensemble(self) -> pd.DataFrame:
        """The exported model's networks: one row each (trial id, weight in the mean, epochs, fold models
        when bagged, CV mean score, hyperparameters); one row, weight 1, when the winner alone was
        exported (see ``cv["ensemble"]`` for why)."""
        from search.export import METADATA_FILE, MODEL_DIR

        metadata = run_folder.read_json(self.run_dir / MODEL_DIR, METADATA_FILE) or {}
        ensemble = metadata.get("ensemble") or {}
        metric = metadata.get("metric", "roc_auc")
        rows = [{"trial_id": n["trial_id"], "weight": n["weight"], "epochs": n["epochs"],
                 "fold_models": n.get("fold_models", 0), f"cv_{metric}": n["cv_mean"][metric],
                 **n["hyperparameters"]} for n in ensemble.get("networks", [])]
        return pd.DataFrame(rows)

    @cached_property
    def test(self) -> dict[str, Any] | None:
        """The final model's scores on the held-out test part (None when no test part was held out)."""
        return self._json(run_folder.TEST)

    @cached_property
    def trials(self) -> pd.DataFrame:
        from search.run_folder import read_trials

        return read_trials(self.run_dir)

    @cached_property
    def _loaded(self) -> tuple[Any, dict[str, Any]]:
        from search.export import load_model

        return load_model(self.run_dir)

    @property
    def model(self) -> Any:
        """The exported Keras model (preprocessing inside), loaded in safe mode."""
        return self._loaded[0]

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Probability and label for each row of a DataFrame of the raw columns, as ``hpsearch predict``."""
        from search.export import predict_frame

        model, metadata = self._loaded
        return predict_frame(model, metadata, frame, "the DataFrame")[0]

    @property
    def report_path(self) -> Path:
        from search.report import REPORT_HTML

        return self.run_dir / REPORT_HTML

    def __repr__(self) -> str:
        return f"Result({str(self.run_dir)!r})"

    def _repr_html_(self) -> str:
        """The report's summary in a notebook: the winner, its CV and test scores, the verdict, the report."""
        report = self._json("report.json") or {}
        metric = report.get("metric", "roc_auc")
        cv = report.get("cv") or {}
        winner = next((c for c in cv.get("candidates", []) if c["trial_id"] == cv.get("winner")), None)
        rows = [("run", str(self.run_dir))]
        if winner:
            rows += [("winner", f"{winner['trial_id']}: " + ", ".join(f"{k} {v}" for k, v in
                                                                      winner["hyperparameters"].items())),
                     (f"CV {metric}", f"{winner['mean'][metric]:.4f} ± {winner['std'][metric]:.4f}")]
        if self.test:
            rows.append((f"test {metric}", f"{self.test[metric]:.4f} on {self.test['rows']} rows"))
        if report.get("against_boosting"):
            rows.append(("against boosting", report["against_boosting"]))
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                        f"{html.escape(v)}</td></tr>" for k, v in rows)
        return (f"<div><b>hpsearch run {html.escape(self.run_dir.name)}</b><table>{cells}</table>"
                f"<a href='{html.escape(self.report_path.as_uri())}'>the full report</a></div>")
