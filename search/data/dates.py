"""Date and time columns as features: the hour of a police stop, the day of a flight.

A column of dates (``2024-03-01``, ``01/03/2024 14:05``, or a Parquet or Excel datetime) becomes
numeric parts: year, month, day, weekday and day of the year, plus hour and minute when the column
holds times of day; a column of times alone (``14:05``) becomes hour and minute. The parts replace
the column in the table the network sees, as AutoGluon's datetime features do. ``hpsearch predict``
derives the same parts from the same raw column (the parts are recorded in the model's metadata;
the parsing and the parts are ``search/data/model_inputs.py``'s, which the model folder ships); the
exported Keras model itself takes the parts as its inputs.
"""

from __future__ import annotations

import pandas as pd

from search.data.model_inputs import SHARE_PARSED, TIME_PARTS, as_naive, expand, parse_dates
from search.data.reading import is_text

__all__ = ["DATE_PARTS", "TIME_PARTS", "expand", "find_dates", "parse_dates"]

DATE_PATTERN = r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
TIME_PATTERN = r"^\d{1,2}:\d{2}(:\d{2})?$"
DATE_PARTS = ("year", "month", "day", "weekday", "dayofyear")


def find_dates(features: pd.DataFrame) -> tuple[dict[str, tuple[str, ...]], dict[str, pd.Series]]:
    """The date and time columns of ``features`` with the parts each yields, and the datetimes parsed on
    the way (for :func:`expand`, so that a column is parsed once)."""
    dates, parsed = {}, {}
    for name in features.columns:
        parts, stamps = _detect(features[name])
        if parts:
            dates[str(name)] = parts
            if stamps is not None:
                parsed[str(name)] = stamps
    return dates, parsed


def _detect(column: pd.Series) -> tuple[tuple[str, ...], pd.Series | None]:
    """The parts a column yields if it holds dates or times (else ``()``), and its datetimes."""
    values = column.dropna()
    if values.empty:
        return (), None
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = as_naive(column)
    elif is_text(column):
        sample = values.head(500).astype(str).str.strip()
        if sample.str.match(TIME_PATTERN).mean() >= SHARE_PARSED:
            return TIME_PARTS, None
        if sample.str.match(DATE_PATTERN).mean() < SHARE_PARSED:
            return (), None
        stamps = parse_dates(column)
        if stamps.notna().sum() < SHARE_PARSED * len(values):
            return (), None
    else:
        return (), None
    times = stamps.dropna()
    has_time = bool(((times.dt.hour != 0) | (times.dt.minute != 0)).any())
    return DATE_PARTS + (TIME_PARTS if has_time else ()), stamps
