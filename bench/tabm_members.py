"""Would TabM-style members help? The winner of finished runs trained again as a parameter-efficient
ensemble (k members sharing one body, Gorishniy et al. 2024), before building it into the space.

``python -m bench.tabm_members RUN [RUN ...] [--k 16]`` reads each run folder's ``cv.json`` and
``test.json`` and trains, on each of the run's own CV folds (``fold_plan``, as the export's fold models
were split) with the winner's configuration and CV epochs:

- **plain**: the winner's network as the CV trains it (a control: it should give the run's own
  out-of-fold and test scores again);
- **TabM-mini**: the same body after one member-wise scaling of its inputs (random signs), and k heads;
  the prediction is the mean of the k members' probabilities, and the loss the mean of their losses;
- **TabM**: every dense layer a BatchEnsemble layer (a shared kernel, member-wise input and output scalings
  and biases), the first input scaling random signs, the rest ones.

For each: the out-of-fold ROC AUC (mean over folds) and the test ROC AUC of the 5 fold models' mean, at
the winner's CV epochs, and the training seconds. A TabM also at its own epoch count: the best of its
mean fold curve up to ``--own-epochs``, chosen as the CV chooses the winner's (so its out-of-fold score
is as optimistic as the winner's own). ``--tabm-l2 X`` gives the TabMs another L2 than the winner's (0: none).
Writes ``bench/results/tabm-members-<stamp>.md``. A run folder
made by ``bench.ensemble`` whose table was in a temporary folder gets its table written again
(``bench.member_levers.reloaded``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))

import numpy as np  # noqa: E402

from bench.ensemble_choice import write_result  # noqa: E402
from bench.member_levers import reloaded  # noqa: E402


def tabm_network(config: dict[str, Any], n_features: int, k: int, mini: bool, seed: int) -> Any:
    """The winner's body as a k-member TabM (``mini``: TabM-mini), its output each member's P(class 1)."""
    import keras
    from keras import ops

    from search.network.mlp import make_optimizer, periodic_numbers, resolve_config, smooth_clip

    c = resolve_config(config)
    rng = np.random.default_rng(seed)
    regularizer = keras.regularizers.L2(c["l2"]) if c["l2"] > 0 else None

    class Members(keras.layers.Layer):
        """(batch, features) -> (batch, k, features): each member's copy of the row."""

        def call(self, x: Any) -> Any:
            return ops.repeat(ops.expand_dims(x, 1), k, axis=1)

    class EnsembleDense(keras.layers.Layer):
        """A dense layer on (batch, k, d): one shared kernel; member-wise scalings and biases (BatchEnsemble)
        where ``adapters``, else a shared bias."""

        def __init__(self, units: int, adapters: bool, signs: bool, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units, self.adapters, self.signs = units, adapters, signs

        def build(self, shape: tuple[int, ...]) -> None:
            d = shape[-1]
            limit = np.sqrt(6.0 / (d + self.units))
            self.kernel = self.add_weight(shape=(d, self.units), regularizer=regularizer,
                                          initializer=keras.initializers.RandomUniform(-limit, limit,
                                                                                       seed=int(rng.integers(1e9))))
            if self.signs or self.adapters:
                init = (keras.initializers.Constant(rng.choice([-1.0, 1.0], size=(k, d)))
                        if self.signs else "ones")
                self.r = self.add_weight(shape=(k, d), initializer=init)
            if self.adapters:
                self.s = self.add_weight(shape=(k, self.units), initializer="ones")
            self.bias = self.add_weight(shape=(k, self.units) if self.adapters else (self.units,),
                                        initializer="zeros")

        def call(self, x: Any) -> Any:
            if self.signs or self.adapters:
                x = x * self.r
            y = ops.einsum("bkd,du->bku", x, self.kernel)
            if self.adapters:
                y = y * self.s
            return y + self.bias

    class Heads(keras.layers.Layer):
        """k linear heads: (batch, k, d) -> (batch, k) logits."""

        def build(self, shape: tuple[int, ...]) -> None:
            limit = np.sqrt(6.0 / (shape[-1] + 1))
            self.kernel = self.add_weight(shape=(k, shape[-1]), initializer=keras.initializers.RandomUniform(
                -limit, limit, seed=int(rng.integers(1e9))))
            self.bias = self.add_weight(shape=(k,), initializer="zeros")

        def call(self, x: Any) -> Any:
            return ops.einsum("bkd,kd->bk", x, self.kernel) + self.bias

    inputs = keras.Input(shape=(n_features,))
    x = smooth_clip(inputs) if c["numeric_clip"] == "smooth" else inputs
    if c["numeric_embedding"] == "periodic" and int(c["numeric_columns"]) > 0:
        x = periodic_numbers(x, int(c["numeric_columns"]), float(c["embedding_scale"]), seed, {})
    x = Members()(x)
    for i in range(int(c["depth"])):
        x = EnsembleDense(int(c["width"]), adapters=not mini, signs=i == 0)(x)
        x = keras.layers.Activation(c["activation"])(x)
        if c["dropout"] > 0:
            x = keras.layers.Dropout(float(c["dropout"]), seed=seed + i)(x)
    outputs = keras.layers.Activation("sigmoid")(Heads()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=make_optimizer(c["optimizer"], float(c["learning_rate"])),
                  loss="binary_crossentropy", steps_per_execution=16)
    return model


def fit_tabm(config: dict[str, Any], x: np.ndarray, y: np.ndarray, epochs: int, k: int, mini: bool, seed: int,
             evaluate: tuple[np.ndarray, ...]) -> list[list[np.ndarray]]:
    """Train a TabM for ``epochs``; after each epoch, the members' mean P(class 1) on each of ``evaluate``."""
    import keras

    from search.network.mlp import resolve_config
    from search.network.training import class_weights

    keras.utils.set_random_seed(seed)
    resolved = resolve_config(config)
    model = tabm_network(resolved, x.shape[1], k, mini, seed)
    weights = class_weights(resolved, y)
    sample_weight = None if weights is None else np.array([weights[int(v)] for v in y], dtype=np.float32)
    curves: list[list[np.ndarray]] = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            curves.append([np.asarray(model(part, training=False)).mean(axis=1) for part in evaluate])

    # y once per member: Keras' cross-entropy means the k members' losses
    model.fit(x, np.repeat(y.reshape(-1, 1), k, axis=1), sample_weight=sample_weight,
              batch_size=int(resolved["batch_size"]), epochs=epochs, shuffle=True, verbose=0, callbacks=[Record()])
    return curves


def compare(winner: dict[str, Any], folds: int, spec: Any, table: Any, splits: Any, k: int, own_epochs: int,
            tabm_l2: float | None = None) -> dict[str, dict[str, float]]:
    """Each kind's out-of-fold and test ROC AUC at the ``winner`` candidate's CV epochs (from ``cv.json``);
    a TabM's also at its own epoch count, the best of its mean fold curve up to ``own_epochs`` (as the CV
    chooses the winner's). A TabM gets ``tabm_l2`` instead of the winner's L2 where given."""
    from search.compute import use_backend
    from search.data import fit_and_encode
    from search.metrics import score_all
    from search.network import fit_network
    from search.selection.cv import fold_plan

    use_backend(spec.compute())
    config, epochs = winner["hyperparameters"], int(winner["epochs"])
    test, y_all = splits.test, table.y
    plan = fold_plan(table, splits, "kfold", folds, 1, spec.seed)
    kinds = ("plain", "TabM-mini", "TabM")
    curves: dict[str, list[list[list[np.ndarray]]]] = {kind: [] for kind in kinds}  # kind, fold, epoch, part
    seconds = dict.fromkeys(kinds, 0.0)
    for f, (train, held) in enumerate(plan):
        _, (x, x_held, x_test) = fit_and_encode(table.features.iloc[train], table.schema,
                                                table.features.iloc[held], table.features.iloc[test])
        y = y_all[train].astype(np.float32)
        for kind in kinds:
            began = time.time()
            if kind == "plain":
                model = fit_network(config, x, y, epochs, spec.seed + f)
                parts = [np.asarray(model.predict(p, batch_size=8192, verbose=0)).ravel() for p in (x_held, x_test)]
                curves[kind].append([parts] * epochs)
            else:
                own = config if tabm_l2 is None else {**config, "l2": tabm_l2}
                curves[kind].append(fit_tabm(own, x, y, max(epochs, own_epochs), k, kind == "TabM-mini",
                                             spec.seed + f, (x_held, x_test)))
            seconds[kind] += time.time() - began

    def scored(kind: str, epoch: int) -> dict[str, float]:
        oof = [score_all(y_all[held], curves[kind][f][epoch][0])["roc_auc"] for f, (_, held) in enumerate(plan)]
        bag = np.mean([curves[kind][f][epoch][1] for f in range(len(plan))], axis=0)
        return {"oof": float(np.mean(oof)), "test": score_all(y_all[test], bag)["roc_auc"], "epochs": epoch + 1}

    got = {kind: {**scored(kind, epochs - 1), "seconds": seconds[kind]} for kind in kinds}
    for kind in kinds[1:]:
        best = max(range(len(curves[kind][0])), key=lambda e: scored(kind, e)["oof"])
        got[f"{kind}, own epochs"] = scored(kind, best)
    return got


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tabm_members", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--k", type=int, default=16, help="members of each TabM")
    parser.add_argument("--own-epochs", type=int, default=40, help="most epochs of a TabM's own curve")
    parser.add_argument("--tabm-l2", type=float, default=None,
                        help="the TabMs' L2 instead of the winner's (on their shared kernels only, as the plain one's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    l2 = "the winner's" if args.tabm_l2 is None else f"{args.tabm_l2:g}"
    rows = [f"k = {args.k}; a TabM's own epochs: the best of its mean fold curve up to {args.own_epochs}; "
            f"a TabM's L2: {l2}.", "",
            "| run | winner's CV epochs | run's winner oof / test | plain oof / test / s | TabM-mini oof / test / s "
            "| TabM oof / test / s | TabM-mini, own epochs: oof / test (epochs) | TabM, own epochs |",
            "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="hpsearch-bench-tabm-") as scratch:
        for run in args.runs:
            spec, table, splits = reloaded(run, Path(scratch))
            cv, test = json.loads((run / "cv.json").read_text()), json.loads((run / "test.json").read_text())
            own = next(c for c in cv["candidates"] if c["trial_id"] == cv["winner"])
            got = compare(own, cv["folds"], spec, table, splits, args.k, args.own_epochs, args.tabm_l2)
            cells = [str(own["epochs"]),
                     f"{own['mean']['roc_auc']:.4f} / {test['networks'][cv['winner']]['roc_auc']:.4f}"]
            cells += [f"{g['oof']:.4f} / {g['test']:.4f} / {g['seconds']:.0f}" for g in list(got.values())[:3]]
            cells += [f"{g['oof']:.4f} / {g['test']:.4f} ({g['epochs']})" for g in list(got.values())[3:]]
            rows.append(f"| {run.name} | " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    write_result(args.out, "tabm-members", "TabM-style members on finished runs' winners", args.runs, rows)


if __name__ == "__main__":
    main()
