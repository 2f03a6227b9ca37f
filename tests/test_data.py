from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from search.data.table import choose_positive, load_table, split_rows
from search.errors import DataError
from tests.conftest import make_mixed_table


def test_builtin_table_loads_with_named_labels():
    table = load_table("builtin:breast_cancer")
    assert table.n_rows == 569 and len(table.schema) == 30
    assert table.labels == ("benign", "malignant")  # malignant is the rarer class: positive
    assert table.y.sum() == 212


def test_headerless_csv_with_target_by_index(tmp_path):
    rng = np.random.default_rng(0)
    rows = pd.DataFrame(rng.random((30, 4)).round(3))
    rows[4] = ["M"] * 18 + ["R"] * 12
    path = tmp_path / "sonar_like.csv"
    rows.to_csv(path, header=False, index=False)
    table = load_table(str(path), "-1", header=False)
    assert table.target == "col_4"
    assert [f.name for f in table.schema] == ["col_0", "col_1", "col_2", "col_3"]
    assert table.labels == ("M", "R") and table.y.sum() == 12


def test_missing_markers_and_categorical_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c,y\n1,?,x,0\n2,NA,y,1\n3,4,,0\n4,5,x,1\n")
    table = load_table(str(path), "y")
    kinds = {f.name: f.kind for f in table.schema}
    assert kinds == {"a": "numeric", "b": "numeric", "c": "categorical"}
    assert table.features["b"].isna().sum() == 2 and table.features["c"].isna().sum() == 1
    assert table.labels == ("0", "1")


def test_parquet_is_read(tmp_path):
    path = tmp_path / "t.parquet"
    make_mixed_table(40).to_parquet(path)
    table = load_table(str(path), "label")
    assert table.n_rows == 40 and table.labels[1] == "yes"


@pytest.mark.parametrize(
    ("labels", "counts", "expected"),
    [
        (["0", "1"], {"0": 10, "1": 90}, "1"),
        (["no", "yes"], {"no": 3, "yes": 9}, "yes"),
        (["M", "R"], {"M": 111, "R": 97}, "R"),
        (["absent", "present"], {"absent": 64, "present": 17}, "present"),
    ],
)
def test_default_positive_class(labels, counts, expected):
    assert choose_positive(labels, counts) == expected


def test_explicit_positive_and_drop(tmp_path):
    path = tmp_path / "t.csv"
    make_mixed_table(40).assign(row_id=range(40)).to_csv(path, index=False)
    table = load_table(str(path), "label", positive="no", drop=("row_id",))
    assert table.labels == ("yes", "no")
    assert "row_id" not in table.features


def test_splits_are_stratified_disjoint_and_complete():
    y = np.array([0] * 80 + [1] * 20)
    s = split_rows(y, 0.2, 0.25, seed=3)
    parts = [set(s.train), set(s.val), set(s.test)]
    assert sum(map(len, parts)) == 100 and set().union(*parts) == set(range(100))
    assert len(s.test) == 20 and y[s.test].sum() == 4 and y[s.val].sum() == 4
    again = split_rows(y, 0.2, 0.25, seed=3)
    assert np.array_equal(s.val, again.val)


@pytest.mark.parametrize(
    ("text", "target", "match"),
    [
        ("a,y\n1,0\n2,0\n3,0\n", "y", r"must have exactly 2 classes, found 1: 0 \(3\)"),
        ("a,y\n1,a\n2,b\n3,c\n", "y", r"found 3: a \(1\), b \(1\), c \(1\)"),
        ("a,y\n1,0\n2,1\n", "z", r"target column 'z' not found. Columns are: a, y"),
        ("a,y\n1,0\n2,1\n", "5", r"target index 5 is out of range for 2 columns"),
        ("y\n0\n1\n", "y", r"no feature column is left"),
        ("a,y\n1,\n2,NA\n3,?\n", "y", r"target 'y' has no value in any of its 3 rows. Pick the column"),
    ],
)
def test_unusable_tables_are_explained(tmp_path, text, target, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        load_table(str(path), target)


def test_id_like_text_column_is_refused(tmp_path):
    path = tmp_path / "ids.csv"
    pd.DataFrame({"name": [f"p{i}" for i in range(40)], "a": range(40), "y": [0, 1] * 20}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'name' looks like an id or free text \(40 distinct"):
        load_table(str(path), "y")


def test_too_few_rows_of_a_class():
    with pytest.raises(DataError, match=r"class 1 has only 3 rows"):
        split_rows(np.array([0] * 50 + [1] * 3), 0.2, 0.2, seed=0)


def test_infinite_values_are_missing_values_with_a_note(tmp_path):
    """One ``inf`` made every trial diverge, and the run blamed the space: now it is a missing value."""
    path = tmp_path / "t.csv"
    path.write_text("a,b,y\n1,inf,0\n2,3,1\n-inf,4,0\n4,5,1\n")
    table = load_table(str(path), "y")
    assert table.features["a"].isna().sum() == 1 and table.features["b"].isna().sum() == 1
    assert np.isfinite(table.features.to_numpy(dtype=float, na_value=0.0)).all()
    assert table.notes == ("column 'a': 1 infinite value(s) read as missing",
                           "column 'b': 1 infinite value(s) read as missing")


def test_rows_without_a_target_value_are_left_out_and_counted(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    frame["vote"] = np.where(frame["a"] > 0, "yes", "no")
    frame.loc[[3, 10, 11, 40], "vote"] = np.nan
    frame.loc[20, "vote"] = "?"
    path = tmp_path / "survey.csv"
    frame.to_csv(path, index=False)
    table = load_table(str(path), "vote")
    assert table.n_rows == 55 and len(table.features) == 55
    assert "left out 5 of 60 rows that have no value in target 'vote' (55 labelled rows remain)" in table.notes
    kept = frame.drop(index=[3, 10, 11, 20, 40]).reset_index(drop=True)
    np.testing.assert_allclose(table.features["a"].to_numpy(dtype=float), kept["a"].to_numpy())
    assert (table.y == (kept["vote"] == "yes").to_numpy()).all()
