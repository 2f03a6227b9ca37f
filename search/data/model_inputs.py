"""A table's rows as the exported model's inputs: the one piece of hpsearch a model folder ships.

The export copies this file beside ``model.keras`` as ``inputs.py``, so that plain Keras scores a
pandas DataFrame without hpsearch installed::

    import keras, pandas as pd
    from inputs import to_inputs          # model/inputs.py
    model = keras.saving.load_model("model/model.keras", safe_mode=True)
    probability = model.predict(to_inputs(df, "model/metadata.json"))

``metadata.json`` says which columns are features, their kind (numeric or categorical), the input
name each has in the model, and the date columns whose parts (``COLUMN.year`` ...) the model takes.
Only NumPy, pandas and the standard library are imported here.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SHARE_PARSED = 0.95  # of a column's values, for a parse to count (ISO 8601 first, then pandas' guess)
TIME_PARTS = ("hour", "minute")


def to_inputs(frame: pd.DataFrame, metadata: dict[str, Any] | str | Path) -> dict[str, np.ndarray]:
    """The model's inputs for the rows of ``frame`` (its raw columns, as the training table had them;
    other columns are ignored). ``metadata``: ``metadata.json``'s content or its path."""
    if not isinstance(metadata, dict):
        metadata = json.loads(Path(metadata).read_text(encoding="utf-8"))
    dates = {name: tuple(parts) for name, parts in (metadata.get("dates") or {}).items()}
    frame = expand(frame, {name: parts for name, parts in dates.items() if name in frame.columns})
    return column_inputs(frame, [(f["name"], f["kind"]) for f in metadata["features"]])


def input_name(column: str) -> str:
    """A Keras-safe input name for a column (letters, digits and underscores)."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", column)
    return name if name and not name[0].isdigit() else f"f_{name}"


def column_inputs(frame: pd.DataFrame, features: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """One ``(n, 1)`` array per ``(name, kind)`` feature, keyed by its input name: numeric columns as
    float32 with NaN for a missing value, categorical ones as strings with ``""`` for a missing value."""
    arrays: dict[str, np.ndarray] = {}
    for name, kind in features:
        col = frame[name]
        if kind == "numeric":
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
        else:
            values = np.asarray(col.astype(object).where(col.notna(), "").astype(str), dtype=str)
        arrays[input_name(name)] = values.reshape(-1, 1)
    return arrays


def parse_dates(column: pd.Series) -> pd.Series:
    """Datetimes of a column (ISO 8601 first, then the format pandas infers); unparsed values are NaT."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return as_naive(column)
    text = column.astype("string").str.strip()
    stamps = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    if stamps.notna().sum() < SHARE_PARSED * text.notna().sum():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Could not infer format": pandas then parses value by value
            # month first (pandas' default), else day first (31/12/2024), whichever reads more values
            tries = [pd.to_datetime(text, errors="coerce", utc=True, dayfirst=first) for first in (False, True)]
        stamps = max(tries, key=lambda t: int(t.notna().sum()))
    return as_naive(stamps)


def expand(features: pd.DataFrame, dates: dict[str, tuple[str, ...]],
           parsed: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """``features`` with each date column replaced by its parts, named ``COLUMN.PART``, where it stood
    (``parsed``: datetimes already parsed, by column)."""
    parsed = parsed or {}
    parts = {}
    for name, wanted in dates.items():
        if tuple(wanted) == TIME_PARTS and not pd.api.types.is_datetime64_any_dtype(features[name]):
            clock = features[name].astype("string").str.strip().str.extract(r"^(\d{1,2}):(\d{2})")
            values = {"hour": pd.to_numeric(clock[0]), "minute": pd.to_numeric(clock[1])}
        else:
            stamps = parsed[name] if name in parsed else parse_dates(features[name])
            values = {part: getattr(stamps.dt, part) for part in wanted}
        parts[name] = pd.DataFrame({f"{name}.{p}": values[p].astype(float).to_numpy() for p in wanted},
                                   index=features.index)
    if not parts:
        return features
    pieces = [parts[c] if c in parts else features[[c]] for c in features.columns]
    return pd.concat(pieces, axis=1)


def as_naive(stamps: pd.Series) -> pd.Series:
    """Datetimes without a time zone (UTC where they had one)."""
    stamps = pd.to_datetime(stamps, errors="coerce")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps
