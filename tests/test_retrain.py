"""The CV stage's choices, each on its own: which trials become candidates, which candidate wins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from search.errors import SearchError
from search.pipeline import best_trial
from search.selection.cv import CandidateScore, _winner, pick_candidates
from search.space import IntParam, Space


def _trials(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["trial_id", "status", "best_roc_auc", "best_log_loss", "best_epoch", "width",
                                       "error"])


TRIALS = _trials([
    ("a", "completed", 0.90, 0.30, 12, 32, ""),
    ("b", "stopped early", 0.95, 0.20, 4, 64, ""),
    ("c", "errored", 0.99, 0.10, 3, 16, "ValueError: boom"),
    ("d", "diverged", None, None, 2, 16, ""),
    ("e", "completed", 0.95, 0.25, 3, 128, ""),
    ("f", "completed", 0.80, 0.15, 30, 8, ""),
])


def test_candidates_are_the_usable_trials_best_first_ties_to_fewer_epochs():
    picked = pick_candidates(TRIALS, "roc_auc", 3, Space("s", {"width": IntParam(8, 128)}, {"depth": 2}))
    assert [c.trial_id for c in picked] == ["e", "b", "a"]  # e and b tie at 0.95: e trained fewer epochs
    assert picked[0].hyperparameters["width"] == 128 and picked[0].hyperparameters["depth"] == 2
    assert [c.epochs for c in picked] == [3, 4, 12]


def test_log_loss_ranks_the_lowest_first():
    assert [c.trial_id for c in pick_candidates(TRIALS, "log_loss", 2, Space("s", {"width": IntParam(8, 128)}))] == ["f", "b"]


def test_best_trial_follows_the_same_ranking():
    assert best_trial(TRIALS, "roc_auc")["trial_id"] == "e"
    assert best_trial(TRIALS, "log_loss")["trial_id"] == "f"


def test_no_usable_trial_names_the_commonest_error():
    failed = TRIALS[TRIALS["status"].isin(["errored", "diverged"])]
    with pytest.raises(SearchError, match=r"all 2 trials failed.*most common error \(1 of 2 trials\): ValueError: boom"):
        best_trial(failed, "roc_auc")


def _summary(mean: float, depth: int, width: int, diverged: int = 0, skipped: int = 0) -> CandidateScore:
    return CandidateScore(f"{depth}x{width}", {"depth": depth, "width": width}, 3, 3, diverged, skipped, {"roc_auc": mean},
                          {"roc_auc": 0.0}, [{"roc_auc": mean}], [mean])


def test_the_winner_is_the_best_mean_and_the_smaller_network_on_a_tie():
    assert _winner([_summary(0.91, 2, 64), _summary(0.93, 3, 256), _summary(0.92, 1, 8)], "roc_auc") == 1
    assert _winner([_summary(0.93001, 3, 256), _summary(0.93004, 2, 64)], "roc_auc") == 1  # equal to 4 decimals


def test_a_candidate_the_deadline_cut_short_wins_only_where_none_is_fully_scored():
    cut = _summary(0.95, 1, 8, skipped=3)
    assert _winner([cut, _summary(0.90, 2, 64), _summary(0.91, 3, 256)], "roc_auc") == 2
    assert _winner([_summary(0.90, 2, 64, skipped=1), cut], "roc_auc") == 1  # all cut short: the best mean


def test_a_candidate_with_a_diverged_fold_cannot_win():
    assert _winner([_summary(0.99, 1, 8, diverged=1), _summary(0.90, 2, 64)], "roc_auc") == 1
    with pytest.raises(SearchError, match="every CV candidate diverged"):
        _winner([_summary(0.99, 1, 8, diverged=2)], "roc_auc")


@pytest.mark.slow
def test_folds_of_different_widths_train_in_their_own_programs(tmp_path):
    """A column with one missing value gives a missing-value indicator only to the folds whose training
    rows hold it: those folds' encoded matrices are one column wider, and cannot share a program."""
    from tests.conftest import REPO, make_mixed_table, run_cli

    frame = make_mixed_table(n=120).assign(beta=lambda f: f["beta"].fillna(0.0))
    frame.loc[5, "beta"] = None
    frame.to_csv(tmp_path / "one_gap.csv", index=False)
    proc = run_cli(["run", str(tmp_path / "one_gap.csv"), "--target", "label", "--samples", "2", "--max-epochs", "2",
                    "--top-k", "2", "--folds", "5", "--repeats", "1", "--cpus", "2", "--results", str(tmp_path / "out"),
                    "--name", "gap", "--quiet"], cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    cv = json.loads((tmp_path / "out" / "gap" / "cv.json").read_text())
    assert all(len(c["fold_scores"]) == 5 for c in cv["candidates"])


HEAD_START_CHECK = """
import json, sys, time
import numpy as np
import ray
from search.data.table import load_table, split_rows
from search.compute.devices import Compute
from search.selection.head_start import HeadStart
from search.progress import Progress
from search.cluster.session import ray_session
from search.selection.cv import Candidate, cross_validate
from search.spec import RunSpec

spec = RunSpec(data=sys.argv[1], target="label", cpus=2, backend="jax", folds=3, repeats=1)
table = load_table(spec.data, spec.target)
splits = split_rows(table.y, spec.test_size, spec.val_size, spec.seed)
candidates = [Candidate("a", {"depth": 1, "width": 8, "batch_size": 16, "learning_rate": 0.01}, 3),
              Candidate("b", {"depth": 2, "width": 16, "batch_size": 32, "dropout": 0.2, "numeric_embedding": "periodic",
                              "numeric_columns": 2}, 3)]
args = dict(metric="roc_auc", rule="cv", folds=3, repeats=1, seed=0, compute=spec.compute(), threshold=None,
            max_epochs=3, deadline=1e12)
out = {}
with ray_session(spec.session_options()):
    head = HeadStart(table, splits, "cv", 3, spec.cv_options())
    watch = head.watching(None)
    watch(Progress(total=4, metric="roc_auc", running=2, finished=1))  # a trial is yet to start: no head start
    out["early"] = len(head.workers.actors)
    watch(Progress(total=4, metric="roc_auc", running=1, finished=3))  # all started, a core free for good
    out["actors"] = len(head.workers.actors)
    out["ready"] = ray.get([a.__ray_ready__.remote() for a in head.workers.actors])
    on_actors = cross_validate(table, splits, candidates, workers=head.workers, **args)
    baselines, tuned = head.baselines()
    out["baselines"], out["tuned"] = sorted(baselines), sorted(tuned["test"])
    first = head.workers.first()
    head.close()
    out["closed"] = False
    for _ in range(60):  # ray.kill is asynchronous: a call made at once may still be served
        try:
            ray.get(first.__ray_ready__.remote(), timeout=5)
        except ray.exceptions.RayActorError:
            out["closed"] = True
            break
        time.sleep(0.5)
    as_tasks = cross_validate(table, splits, candidates, **args)
out["scores"] = [[[f["roc_auc"], f["log_loss"]] for f in c.fold_scores] for c in on_actors.candidates]
out["task_scores"] = [[[f["roc_auc"], f["log_loss"]] for f in c.fold_scores] for c in as_tasks.candidates]
print(json.dumps(out))
"""


def test_the_cvs_workers_start_in_the_searchs_tail_and_fit_as_tasks_do(tmp_path):
    """Once every trial has started and a core is free, the CV's actors start (Keras imported) and the
    baselines begin; the folds they fit score as Ray tasks' fits do, and closing ends the actors."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO, make_mixed_table

    make_mixed_table(n=120).to_csv(tmp_path / "mixed.csv", index=False)
    done = subprocess.run([sys.executable, "-c", HEAD_START_CHECK, str(tmp_path / "mixed.csv")], cwd=REPO,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["early"] == 0 and out["actors"] == 2 and out["closed"]
    assert "logistic regression" in " ".join(out["baselines"]) and "roc_auc" in out["tuned"]
    assert len(out["scores"]) == 2 and all(len(c) == 3 for c in out["scores"])
    np.testing.assert_allclose(np.array(out["scores"]), np.array(out["task_scores"]), atol=1e-5)


def test_tuned_boosting_keeps_to_the_cv_stages_end(tmp_path):
    """Tuned boosting runs beside the CV and must not hold the run past the CV stage: with its end in the
    past it tries one configuration and stops; without an end it tries all of them."""
    import time

    from search.data import load_table, split_rows
    from search.selection.baselines import TUNED_CANDIDATES, tuned_boosting
    from tests.conftest import make_mixed_table

    make_mixed_table(n=200).to_csv(tmp_path / "mixed.csv", index=False)
    table = load_table(str(tmp_path / "mixed.csv"), "label")
    splits = split_rows(table.y, 0.2, 0.2, 0)
    rest = np.sort(np.concatenate([splits.train, splits.val]))
    late = tuned_boosting(table, rest, splits.test, 0, deadline=lambda: time.time() - 1)
    free = tuned_boosting(table, rest, splits.test, 0)
    assert late["candidates"] == 1 and free["candidates"] == TUNED_CANDIDATES
    assert 0 <= late["test"]["roc_auc"] <= 1 and late["params"] != {}
