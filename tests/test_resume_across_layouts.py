"""A search interrupted under the old layout (every module directly in search/) resumes under today's:
Ray pickled the old import paths into tuner.pkl, and the alias modules keep them importable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow
OLD_RUN = Path(__file__).resolve().parent / "data" / "old_layout_run" / ".old-layout.partial"


def test_a_run_interrupted_under_the_old_layout_resumes_to_completion(tmp_path):
    assert b"search.callbacks" in (OLD_RUN / "tune" / "tuner.pkl").read_bytes()  # the old path is what Ray reads
    shutil.copytree(OLD_RUN, tmp_path / "out" / OLD_RUN.name)

    result = run_cli(["resume", "out/old-layout"], cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "out" / "old-layout"
    assert not (tmp_path / "out" / OLD_RUN.name).exists()
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    assert len(trials) == 3 and set(trials["status"]) == {"completed"}, trials.to_string()
    assert trials["restored_from"].max() == 2, "the trial stopped mid-way went on from its epoch-2 checkpoint"
    assert json.loads((run_dir / "cv.json").read_text())["winner"] in set(trials["trial_id"])
    assert (run_dir / "model" / "model.keras").is_file() and (run_dir / "report.html").is_file()
