"""KerasTuner hypermodels as the search's network: ``hpsearch run --hypermodel FILE.py:build_model``.

The hypermodels here are the tests' own files; they log every build (and fit) to a file named by
an environment variable, so that a test can see which values reached the models in Ray's workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.errors import SpaceError
from tests.conftest import REPO, make_mixed_table, run_cli

CONDITIONAL = '''
import json, os
import keras


def build_model(hp):
    model = keras.Sequential()
    for i in range(hp.Int("layers", 1, 2)):
        model.add(keras.layers.Dense(hp.Choice(f"units_{i}", [8, 32]), activation="relu"))
    if hp.Boolean("dropout"):
        with hp.conditional_scope("dropout", [True]):
            model.add(keras.layers.Dropout(hp.Float("rate", 0.1, 0.5)))
    model.add(keras.layers.Dense(1, activation="sigmoid"))
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 3e-2, sampling="log")),
                  loss="binary_crossentropy")
    if os.environ.get("HYPERMODEL_LOG"):
        with open(os.environ["HYPERMODEL_LOG"], "a") as log:
            log.write(json.dumps({"values": hp.values}) + "\\n")
    return model
'''

WITH_FIT = '''
import json, os
import keras
import keras_tuner


class Network(keras_tuner.HyperModel):
    def build(self, hp):
        model = keras.Sequential([keras.layers.Dense(hp.Int("units", 4, 16), activation="relu"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="binary_crossentropy")
        return model

    def fit(self, hp, model, *args, **kwargs):
        batch_size = hp.Choice("batch_size", [8, 64])
        with open(os.environ["HYPERMODEL_LOG"], "a") as log:
            log.write(json.dumps({"fit_batch_size": batch_size, "rows": len(args[0])}) + "\\n")
        return model.fit(*args, batch_size=batch_size, **kwargs)
'''

KERAS_TUNER_RANDOM_SEARCH = '''
import sys
import numpy as np
import keras_tuner
sys.path.insert(0, sys.argv[1])
from conditional import build_model

rng = np.random.default_rng(0)
x = rng.normal(size=(120, 5)).astype("float32")
y = (x[:, 0] + x[:, 1] > 0).astype("float32")
tuner = keras_tuner.RandomSearch(build_model, objective="val_loss", max_trials=3, seed=1,
                                 directory=sys.argv[2], project_name="kt")
tuner.search(x, y, epochs=2, validation_split=0.25, verbose=0)
best = tuner.get_best_hyperparameters()[0]
print(sorted(best.values), best.values["layers"])
'''

PLAIN_KERAS_SCORES = '''
import json, sys
import keras, pandas as pd
sys.path.insert(0, sys.argv[1])
from inputs import to_inputs

model = keras.saving.load_model(sys.argv[1] + "/model.keras", safe_mode=True)
frame = pd.read_csv(sys.argv[2])
probability = model(to_inputs(frame, sys.argv[1] + "/metadata.json")).numpy().ravel()
print(json.dumps({"probability": probability.tolist(), "hpsearch_imported": "search" in sys.modules}))
'''


def _write(folder: Path, name: str, source: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def _logged(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_a_conditional_build_model_runs_on_ray_with_asha_and_exports_for_plain_keras(tmp_path):
    hypermodel = _write(tmp_path, "conditional", CONDITIONAL)
    frame = make_mixed_table(n=200)
    frame.rename(columns={"alpha": "alpha value"}).to_csv(tmp_path / "table.csv", index=False)
    log = tmp_path / "builds.jsonl"
    proc = run_cli(["run", str(tmp_path / "table.csv"), "--target", "label", "--hypermodel",
                    f"{hypermodel}:build_model", "--searcher", "optuna", "--samples", "8", "--max-epochs", "8",
                    "--grace-period", "2", "--top-k", "2", "--folds", "2", "--repeats", "1", "--cpus", "2",
                    "--results", str(tmp_path / "out"), "--name", "hm", "--quiet"],
                   cwd=REPO, env={"HYPERMODEL_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "out" / "hm"
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 8 and (trials["status"] == "stopped early").any()  # ASHA stopped some early
    # the conditional rate is sampled only where dropout is on (Optuna's define-by-run space)
    assert trials.loc[trials["dropout"].astype(str) == "False", "rate"].isna().all()
    used = trials.loc[trials["dropout"].astype(str) == "True", "rate"]
    assert used.between(0.1, 0.5).all()
    # every trial's values reached a model built in a Ray worker
    builds = [b["values"] for b in _logged(log)]
    for row in trials.to_dict("records"):
        wanted = {k: row[k] for k in ("layers", "units_0", "learning_rate")}
        assert any(all(b.get(k) == pytest.approx(v) for k, v in wanted.items()) for b in builds), wanted
    best = json.loads((run / "best_config.json").read_text())["hyperparameters"]
    assert best["hypermodel"].endswith("conditional.py:build_model") and "depth" not in best
    # the exported model scores the table in plain Keras, without hpsearch, as the run scored its test rows
    scored = subprocess.run([sys.executable, "-c", PLAIN_KERAS_SCORES, str(run / "model"), str(tmp_path / "table.csv")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert scored.returncode == 0, scored.stderr[-2000:]
    got = json.loads(scored.stdout.strip().splitlines()[-1])
    assert not got["hpsearch_imported"]
    test = pd.read_parquet(run / "test_predictions.parquet")
    np.testing.assert_allclose(np.asarray(got["probability"])[test["row"]], test["probability"], atol=1e-5)
    units = [b.get("units_0") for b in builds]
    assert len(set(units)) > 1  # the search did vary the network


@pytest.mark.slow
def test_the_same_build_model_runs_in_keras_tuners_own_random_search(tmp_path):
    _write(tmp_path, "conditional", CONDITIONAL)
    proc = subprocess.run([sys.executable, "-c", KERAS_TUNER_RANDOM_SEARCH, str(tmp_path), str(tmp_path / "kt")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "'layers'" in proc.stdout and "'learning_rate'" in proc.stdout


@pytest.mark.slow
def test_a_hypermodels_own_fit_chooses_the_batch_size_through_the_python_api(tmp_path, monkeypatch):
    import search

    hypermodel = _write(tmp_path, "with_fit", WITH_FIT)
    log = tmp_path / "fits.jsonl"
    monkeypatch.setenv("HYPERMODEL_LOG", str(log))
    frame = make_mixed_table(n=160)
    result = search.run(frame, target="label", hypermodel=f"{hypermodel}:Network", samples=4, max_epochs=3,
                        top_k=1, folds=2, repeats=1, cpus=2, results=str(tmp_path / "out"), name="fit", quiet=True)
    assert set(result.trials["batch_size"]) <= {8, 64} and "units" in result.best_config["hyperparameters"]
    fits = [f for f in _logged(log) if "fit_batch_size" in f]
    assert {f["fit_batch_size"] for f in fits} >= set(result.trials["batch_size"])  # in trials, CV and final fit
    predicted = result.predict(frame.drop(columns=["label"]))
    assert len(predicted) == len(frame) and predicted["probability"].between(0, 1).all()


def _discover(tmp_path: Path, source: str, ref_name: str = "build_model") -> None:
    from search.network.hypermodel import discover_space

    path = _write(tmp_path, "bad", "import keras\n" + textwrap.dedent(source))
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    discover_space(f"{path}:{ref_name}", x, (x[:, 0] > 0).astype("float32"))


@pytest.mark.parametrize(("source", "message"), [
    ("def build_model(hp):\n    return 'a model'\n", "returned str, not a Keras model"),
    ("def build_model(hp):\n    return keras.Sequential([keras.layers.Dense(1, activation='sigmoid')])\n",
     "not compiled"),
    ("def build_model(hp):\n    raise RuntimeError('no GPU here')\n", "build_model failed (RuntimeError: no GPU here)"),
    ("def build_model(hp):\n    m = keras.Sequential([keras.layers.Dense(3)])\n    m.compile('adam', 'mse')\n"
     "    return m\n", "output has shape (3,)"),
    ("def build_model(hp):\n    m = keras.Sequential([keras.layers.Lambda(lambda t: t * 2), keras.layers.Dense(1)])\n"
     "    m.compile('adam', 'binary_crossentropy')\n    return m\n", "safe mode"),
    ("def build_model(hp):\n    m = keras.Sequential([keras.layers.Dense(hp.Int('epochs', 1, 3)), keras.layers.Dense(1)])\n"
     "    m.compile('adam', 'mse')\n    return m\n", "name 'epochs' is one hpsearch uses"),
])
def test_a_faulty_build_model_is_named_before_any_trial(tmp_path, source, message):
    with pytest.raises(SpaceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _discover(tmp_path, source)


def test_a_missing_hypermodel_or_one_beside_a_space_is_a_one_line_error(tmp_path, mixed_csv):
    missing = run_cli(["run", str(mixed_csv), "--target", "label", "--hypermodel", "nope.py:build_model",
                       "--results", str(tmp_path / "out")], cwd=tmp_path)
    assert missing.returncode == 2 and "nope.py not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    both = run_cli(["run", str(mixed_csv), "--target", "label", "--hypermodel", "x.py", "--space", "gpu",
                    "--results", str(tmp_path / "out")], cwd=tmp_path)
    assert both.returncode == 2 and "not both" in both.stderr and not (tmp_path / "out").exists()


def test_debug_shows_the_traceback_of_a_failing_build_model(tmp_path, mixed_csv):
    path = _write(tmp_path, "broken", "import keras\n\ndef build_model(hp):\n    units = hp.Int('units', 4, 8)\n"
                                      "    raise RuntimeError(f'no layer of {units} units')\n")
    args = ["run", str(mixed_csv), "--target", "label", "--hypermodel", f"{path}:build_model",
            "--results", str(tmp_path / "out")]
    plain = run_cli(args, cwd=tmp_path)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = run_cli(["--debug", *args], cwd=tmp_path)
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr
    assert 'broken.py", line 5, in build_model' in debug.stderr and "no layer of 4 units" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("error: --hypermodel")


def test_a_hypermodel_imports_its_own_helpers_and_a_logits_loss_is_named(tmp_path):
    _write(tmp_path, "helpers", "import keras\n\ndef hidden(units):\n    return keras.layers.Dense(units, activation='relu')\n")
    _write(tmp_path, "uses_helpers", "import keras\nfrom helpers import hidden\n\ndef build_model(hp):\n"
                                     "    m = keras.Sequential([hidden(hp.Int('units', 4, 8)), keras.layers.Dense(1, activation='sigmoid')])\n"
                                     "    m.compile('adam', 'binary_crossentropy')\n    return m\n")
    from search.network.hypermodel import discover_space

    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    space = discover_space(f"{tmp_path / 'uses_helpers.py'}:build_model", x, (x[:, 0] > 0).astype("float32"))
    assert "units" in space.params
    with pytest.raises(SpaceError, match="from_logits=True"):
        _discover(tmp_path, "def build_model(hp):\n    m = keras.Sequential([keras.layers.Dense(1)])\n"
                            "    m.compile('adam', keras.losses.BinaryCrossentropy(from_logits=True))\n    return m\n")
