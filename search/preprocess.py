"""Preprocessing as Keras layers, fitted on a training part only.

The fitted preprocessor is a Keras model from raw columns to one float matrix. Trials never
see it: the driver encodes each split once and trials train on the arrays, so the network's
backend is free. The exported model joins the two, so that it takes raw rows.

Raw input form (one Keras input per column, shape ``(1,)``): numeric columns as float32 with
NaN for a missing value; categorical columns as strings with ``""`` for a missing value.
Numeric columns are standardised with the training part's mean and variance, missing values
become that mean (0 after standardising), and a column with missing values in training also
gets a 0/1 missing indicator. Categorical columns are one-hot encoded over the training part's
vocabulary, with one extra slot for values not seen in training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from search.data import Feature

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class NumericStats:
    mean: float
    variance: float
    has_missing: bool


@dataclass(frozen=True)
class PreprocessStats:
    """Every statistic the preprocessing uses, all taken from one training part."""

    numeric: dict[str, NumericStats]
    vocabularies: dict[str, tuple[str, ...]]


def input_name(column: str) -> str:
    """A Keras-safe input name for a column (letters, digits and underscores)."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", column)
    return name if name and not name[0].isdigit() else f"f_{name}"


def raw_inputs(features: pd.DataFrame, schema: tuple[Feature, ...]) -> dict[str, np.ndarray]:
    """The columns in the model's raw input form (see the module docstring)."""
    arrays: dict[str, np.ndarray] = {}
    for feature in schema:
        col = features[feature.name]
        if feature.kind == "numeric":
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
        else:
            values = np.asarray(col.astype(object).where(col.notna(), "").astype(str), dtype=str)
        arrays[input_name(feature.name)] = values.reshape(-1, 1)
    return arrays


def fit_stats(train_features: pd.DataFrame, schema: tuple[Feature, ...]) -> PreprocessStats:
    """Compute the statistics from the training rows only (this is what prevents leakage)."""
    arrays = raw_inputs(train_features, schema)
    numeric: dict[str, NumericStats] = {}
    vocabularies: dict[str, tuple[str, ...]] = {}
    for feature in schema:
        values = arrays[input_name(feature.name)].ravel()
        if feature.kind == "numeric":
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if finite.size else 0.0
            var = float(finite.var()) if finite.size > 1 else 1.0
            numeric[feature.name] = NumericStats(mean, var, bool(finite.size < values.size))
        else:
            # Most frequent first, so that the one-hot layout does not depend on row order.
            counts = pd.Series(values).value_counts(sort=False)
            order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            vocabularies[feature.name] = tuple(str(k) for k, _ in order)
    return PreprocessStats(numeric, vocabularies)


def build_preprocessor(stats: PreprocessStats, schema: tuple[Feature, ...]) -> keras.Model:
    """A Keras model from raw columns to the encoded float matrix; built-in layers and ops only,
    so that it loads with ``keras.saving.load_model(..., safe_mode=True)`` anywhere."""
    import keras
    from keras import ops

    inputs: dict[str, keras.KerasTensor] = {}
    parts = []
    for feature in schema:
        name = input_name(feature.name)
        if feature.kind == "numeric":
            s = stats.numeric[feature.name]
            x = keras.Input(shape=(1,), name=name, dtype="float32")
            z = keras.layers.Normalization(mean=[s.mean], variance=[s.variance], name=f"{name}_norm")(x)
            parts.append(ops.where(ops.isnan(z), ops.zeros_like(z), z))
            if s.has_missing:
                parts.append(ops.cast(ops.isnan(x), "float32"))
        else:
            x = keras.Input(shape=(1,), name=name, dtype="string")
            lookup = keras.layers.StringLookup(
                vocabulary=list(stats.vocabularies[feature.name]),
                output_mode="one_hot",
                num_oov_indices=1,
                name=f"{name}_lookup",
            )
            parts.append(ops.cast(lookup(x), "float32"))
        inputs[name] = x
    encoded = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="encoded")(parts)
    return keras.Model(inputs, encoded, name="preprocessing")


def fit_and_encode(train: pd.DataFrame, schema: tuple[Feature, ...],
                   *others: pd.DataFrame) -> tuple[keras.Model, list[np.ndarray]]:
    """The preprocessing fitted on ``train`` alone, and ``train`` then each of ``others`` encoded with it."""
    preprocessor = build_preprocessor(fit_stats(train, schema), schema)
    return preprocessor, [encode(preprocessor, part, schema) for part in (train, *others)]


def encode(preprocessor: keras.Model, features: pd.DataFrame, schema: tuple[Feature, ...]) -> np.ndarray:
    """Run the fitted preprocessor once over a whole split."""
    encoded = preprocessor(raw_inputs(features, schema))
    return np.asarray(encoded, dtype=np.float32)
