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
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from search import results
from search.data import DEFAULT_DATA


def run(data: str | Path | pd.DataFrame = DEFAULT_DATA, target: str | None = None, *, quiet: bool = False,
        **options: Any) -> Result:
    """Search, re-score, export and report, as ``hpsearch run`` does; ``options`` are its options
    (``samples=20``, ``metric="accuracy"``, ``time_budget=600``, ``results="results"``, ...).

    A DataFrame is written to a Parquet file in a temporary folder first, so that the run's record
    (``spec.json``: the data's path and SHA-256) is the same as for a file.

    Raises:
        HpsearchError: bad input (before anything is written), no usable trial, or a failed stage.
        Interrupted: a stop (Ctrl-C, SIGTERM, a notebook's interrupt); resume with ``hpsearch resume``.
    """
    from search.console import progress_display
    from search.pipeline import run_search
    from search.spec import RunSpec

    if isinstance(data, pd.DataFrame):
        folder = Path(tempfile.mkdtemp(prefix="hpsearch-frame-"))
        path = folder / "frame.parquet"
        data.to_parquet(path, index=False)
        data = path
    if options.get("hypermodel"):
        from search.hypermodel import absolute

        options["hypermodel"] = absolute(str(options["hypermodel"]))
    spec = RunSpec.from_options(data=str(data), target=target, **options)
    with progress_display(quiet) as on_progress:
        outcome = run_search(spec, on_progress)
    return Result(Path(outcome.run_dir))


def load(run_dir: str | Path) -> Result:
    """The result of a finished run, from its folder (``results/NAME``)."""
    from search.errors import DataError

    folder = Path(run_dir).resolve()
    if not (folder / results.SPEC).is_file():
        raise DataError(f"{folder} has no {results.SPEC}: it is not an hpsearch run folder. Give results/NAME.")
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
        return self._json(results.BEST_CONFIG)

    @cached_property
    def cv(self) -> dict[str, Any]:
        """The CV of the top configurations: fold scores, the winner, its epochs and threshold, the baselines."""
        return self._json(results.CV)

    @cached_property
    def test(self) -> dict[str, Any] | None:
        """The final model's scores on the held-out test part (None when no test part was held out)."""
        return self._json(results.TEST)

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
        from search.predict import predict_frame

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
