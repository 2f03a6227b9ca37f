"""The KerasTuner contract: a hypermodel that KerasTuner's own ``RandomSearch(...).search(x, y,
validation_data=...)`` trains, trains under hpsearch too, on both Keras backends.

The hypermodels are in ``tests/hypermodels/``, each written the way one of KerasTuner's guides writes
it (getting started, tuning model training, conditional hyperparameters). Each one is run:
- through KerasTuner itself (a RandomSearch of two trials);
- through hpsearch's engine in a fresh process per backend: the space found by building it, a fit
  that scores held-out rows every epoch (trials, CV and final fit share it), and on JAX the CV's
  folds trained together;
- and a few of them through a whole ``hpsearch run`` (Ray Tune with ASHA, CV, export) on each backend.
A fit that ignores the epochs it is given (a custom training loop) is named before any trial.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, make_mixed_table, run_cli

HYPERMODELS = REPO / "tests" / "hypermodels"
# file -> the name in it (a function or a HyperModel class)
CONTRACT = {
    "getting_started": "build_model",
    "layers_in_a_loop": "build_model",
    "metric_objects": "build_model",
    "tune_fit_shuffle": "MyHyperModel",
    "tune_preprocessing": "MyHyperModel",
    "fit_keras_arguments": "Network",
    "conditional_scope": "build_model",
    "fixed_and_stepped": "build_model",
    "regularised": "build_model",
    "hypermodel_with_arguments": "SizedModel",
    "fit_super_call": "Network",
    "fit_named_validation": "Network",
    "fit_own_epochs": "Network",
}
REFUSED = {"custom_training_loop": ("MyHyperModel", "trained 2 epochs where it was given epochs=3")}

KERAS_TUNER_SEARCH = '''
import importlib.util, json, sys, tempfile
import numpy as np
import keras_tuner

rng = np.random.default_rng(0)
x = rng.normal(size=(96, 6)).astype("float32")
y = (x[:, 0] + x[:, 1] > 0).astype("float32")
done = {}
for path, name in json.loads(sys.argv[1]).items():
    spec = importlib.util.spec_from_file_location(name + "_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = getattr(module, name)
    hypermodel = found() if isinstance(found, type) else found
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_loss", max_trials=2, seed=1, overwrite=True,
                                     directory=tempfile.mkdtemp(), project_name="kt")
    tuner.search(x[:72], y[:72], validation_data=(x[72:], y[72:]), verbose=0)  # as the contract says: no epochs
    done[path] = len(tuner.oracle.get_best_trials(1))
print(json.dumps(done))
'''

HPSEARCH_ENGINE = '''
import json, os, sys
import numpy as np
import keras

from search.errors import SpaceError
from search.network.training import fit_folds, fit_network
from search.network.hypermodel import discover_space, uses_own_fit

rng = np.random.default_rng(0)
x = rng.normal(size=(96, 6)).astype("float32")
y = (x[:, 0] + x[:, 1] > 0).astype("float32")
out = {}
for ref in json.loads(sys.argv[1]):
    try:
        space = discover_space(ref, x[:64], y[:64])
    except SpaceError as exc:
        out[ref] = {"refused": str(exc)}
        continue
    config = dict(space.fixed)
    seen = []
    fit_network(config, x[:72], y[:72], steps=3, seed=0, x_eval=x[72:],
                on_epoch=lambda end: seen.append(end.probability.tolist()) or True)
    result = {"params": sorted(space.params), "epochs_scored": len(seen), "probability": seen[-1]}
    if keras.backend.backend() == "jax" and not uses_own_fit(config):
        folds = [(x[:48], y[:48], x[48:72]), (x[24:72], y[24:72], x[:24])]
        scored = []
        fit_folds(config, folds, epochs=2, seeds=[0, 1], on_epoch=lambda e, ps: scored.append(ps) or [True, True])
        result["fold_probability"] = [p.tolist() for p in scored[-1]]
    out[ref] = result
print("RESULT " + json.dumps(out))
'''


def _ref(file: str, name: str) -> str:
    return f"{HYPERMODELS / file}.py:{name}"


@pytest.mark.slow
def test_every_contract_hypermodel_trains_in_keras_tuners_own_random_search(tmp_path):
    models = {str(HYPERMODELS / f"{f}.py"): n for f, n in {**CONTRACT, **{k: v[0] for k, v in REFUSED.items()}}.items()}
    proc = subprocess.run([sys.executable, "-c", KERAS_TUNER_SEARCH, json.dumps(models)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                            "KERAS_BACKEND": "tensorflow"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = json.loads(proc.stdout.strip().splitlines()[-1])
    assert done == {path: 1 for path in models}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_every_contract_hypermodel_trains_on_hpsearchs_engine(tmp_path, backend):
    refs = [_ref(f, n) for f, n in CONTRACT.items()] + [_ref(f, n) for f, (n, _) in REFUSED.items()]
    proc = subprocess.run([sys.executable, "-c", HPSEARCH_ENGINE, json.dumps(refs)], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "KERAS_BACKEND": backend})
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    for file, name in CONTRACT.items():
        got = found[_ref(file, name)]
        assert "refused" not in got, (file, got)
        assert got["epochs_scored"] == 3, file
        probability = np.asarray(got["probability"])
        assert probability.shape == (24,) and np.all((probability >= 0) & (probability <= 1)), file
        if backend == "jax" and "fold_probability" in got:
            assert [len(p) for p in got["fold_probability"]] == [24, 24], file
    for file, (name, message) in REFUSED.items():
        assert message in found[_ref(file, name)].get("refused", ""), file
    # fit-level hyperparameters are part of the space
    assert {"batch_size", "shuffle"} <= set(found[_ref("tune_fit_shuffle", "MyHyperModel")]["params"])
    assert "normalize" in found[_ref("tune_preprocessing", "MyHyperModel")]["params"]
    assert "positive_weight" in found[_ref("fit_keras_arguments", "Network")]["params"]


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "file"), [("jax", "getting_started"), ("tensorflow", "tune_fit_shuffle"),
                                               ("jax", "fit_keras_arguments")])
def test_a_whole_run_with_asha_and_cv_trains_every_trial(tmp_path, backend, file):
    make_mixed_table(n=160).to_csv(tmp_path / "table.csv", index=False)
    proc = run_cli(["run", str(tmp_path / "table.csv"), "--target", "label", "--hypermodel", _ref(file, CONTRACT[file]),
                    "--backend", backend, "--samples", "4", "--max-epochs", "4", "--grace-period", "1",
                    "--top-k", "2", "--folds", "2", "--repeats", "1", "--cpus", "2",
                    "--results", str(tmp_path / "out"), "--name", "kt", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "out" / "kt"
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 4 and not trials["status"].isin(["errored", "diverged"]).any(), trials["error"].tolist()
    cv = json.loads((run / "cv.json").read_text())
    assert all(c["fold_scores"] for c in cv["candidates"])
    assert (run / "model" / "model.keras").is_file()


def test_a_fit_that_ignores_its_epochs_is_named_before_any_trial(tmp_path):
    make_mixed_table(n=120).to_csv(tmp_path / "table.csv", index=False)
    name, message = REFUSED["custom_training_loop"]
    proc = run_cli(["run", str(tmp_path / "table.csv"), "--target", "label", "--hypermodel",
                    _ref("custom_training_loop", name), "--results", str(tmp_path / "out")], cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
