"""Preprocessing as Keras layers, fitted on a training part only.

The fitted preprocessor is a Keras model from raw columns to one float matrix. Trials never
see it: the driver encodes each split once and trials train on the arrays, so the network's
backend is free. The exported model joins the two, so that it takes raw rows.

Raw input form (one Keras input per column, shape ``(1,)``): numeric columns as float32 with
NaN for a missing value; categorical columns as strings with ``""`` for a missing value.
Numeric columns are standardised together, as one block, with the training part's means and
variances; missing values become the mean (0 after standardising), and each column with missing
values in training also gets a 0/1 missing indicator, after the block. A numeric column of whole
numbers with a few distinct values (a month, a day of the month, an hour, a grade: 3 to 32 of them,
each in at least 50 training rows) is also one-hot encoded over its training values, after the
indicators: a network then reads "the 8th of March" as two switches rather than a narrow bump of two
lines (on nycflights13 this lifted test ROC AUC from 0.785 to 0.801, bench/README.md). A value
between two levels falls to the nearer one, and a gap to the mean's. Categorical columns are one-hot
encoded over the training part's vocabulary, with one extra slot for values not seen in training.
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


LEVELS_MOST = 32  # a day of the month is the largest calendar part that is a set of levels
# every level needs this many training rows, else its switch fits noise: pima's 17 pregnancy counts and
# the long tail of a count (delinquencies: 0, 1, 2, ... 13) stay numbers, and so do caravan's skewed codes
ROWS_PER_LEVEL = 50


@dataclass(frozen=True)
class NumericStats:
    mean: float
    variance: float
    has_missing: bool
    levels: tuple[float, ...] = ()  # a whole-number column's training values, also one-hot encoded


def whole_number_levels(finite: np.ndarray) -> tuple[float, ...]:
    """The distinct values of a column that holds 3 to ``LEVELS_MOST`` whole numbers, each in at least
    ``ROWS_PER_LEVEL`` of its training rows; else ``()`` (a 0/1 column is already its own one-hot)."""
    if finite.size == 0 or not np.all(finite == np.round(finite)):
        return ()
    distinct, counts = np.unique(finite, return_counts=True)
    if not 3 <= distinct.size <= LEVELS_MOST or counts.min() < ROWS_PER_LEVEL:
        return ()
    return tuple(float(v) for v in distinct)


def level_bounds(stats: NumericStats) -> np.ndarray:
    """The midpoints between a column's levels, standardised as the column is: bin i of these is level i."""
    levels = np.asarray(stats.levels, dtype=np.float64)
    scale = max(np.sqrt(stats.variance), 1e-7)
    return (((levels[:-1] + levels[1:]) / 2 - stats.mean) / scale).astype(np.float32)


@dataclass(frozen=True)
class PreprocessStats:
    """Every statistic the preprocessing uses, all taken from one training part."""

    numeric: dict[str, NumericStats]
    vocabularies: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class LevelLayout:
    """The numeric block's columns with levels as one padded matrix, so that a wide table of codes is a
    few ops in the exported model, not one layer a column."""

    columns: list[int]  # their positions in the numeric block
    bounds: np.ndarray  # (columns, widest), padded with float32's largest value
    last: list[int]  # each one's last level
    kept: list[int]  # where their levels lie in the flattened one-hot of (columns, widest + 1)


def level_layout(stats: PreprocessStats, numeric: list[Feature]) -> LevelLayout | None:
    """The layout of ``numeric``'s level one-hots; ``None`` where no column has levels."""
    columns = [i for i, f in enumerate(numeric) if stats.numeric[f.name].levels]
    if not columns:
        return None
    bounds = [level_bounds(stats.numeric[numeric[i].name]) for i in columns]
    widest = max(b.size for b in bounds)
    padded = np.full((len(columns), widest), np.finfo(np.float32).max, dtype=np.float32)
    for row, b in enumerate(bounds):
        padded[row, :b.size] = b
    kept = [row * (widest + 1) + level for row, b in enumerate(bounds) for level in range(b.size + 1)]
    return LevelLayout(columns, padded, [b.size for b in bounds], kept)


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
            numeric[feature.name] = NumericStats(mean, var, bool(finite.size < values.size),
                                                 whole_number_levels(finite))
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
        z = ops.where(ops.isnan(z), ops.zeros_like(z), z)
        parts.append(z)
        gaps = [i for i, f in enumerate(numeric) if stats.numeric[f.name].has_missing]
        if gaps:
            parts.append(ops.cast(ops.isnan(ops.take(block, gaps, axis=1)), "float32"))
        layout = level_layout(stats, numeric)
        if layout is not None:  # a level is the count of bounds passed, as np.digitize counts in encode()
            width = layout.bounds.shape[1] + 1
            passed = ops.greater_equal(ops.expand_dims(ops.take(z, layout.columns, axis=1), -1), layout.bounds)
            # +inf passes the padding too: it is the last level, as in np.digitize
            codes = ops.minimum(ops.sum(ops.cast(passed, "int32"), axis=-1), np.array(layout.last, "int32"))
            one_hot = ops.cast(ops.equal(ops.expand_dims(codes, -1), np.arange(width, dtype="int32")), "float32")
            parts.append(ops.take(ops.reshape(one_hot, (-1, len(layout.columns) * width)), layout.kept, axis=1))
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
        z = np.where(np.isnan(z), np.float32(0), z)
        parts.append(z)
        gaps = [i for i, f in enumerate(numeric) if stats.numeric[f.name].has_missing]
        if gaps:
            parts.append(np.isnan(block[:, gaps]).astype(np.float32))
        for i, f in enumerate(numeric):
            if stats.numeric[f.name].levels:
                codes = np.digitize(z[:, i], level_bounds(stats.numeric[f.name]))  # bounds passed, as exported
                one_hot = np.zeros((len(codes), len(stats.numeric[f.name].levels)), dtype=np.float32)
                one_hot[np.arange(len(codes)), codes] = 1.0
                parts.append(one_hot)
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
