"""The run request: every option of ``hpsearch run``, validated once at the edge.

``RunSpec`` is a pydantic model (untrusted input from the command line); after validation it is
frozen and passed inward unchanged, and written to ``spec.json`` as the record of the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from search.compute import Compute
from search.data import BUILTIN_PREFIX, DEFAULT_DATA
from search.errors import SpecError
from search.metrics import DEFAULT_METRIC, METRICS
from search.space import DEFAULT_SPACE

DEFAULT_TOP_K = 3
TINY_TABLE_ROWS = 300
# Without --ensemble/--no-ensemble, an ensemble is selected only from this many non-test rows. Below it the
# ensemble's out-of-fold gain, cross-validated or not, did not hold on the test part: on 6 runs of pima, mroz
# and swisslabor (602-697 rows) it lost 5 times, by 0.0036 on the mean, against the winner alone bagged; on 10
# runs of 1,900-8,000 rows it gained 0.0011 (bench/README.md, "... and ensembles from 1,000 rows, 2026-12-07").
ENSEMBLE_MIN_ROWS = 1000
TINY_TABLE_REPEATS = 3
SKEWED_SHARE = 0.3
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class SessionOptions:
    """What the Ray session needs: the cluster to join (None: a private local Ray), a local Ray's CPUs,
    and what one trial reserves (refused at the start where no node can give it)."""

    address: str | None = None
    cpus: int | None = None
    compute: Compute = Compute()


@dataclass(frozen=True)
class TuningOptions:
    """What the search needs beyond its space and data: how many trials, how they are drawn and
    stopped, what one reserves, and how many keep their checkpoint for the CV."""

    samples: int = 40
    searcher: str = "random"
    seed: int = 0
    reduction_factor: float = 3.0
    max_failures: int = 2
    logs_to_mlflow: bool = False
    keep_checkpoints: int = DEFAULT_TOP_K
    compute: Compute = Compute()


@dataclass(frozen=True)
class CvOptions:
    """What the CV, the threshold and the final fit need: which candidates, how often, how the
    threshold is chosen and how many networks the ensemble may take (1: no ensemble)."""

    metric: str = DEFAULT_METRIC
    seed: int = 0
    candidates: int = DEFAULT_TOP_K
    keep: int = DEFAULT_TOP_K
    repeats: int | None = None
    threshold: float | None = None
    threshold_rule: str = "auto"
    ensemble_members: int = 1
    ensemble_min_rows: int = 0  # fewer non-test rows: the winner alone
    compute: Compute = Compute()

    def repeats_for(self, rows: int) -> int:
        """``repeats``, else 3 below ``TINY_TABLE_ROWS`` rows (fold scores of tiny tables are noisy), else 1."""
        return self.repeats or (TINY_TABLE_REPEATS if rows < TINY_TABLE_ROWS else 1)


@dataclass(frozen=True)
class ExportOptions:
    """What the exported model's metadata records of the request, and whether a SavedModel goes beside it."""

    header: bool = True
    metric: str = DEFAULT_METRIC
    seed: int = 0
    savedmodel: bool = False


class RunSpec(BaseModel):
    """A validated run request (see ``hpsearch run --help`` for each option)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = DEFAULT_DATA
    target: str | None = None
    header: bool = True
    positive: str | None = None
    drop: tuple[str, ...] = ()
    space: str = DEFAULT_SPACE
    hypermodel: str | None = None
    name: str | None = None
    results: str = "results"
    metric: str = DEFAULT_METRIC
    samples: int = Field(40, ge=1)
    max_epochs: int | None = Field(None, ge=1)
    grace_period: float | None = Field(None, gt=0)
    reduction_factor: float = Field(3.0, gt=1)
    searcher: Literal["random", "optuna"] = "random"
    seed: int = Field(0, ge=0)
    cpus: int | None = Field(None, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    time_budget: float | None = Field(None, gt=0)
    test_size: float = Field(0.2, ge=0, le=0.5)
    val_size: float = Field(0.2, ge=0.05, le=0.5)
    top_k: int | None = Field(None, ge=1)
    ensemble: bool | None = None  # None: from ENSEMBLE_MIN_ROWS non-test rows
    ensemble_members: int = Field(5, ge=2, le=20)
    folds: int | None = Field(None, ge=2, le=50)
    repeats: int | None = Field(None, ge=1, le=20)
    class_weight: Literal["auto", "balanced", "none"] = "auto"
    threshold: float | None = Field(None, ge=0, le=1)
    threshold_rule: Literal["auto", "youden", "accuracy", "f1"] = "auto"
    export_savedmodel: bool = False
    address: str | None = None
    checkpoint_every: int = Field(5, ge=0)
    max_failures: int = Field(2, ge=0)
    backend: Literal["jax", "tensorflow"] = "jax"
    mixed_precision: bool = False
    mlflow: bool = False
    mlflow_uri: str | None = None

    @field_validator("target", mode="before")
    @classmethod
    def _target_as_text(cls, value: Any) -> Any:
        """``target=-1`` from Python means what ``--target -1`` means: a column by its index."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; choose one of {', '.join(METRICS)}")
        return value

    @model_validator(mode="after")
    def _one_network(self) -> RunSpec:
        if self.hypermodel and self.space != DEFAULT_SPACE:
            raise ValueError("give --space (the built-in network's space) or --hypermodel (your own model, "
                             "whose space is its build_model's), not both")
        return self

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not a plain folder name; use letters, digits, '.', '_' and '-'"
            )
        return value

    @classmethod
    def from_options(cls, **options: Any) -> RunSpec:
        """Build from CLI options, turning pydantic's report into one line that names the flag."""
        try:
            return cls(**{k: v for k, v in options.items() if v is not None})
        except ValidationError as exc:
            err = exc.errors()[0]
            flag = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "option"
            msg = err["msg"].removeprefix("Value error, ")
            raise SpecError(f"{flag}: {msg[0].lower()}{msg[1:]}, got {err.get('input')!r}.") from None

    def run_name(self, now: datetime | None = None) -> str:
        """``--name``, or ``<data>-<UTC time>`` so that runs sort by date."""
        if self.name:
            return self.name
        stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S")
        stem = self.data.removeprefix(BUILTIN_PREFIX)
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(stem).stem) or "data"
        return f"{stem}-{stamp}"

    def cv_candidates(self) -> int:
        """Configurations the CV re-scores: ``--top-k``; by default 3, or with the ensemble as many as its
        members may be (the best 3, then the best of other network shapes: search/selection/cv.py)."""
        return self.top_k or (self.ensemble_members if self.ensemble is not False else DEFAULT_TOP_K)

    def compute(self) -> Compute:
        return Compute(self.backend, self.cpus_per_trial, self.gpus_per_trial, self.mixed_precision)

    def session_options(self) -> SessionOptions:
        return SessionOptions(self.address, self.cpus, self.compute())

    def tuning_options(self) -> TuningOptions:
        return TuningOptions(self.samples, self.searcher, self.seed, self.reduction_factor, self.max_failures,
                             self.mlflow, self.cv_candidates(), self.compute())

    def cv_options(self) -> CvOptions:
        members = self.ensemble_members if self.ensemble is not False else 1
        min_rows = ENSEMBLE_MIN_ROWS if self.ensemble is None else 0
        return CvOptions(self.metric, self.seed, self.cv_candidates(), self.top_k or DEFAULT_TOP_K, self.repeats,
                         self.threshold, self.threshold_rule, members, min_rows, self.compute())

    def export_options(self) -> ExportOptions:
        return ExportOptions(self.header, self.metric, self.seed, self.export_savedmodel)

    def class_weights(self, y: Any) -> str:
        """``--class-weight``; ``auto`` is ``balanced`` when the rarer class is under ``SKEWED_SHARE`` of the rows."""
        if self.class_weight != "auto":
            return self.class_weight
        import numpy as np

        share = float(np.mean(y))
        return "balanced" if min(share, 1 - share) < SKEWED_SHARE else "none"

    def is_remote_results(self) -> bool:
        """``--results`` names a storage URI (``file://``, ``s3://``, ``gs://``): work locally, then upload."""
        return "://" in self.results

    def results_root(self) -> Path:
        """The local folder runs are written in (a scratch folder when results go to a URI)."""
        if self.is_remote_results():
            import os
            import tempfile

            # one folder per process: concurrent runs never stage in each other's folder
            return Path(tempfile.gettempdir()) / f"hpsearch-staging-{os.getpid()}"
        return Path(self.results).expanduser().resolve()
