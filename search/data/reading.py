"""Reading a data file as people have it: the only module that opens data files.

What pandas and the standard library detect is used as they detect it: the compression from the
file's first bytes, the encoding from its byte-order mark (else UTF-8, then Windows-1252), the
delimiter with ``csv.Sniffer`` on the first 64 KB (what ``pandas.read_csv(sep=None)`` does, but
then read with pandas' fast C parser). Every assumption that is not the plain case (a comma-separated
UTF-8 CSV) comes back as a note for the run's first lines; every failure is a one-line DataError that
names the file and the fix.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import hashlib
import io
import lzma
import zipfile
from pathlib import Path

import pandas as pd

from search.errors import DataError, message_line

MISSING_MARKERS = ["", "NA", "N/A", "NaN", "nan", "?", "null", "None"]
SNIFF_BYTES = 65_536
DELIMITERS = ",;\t|"
DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}
MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}
EXCEL = (".xlsx", ".xlsm")
PARQUET = (".parquet", ".pq")
JSON = (".json", ".jsonl", ".ndjson")
DECIMAL_COMMA = r"^[+-]?(\d{1,3}(\.\d{3})+|\d+),\d+$"


def read_frame(path: Path, header: bool) -> tuple[pd.DataFrame, str, tuple[str, ...]]:
    """The file as a table of raw columns, its SHA-256, and what was assumed while reading it."""
    blob = _read_bytes(path)
    digest = hashlib.sha256(blob).hexdigest()
    notes: list[str] = []
    blob, name = _decompress(blob, path, notes)
    suffix = Path(name).suffix.lower()
    try:
        if suffix in PARQUET or blob[:4] == b"PAR1":
            df = pd.read_parquet(io.BytesIO(blob))
        elif suffix in EXCEL:
            df = _read_excel(blob, header, notes)
        elif suffix == ".xls":
            raise DataError(f"data file {path} is an old Excel .xls workbook, which hpsearch does not read. "
                            f"Save it as .xlsx or CSV.")
        elif suffix in JSON:
            df = _read_json(blob, suffix)
        else:
            df = _read_csv(blob, header, notes)
    except DataError:
        raise
    except Exception as exc:  # pandas, pyarrow and openpyxl raise many types for unreadable files
        first = message_line(exc)
        raise DataError(f"data file {path} cannot be read as {_format_name(suffix)} ({first}). "
                        f"Check its format, or save it as CSV.") from None
    return _tidy(df, path, header, notes), digest, tuple(notes)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"data file {path} not found. Check the path.")
    if not path.is_file():
        raise DataError(f"data file {path} is not a file. Give a CSV, Parquet, Excel or JSON file.")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DataError(f"data file {path} cannot be read ({exc.strerror}). Check its permissions.") from None
    if not blob.strip():
        raise DataError(f"data file {path} is empty. Give a file with data rows.")
    return blob


def _decompress(blob: bytes, path: Path, notes: list[str]) -> tuple[bytes, str]:
    """The uncompressed bytes and the inner file's name (``data.csv`` for ``data.csv.gz``)."""
    kind = next((k for magic, k in MAGIC.items() if blob.startswith(magic)), None)
    if kind is None and blob[:4] == b"PK\x03\x04" and path.suffix.lower() not in EXCEL:
        kind = "zip"
    if kind is None:
        return blob, path.name
    inner = path.name[: -len(path.suffix)] if path.suffix.lower() in COMPRESSIONS else path.name
    try:
        if kind == "zip":
            with zipfile.ZipFile(io.BytesIO(blob)) as archive:
                members = [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX")]
                if len(members) != 1:
                    raise DataError(f"data file {path} is a zip archive of {len(members)} files. "
                                    f"Give a zip of one table, or the table itself.")
                inner = members[0].filename
                blob = archive.read(members[0])
        else:
            blob = {"gzip": gzip.decompress, "bz2": bz2.decompress, "xz": lzma.decompress}[kind](blob)
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile, ValueError) as exc:
        raise DataError(f"data file {path} looks {kind}-compressed but cannot be uncompressed ({exc}). "
                        f"Check that it is complete.") from None
    notes.append(f"{path.name}: {kind}-compressed, read as {inner}")
    return blob, inner


def _encoding(blob: bytes) -> tuple[str, str | None]:
    """The text encoding and, when it is not plain UTF-8, what to tell the user."""
    if blob.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "UTF-8 with a byte-order mark"
    if blob.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "UTF-16 (byte-order mark)"
    try:
        blob.decode("utf-8")
        return "utf-8", None
    except UnicodeDecodeError as exc:
        where = exc.start
    try:
        blob.decode("cp1252")
        return "cp1252", f"Windows-1252 (byte {where} is not UTF-8)"
    except UnicodeDecodeError:
        return "latin-1", f"Latin-1 (byte {where} is not UTF-8)"


def _read_csv(blob: bytes, header: bool, notes: list[str]) -> pd.DataFrame:
    encoding, said = _encoding(blob)
    if said:
        notes.append(f"encoding: {said}")
    sample = blob[:SNIFF_BYTES].decode(encoding, errors="replace")
    sample = sample[: sample.rfind("\n") + 1] or sample
    try:
        sep = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:  # one column, or nothing the sniffer can tell apart
        sep = ","
    if sep != ",":
        notes.append(f"delimiter: {DELIMITER_NAMES[sep]} (detected)")
    options = dict(header=0 if header else None, na_values=MISSING_MARKERS, keep_default_na=True,
                   skipinitialspace=True, sep=sep, encoding=encoding)
    df = pd.read_csv(io.BytesIO(blob), **options)
    if sep == ";":  # spreadsheets that write ';' between columns write decimal commas in numbers
        comma = [c for c in df.columns
                 if is_text(df[c]) and df[c].dropna().astype(str).str.match(DECIMAL_COMMA).mean() > 0.95]
        if comma:
            df = pd.read_csv(io.BytesIO(blob), decimal=",", thousands=".", **options)
            notes.append(f"decimal comma in {', '.join(map(str, comma[:5]))}{' ...' if len(comma) > 5 else ''}")
    return df


def _read_excel(blob: bytes, header: bool, notes: list[str]) -> pd.DataFrame:
    with pd.ExcelFile(io.BytesIO(blob), engine="openpyxl") as book:
        if len(book.sheet_names) > 1:
            notes.append(f"Excel: the first of {len(book.sheet_names)} sheets, '{book.sheet_names[0]}'")
        return pd.read_excel(book, sheet_name=0, header=0 if header else None, na_values=MISSING_MARKERS)


def _read_json(blob: bytes, suffix: str) -> pd.DataFrame:
    """An array of records, an object of columns, or one record per line (``.jsonl``)."""
    text = blob.decode(_encoding(blob)[0])
    lines = suffix in (".jsonl", ".ndjson") or (text.lstrip().startswith("{") and "\n{" in text.strip())
    df = pd.read_json(io.StringIO(text), lines=lines, dtype=False, convert_dates=False)
    return df


def _tidy(df: pd.DataFrame, path: Path, header: bool, notes: list[str]) -> pd.DataFrame:
    """Column names as text, spaces around text values removed, duplicate names refused."""
    if not header:
        df.columns = [f"col_{i}" for i in range(df.shape[1])]
    df.columns = [str(c).strip() for c in df.columns]
    if len(set(df.columns)) != len(df.columns):
        seen = [c for c in df.columns if list(df.columns).count(c) > 1]
        raise DataError(f"data file {path} has duplicate column names ({seen[0]!r}). Rename them.")
    padded = 0
    for name in [c for c in df.columns if is_text(df[c])]:
        values = df[name]
        if pd.api.types.is_string_dtype(values):  # pandas' vectorised strip
            text = values.str.strip()
        else:  # objects of several types (Excel, JSON): strip the strings only
            text = values.map(lambda v: v.strip() if isinstance(v, str) else v)
        changed = int((text != values).sum() - (text.isna() & values.isna()).sum())
        if changed:
            padded += changed
            df[name] = text.replace("", None)
    if padded:
        notes.append(f"spaces around {padded} text value(s) removed")
    return df


def is_text(column: pd.Series) -> bool:
    """A column of text: pandas' string dtype (pandas 3 reads text so) or objects (older pandas, Excel, JSON)."""
    return pd.api.types.is_string_dtype(column) or pd.api.types.is_object_dtype(column)


def _format_name(suffix: str) -> str:
    if suffix in PARQUET:
        return "Parquet"
    if suffix in EXCEL:
        return "Excel"
    if suffix in JSON:
        return "JSON"
    return "CSV"
