"""`hpsearch predict` and `hpsearch retrain` on bad input: one clear line, exit 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from search.cli.commands import app
from tests.conftest import save_text_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A minimal exported model (preprocessing + a tiny network), as a run folder holds it."""
    folder = tmp_path_factory.mktemp("run")
    save_text_model(folder)
    return folder


def invoke(args):
    return CliRunner().invoke(app, args)


def one_error_line(result, pattern):
    import re

    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    assert re.search(pattern, lines[0]), lines[0]


def test_predict_works_on_the_fixture(run_dir, tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text("size,colour\n1.5,red\n,\n3,green\n")
    result = invoke(["predict", str(run_dir), str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "probability,label" and len(result.output.splitlines()) == 4


@pytest.mark.parametrize(
    ("text", "extra", "pattern"),
    [
        ("colour\nred\n", [], r"1 feature column\(s\) missing: size"),
        ("size,colour\n1.0,red\nbig,blue\n", [], r"column 'size' expects numbers, got 'big' in data row 2"),
        ("size,colour\n1.0,red\n", ["--id", "ghost"], r"--id ghost: no such column"),
    ],
)
def test_predict_bad_tables(run_dir, tmp_path, text, extra, pattern):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    one_error_line(invoke(["predict", str(run_dir), str(path), *extra]), pattern)


def test_predict_needs_a_run_with_a_model(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("size\n1\n")
    one_error_line(invoke(["predict", str(tmp_path), str(path)]), r"has no exported model")


def test_predict_refuses_a_damaged_model(run_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "model" / "model.keras").write_bytes(b"not a zip")
    path = tmp_path / "x.csv"
    path.write_text("size,colour\n1,red\n")
    one_error_line(invoke(["predict", str(broken), str(path)]), r"model is damaged")


def test_retrain_refuses_a_foreign_folder(tmp_path):
    one_error_line(invoke(["retrain", str(tmp_path)]), r"is not an hpsearch run folder: spec.json is missing or damaged")
    (tmp_path / "spec.json").write_text(json.dumps({"options": {}})[:5])  # truncated
    (tmp_path / "trials.csv").write_text("trial_id\n")
    one_error_line(invoke(["retrain", str(tmp_path)]), r"is not an hpsearch run folder: spec.json is missing or damaged")


def test_savedmodel_export_serves_the_same_probabilities(tmp_path):
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    from search.data.encoding import build_preprocessor, fit_stats, raw_inputs
    from search.data.table import Feature
    from search.export.model_file import join_model, save_model
    from search.network.mlp import build_network

    frame = pd.DataFrame({"size": [1.0, 2.0, np.nan, 4.0], "colour": ["red", "blue", None, "green"]})
    schema = (Feature("size", "numeric"), Feature("colour", "categorical"))
    pre = build_preprocessor(fit_stats(frame.head(3), schema), schema)
    model = join_model(pre, build_network({"depth": 2, "width": 8}, pre.output.shape[-1]))
    folder = save_model(tmp_path, model, {"features": []}, raw_inputs(frame, schema), savedmodel=True)
    served = tf.saved_model.load(str(folder / "savedmodel"))
    inputs = raw_inputs(frame, schema)
    got = np.asarray(served.serve({k: tf.constant(v) for k, v in inputs.items()})).ravel()
    np.testing.assert_allclose(got, np.asarray(model(inputs)).ravel(), atol=1e-6)
    assert json.loads((folder / "metadata.json").read_text())["savedmodel"].startswith("savedmodel/")
