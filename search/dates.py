"""Date and time columns as features: the hour of a police stop, the day of a flight.

A column of dates (``2024-03-01``, ``01/03/2024 14:05``, or a Parquet or Excel datetime) becomes
numeric parts: year, month, day, weekday and day of the year, plus hour and minute when the column
holds times of day; a column of times alone (``14:05``) becomes hour and minute. The parts replace
the column in the table the network sees, as AutoGluon's datetime features do. ``hpsearch predict``
derives the same parts from the same raw column (the parts are recorded in the model's metadata);
the exported Keras model itself takes the parts as its inputs.
"""

from __future__ import annotations

import warnings

import pandas as pd

from search.reading import is_text

DATE_PATTERN = r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
TIME_PATTERN = r"^\d{1,2}:\d{2}(:\d{2})?$"
SHARE_PARSED = 0.95  # of a column's values, for it to count as dates
DATE_PARTS = ("year", "month", "day", "weekday", "dayofyear")
TIME_PARTS = ("hour", "minute")


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
        stamps = _as_naive(column)
    elif is_text(column):
        sample = values.head(500).astype(str).str.strip()
        if sample.str.match(TIME_PATTERN).mean() >= SHARE_PARSED:
            return TIME_PARTS, None
        if sample.str.match(DATE_PATTERN).mean() < SHARE_PARSED:
            return (), None
        stamps = parse(column)
        if stamps.notna().sum() < SHARE_PARSED * len(values):
            return (), None
    else:
        return (), None
    times = stamps.dropna()
    has_time = bool(((times.dt.hour != 0) | (times.dt.minute != 0)).any())
    return DATE_PARTS + (TIME_PARTS if has_time else ()), stamps


def parse(column: pd.Series) -> pd.Series:
    """Datetimes of a column (ISO 8601 first, then the format pandas infers); unparsed values are NaT."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return _as_naive(column)
    text = column.astype("string").str.strip()
    stamps = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    if stamps.notna().sum() < SHARE_PARSED * text.notna().sum():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Could not infer format": pandas then parses value by value
            # month first (pandas' default), else day first (31/12/2024), whichever reads more values
            tries = [pd.to_datetime(text, errors="coerce", utc=True, dayfirst=first) for first in (False, True)]
        stamps = max(tries, key=lambda t: int(t.notna().sum()))
    return _as_naive(stamps)


def expand(features: pd.DataFrame, dates: dict[str, tuple[str, ...]],
           parsed: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """``features`` with each date column replaced by its parts, named ``COLUMN.PART``, where it stood
    (``parsed``: datetimes :func:`find_dates` already has)."""
    parsed = parsed or {}
    parts = {}
    for name, wanted in dates.items():
        if wanted == TIME_PARTS and not pd.api.types.is_datetime64_any_dtype(features[name]):
            clock = features[name].astype("string").str.strip().str.extract(r"^(\d{1,2}):(\d{2})")
            values = {"hour": pd.to_numeric(clock[0]), "minute": pd.to_numeric(clock[1])}
        else:
            stamps = parsed[name] if name in parsed else parse(features[name])
            values = {part: getattr(stamps.dt, part) for part in wanted}
        parts[name] = pd.DataFrame({f"{name}.{p}": values[p].astype(float).to_numpy() for p in wanted},
                                   index=features.index)
    if not parts:
        return features
    pieces = [parts[c] if c in parts else features[[c]] for c in features.columns]
    return pd.concat(pieces, axis=1)


def _as_naive(stamps: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(stamps, errors="coerce")
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps
