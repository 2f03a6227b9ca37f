"""The run's plan from the table's size: fidelity, batch sizes, CV rule and the budget's split (no Ray, no Keras)."""

from __future__ import annotations

import numpy as np
import pytest

from search.budget import SHARES_KFOLD, RunClock, default_budget_s, plan_from_json, plan_run
from search.metrics import score_all
from search.progress import Stage
from search.selection.cv import _cv_epochs, best_cutoff, choose_threshold
from search.space import Space, load_space
from search.spec import RunSpec


def plan(train: int, val: int, builtin: bool = True, **options):
    return plan_run(RunSpec(**options), load_space("default"), train, val, builtin)


def test_a_small_table_keeps_todays_search():
    p = plan(364, 91)
    assert (p.fidelity.max_epochs, p.fidelity.grace_period, p.fidelity.reports_per_epoch) == (60, 4, 1)
    assert p.space == load_space("default") and (p.cv_rule, p.cv_folds) == ("kfold", 5)
    assert p.budget.chosen and p.budget.total_s == pytest.approx(default_budget_s(455))
    assert p.fidelity.eval_rows == 91 and not p.fidelity.notes


def test_a_big_table_gets_fractional_epochs_bigger_batches_and_the_holdout_rule():
    small, big = plan(364, 91), plan(160_000, 40_000)
    assert big.fidelity.max_epochs < small.fidelity.max_epochs
    assert 0 < big.fidelity.grace_period < 4 and big.fidelity.reports_per_epoch == 2
    assert min(big.space.params["batch_size"].values) > min(small.space.params["batch_size"].values)
    assert big.cv_rule == "holdout" and big.fidelity.eval_rows == 20_000
    assert big.budget.total_s > small.budget.total_s and big.budget.stages["final fit"] == 0
    lines = "\n".join(big.describe())
    assert "budget" in lines and "search" in lines and "batch sizes" in lines and "validation part" in lines


def test_the_users_values_win():
    p = plan(160_000, 40_000, max_epochs=7, grace_period=0.5, folds=3, time_budget=90)
    assert (p.fidelity.max_epochs, p.fidelity.grace_period) == (7, 0.5)
    assert (p.cv_rule, p.cv_folds) == ("kfold", 3)
    assert p.budget.total_s == 90 and not p.budget.chosen
    # a space file of the user's own is used as written: its batch sizes are not scaled
    own = plan(160_000, 40_000, builtin=False)
    assert own.space.params["batch_size"] == load_space("default").params["batch_size"]


def test_deadlines_add_up_the_shares_and_pass_unused_time_on():
    p = plan(364, 91, time_budget=100)
    assert p.budget.deadline(Stage.SEARCH, 1000.0) == pytest.approx(1000 + 100 * SHARES_KFOLD["search"])
    assert p.budget.deadline(Stage.CV, 1000.0) == pytest.approx(1000 + 100 * (SHARES_KFOLD["search"] + SHARES_KFOLD["cv"]))
    assert p.budget.deadline(Stage.EXPORT, 1000.0) == p.budget.deadline(Stage.REPORT, 1000.0) == pytest.approx(1100)
    with pytest.raises(KeyError):
        p.budget.deadline(Stage.BASELINES, 0)  # the baselines run inside the CV's share


def test_the_clock_and_the_recorded_plan_spell_each_stage_alike(tmp_path):
    """The clock's stage names, the budget's shares (spec.json) and timing.json's keys come from one list:
    the deadline of the stage the clock is in is found, and its seconds land under its own key."""
    p = plan(364, 91, time_budget=100)
    clock = RunClock(p.budget, Stage.SEARCH, started=0.0)
    for stage in (Stage.CV, Stage.BASELINES, Stage.FINAL_FIT, Stage.EXPORT, Stage.REPORT, Stage.DONE):
        if stage.budget_share in p.budget.stages:
            assert clock.deadline(stage) > 0
        clock.start(stage)
    assert set(clock.timing()) == {"search_s", "cv_s", "baselines_s", "final_fit_s", "export_s", "report_s",
                                   "budget_s", "total_s"}
    assert set(p.budget.stages) == {s.budget_share for s in Stage if s not in (Stage.BASELINES, Stage.DONE)}


def test_a_recorded_plan_reads_back_without_scaling_again():
    p = plan(160_000, 40_000)
    again = plan_from_json(p.to_json(), p.space)
    assert again.space == p.space and again.fidelity.max_epochs == p.fidelity.max_epochs
    assert again.budget.total_s == pytest.approx(p.budget.total_s) and again.cv_rule == "holdout"
    assert plan_from_json(p.to_json(), p.space, folds=4).cv_rule == "kfold"


def test_an_explicit_empty_space_plans_too():
    space = Space(name="tiny", params={}, fixed={"epochs": 3})
    p = plan_run(RunSpec(), space, 50_000, 12_000, True)
    assert p.fidelity.max_epochs <= 3 and p.cv_rule == "kfold"


@pytest.mark.parametrize("rule", ["accuracy", "f1"])
def test_the_vectorised_threshold_matches_every_threshold_tried(rule):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.35 * y + 0.65 * rng.random(400), 0, 1).round(3)
    threshold, score = best_cutoff(y, p, rule)
    best = max(score_all(y, p, t)[rule] for t in np.unique(p))
    assert score_all(y, p, threshold)[rule] == pytest.approx(best) == pytest.approx(score)
    if rule == "f1":
        assert choose_threshold(y, p, rule)[0] == threshold


def test_accuracy_keeps_0_5_unless_another_threshold_is_clearly_better():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.2, 200), 0, 1)  # centred: 0.5 is as good as any
    threshold, rule_text = choose_threshold(y, p, "accuracy")
    assert best_cutoff(y, p, "accuracy")[1] > score_all(y, p, 0.5)["accuracy"]  # a luckier cut-off exists...
    assert threshold == 0.5 and "0.5" in rule_text  # ...but within the rows' noise
    shifted = np.clip(p + 0.3, 0, 1)  # every probability 0.3 too high: 0.5 calls most negatives positive
    threshold, rule_text = choose_threshold(y, shifted, "accuracy")
    assert threshold > 0.65 and score_all(y, shifted, threshold)["accuracy"] == best_cutoff(y, shifted, "accuracy")[1]


def test_a_fold_that_stopped_early_counts_with_its_last_score():
    # fold 1 stopped after 2 epochs: its last score stands for epochs 3-4
    assert _cv_epochs([[0.5, 0.6, 0.7, 0.65], [0.6, 0.7]], "roc_auc") == 3
    assert _cv_epochs([[0.9, 0.5], [0.4, 0.3]], "log_loss") == 2


def test_cv_patience_only_on_big_tables():
    from search.selection.cv import patience_for

    assert patience_for(60, 364) == 60  # small: every fold trains the full trial, as before
    assert patience_for(17, 128_000) == 4 and patience_for(60, 50_000) == 10
