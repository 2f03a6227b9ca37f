"""The user's table made fit to train on (``reading.py`` opens the file).

It checks that the target is binary, maps labels to 0/1 (recording the mapping, forgiving stray
case and spaces), turns date columns into parts (``dates.py``), leaves out empty and constant
columns, decides which columns are numeric and which categorical, and splits the rows, stratified
and seeded. What it assumed comes back as notes for the run's first lines.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.data.dates import expand, find_dates
from search.data.reading import is_text, read_frame
from search.errors import DataError

BUILTIN_PREFIX = "builtin:"
BUILTIN_TABLES = ("breast_cancer",)
DEFAULT_DATA = "builtin:breast_cancer"
# A text column with more distinct values than this share of its rows is an id or free text.
MAX_CATEGORY_SHARE = 0.5
MAX_CATEGORIES = 1000
MIN_ROWS_PER_CLASS = 5
TRUTHY = ("1", "1.0", "true", "yes", "y", "t", "positive", "pos")


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # "numeric" or "categorical"


@dataclass(frozen=True)
class Table:
    """A loaded table: raw features (as read), target in {0, 1}, and how labels map."""

    features: pd.DataFrame
    y: np.ndarray
    schema: tuple[Feature, ...]
    target: str
    labels: tuple[str, str]  # labels[0] -> 0, labels[1] -> 1 (the positive class)
    source: str
    sha256: str
    notes: tuple[str, ...] = ()  # what was assumed while reading (printed in the run's first lines)
    dates: dict[str, tuple[str, ...]] | None = None  # date column -> its parts, which stand in the features
    # a part of the file's table (an outer run of nested CV): its row numbers there, kept in spec.json
    source_rows: tuple[int, ...] | None = None

    @property
    def n_rows(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Splits:
    """Row indices: ``test`` is never seen by the search; ``train``/``val`` feed the trials."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def load_table(
    source: str,
    target: str | None = None,
    *,
    header: bool = True,
    drop: tuple[str, ...] = (),
    positive: str | None = None,
) -> Table:
    """Read ``source`` (CSV, Parquet or ``builtin:NAME``) and validate it for binary classification.

    Args:
        source: a file path or ``builtin:breast_cancer``.
        target: the target column's name, or its index (``-1`` is the last column);
            by default the builtin table's target, or the last column of a file.
        header: whether a CSV's first row holds column names.
        drop: columns that are not features (ids, leaks).
        positive: the label that becomes class 1; see :func:`choose_positive` for the default.

    Raises:
        DataError: with a one-line message naming the problem and the fix.
    """
    read_notes: tuple[str, ...] = ()
    if source.startswith(BUILTIN_PREFIX):
        df, default_target, digest = _read_builtin(source[len(BUILTIN_PREFIX) :])
    else:
        df, digest, read_notes = read_frame(Path(source), header)
        default_target = None
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise DataError(f"{source}: the table is empty. Give a file with a header and data rows.")
    target_name = _resolve_target(df, target if target is not None else default_target, source)
    for col in drop:
        if col not in df.columns:
            raise DataError(
                f"--drop {col}: no such column in {source}. Columns are: {list_names(df.columns)}."
            )
    if target_name in drop:
        raise DataError(f"--drop {target_name}: that is the target column. Drop another column.")
    df, unlabelled_notes = _labelled_rows(df, target_name, source)
    y, labels, label_notes = _encode_target(df[target_name], target_name, positive, source)
    features, column_notes = _usable_columns(df.drop(columns=[target_name, *drop]))
    dates, parsed = find_dates(features)
    features = expand(features, dates, parsed)
    schema = infer_schema(features, source)
    features, inf_notes = _infinite_as_missing(features[[f.name for f in schema]], schema)
    date_notes = tuple(f"column '{c}': dates, used as {', '.join(f'{c}.{p}' for p in parts)}"
                       if parts[0] == "year" else f"column '{c}': times of day, used as {c}.hour, {c}.minute"
                       for c, parts in dates.items())
    notes = read_notes + unlabelled_notes + label_notes + column_notes + date_notes + inf_notes
    return Table(features.reset_index(drop=True), y, schema, target_name, labels, source, digest, notes, dates)


def only_rows(table: Table, rows: np.ndarray) -> Table:
    """The same table restricted to ``rows`` (renumbered from 0); ``source_rows`` says which they were."""
    import dataclasses

    kept = np.asarray(rows)
    origin = np.asarray(table.source_rows)[kept] if table.source_rows is not None else kept
    return dataclasses.replace(table, features=table.features.iloc[kept].reset_index(drop=True), y=table.y[kept],
                               source_rows=tuple(int(r) for r in origin))


def _labelled_rows(df: pd.DataFrame, target: str, source: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The rows whose target has a value, and a note of how many were left out (as AutoGluon and
    scikit-learn users expect: a row without a label cannot teach or score anything)."""
    missing = df[target].isna().to_numpy()
    if not missing.any():
        return df, ()
    if missing.all():
        raise DataError(f"{source}: target '{target}' has no value in any of its {len(df)} rows. "
                        f"Pick the column that holds the labels with --target.")
    note = (f"left out {int(missing.sum())} of {len(df)} rows that have no value in target '{target}' "
            f"({int((~missing).sum())} labelled rows remain)")
    return df[~missing].reset_index(drop=True), (note,)


def _usable_columns(features: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Leave out what cannot teach anything, and say so: empty columns (a trailing delimiter makes one)
    and constant columns (one value in every row; a column that is constant but has gaps stays, since
    its gaps may tell)."""
    empty = [str(c) for c in features.columns if features[c].isna().all()]
    constant = [str(c) for c in features.columns
                if str(c) not in empty and features[c].notna().all() and features[c].nunique() == 1]
    notes = []
    if empty:
        notes.append(f"left out {len(empty)} empty column(s): {list_names(empty)}")
    if constant:
        notes.append(f"left out {len(constant)} constant column(s): {list_names(constant)}")
    if empty or constant:
        features = features.drop(columns=empty + constant)
    return features, tuple(notes)


def _infinite_as_missing(features: pd.DataFrame, schema: tuple[Feature, ...]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """``inf`` in a numeric column is a data problem, not a number to train on (one such row made every
    trial diverge): it becomes a missing value, and a note says where."""
    notes = []
    for f in schema:
        if f.kind != "numeric":
            continue
        values = pd.to_numeric(features[f.name], errors="coerce")
        infinite = np.isinf(values.to_numpy(dtype=float, na_value=np.nan))
        if infinite.any():
            features = features.copy() if not notes else features
            features[f.name] = values.where(~infinite, np.nan)
            notes.append(f"column '{f.name}': {int(infinite.sum())} infinite value(s) read as missing")
    return features, tuple(notes)


def infer_schema(features: pd.DataFrame, source: str) -> tuple[Feature, ...]:
    """Numeric columns stay numeric; text columns with few distinct values are categorical."""
    schema = []
    for name in features.columns:
        col = features[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            schema.append(Feature(str(name), "numeric"))
            continue
        distinct = col.dropna().astype(str).nunique()
        if distinct > max(10, MAX_CATEGORY_SHARE * len(col)) or distinct > MAX_CATEGORIES:
            raise DataError(
                f"{source}: column '{name}' looks like an id or free text ({distinct} distinct values "
                f"in {len(col)} rows). Remove it with --drop '{name}'."
            )
        schema.append(Feature(str(name), "categorical"))
    if not schema:
        raise DataError(
            f"{source}: no feature column is left besides the target. Give a table with features."
        )
    return tuple(schema)


def split_rows(y: np.ndarray, test_size: float, val_size: float, seed: int) -> Splits:
    """Stratified, seeded test / validation / training parts (validation is a share of the rest)."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=2)
    if counts.min() < MIN_ROWS_PER_CLASS:
        raise DataError(
            f"class {int(counts.argmin())} has only {int(counts.min())} rows; the splits need at "
            f"least {MIN_ROWS_PER_CLASS} of each class. Add rows or pick another target."
        )
    idx = np.arange(len(y))
    try:
        if test_size > 0:
            rest, test = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
        else:
            rest, test = idx, idx[:0]
        train, val = train_test_split(
            rest, test_size=val_size, stratify=y[rest], random_state=seed + 1
        )
    except ValueError as exc:
        raise DataError(
            f"too few rows for --test-size {test_size} and --val-size {val_size} ({exc}). "
            f"Add rows or lower the sizes."
        ) from None
    return Splits(np.sort(train), np.sort(val), np.sort(test))


def choose_positive(labels: list[Any], counts: dict[Any, int]) -> Any:
    """The default positive class: the truthy label of 0/1, true/false or yes/no, else the rarer one."""
    truthy = [lab for lab in labels if str(lab).strip().lower() in TRUTHY]
    if len(truthy) == 1:
        return truthy[0]
    return min(labels, key=lambda lab: (counts[lab], -labels.index(lab)))


def _encode_target(
    col: pd.Series, name: str, positive: str | None, source: str
) -> tuple[np.ndarray, tuple[str, str], tuple[str, ...]]:
    col, notes = _forgiving_labels(col, name)
    counts = col.value_counts()
    if len(counts) != 2:
        shown = ", ".join(f"{k!s} ({v})" for k, v in list(counts.items())[:10])
        more = f" and {len(counts) - 10} more" if len(counts) > 10 else ""
        raise DataError(
            f"{source}: target '{name}' must have exactly 2 classes, found {len(counts)}: "
            f"{shown}{more}. Pick a yes/no column with --target."
        )
    labels = sorted(counts.index.tolist(), key=str)
    if positive is None:
        pos = choose_positive(labels, counts.to_dict())
    else:
        matches = [lab for lab in labels if str(lab) == positive]
        if not matches:
            raise DataError(
                f"--positive {positive}: not a label of '{name}'. Its labels are: "
                f"{', '.join(str(lab) for lab in labels)}."
            )
        pos = matches[0]
    neg = labels[0] if labels[1] == pos else labels[1]
    y = (col == pos).to_numpy().astype(np.int32)
    return y, (str(neg), str(pos)), notes


def _forgiving_labels(col: pd.Series, name: str) -> tuple[pd.Series, tuple[str, ...]]:
    """Text labels that differ only in case or spaces (``Yes``, ``yes ``, ``YES``) are one class, written
    as its commonest spelling; merged only when that leaves exactly two classes."""
    if not is_text(col) or col.nunique() <= 2:
        return col, ()
    text = col.astype(str).str.strip()
    folded = text.str.casefold()
    if folded.nunique() != 2:
        return col, ()
    spelling = text.groupby(folded).agg(lambda v: v.value_counts().index[0])
    merged = folded.map(spelling)
    said = [f"{', '.join(repr(v) for v in sorted(set(col[merged == label].astype(str))) if v != label)} as {label!r}"
            for label in spelling if (col[merged == label].astype(str) != label).any()]
    return merged, (f"target '{name}': read {'; '.join(said)} (labels that differ only in case or spaces)",)


def _resolve_target(df: pd.DataFrame, target: str | None, source: str) -> str:
    if target is None:
        return str(df.columns[-1])
    if target in df.columns:
        return target
    try:
        index = int(target)
    except ValueError:
        raise DataError(
            f"{source}: target column '{target}' not found. Columns are: {list_names(df.columns)}. "
            f"Pass --target NAME, or an index such as -1."
        ) from None
    if not -df.shape[1] <= index < df.shape[1]:
        raise DataError(
            f"{source}: target index {index} is out of range for {df.shape[1]} columns. "
            f"Use 0..{df.shape[1] - 1} or -1 for the last."
        )
    return str(df.columns[index])


def _read_builtin(name: str) -> tuple[pd.DataFrame, str, str]:
    if name != "breast_cancer":
        raise DataError(
            f"builtin:{name} is not a builtin table. Use one of: "
            + ", ".join(BUILTIN_PREFIX + t for t in BUILTIN_TABLES)
            + "."
        )
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    df = bunch.frame.copy()
    df["diagnosis"] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
    df = df.drop(columns=["target"])
    digest = hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()
    return df, "diagnosis", digest


def list_names(columns: Any, limit: int = 12) -> str:
    names = [str(c) for c in columns]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
