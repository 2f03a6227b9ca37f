"""Scoring a table with a run's exported model: probability and predicted label per row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.data import Feature, expand, list_names, read_frame
from search.errors import DataError


def predict_file(run_dir: str | Path, data: str | Path, id_column: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Predictions for every row of ``data``, and notes for the user (e.g. ignored columns).

    Raises:
        DataError: a missing feature column, a value of the wrong type, or an unusable run folder.
    """
    from search.export.model_file import load_model

    model, metadata = load_model(Path(run_dir).resolve())
    frame, _, _ = read_frame(Path(data), header=bool(metadata.get("header", True)))
    return predict_frame(model, metadata, frame, str(data), id_column)


def predict_frame(model: Any, metadata: dict[str, Any], frame: pd.DataFrame, source: str = "the table",
                  id_column: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Probability and label for every row of ``frame`` (the raw columns), as read from a file or given
    by a program (the MLflow model of ``search/tracking/pyfunc.py``)."""
    from search.data import raw_inputs

    schema = tuple(Feature(f["name"], f["kind"]) for f in metadata["features"])
    dates = {name: tuple(parts) for name, parts in (metadata.get("dates") or {}).items()}
    derived = {f"{name}.{part}" for name, parts in dates.items() for part in parts}
    needed = [f.name for f in schema if f.name not in derived] + list(dates)
    missing = [name for name in needed if name not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: {len(missing)} feature column(s) missing: {list_names(missing)}. "
            f"Give a table with the columns the model was trained on (model/metadata.json lists them)."
        )
    if id_column is not None and id_column not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise DataError(f"--id {id_column}: no such column in {source}. Columns are: {columns}.")
    raw = frame
    frame = expand(frame, dates)
    for feature in schema:
        if feature.kind == "numeric" and feature.name not in derived:
            column = frame[feature.name]
            bad = column.notna() & pd.to_numeric(column, errors="coerce").isna()
            if bad.any():
                row = int(bad.to_numpy().argmax())
                raise DataError(
                    f"{source}: column '{feature.name}' expects numbers, got {column.iloc[row]!r} in data row "
                    f"{row + 1}. Fix the value or leave the cell empty."
                )
    notes = []
    extra = [str(c) for c in raw.columns if c not in {*needed, id_column, metadata.get("target")}]
    if extra:
        notes.append(f"ignored columns that the model does not use: {', '.join(extra)}")
    from search.export.model_file import probabilities

    probability = pd.Series(probabilities(model, raw_inputs(frame, schema)) if len(frame) else np.zeros(0),
                            dtype=float)
    labels = metadata["labels"]
    predictions = pd.DataFrame({
        "probability": probability.round(6),
        "label": [labels["1"] if p >= metadata["threshold"] else labels["0"] for p in probability],
    })
    if id_column is not None:
        predictions.insert(0, id_column, raw[id_column].to_numpy())
    return predictions, notes
