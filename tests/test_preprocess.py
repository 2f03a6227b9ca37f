"""Preprocessing statistics come from the trials' training part only, and survive a safe-mode reload."""

from __future__ import annotations

import numpy as np
import pandas as pd

from search.data.table import Feature, split_rows
from search.pipeline import encode_for_trials, prepare
from search.spec import RunSpec
from tests.conftest import make_mixed_table


def shifted_table(tmp_path):
    """A table whose validation rows would move every statistic if they leaked into the fit."""
    df = make_mixed_table(200)
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    spec = RunSpec(data=str(path), target="label", test_size=0.2, val_size=0.25, seed=3)
    _, table, splits = prepare(spec)
    features = table.features.copy()
    features.loc[splits.val, "alpha"] += 100.0  # only the validation rows are shifted
    features.loc[splits.val, "colour"] = "violet"  # a category that exists only outside training
    return spec, table.__class__(**{**table.__dict__, "features": features}), splits


def test_encoding_uses_training_statistics_only(tmp_path):
    spec, table, splits = shifted_table(tmp_path)
    from search.pipeline import plan_for
    from search.space import load_space

    data = encode_for_trials(spec, plan_for(spec, load_space("default"), splits), table, splits)
    alpha_train, alpha_val = data.x_train[:, 0], data.x_val[:, 0]
    assert abs(alpha_train.mean()) < 1e-5 and abs(alpha_train.std() - 1) < 1e-3
    assert alpha_val.mean() > 50  # standardised with the training mean, so the shift stays visible
    # beta has gaps in training: mean-imputed (0 after standardising) plus a missing indicator after the
    # numeric block (alpha, beta, gamma)
    beta_missing = table.features["beta"].iloc[splits.train].isna().to_numpy()
    assert np.all(data.x_train[beta_missing, 1] == 0) and np.all(data.x_train[beta_missing, 3] == 1)
    # colour: the vocabulary holds only training values, so "violet" falls into the out-of-vocabulary slot
    colour = data.x_val[:, 4:]
    assert colour.shape[1] == 1 + table.features["colour"].iloc[splits.train].fillna("").nunique()
    assert np.all(colour[:, 0] == 1)


def test_preprocessor_round_trips_through_a_safe_mode_reload(tmp_path):
    import keras

    from search.data.encoding import build_preprocessor, fit_stats, raw_inputs

    df = make_mixed_table(80)
    schema = (Feature("alpha", "numeric"), Feature("beta", "numeric"), Feature("colour", "categorical"))
    splits = split_rows((df["label"] == "yes").to_numpy().astype(int), 0.0, 0.25, seed=0)
    model = build_preprocessor(fit_stats(df.iloc[splits.train], schema), schema)
    path = tmp_path / "pre.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    unseen = pd.DataFrame({"alpha": [np.nan, 1.0], "beta": [2.0, np.nan], "colour": ["mauve", None]})
    for frame in (df, unseen):
        inputs = raw_inputs(frame, schema)
        np.testing.assert_allclose(np.asarray(model(inputs)), np.asarray(reloaded(inputs)), atol=1e-6)
        assert np.all(np.isfinite(np.asarray(reloaded(inputs))))


def test_the_driver_encoding_is_what_the_exported_preprocessor_computes():
    """The driver encodes in NumPy (fast on wide tables); the model the export holds must agree with it,
    on seen and unseen values, gaps, and a column that had no gaps in training."""
    from search.data.encoding import build_preprocessor, encode, fit_stats, raw_inputs

    df = make_mixed_table(120)
    schema = (Feature("alpha", "numeric"), Feature("beta", "numeric"), Feature("colour", "categorical"),
              Feature("gamma", "numeric"))
    stats = fit_stats(df.iloc[:90], schema)
    model = build_preprocessor(stats, schema)
    unseen = pd.DataFrame({"alpha": [np.nan, 1e6], "beta": [2.0, np.nan], "colour": ["mauve", None],
                           "gamma": [np.nan, -3.0]})
    for frame in (df.iloc[90:], unseen):
        np.testing.assert_allclose(encode(stats, frame, schema), np.asarray(model(raw_inputs(frame, schema))),
                                   rtol=1e-6, atol=1e-6)


def test_a_column_of_few_whole_numbers_is_also_one_hot_over_its_levels(tmp_path):
    """A month or a day of the month also becomes one switch per training value, in the driver's NumPy
    encoding and in the exported preprocessor alike (after a safe-mode reload); a value between levels
    falls to the nearer one, a gap to the mean's, and a column with a level of too few rows (a count's
    long tail) stays a number."""
    import keras

    from search.data.encoding import build_preprocessor, encode, fit_stats, raw_inputs

    rng = np.random.default_rng(0)
    rows = 600
    df = pd.DataFrame({"month": rng.integers(1, 7, rows).astype(float), "amount": rng.normal(size=rows),
                       "grade": rng.integers(0, 20, rows),  # 20 levels of about 30 rows: stays a number
                       "visits": rng.poisson(1.0, rows),  # about 86 rows a value, but 4 visits are rare
                       "shift": rng.integers(0, 3, rows)})  # levels of another width
    assert len(df) / df["visits"].nunique() > 50 and df["visits"].value_counts().min() < 50
    df.loc[:9, "month"] = np.nan
    schema = tuple(Feature(name, "numeric") for name in ("month", "amount", "grade", "visits", "shift"))
    stats = fit_stats(df, schema)
    assert stats.numeric["month"].levels == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert stats.numeric["amount"].levels == stats.numeric["grade"].levels == stats.numeric["visits"].levels == ()
    assert stats.numeric["shift"].levels == (0.0, 1.0, 2.0)
    unseen = pd.DataFrame({"month": [3.0, 3.4, 5.6, 40.0, np.nan, np.inf], "amount": [0.0] * 6,
                           "grade": [1] * 6, "visits": [0] * 6, "shift": [0, 1, 2, -5, 1, 1]})
    x = encode(stats, unseen, schema)
    # five numbers, month's missing indicator, then month's six levels and shift's three
    assert x.shape == (6, 5 + 1 + 6 + 3)
    month, shift = x[:, 6:12], x[:, 12:]
    mean_level = int(np.argmin(np.abs(np.array(stats.numeric["month"].levels) - stats.numeric["month"].mean)))
    assert month.argmax(axis=1).tolist() == [2, 2, 5, 5, mean_level, 5] and np.all(month.sum(axis=1) == 1)
    assert shift.argmax(axis=1).tolist() == [0, 1, 2, 0, 1, 1] and np.all(shift.sum(axis=1) == 1)
    model = build_preprocessor(stats, schema)
    model.save(tmp_path / "pre.keras")
    reloaded = keras.saving.load_model(tmp_path / "pre.keras", safe_mode=True)
    for frame in (df, unseen):
        np.testing.assert_allclose(encode(stats, frame, schema), np.asarray(reloaded(raw_inputs(frame, schema))),
                                   rtol=1e-6, atol=1e-6)


def test_a_run_names_the_columns_it_read_as_levels_and_its_model_scores_them(tmp_path):
    """End to end: a shift of 0, 1 or 2 whose middle value is the risky one (no single cut of the number
    finds it) is read as levels too; the model's metadata lists its values, the report names it, and
    the exported model, reloaded in safe mode, ranks the middle shift above the others."""
    import json

    import keras

    from tests.conftest import run_cli

    rng = np.random.default_rng(5)
    rows = 480
    shift = rng.integers(0, 3, rows)
    amount = rng.normal(size=rows).round(3)
    risky = rng.random(rows) < np.where(shift == 1, 0.8, 0.2)
    pd.DataFrame({"shift": shift, "amount": amount, "late": np.where(risky, "yes", "no")}).to_csv(
        tmp_path / "shifts.csv", index=False)
    proc = run_cli(["run", "shifts.csv", "--target", "late", "--samples", "2", "--max-epochs", "10",
                    "--grace-period", "10", "--top-k", "1", "--folds", "2", "--repeats", "1", "--cpus", "2",
                    "--results", "out", "--name", "shifts"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "out" / "shifts"
    meta = json.loads((folder / "model" / "metadata.json").read_text())
    assert {f["name"]: f.get("levels") for f in meta["features"]} == {"shift": [0.0, 1.0, 2.0], "amount": None}
    assert "| also as levels | shift (3): " in (folder / "report.md").read_text()
    model = keras.saving.load_model(folder / "model" / "model.keras", safe_mode=True)
    probe = {f["input"]: np.array([[0.0], [1.0], [2.0]], dtype=np.float32) if f["name"] == "shift"
             else np.zeros((3, 1), dtype=np.float32) for f in meta["features"]}
    low, middle, high = np.asarray(model(probe)).ravel()
    assert middle > max(low, high)
