"""The five ways of searching that the benchmark compares; each runs in its own child process.

``python -m bench.methods METHOD WORKDIR`` reads the encoded splits that ``bench.run`` wrote to
``WORKDIR/data.npz`` and the budget in ``WORKDIR/budget.json``, searches, and writes
``WORKDIR/METHOD.json``: trained epochs with their training seconds, trials, the best validation
ROC AUC, and the best configuration with the epoch at which it peaked.

Every method samples from the same space (``spaces/default.yaml``, translated for KerasTuner and
for the plain loop) and trains the same MLP (``search.network.mlp.build_network``; the peers compile it
with Keras' defaults, as their users would).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CLOCK: list[dict[str, Any]] = []  # (trial, epoch, train seconds) of every trained epoch in this process


def load(workdir: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(workdir / "data.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return arrays, json.loads((workdir / "budget.json").read_text())


def epoch_clock(trial: str) -> Any:
    """A Keras callback that times each epoch's fit (validation excluded) into ``CLOCK``."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            CLOCK.append({"trial": trial, "epoch": epoch + 1, "seconds": time.perf_counter() - self.began})

    return EpochClock()


def peer_network(config: dict[str, Any], n_features: int, metrics: list[Any] | None = None) -> Any:
    """hpsearch's MLP for ``config``, compiled with Keras' defaults (no steps_per_execution)."""
    import keras

    from search.network import build_network, make_optimizer, resolve_config

    c = resolve_config(config)
    model = build_network(c, n_features)
    model.compile(optimizer=make_optimizer(c["optimizer"], float(c["learning_rate"])), loss="binary_crossentropy",
                  metrics=metrics if metrics is not None else [keras.metrics.AUC(name="auc")])
    return model


def sample_configs(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` random configurations from the default space (for the plain loop)."""
    from search.space import ChoiceParam, FloatParam, load_space

    rng = np.random.default_rng(seed)
    space = load_space("default")
    configs = []
    for _ in range(n):
        config: dict[str, Any] = {}
        for name, p in space.params.items():
            if isinstance(p, ChoiceParam):
                config[name] = p.values[int(rng.integers(len(p.values)))]
            elif p.log:
                value = float(np.exp(rng.uniform(np.log(p.low), np.log(p.high + (0 if isinstance(p, FloatParam)
                                                                                  else 1)))))
                config[name] = value if isinstance(p, FloatParam) else min(p.high, int(value))
            else:
                config[name] = float(rng.uniform(p.low, p.high)) if isinstance(p, FloatParam) \
                    else int(rng.integers(p.low, p.high + 1))
        configs.append(config)
    return configs


def keras_tuner_space(hp: Any) -> dict[str, Any]:
    """The default space in KerasTuner's terms."""
    from search.space import ChoiceParam, FloatParam, load_space

    config: dict[str, Any] = {}
    for name, p in load_space("default").params.items():
        if isinstance(p, ChoiceParam):
            config[name] = hp.Choice(name, list(p.values))
        elif isinstance(p, FloatParam):
            config[name] = hp.Float(name, p.low, p.high, sampling="log" if p.log else "linear")
        else:
            config[name] = hp.Int(name, p.low, p.high, sampling="log" if p.log else "linear")
    return config


def run_keras_tuner(kind: str, arrays: dict[str, np.ndarray], budget: dict[str, Any], workdir: Path) -> dict:
    import keras_tuner as kt

    n_features = arrays["x_train"].shape[1]

    class MLP(kt.HyperModel):
        def build(self, hp: Any) -> Any:
            return peer_network(keras_tuner_space(hp), n_features)

        def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), epoch_clock(hp_key(hp))]
            return model.fit(*args, batch_size=hp.get("batch_size"), **kwargs)

    common = {"objective": kt.Objective("val_auc", "max"), "seed": budget["seed"], "overwrite": True,
              "directory": str(workdir / "kt"), "project_name": kind}
    if kind == "keras_tuner_hyperband":
        tuner = kt.Hyperband(MLP(), max_epochs=budget["max_epochs"], factor=3, hyperband_iterations=1, **common)
        epochs = budget["max_epochs"]
    else:
        tuner = kt.RandomSearch(MLP(), max_trials=budget["full_trials"], **common)
        epochs = budget["max_epochs"]
    started = time.perf_counter()
    tuner.search(arrays["x_train"], arrays["y_train"], validation_data=(arrays["x_val"], arrays["y_val"]),
                 epochs=epochs, verbose=0)
    wall = time.perf_counter() - started
    best = tuner.oracle.get_best_trials(1)[0]
    config = {k: v for k, v in best.hyperparameters.values.items() if not k.startswith("tuner/")}
    return {"search_seconds": wall, "trials": len(tuner.oracle.trials), "configurations": len(
        {hp_key(t.hyperparameters) for t in tuner.oracle.trials.values()}),
        "best_val_roc_auc": float(best.score), "best_config": config,
        "best_epoch": _kt_best_epoch(best, config), "slots": 1}


def hp_key(hp: Any) -> str:
    values = hp.values if hasattr(hp, "values") else hp
    return json.dumps({k: v for k, v in values.items() if not k.startswith("tuner/")}, sort_keys=True)


def _kt_best_epoch(trial: Any, config: dict[str, Any]) -> int:
    """The epoch (1-based, counted from the start of the configuration) of the best trial's best score."""
    key = json.dumps(config, sort_keys=True)
    mine = [c for c in CLOCK if c["trial"] == key]
    history = trial.metrics.get_history("val_auc")
    if history:
        step = max(history, key=lambda o: float(np.mean(o.value))).step
        return int(step) + 1
    return max((c["epoch"] for c in mine), default=1)


def run_plain_loop(arrays: dict[str, np.ndarray], budget: dict[str, Any], workdir: Path) -> dict:
    """What people write first: a loop of ``model.fit(validation_data=...)`` over random configurations."""
    from search.network import resolve_config

    started = time.perf_counter()
    best: dict[str, Any] = {"best_val_roc_auc": -1.0}
    configs = sample_configs(budget["full_trials"], budget["seed"])
    for i, config in enumerate(configs):
        model = peer_network(config, arrays["x_train"].shape[1])
        history = model.fit(arrays["x_train"], arrays["y_train"], batch_size=int(config["batch_size"]),
                            epochs=budget["max_epochs"], validation_data=(arrays["x_val"], arrays["y_val"]),
                            verbose=0, callbacks=[epoch_clock(str(i))])
        aucs = history.history["val_auc"]
        if max(aucs) > best["best_val_roc_auc"]:
            best = {"best_val_roc_auc": float(max(aucs)), "best_config": resolve_config(config),
                    "best_epoch": int(np.argmax(aucs)) + 1}
    return {"search_seconds": time.perf_counter() - started, "trials": len(configs),
            "configurations": len(configs), "slots": 1, **best}


def hand_written_trainable(config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """The Ray Tune trainable a user writes from the docs: one fit(epochs=1) and one report per epoch."""
    from ray import tune

    model = peer_network(config, arrays["x_train"].shape[1])
    for epoch in range(10_000):
        began = time.perf_counter()
        model.fit(arrays["x_train"], arrays["y_train"], batch_size=int(config["batch_size"]), epochs=1, verbose=0)
        seconds = time.perf_counter() - began
        _, auc = model.evaluate(arrays["x_val"], arrays["y_val"], verbose=0)
        tune.report({"roc_auc": float(auc), "train_seconds": seconds, "epoch": epoch + 1})


def run_ray_tune(method: str, arrays: dict[str, np.ndarray], budget: dict[str, Any], workdir: Path) -> dict:
    import ray
    from ray import tune

    started = time.perf_counter()
    if method == "hpsearch" or method.startswith("hpsearch_"):
        return _run_hpsearch(method, arrays, budget, workdir, started)
    from ray.tune.schedulers import ASHAScheduler

    from search.space import load_space
    from search.tuning import to_ray_space

    ray.init(num_cpus=budget["cpus"], include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_parameters(hand_written_trainable, arrays=arrays),
        param_space=to_ray_space(load_space("default")),
        tune_config=tune.TuneConfig(metric="roc_auc", mode="max", num_samples=budget["samples"],
                                    scheduler=ASHAScheduler(max_t=budget["max_epochs"])),
        run_config=tune.RunConfig(storage_path=str(workdir / "ray"), verbose=0),
    )
    grid = tuner.fit()
    wall = time.perf_counter() - started
    frames = []
    for result in grid:
        df = result.metrics_dataframe
        if df is not None and len(df):
            df = df.assign(trial=result.metrics.get("trial_id"))
            frames.append(df)
    for df in frames:
        for row in df.itertuples():
            CLOCK.append({"trial": row.trial, "epoch": int(row.training_iteration),
                          "seconds": float(row.train_seconds)})
    best = grid.get_best_result(metric="roc_auc", mode="max", scope="all")
    history = best.metrics_dataframe
    ray.shutdown()
    return {"search_seconds": wall, "trials": len(grid), "configurations": len(grid), "slots": budget["cpus"],
            "best_val_roc_auc": float(history["roc_auc"].max()),
            "best_config": _plain(best.config),
            "best_epoch": int(history.loc[history["roc_auc"].idxmax(), "training_iteration"])}


def _run_hpsearch(method: str, arrays: dict[str, np.ndarray], budget: dict[str, Any], workdir: Path,
                  started: float) -> dict:
    """hpsearch's search step (``tuning.run_trials``) on the same arrays: Ray start-up included."""
    from search.cluster import ray_session
    from search.run_folder import epoch_history
    from search.space import load_space
    from search.spec import RunSpec
    from search.tuning import TrialData, run_trials

    backend = method.removeprefix("hpsearch").removeprefix("_") or budget["backend"]
    spec = RunSpec(samples=budget["samples"], max_epochs=budget["max_epochs"], cpus=budget["cpus"],
                   seed=budget["seed"], backend=backend)
    space = load_space(spec.space)
    data = TrialData(x_train=arrays["x_train"], y_train=arrays["y_train"], x_val=arrays["x_val"],
                     y_val=arrays["y_val"], metric="roc_auc", max_epochs=budget["max_epochs"], seed=budget["seed"],
                     fixed={}, checkpoint_every=spec.checkpoint_every,
                     compute=spec.compute())
    run_dir = workdir / method
    run_dir.mkdir()
    with ray_session(spec.session_options()):
        # ASHA's default rungs
        trials = run_trials(spec.tuning_options(), space, data, run_dir, grace_period=4, deadline=float("inf"))
    wall = time.perf_counter() - started
    history = epoch_history(run_dir, "roc_auc")
    for row in history.itertuples():
        CLOCK.append({"trial": row.trial_id, "epoch": int(row.epoch), "seconds": float(row.train_seconds)})
    usable = trials.dropna(subset=["best_roc_auc"]).sort_values("best_roc_auc", ascending=False, kind="stable")
    top = usable.iloc[0]
    from search.network import resolve_config

    return {"search_seconds": wall, "trials": len(trials), "configurations": len(trials), "slots": budget["cpus"],
            "best_val_roc_auc": float(top["best_roc_auc"]),
            "best_config": resolve_config({k: _plain(top[k]) for k in space.params}),
            "best_epoch": int(top["best_epoch"])}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value.item() if hasattr(value, "item") else value


def cross_validate(arrays: dict[str, np.ndarray], configs: dict[str, dict[str, Any]], seed: int) -> dict:
    """Each method's best configuration, trained for its best epoch, scored on the same 5 stratified folds."""
    from sklearn.model_selection import StratifiedKFold

    from search.metrics import score_all
    from search.network import fit_network

    x, y = arrays["x_all"], arrays["y_all"]
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y))
    out = {}
    for method, best in configs.items():
        scores = []
        for f, (tr, va) in enumerate(folds):
            model = fit_network(best["best_config"], x[tr], y[tr].astype(np.float32), best["best_epoch"], seed + f)
            scores.append(score_all(y[va], np.asarray(model(x[va], training=False)).ravel()))
        out[method] = {m: [s[m] for s in scores] for m in ("roc_auc", "accuracy")}
    return out


def main() -> None:
    method, workdir = sys.argv[1], Path(sys.argv[2])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    arrays, budget = load(workdir)
    if method == "cv":
        configs = json.loads((workdir / "best_configs.json").read_text())
        (workdir / "cv.json").write_text(json.dumps(cross_validate(arrays, configs, budget["seed"])))
        return
    if method.startswith("keras_tuner"):
        outcome = run_keras_tuner(method, arrays, budget, workdir)
    elif method == "plain_loop":
        outcome = run_plain_loop(arrays, budget, workdir)
    else:
        outcome = run_ray_tune(method, arrays, budget, workdir)
    outcome["epochs"] = CLOCK
    (workdir / f"{method}.json").write_text(json.dumps(outcome, default=_plain))


if __name__ == "__main__":
    main()
