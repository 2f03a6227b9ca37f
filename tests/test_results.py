"""The run folder: reserved atomically, never shared, never deleted by another run, published by a rename."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from search.errors import SpecError
from search.run_folder import reading as run_folder
from search.run_folder import writing as results


def test_a_chosen_name_that_is_taken_gets_a_suffix(tmp_path):
    first, _ = results.start_run(tmp_path, "bc-20261202T010000", chosen=True)
    second, final = results.start_run(tmp_path, "bc-20261202T010000", chosen=True)
    assert first != second and second.name == ".bc-20261202T010000-2.partial"
    assert final == tmp_path / "bc-20261202T010000-2" and first.is_dir()


def test_a_given_name_in_use_is_refused_and_left_alone(tmp_path):
    partial, _ = results.start_run(tmp_path, "mine")
    (partial / "trials.csv").write_text("trial_id\n")
    with pytest.raises(SpecError, match="--name mine: a run of that name is running or was interrupted"):
        results.start_run(tmp_path, "mine")
    assert (partial / "trials.csv").is_file()
    results.commit_run(partial, tmp_path / "mine")
    with pytest.raises(SpecError, match="exists already"):
        results.start_run(tmp_path, "mine")


def test_writes_are_atomic_and_json_is_plain(tmp_path):
    import numpy as np

    results.write_json(tmp_path / "x.json", {"a": np.float32(0.5), "b": [np.int64(3)], "c": float("nan")})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 0.5, "b": [3], "c": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]  # no temporary file left


def test_resume_refuses_a_folder_anyone_may_write(tmp_path):
    folder = tmp_path / "run"
    (folder / "tune").mkdir(parents=True)
    results.check_own_folder(folder)
    os.chmod(folder / "tune", 0o777)
    with pytest.raises(SpecError, match="writable by others"):
        results.check_own_folder(folder)


def test_trials_read_back_as_written(tmp_path):
    table = pd.DataFrame({"trial_id": ["a", "b"], "status": ["completed", "errored"], "best_roc_auc": [0.9, None]})
    results.write_csv(tmp_path / results.TRIALS, table)
    back = run_folder.read_trials(tmp_path)
    assert list(back["trial_id"]) == ["a", "b"] and back["best_roc_auc"].isna().tolist() == [False, True]
