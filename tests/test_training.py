"""The training recipe shared by trials, CV fits and the final fit: real Keras, no Ray."""

from __future__ import annotations

import numpy as np
import pytest

from search.network.training import class_weights, fit_network, whole_batches


def test_whole_batches_pads_with_repeats_of_real_rows():
    x = np.arange(50, dtype=np.float32).reshape(25, 2)
    y = np.arange(25) % 2
    px, py = whole_batches(x, y, 8, seed=0)
    assert len(px) == 32 and len(py) == 32
    np.testing.assert_array_equal(px[:25], x)  # the originals, in order, then 7 distinct repeats
    extra = [int(row[0]) // 2 for row in px[25:]]
    assert len(set(extra)) == 7 and all(py[25 + i] == y[e] for i, e in enumerate(extra))
    assert whole_batches(x, y, 5, seed=0)[0] is x  # already whole
    assert whole_batches(x, y, 64, seed=0)[0] is x  # one batch of all rows


def test_balanced_class_weights_lift_the_rare_class():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    y = (rng.random(400) < 0.1).astype(np.float32)  # noise: only the base rate can be learnt
    weights = class_weights({"class_weight": "balanced"}, y)
    assert weights[1] / weights[0] == np.sum(y == 0) / np.sum(y == 1)
    config = {"depth": 1, "width": 8, "batch_size": 32, "learning_rate": 0.01}
    plain = np.asarray(fit_network({**config, "class_weight": "none"}, x, y, 15, seed=0)(x)).ravel()
    balanced = np.asarray(fit_network({**config, "class_weight": "balanced"}, x, y, 15, seed=0)(x)).ravel()
    assert plain.mean() < 0.2 < 0.35 < balanced.mean()  # unweighted: the base rate; balanced: near 0.5


JAX_NETWORK_SCRIPT = r"""
import json, sys
import numpy as np
import jax, keras
compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: compiles.append(kw.get("fun_name")) if "backend_compile" in name else None)
from search.network.mlp import build_network
from search.network.epoch_scan import EpochRunner
from search.network.training import fit_network, seed_rngs, whole_batches

config = {"depth": 2, "width": 48, "dropout": 0.2, "batch_size": 16, "learning_rate": 0.01, "batch_norm": True}
build_network({**config, "width": 20}, 7, seed=1)  # a worker's first network compiles a few scalar programs
compiles.clear()
first = build_network(config, 12, seed=3)  # later ones, of new shapes, compile nothing
built = list(compiles)
again = build_network(config, 12, seed=3)
other = build_network(config, 12, seed=4)
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 12)).astype("float32")
y = (x[:, 0] + x[:, 1] > 0).astype("float32")
seed_rngs(3)
model = fit_network(config, x, y, 3, seed=3)
runner = EpochRunner(build_network(config, 12, seed=5), *whole_batches(x, y, 16, 5), 16, seed=5, x_eval=x)
runner.train_epoch(0)
fresh = build_network(config, 12, seed=3)
fresh.optimizer.build(fresh.trainable_variables)
slots = {v.name: float(np.abs(np.asarray(v)).sum()) for v in fresh.optimizer.variables
         if v.name.endswith(("momentum", "velocity"))}
print(json.dumps({
    "compiles_while_building": built,
    "same_seed_same_weights": all(np.array_equal(a, b) for a, b in zip(first.get_weights(), again.get_weights())),
    "other_seed_differs": not np.array_equal(first.get_weights()[0], other.get_weights()[0]),
    "kernels": [np.asarray(w).tolist() for w in first.get_weights() if np.asarray(w).ndim == 2],
    "others": [np.asarray(w).tolist() for w in first.get_weights() if np.asarray(w).ndim == 1],
    "fast_vs_keras": float(np.max(np.abs(runner.evaluated - runner.to_model().predict(x, verbose=0).ravel()))),
    "slots": slots,
    "tensorflow_imported": "tensorflow" in sys.modules,
}))
"""


def test_networks_start_from_host_drawn_weights_on_jax(tmp_path):
    """On JAX a new trial's network builds without compiling anything, from Glorot-uniform kernels and
    zero biases drawn by NumPy (the same for the same seed); the validation pass compiled with the
    epoch gives the predictions of Keras' own model with the trained weights; and nothing in a JAX fit imports TensorFlow (4 s, 200 MB per worker)."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", JAX_NETWORK_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["compiles_while_building"] == []
    assert out["same_seed_same_weights"] and out["other_seed_differs"]
    for kernel in map(np.asarray, out["kernels"]):  # U(-l, l), l = sqrt(6 / (fan_in + fan_out)): Keras' default
        limit = np.sqrt(6.0 / sum(kernel.shape))
        assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
        assert abs(kernel.std() - limit / np.sqrt(3)) < 0.15 * limit / np.sqrt(3)
    # biases and batch-norm betas/means zero, gammas/variances one
    assert all(set(np.unique(w)) <= {0.0, 1.0} for w in map(np.asarray, out["others"]))
    assert out["fast_vs_keras"] < 1e-5
    assert len(out["slots"]) == 2 * 10 and not any(out["slots"].values())  # Adam's moments start at zero
    assert not out["tensorflow_imported"]


XLA_OPTIONS_SCRIPT = r"""
import json
import numpy as np
from search.compute.devices import Compute
from search.compute.backend import use_backend
use_backend(Compute(backend="jax", cpus=1.0))
import search.network.epoch_scan as epochs
from search.network.mlp import build_network
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 5)).astype("float32")
y = (x[:, 0] > 0).astype("float32")
losses = {}
for quick in (True, False):
    epochs.quick_compile_pays = lambda *_: quick
    network = build_network({"depth": 1, "width": 8, "batch_size": 16}, 5, seed=0)
    losses[str(quick)] = epochs.EpochRunner(network, x, y, 16, seed=0).train_epoch(0)
print(json.dumps({"losses": losses}))
"""


def test_each_networks_xla_options_are_ones_the_installed_jaxlib_accepts():
    """XLA refuses a compile option it does not know (jaxlib 0.11 dropped one we pass on 0.10): a
    1-CPU worker must compile and train a network both at level 0 and at XLA's default level, with
    exactly the options it would pass, and the two must train the same network alike."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, "-c", XLA_OPTIONS_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          env={**env, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    quick, default = out["losses"]["True"], out["losses"]["False"]
    assert np.isfinite(quick) and abs(quick - default) < 1e-4 * max(1.0, abs(default))


FUSED_EPOCH_SCRIPT = r"""
import json
import numpy as np
from search.network.epoch_scan import EpochRunner
from search.network.mlp import build_network
rng = np.random.default_rng(1)
x = rng.normal(size=(80, 6)).astype("float32")
y = (x[:, 0] - x[:, 1] > 0.5).astype("float32")
config = {"depth": 2, "width": 12, "batch_size": 16, "learning_rate": 0.01, "l2": 1e-3, "batch_norm": True}
runner = EpochRunner(build_network(config, 6, seed=2), x, y, 16, seed=7, class_weight={0: 0.7, 1: 1.9}, x_eval=x)
losses = [runner.train_epoch(epoch) for epoch in range(2)]
fused = runner.to_model().get_weights()
reference = build_network(config, 6, seed=2)
for epoch in range(2):
    order = np.random.default_rng([7, epoch]).permutation(80)
    for batch in order.reshape(5, 16):
        reference.train_on_batch(x[batch], y[batch], sample_weight=np.where(y[batch] == 1, 1.9, 0.7))
big = EpochRunner(build_network({**config, "batch_size": 128}, 6, seed=2), x, y, 128, seed=7)  # 80 rows
big_loss = big.train_epoch(0)
one_batch = build_network({**config, "batch_size": 128}, 6, seed=2)
one_batch.train_on_batch(x[np.random.default_rng([7, 0]).permutation(80)],
                         y[np.random.default_rng([7, 0]).permutation(80)])
kernels = [i for i, w in enumerate(reference.weights) if w.path.endswith("kernel")]
print(json.dumps({
    "losses": losses,
    "kernel_difference": max(float(np.max(np.abs(fused[i] - reference.get_weights()[i]))) for i in kernels),
    "prediction_difference": float(np.max(np.abs(runner.evaluated - reference.predict(x, verbose=0).ravel()))),
    "one_batch_difference": max(float(np.max(np.abs(a - b))) for a, b in
                                zip(big.to_model().get_weights(), one_batch.get_weights(), strict=True)),
    "big_loss": big_loss,
    "moved": max(float(np.max(np.abs(a - b))) for a, b in
                 zip(fused, build_network(config, 6, seed=2).get_weights(), strict=True)),
}))
"""


def test_a_fused_epoch_takes_the_same_steps_as_keras():
    """One compiled epoch on JAX (search/network/epoch_scan.py) is Keras' own training, batch after batch: the
    same weights as ``train_on_batch`` over the same batches in the same order, with L2, batch
    normalisation, class weights and Adam's state carried from step to step."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", FUSED_EPOCH_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["moved"] > 0.01  # it trained
    # Kernels, not every weight: a dense bias before batch normalisation has a zero gradient, which
    # Adam turns into float noise of the learning rate's size, different in any two programs; through
    # the moving means it moves predictions by about 3e-4 (a skipped or reordered batch: about 1e-2).
    assert out["kernel_difference"] < 1e-5 and out["prediction_difference"] < 2e-3
    assert out["losses"][1] < out["losses"][0]
    # a batch larger than the table: one batch of all the rows, as Keras' fit does
    assert np.isfinite(out["big_loss"]) and out["one_batch_difference"] < 1e-3


MIXED_PRECISION_SCRIPT = r"""
import json
import numpy as np
from search.compute.devices import use_precision
from search.network.epoch_scan import EpochRunner
from search.network.mlp import build_network
use_precision(True)
rng = np.random.default_rng(3)
x = rng.normal(size=(96, 6)).astype("float32")
y = (x[:, 0] + x[:, 1] > 0).astype("float32")
model = build_network({"depth": 2, "width": 16, "batch_size": 16, "learning_rate": 0.01}, 6, seed=1)
runner = EpochRunner(model, x, y, 16, seed=1, x_eval=x)
losses = [runner.train_epoch(epoch) for epoch in range(4)]
p = runner.evaluated
print(json.dumps({"losses": losses, "compute_dtype": model.layers[1].compute_dtype,
                  "optimizer": type(model.optimizer).__name__, "output_dtype": str(p.dtype),
                  "accuracy": float(np.mean((p >= 0.5) == (y == 1)))}))
"""


def test_a_fused_epoch_trains_in_mixed_precision():
    """GPU trials with --mixed-precision train through the fused epoch on JAX: float16 layers, Keras'
    loss-scaling optimizer carried in the scan, a float32 output; it must learn an easy rule."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", MIXED_PRECISION_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["compute_dtype"] == "float16" and out["optimizer"] == "LossScaleOptimizer"
    assert out["output_dtype"] == "float32" and all(np.isfinite(out["losses"]))
    assert out["losses"][-1] < out["losses"][0] and out["accuracy"] > 0.8


ONE_CPU_JAX_SCRIPT = """
import json, os, time
from search.compute.devices import Compute
from search.compute.backend import use_backend
use_backend(Compute(backend="jax", cpus=1.0))
import jax, jax.numpy as jnp
key = jax.random.PRNGKey(0)
ws = [jax.random.normal(key, s) * 0.05 for s in [(50, 256), (256, 256), (256, 256), (256, 1)]]
x = jax.random.normal(key, (256, 50))
def loss(ws):
    h = x
    for w in ws[:-1]:
        h = jax.nn.relu(h @ w)
    return jnp.mean((h @ ws[-1]) ** 2)
step = jax.jit(lambda ws: [w - 0.01 * g for w, g in zip(ws, jax.grad(loss)(ws))])
ws = jax.block_until_ready(step(ws))
wall, cpu = time.perf_counter(), os.times()
for _ in range(200):
    ws = step(ws)
jax.block_until_ready(ws)
wall, after = time.perf_counter() - wall, os.times()
print(json.dumps({"cpu_per_wall": (after.user - cpu.user + after.system - cpu.system) / wall}))
"""


def test_a_one_cpu_jax_trial_computes_on_one_core():
    """XLA's CPU thread pool takes every core of the machine unless told otherwise: 16 one-CPU
    trials on 16 cores ran 16 threads each (each epoch 6x slower than alone). A worker set up for
    a 1-CPU trial must use about one core while it trains (measured: 1.6-1.7 without PJRT_NPROC)."""
    import json
    import os
    import subprocess
    import sys

    import pytest

    from tests.conftest import REPO

    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two cores to tell one thread from several")
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "NPROC", "XLA_FLAGS")}
    done = subprocess.run([sys.executable, "-c", ONE_CPU_JAX_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["cpu_per_wall"] < 1.2


def test_quick_compiles_are_chosen_per_network():
    """XLA's level 0 saves about 0.7 s a new network but slows every epoch in proportion to rows x
    weights and batches (bench/levels.py): small networks on the classic tables keep it; a wide
    one on framingham, any network on a 200k-row table, and a long final fit do not."""
    from search.network.epoch_scan import quick_compile_pays

    def pays(rows: int, features: int, depth: int, width: int, batch_size: int, epochs: int = 10) -> bool:
        weights = features * width + (depth - 1) * width * width + depth * width + width + 1
        return quick_compile_pays(rows, weights, depth * width + 1, batch_size, epochs)

    assert pays(364, 30, 2, 64, 32)  # breast cancer, a middling network
    assert pays(2713, 22, 1, 24, 64)  # framingham, a small one
    assert not pays(2713, 22, 3, 502, 32)  # framingham, a wide one
    assert not pays(200_000, 50, 2, 64, 256)
    assert not pays(2713, 22, 2, 64, 8, epochs=60)  # a final fit: 60 epochs of 340 small batches


LEAN_WORKER_SCRIPT = """
import json, sys
from search.compute.devices import Compute
from search.network.training import fit_network
from search.compute.backend import use_backend
use_backend(Compute(backend="jax", cpus=1.0))
loaded = sorted(m for m in ("matplotlib", "sklearn", "pandas", "pydantic", "yaml") if m in sys.modules)
import numpy as np
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
curve = []
fit_network({"depth": 1, "width": 8, "batch_size": 16, "learning_rate": 0.01}, x, (x[:, 0] > 0).astype("float32"),
            2, seed=0, x_eval=x, on_epoch=lambda end: curve.append(end.probability) is None)
import pandas, sklearn.metrics
print(json.dumps({"loaded": loaded, "epochs": len(curve), "later": bool(pandas.DataFrame and sklearn.metrics.roc_auc_score)}))
"""


def test_a_trial_worker_loads_keras_without_what_it_never_uses():
    """Keras imports matplotlib, scikit-learn and pandas when it can (2.3 s of its 3.3 s import), and
    the package's spec brought pandas, pydantic and YAML: a worker set up for trials has none of them
    (measured: set-up 3.45 -> 1.90 s a worker), trains, and can still import them later."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", LEAN_WORKER_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"loaded": [], "epochs": 2, "later": True}


FOLDS_SCRIPT = r"""
import json
import numpy as np
from search.network.training import fit_folds, fit_network, whole_batches
rng = np.random.default_rng(3)
config = {"depth": 2, "width": 10, "batch_size": 16, "learning_rate": 0.01, "dropout": 0.2, "batch_norm": True,
          "class_weight": "balanced"}
folds, seeds = [], [11, 12, 13]
for n in (70, 69, 69):  # k-fold parts differ by a row: 70 rows pad to 80, so do 69
    x = rng.normal(size=(n, 5)).astype("float32")
    folds.append((x, (x[:, 0] + 0.3 * x[:, 1] > 0.2).astype("float32"), rng.normal(size=(n // 3, 5)).astype("float32")))
together = [[] for _ in folds]
fit_folds(config, folds, 4, seeds, on_epoch=lambda e, ps: [together[f].append(p.tolist()) or True
                                                           for f, p in enumerate(ps)])
apart = []
for (x, y, x_eval), seed in zip(folds, seeds):
    x, y = whole_batches(x, y, 16, seed, rows=80)  # the shape the folds share
    curve = []
    fit_network(config, x, y, 4, seed, x_eval=x_eval, on_epoch=lambda end: curve.append(end.probability.tolist()) or True)
    apart.append(curve)
print(json.dumps({"together": together, "apart": apart}))
"""


def test_folds_trained_together_match_their_separate_fits():
    """The CV stage's vmapped program (``fit.fit_folds``) gives each fold, epoch by epoch, the held-out
    probabilities of that fold's own fit: same initial weights, dropout, class weights, orders of rows."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", FOLDS_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    together, apart = np.array(out["together"], dtype=object), out["apart"]
    assert len(together) == 3 and all(len(curve) == 4 for curve in together)
    for fold in range(3):
        # float32 sums in another order (a vmapped program): 4e-4 apart on an AMD EPYC, under 2e-4 on Intel
        np.testing.assert_allclose(np.array(out["together"][fold]), np.array(apart[fold]), atol=1e-3)
    # the folds are different networks on different rows
    assert np.abs(np.array(out["together"][0][-1][:20]) - np.array(out["together"][1][-1][:20])).max() > 1e-3


RESUME_SCRIPT = r"""
import json, sys
import numpy as np
from search.network.training import fit_network
x = np.random.default_rng(4).normal(size=(64, 5)).astype("float32")
y = (x[:, 0] - x[:, 2] > 0).astype("float32")
config = {"depth": 2, "width": 8, "batch_size": 16, "learning_rate": 0.01}
saved, straight, resumed = {}, [], []

def keep(end, into):
    into.append([end.step, end.first_step, end.probability.tolist()])
    if end.step == 4 and not saved:
        model = end.synced()
        saved.update(weights=[np.array(w) for w in model.get_weights()],
                     optimizer=[np.array(v) for v in model.optimizer.variables])
    return True

def restore(model):
    model.set_weights(saved["weights"])
    model.optimizer.build(model.trainable_variables)
    for variable, value in zip(model.optimizer.variables, saved["optimizer"]):
        variable.assign(value)
    return 4

fit_network(config, x, y, 8, 0, x_eval=x, chunks=2, on_epoch=lambda end: keep(end, straight))
fit_network(config, x, y, 8, 0, x_eval=x, chunks=2, on_epoch=lambda end: keep(end, resumed), restore=restore)
print(json.dumps({"straight": straight, "resumed": resumed}))
"""


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_a_fit_restored_mid_way_ends_where_a_straight_fit_ends(backend):
    """The one training loop, as a retried trial uses it: a fit of 8 steps (half an epoch each on JAX)
    restored from its state after step 4 reports steps 5-8 and ends with the straight fit's predictions."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", RESUME_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    straight, resumed = out["straight"], out["resumed"]
    assert [s[:2] for s in straight] == [[step, 0] for step in range(1, 9)]
    assert [s[:2] for s in resumed] == [[step, 4] for step in range(5, 9)]
    final, at_five = np.array(straight[-1][2]), np.array(straight[4][2])
    if backend == "jax":  # each epoch's order of rows comes from the seed and the epoch's number
        np.testing.assert_allclose(np.array(resumed[-1][2]), final, atol=1e-5)
    else:  # TensorFlow draws its orders from one generator: the same weights go on, in other orders
        assert np.abs(np.array(resumed[0][2]) - at_five).max() < np.abs(np.array(straight[0][2]) - at_five).max()
    assert np.abs(np.array(straight[-1][2]) - np.array(straight[3][2])).max() > 1e-4  # steps 5-8 trained
