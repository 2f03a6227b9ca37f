"""Preprocessing as Keras layers, fitted on a training part only.

The fitted preprocessor is a Keras model from raw columns to one float matrix. Trials never
see it: the driver encodes each split once and trials train on the arrays, so the network's
backend is free. The exported model joins the two, so that it takes raw rows.

Raw input form (one Keras input per column, shape ``(1,)``): numeric columns as float32 with
NaN for a missing value; categorical columns as strings with ``""`` for a missing value.
Numeric columns are standardised together, as one block, with the training part's means and
variances; missing values become the mean (0 after standardising), and each column with missing
values in training also gets a 0/1 missing indicator, after the block. Categorical columns are
one-hot encoded over the training part's vocabulary, with one extra slot for values not seen in
training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from search.data.model_inputs import column_inputs, input_name
from search.data.table import Feature

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


def raw_inputs(features: pd.DataFrame, schema: tuple[Feature, ...]) -> dict[str, np.ndarray]:
    """The columns in the model's raw input form (see the module docstring)."""
    return column_inputs(features, [(f.name, f.kind) for f in schema])


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

    inputs = {input_name(f.name): keras.Input(shape=(1,), name=input_name(f.name),
                                              dtype="float32" if f.kind == "numeric" else "string")
              for f in schema}
    parts = []
    numeric = [f for f in schema if f.kind == "numeric"]
    if numeric:  # one block, so that a table of thousands of columns is a handful of ops, not thousands
        columns = [inputs[input_name(f.name)] for f in numeric]
        block = columns[0] if len(columns) == 1 else keras.layers.Concatenate(name="numeric")(columns)
        z = keras.layers.Normalization(mean=[stats.numeric[f.name].mean for f in numeric],
                                       variance=[stats.numeric[f.name].variance for f in numeric],
                                       name="numeric_norm")(block)
        parts.append(ops.where(ops.isnan(z), ops.zeros_like(z), z))
        gaps = [i for i, f in enumerate(numeric) if stats.numeric[f.name].has_missing]
        if gaps:
            parts.append(ops.cast(ops.isnan(ops.take(block, gaps, axis=1)), "float32"))
    for feature in schema:
        if feature.kind != "numeric":
            name = input_name(feature.name)
            lookup = keras.layers.StringLookup(
                vocabulary=list(stats.vocabularies[feature.name]),
                output_mode="one_hot",
                num_oov_indices=1,
                name=f"{name}_lookup",
            )
            parts.append(ops.cast(lookup(inputs[name]), "float32"))
    encoded = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="encoded")(parts)
    return keras.Model(inputs, encoded, name="preprocessing")


def fit_and_encode(train: pd.DataFrame, schema: tuple[Feature, ...],
                   *others: pd.DataFrame) -> tuple[PreprocessStats, list[np.ndarray]]:
    """The preprocessing fitted on ``train`` alone, and ``train`` then each of ``others`` encoded with it."""
    stats = fit_stats(train, schema)
    return stats, [encode(stats, part, schema) for part in (train, *others)]


def encode(stats: PreprocessStats, features: pd.DataFrame, schema: tuple[Feature, ...]) -> np.ndarray:
    """What :func:`build_preprocessor`'s model computes, in NumPy (a test checks they agree).

    The driver encodes every split and every CV fold; calling the Keras model for it would make JAX
    compile a program with one argument per column: 30 s for a table of 2,000 columns.
    """
    arrays = raw_inputs(features, schema)
    parts = []
    numeric = [f for f in schema if f.kind == "numeric"]
    if numeric:
        block = np.concatenate([arrays[input_name(f.name)] for f in numeric], axis=1)
        mean = np.array([stats.numeric[f.name].mean for f in numeric], dtype=np.float32)
        scale = np.maximum(np.sqrt(np.array([stats.numeric[f.name].variance for f in numeric], dtype=np.float32)),
                           np.float32(1e-7))  # Keras' Normalization divides by max(sqrt(variance), epsilon)
        z = (block - mean) / scale
        parts.append(np.where(np.isnan(z), np.float32(0), z))
        gaps = [i for i, f in enumerate(numeric) if stats.numeric[f.name].has_missing]
        if gaps:
            parts.append(np.isnan(block[:, gaps]).astype(np.float32))
    for feature in schema:
        if feature.kind != "numeric":
            vocabulary = stats.vocabularies[feature.name]
            # slot 0: a value not seen in training (pandas' code -1), then the vocabulary in order
            values = arrays[input_name(feature.name)].ravel()
            codes = pd.Categorical(values, categories=vocabulary).codes.astype(np.int64) + 1
            one_hot = np.zeros((len(codes), len(vocabulary) + 1), dtype=np.float32)
            one_hot[np.arange(len(codes)), codes] = 1.0
            parts.append(one_hot)
    if not parts:
        return np.zeros((len(features), 0), dtype=np.float32)
    return np.concatenate(parts, axis=1).astype(np.float32)
