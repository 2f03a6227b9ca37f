"""Files as people have them: each kind either works, with the assumption in a note, or is one clear error."""

from __future__ import annotations

import bz2
import gzip
import zipfile

import numpy as np
import pandas as pd
import pytest

from search.data.table import load_table
from search.errors import DataError
from tests.conftest import make_mixed_table, run_cli


@pytest.fixture
def table() -> pd.DataFrame:
    return make_mixed_table(120)


def _same(frame: pd.DataFrame, table: pd.DataFrame, notes: tuple[str, ...], *expected: str) -> None:
    got = load_table(str(frame), target="label")
    assert got.n_rows == len(table) and [f.name for f in got.schema] == ["alpha", "beta", "gamma", "colour"]
    np.testing.assert_allclose(got.features["alpha"].to_numpy(dtype=float), table["alpha"].to_numpy(), atol=1e-9)
    assert got.labels == ("no", "yes") and list(got.features["colour"].fillna("-")) == list(table["colour"].fillna("-"))
    for text in expected:
        assert any(text in note for note in got.notes), (text, got.notes)
    assert len(got.notes) == len(expected) + len(notes), got.notes


def test_a_semicolon_file_with_decimal_commas_just_works(tmp_path, table):
    path = tmp_path / "export.csv"
    table.to_csv(path, sep=";", decimal=",", index=False)
    _same(path, table, (), "delimiter: ';' (detected)", "decimal comma in alpha, beta, gamma")


def test_tab_and_pipe_separated_files_just_work(tmp_path, table):
    table.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    _same(tmp_path / "t.tsv", table, (), "delimiter: tab")
    table.to_csv(tmp_path / "t.txt", sep="|", index=False)
    _same(tmp_path / "t.txt", table, (), "delimiter: '|'")


@pytest.mark.parametrize(("encoding", "said"), [("utf-8-sig", "UTF-8 with a byte-order mark"),
                                                ("utf-16", "UTF-16"), ("cp1252", "Windows-1252")])
def test_other_encodings_just_work(tmp_path, table, encoding, said):
    table = table.assign(colour=table["colour"].replace({"red": "rosé"}))
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False, encoding=encoding)
    got = load_table(str(path), target="label")
    assert got.features.columns[0] == "alpha"  # no byte-order mark in the first name
    assert "rosé" in set(got.features["colour"]) and any(said in n for n in got.notes)


@pytest.mark.parametrize("kind", ["gzip", "bz2", "zip"])
def test_compressed_files_just_work(tmp_path, table, kind):
    text = table.to_csv(index=False).encode()
    path = tmp_path / {"gzip": "t.csv.gz", "bz2": "t.csv.bz2", "zip": "t.zip"}[kind]
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("inner/t.csv", text)
    else:
        path.write_bytes(gzip.compress(text) if kind == "gzip" else bz2.compress(text))
    _same(path, table, (), f"{kind}-compressed")


def test_excel_and_json_files_just_work(tmp_path, table):
    with pd.ExcelWriter(tmp_path / "t.xlsx") as book:
        table.to_excel(book, sheet_name="data", index=False)
        table.head(3).to_excel(book, sheet_name="notes", index=False)
    _same(tmp_path / "t.xlsx", table, (), "Excel: the first of 2 sheets, 'data'")
    table.to_json(tmp_path / "t.json", orient="records")
    _same(tmp_path / "t.json", table, ())
    table.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    _same(tmp_path / "t.jsonl", table, ())


def test_labels_in_stray_case_or_spacing_are_one_class(tmp_path, table):
    labels = np.where(table["label"] == "yes", np.where(np.arange(len(table)) % 2, "Yes ", " YES"), "no")
    path = tmp_path / "t.csv"
    table.assign(label=labels).to_csv(path, index=False)
    got = load_table(str(path), target="label")
    assert got.y.tolist() == (table["label"] == "yes").astype(int).tolist()
    assert any("labels that differ only in case or spaces" in n for n in got.notes)


def test_empty_and_constant_columns_are_left_out_with_a_note(tmp_path, table):
    path = tmp_path / "t.csv"
    table.assign(blank=np.nan, same="x", gappy=np.where(table["beta"].isna(), np.nan, 1.0)).to_csv(path, index=False)
    got = load_table(str(path), target="label")
    assert [f.name for f in got.schema] == ["alpha", "beta", "gamma", "colour", "gappy"]  # gaps may tell
    assert "left out 1 empty column(s): blank" in got.notes and "left out 1 constant column(s): same" in got.notes


def test_date_and_time_columns_become_features(tmp_path, table):
    stamps = pd.date_range("2024-01-01 06:00", periods=len(table), freq="7h")
    path = tmp_path / "t.csv"
    table.assign(when=stamps.strftime("%Y-%m-%d %H:%M"), day=stamps.strftime("%d/%m/%Y"),
                 clock=stamps.strftime("%H:%M"), ticket=[f"T-{i:05d}" for i in range(len(table))]).to_csv(path)
    with pytest.raises(DataError, match="column 'ticket' looks like an id"):  # an id is still refused
        load_table(str(path), target="label")
    got = load_table(str(path), target="label", drop=("ticket", "Unnamed: 0"))
    names = [f.name for f in got.schema]
    assert {"when.year", "when.hour", "when.weekday", "day.month", "clock.hour", "clock.minute"} <= set(names)
    assert "day.hour" not in names  # no times of day in that column
    assert got.features["when.hour"].tolist() == stamps.hour.astype(float).tolist()
    assert got.features["day.weekday"].tolist() == stamps.weekday.astype(float).tolist()
    assert any("column 'when': dates, used as when.year" in n for n in got.notes)


@pytest.mark.parametrize(("name", "content", "match"), [
    ("t.xls", b"\xd0\xcf\x11\xe0 old workbook", "old Excel .xls workbook, which hpsearch does not read. Save it as"),
    ("t.csv.gz", b"\x1f\x8b\x08 truncated", "looks gzip-compressed but cannot be uncompressed"),
    ("t.zip", None, "a zip archive of 2 files. Give a zip of one table"),
    ("t.json", b"{not json", "cannot be read as JSON"),
])
def test_unreadable_files_are_one_line_errors(tmp_path, name, content, match):
    path = tmp_path / name
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a.csv", "a,y\n1,0\n")
            archive.writestr("b.csv", "a,y\n1,0\n")
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        load_table(str(path), target="y")


def test_a_run_says_what_it_assumed_and_predict_reads_the_same_way(tmp_path, table):
    """End to end: a ';' file with dates, gzip-compressed; the first lines say so; predict derives the dates."""
    stamps = pd.date_range("2024-01-01 06:00", periods=len(table), freq="7h")
    frame = table.assign(when=stamps.strftime("%Y-%m-%d %H:%M"))
    path = tmp_path / "stops.csv.gz"
    path.write_bytes(gzip.compress(frame.to_csv(sep=";", decimal=",", index=False).encode("cp1252")))
    proc = run_cli(["run", str(path), "--target", "label", "--samples", "2", "--max-epochs", "2", "--top-k", "1",
                    "--folds", "2", "--repeats", "1", "--cpus", "2", "--name", "stops", "--results", "out"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for said in ("gzip-compressed", "delimiter: ';'", "decimal comma", "column 'when': dates, used as when.year"):
        assert said in proc.stdout, said
    predicted = run_cli(["predict", "out/stops", str(path)], cwd=tmp_path, timeout=180)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert len(predicted.stdout.strip().splitlines()) == len(table) + 1


@pytest.mark.slow
def test_a_table_of_a_thousand_columns_encodes_exports_and_predicts(tmp_path):
    """Thousands of columns: the driver encodes them in NumPy, and the exported model (one input per
    column) still reloads in safe mode and scores a file with ``hpsearch predict``'s code."""
    from search.data.encoding import build_preprocessor, fit_and_encode, raw_inputs
    from search.export.model_file import join_model, save_model
    from search.export.predict import predict_file
    from search.network.mlp import build_network

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(150, 1000)).round(3), columns=[f"x{i}" for i in range(1000)])
    frame["y"] = (frame["x0"] + frame["x1"] > 0).astype(int)
    frame.to_csv(tmp_path / "wide.csv", index=False)
    table = load_table(str(tmp_path / "wide.csv"), target="y")
    stats, (x,) = fit_and_encode(table.features, table.schema)
    assert x.shape == (150, 1000) and np.isfinite(x).all()
    model = join_model(build_preprocessor(stats, table.schema), build_network({"depth": 1, "width": 8}, 1000,
                                                                               compiled=False))
    metadata = {"threshold": 0.5, "labels": {"0": "0", "1": "1"}, "target": "y", "header": True,
                "features": [{"name": f.name, "kind": f.kind} for f in table.schema]}
    save_model(tmp_path, model, metadata, raw_inputs(table.features.iloc[:8], table.schema))
    predictions, _ = predict_file(tmp_path, tmp_path / "wide.csv")
    assert len(predictions) == 150 and predictions["probability"].between(0, 1).all()
