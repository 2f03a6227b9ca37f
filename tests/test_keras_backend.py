"""A JAX user's Keras settings: ~/.keras/keras.json or KERAS_BACKEND saying "jax".

hpsearch's own process must still export and predict a model with text columns (Keras on TensorFlow);
where Keras was imported on another backend before hpsearch, the user is told what to do in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, make_mixed_table, run_cli

EXPORT = f"""
import sys, pathlib
sys.path.insert(0, {str(REPO)!r})
import search  # first, as hpsearch's own process imports it
import keras
from tests.conftest import save_text_model
save_text_model(pathlib.Path("."))
print(keras.backend.backend())
"""


@pytest.fixture
def jax_settings(tmp_path: Path) -> dict[str, str]:
    """A Keras home whose keras.json picks JAX, as `keras.config` leaves it for a JAX user."""
    home = tmp_path / "keras home"
    home.mkdir()
    (home / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32", "epsilon": 1e-07,
                                                 "image_data_format": "channels_last"}))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    return {**env, "KERAS_HOME": str(home)}


def test_a_keras_json_that_says_jax_still_exports_and_predicts_text_columns(tmp_path, jax_settings):
    made = subprocess.run([sys.executable, "-c", EXPORT], cwd=tmp_path, env=jax_settings, capture_output=True,
                          text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    assert made.stdout.split()[-1] == "tensorflow"  # hpsearch's process, whatever keras.json says
    rows = tmp_path / "new rows.csv"
    make_mixed_table(8).rename(columns={"alpha": "size", "beta": "unused"})[["size", "colour"]].to_csv(rows,
                                                                                                     index=False)
    # the command, with KERAS_BACKEND=jax in the shell as well
    predicted = run_cli(["predict", str(tmp_path), str(rows), "--out", str(tmp_path / "out.csv")], cwd=tmp_path,
                        env={**jax_settings, "KERAS_BACKEND": "jax"}, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    out = (tmp_path / "out.csv").read_text().splitlines()
    assert len(out) == 9 and out[0].startswith("probability")


def test_keras_imported_on_jax_before_hpsearch_is_told_what_to_do(tmp_path, jax_settings):
    made = subprocess.run([sys.executable, "-c", EXPORT], cwd=tmp_path, env=jax_settings, capture_output=True,
                          text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    late = ("import keras, pathlib, search\n"
            "from search.export.model_file import load_model\n"
            "try:\n"
            f"    load_model(pathlib.Path({str(tmp_path)!r}))\n"
            "except search.HpsearchError as exc:\n"
            "    print('ERROR', exc)\n")
    told = subprocess.run([sys.executable, "-c", late], cwd=tmp_path, env=jax_settings, capture_output=True,
                          text=True, timeout=300)
    assert told.returncode == 0, told.stderr[-3000:]
    line = told.stdout.strip().splitlines()[-1]
    assert line.startswith("ERROR") and "Keras on jax" in line and "KERAS_BACKEND=tensorflow" in line
