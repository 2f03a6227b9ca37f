"""One trial: fit a network on the encoded arrays and report the validation metrics every epoch.

This is the only module that talks to Ray Tune from inside a trial; Ray has renamed its
reporting API several times, so a Ray upgrade should touch only :func:`_report` here.

Faults: a trial whose loss becomes NaN or infinite stops at once and reports ``diverged=1``;
a trial whose code raises reports ``errored=1`` with the first line of the error and ends
normally, so that Ray retries (``FailureConfig``) only what the trial's code did not cause: a
lost worker or node. Every ``checkpoint_every`` epochs the weights, the optimizer state and the
epoch go into a Ray checkpoint (a NumPy ``.npz``, loaded without pickle), from which a retried
or resumed trial continues.
"""

from __future__ import annotations

import math
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from search.compute import Compute, use_backend
from search.errors import first_line
from search.metrics import WORST, score_all

if TYPE_CHECKING:
    from search.network import EpochEnd


@dataclass(frozen=True)
class TrialData:
    """What every trial receives, once, through Ray's object store."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    metric: str
    max_epochs: float
    seed: int
    fixed: dict[str, Any]
    checkpoint_every: int = 0
    compute: Compute = Compute()
    reports_per_epoch: int = 1  # a trial reports (and ASHA decides) this many times per epoch

    @property
    def max_reports(self) -> int:
        return int(math.ceil(self.max_epochs * self.reports_per_epoch - 1e-9))


STATE_FILE = "state.npz"
MAX_TRACEBACK_CHARS = 20_000  # a failed trial's traceback, as trials.csv and trial_errors.txt keep it


def train_trial(config: dict[str, Any], data: TrialData) -> None:
    """Ray Tune function trainable: one ``ray.tune.report`` per epoch (or part of one), one
    ``training_iteration`` each, from the one training loop (``network.fit_network``)."""
    device = use_backend(data.compute)

    from search.network import TRIAL_EPOCHS_EXPECTED, fit_network

    try:
        fit_network({**data.fixed, **config}, data.x_train, data.y_train, data.max_reports, data.seed,
                    x_eval=data.x_val, mixed_precision=data.compute.mixed_precision,
                    on_epoch=lambda end: _score_and_report(data, end, device), chunks=data.reports_per_epoch,
                    restore=_restore_state, expected_epochs=min(TRIAL_EPOCHS_EXPECTED, data.max_epochs),
                    validation_data=(data.x_val, data.y_val))
    except Exception as exc:
        if type(exc).__module__.startswith("ray"):
            raise  # Ray's own signals (a stop, a lost session) are Ray's to handle
        _report({**WORST, "loss": -1.0, "errored": 1, "diverged": 0, "error": first_line(exc),
                 "traceback": traceback.format_exc()[-MAX_TRACEBACK_CHARS:], "node_id": _node_id(), "device": device})


def _score_and_report(data: TrialData, end: EpochEnd, device: str) -> bool:
    """Score the validation rows after step ``end.step`` and report it, with the epochs trained so far
    (ASHA's time unit), and a checkpoint every ``checkpoint_every`` epochs.
    Returns whether training goes on: not after a NaN or infinite loss or prediction."""
    import keras

    loss, probability, done = end.loss, end.probability, end.step
    keep_going = True
    checkpoint = False
    if not np.isfinite(loss) or probability is None or not np.all(np.isfinite(probability)):
        scores = dict(WORST)
        scores.update(loss=loss if np.isfinite(loss) else -1.0, diverged=1)
        keep_going = False
    else:
        scores = score_all(data.y_val, probability)
        scores.update(loss=loss, diverged=0)
        every = data.checkpoint_every * data.reports_per_epoch
        checkpoint = bool(every) and done % every == 0 and done < data.max_reports
    scores.update(epoch=done / data.reports_per_epoch, restored_from=end.first_step, errored=0, node_id=_node_id(),
                  train_seconds=end.seconds, device=device,
                  compute_dtype=_compute_dtype(end.model), backend=keras.backend.backend())
    _report(scores, state_of=end.synced() if checkpoint else None, epoch=done)
    return keep_going


def _compute_dtype(model: Any) -> str:
    """The dtype the model's first layer with weights computes in (float16 under mixed precision)."""
    return next((layer.compute_dtype for layer in model.layers if layer.weights), "float32")


def _report(metrics: dict[str, Any], state_of: Any = None, epoch: int = 0) -> None:
    """Report one epoch's metrics; with ``state_of`` (a model), also a checkpoint of its state after ``epoch``."""
    from ray import tune

    if state_of is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="hpsearch-ckpt-") as folder:
        _save_state(state_of, epoch, Path(folder) / STATE_FILE)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _save_state(model: Any, epoch: int, path: Path) -> None:
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)})
    np.savez(path, epoch=np.int64(epoch), **arrays)


def _restore_state(model: Any) -> int:
    """Load the trial's last checkpoint into ``model``, if Ray gave one; returns the epoch to start at."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder, np.load(Path(folder) / STATE_FILE, allow_pickle=False) as state:
        n_weights = sum(k.startswith("w") for k in state.files)
        model.set_weights([state[f"w{i}"] for i in range(n_weights)])
        model.optimizer.build(model.trainable_variables)
        for i, variable in enumerate(model.optimizer.variables):
            variable.assign(state[f"o{i}"])
        return int(state["epoch"])


class NewestCheckpointFallback:
    """Ray trainable mixin: resume from the trial's newest checkpoint when the recorded one is gone.

    Ray deletes a trial's older checkpoint (``num_to_keep=1``) as it registers a newer one, and
    saves the experiment state a moment later; a driver killed in between leaves a state that names
    the deleted checkpoint, and ``Tuner.restore`` would fail the trial ("does not exist on storage
    anymore"). The newer checkpoint is on storage and holds its own epoch; with none, the trial
    starts again from its first epoch.
    """

    def restore(self, checkpoint_path: Any) -> None:
        try:
            super().restore(checkpoint_path)
        except ValueError as exc:
            if "does not exist on storage" not in str(exc):
                raise
            newest = _newest_checkpoint_beside(checkpoint_path.checkpoint)
            if newest is not None:
                super().restore(newest)
            else:  # Ray had already counted the missing checkpoint's epochs: count from the start
                self._iteration, self._time_total = 0, 0.0


def _newest_checkpoint_beside(missing: Any) -> Any:
    """The newest ``checkpoint_*`` folder with a state file next to ``missing``, as Ray's training
    result (the epoch from the file: one report per epoch), or None."""
    from pyarrow import fs as pafs
    from ray import tune
    from ray.train._internal.session import _TrainingResult

    parent = missing.path.rstrip("/").rsplit("/", 1)[0]
    found = missing.filesystem.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    folders = sorted((f.path for f in found if f.type == pafs.FileType.Directory
                      and f.base_name.startswith("checkpoint_")), reverse=True)
    for folder in folders:
        checkpoint = tune.Checkpoint(folder, filesystem=missing.filesystem)
        try:
            with checkpoint.as_directory() as local, np.load(Path(local) / STATE_FILE, allow_pickle=False) as state:
                epoch = int(state["epoch"])
        except (OSError, KeyError, ValueError):  # a checkpoint cut short when the driver was killed
            continue
        return _TrainingResult(checkpoint=checkpoint, metrics={"training_iteration": epoch})
    return None


train_trial.__mixins__ = (NewestCheckpointFallback,)  # read by Ray's wrap_function


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()
