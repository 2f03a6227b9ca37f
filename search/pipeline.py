"""The flow of one run: spec -> data and space -> encoded splits -> search -> results folder.

:func:`run_search` is the library's one entry point; the CLI is a thin layer over it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search import export, run_folder, tracking
from search.budget import RunClock, RunPlan, plan_run
from search.compute import cluster_devices
from search.data import Splits, Table, load_table, split_rows
from search.errors import DataError, HpsearchError, Interrupted, SearchError, first_line
from search.metrics import METRICS, ranked_trials
from search.network import resolve_config
from search.progress import Stage
from search.selection import HeadStart
from search.space import Space, load_space
from search.spec import RunSpec


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run produced."""

    run_dir: Path
    trials: pd.DataFrame
    best: dict[str, Any]
    searched: tuple[str, ...]
    final: export.RunSummary
    devices: dict[str, Any]


def prepare(spec: RunSpec) -> tuple[Space, Table, Splits]:
    """Everything that can fail on bad input, done before any folder is created or Ray started."""
    if spec.name and not spec.is_remote_results():
        run_folder.check_free(spec.results_root(), spec.name)
    if spec.mlflow:
        tracking.check_available(spec.mlflow_uri)
    table = load_table(spec.data, spec.target, header=spec.header, drop=spec.drop, positive=spec.positive)
    splits = split_rows(table.y, spec.test_size, spec.val_size, spec.seed)
    space = hypermodel_space(spec, table, splits) if spec.hypermodel else load_space(spec.space)
    if "class_weight" not in space.params and "class_weight" not in space.fixed:
        space = replace(space, fixed={**space.fixed, "class_weight": spec.class_weights(table.y)})
    if "numeric_embedding" in space.params or space.fixed.get("numeric_embedding") == "periodic":
        numbers = sum(f.kind == "numeric" for f in table.schema)  # the encoded matrix's first columns
        space = replace(space, fixed={**space.fixed, "numeric_columns": numbers})
    return space, table, splits


def hypermodel_space(spec: RunSpec, table: Table, splits: Splits) -> Space:
    """The space of ``--hypermodel``, found by building it on a sample of encoded training rows."""
    import keras  # noqa: F401 (Keras' backend first, to keep it off the GPUs, which the trials need)

    from search.compute import hide_gpus_in_process
    from search.data import fit_and_encode
    from search.network import discover_space

    hide_gpus_in_process()
    sample = splits.train[:256]
    _, (x,) = fit_and_encode(table.features.iloc[sample], table.schema)
    return discover_space(str(spec.hypermodel), x, table.y[sample].astype(np.float32))


def plan_for(spec: RunSpec, space: Space, splits: Splits) -> RunPlan:
    """The run's fidelity, CV rule and time budget for this table (search/budget.py)."""
    from search.space import SPACES_DIR

    builtin = Path(space.source).resolve().parent == SPACES_DIR
    return plan_run(spec, space, len(splits.train), len(splits.val), builtin)


def run_search(spec: RunSpec, on_progress: Callable[[Any], None] | None = None,
               prepared: tuple[Space, Table, Splits] | None = None, keep_table: bool = False) -> RunOutcome:
    """Run one search end to end (search, CV retrain, export, report) and publish ``results/<name>/``.

    Args:
        spec: the validated run request.
        on_progress: called with a :class:`Progress` snapshot as trials start and finish, and with a
            ``retrain.FitProgress`` as the CV fits finish.
        prepared: what :func:`prepare` returned for ``spec``, when the caller already has it.
        keep_table: keep the data file in the run folder (a DataFrame's), for ``retrain`` and ``resume``.

    Raises:
        HpsearchError: bad input (before anything is written), a search with no usable trial (its
            partial folder is removed), or a later stage's failure (the finished search is kept).
        Interrupted: Ctrl-C or SIGTERM once the search had started; the partial folder stays for ``resume``.
    """
    space, table, splits = prepared or prepare(spec)
    plan = plan_for(spec, space, splits)
    partial, final = run_folder.start_run(spec.results_root(), spec.run_name(), chosen=spec.name is None)
    from search.cluster import ray_session
    from search.tuning import run_trials

    clock = RunClock(plan.budget, Stage.SEARCH)
    try:  # (before the try below: a run that never began has no tracking to fail)
        run_tracking = tracking.start(spec.mlflow_uri, final.name, spec.model_dump(mode="json")) if spec.mlflow \
            else None
    except BaseException:
        run_folder.abandon_run(partial)  # nothing of the run exists yet
        raise

    try:
        encode = lambda: encode_and_import_tune(spec, plan, table, splits)  # noqa: E731
        with ray_session(spec.session_options(), while_starting=encode) as data:
            # the budget counts from here: Ray's start-up is not in it
            clock = RunClock(plan.budget, Stage.SEARCH, on_stage=on_progress)
            import_keras_meanwhile(spec, table)
            described = run_folder.describe_run(spec, plan, table, splits, final.name, keep_table)
            if keep_table:
                run_folder.keep_table(partial, spec.data)
            run_folder.write_json(partial / run_folder.SPEC, described)
            # begins in the search's tail; closed here too if the search fails or is stopped after it began
            with HeadStart(table, splits, plan.cv_rule, plan.cv_folds, spec.cv_options()) as head:
                trials = run_trials(spec.tuning_options(), plan.space, data, partial, head.watching(on_progress),
                                    grace_period=plan.fidelity.grace_period, deadline=clock.deadline(Stage.SEARCH),
                                    callbacks=(tracking.trial_logger(run_tracking),) if run_tracking else ())
                record_search(partial, spec, plan, table, data.metric, trials)
                clock.start(Stage.CV)
                finished = retrain_and_export(partial, spec, plan, table, splits, trials, clock, on_progress, head)
            devices = cluster_devices()
        outcome = _publish(spec, plan, trials, partial, final, clock, finished, devices, resumed=False)
    except BaseException as exc:
        if run_tracking:
            tracking.fail(run_tracking)
        _keep_if_resumable(partial, exc, clock.stage)
        raise
    if run_tracking:
        tracking.finish(run_tracking, Path(outcome.run_dir), trials, outcome.final, tracking.input_example(table))
    return outcome


def resume_run(run: str | Path, on_progress: Callable[[Any], None] | None = None) -> RunOutcome:
    """Continue an interrupted run (a ``results/.<name>.partial`` folder) from the stage it stopped in:
    the search if it was not finished, else the CV retrain, export and report.

    Raises:
        DataError: ``run`` is not an interrupted run, or its data changed since.
        Interrupted: stopped again; the folder stays for another ``resume``.
    """
    from search.cluster import ray_session
    from search.tuning import can_resume, resume_trials

    partial = run_folder.find_interrupted(run)
    run_folder.check_own_folder(partial)
    spec, plan, described = run_folder.read_run_spec(partial)
    searched = (partial / run_folder.TRIALS).is_file() and (partial / run_folder.BEST_CONFIG).is_file()
    if not searched and not can_resume(partial):
        raise DataError(f"{partial} holds no search state to resume (no Ray Tune experiment in it). "
                        f"Start a new run with `hpsearch run`.")
    table, splits = run_folder.reload_data(spec, described)
    final = partial.parent / described["name"]
    run_folder.check_free(partial.parent, final.name)
    clock = RunClock(plan.budget, Stage.CV if searched else Stage.SEARCH, on_stage=on_progress)
    try:
        with ray_session(spec.session_options()):
            if searched:
                trials = run_folder.read_search_trials(partial)
            else:  # Tune keeps the search's own time budget
                data = encode_for_trials(spec, plan, table, splits)
                trials = resume_trials(spec.tuning_options(), plan.space, data, partial, on_progress)
                record_search(partial, spec, plan, table, data.metric, trials)
                clock.start(Stage.CV)
            searched_s = clock.seconds
            clock = RunClock.after_search(plan.budget, on_progress)  # the later stages get their shares from now
            clock.seconds.update(searched_s)
            finished = retrain_and_export(partial, spec, plan, table, splits, trials, clock, on_progress)
            devices = cluster_devices()
        return _publish(spec, plan, trials, partial, final, clock, finished, devices, resumed=True)
    except BaseException as exc:
        _keep_if_resumable(partial, exc, clock.stage)
        raise


def record_search(partial: Path, spec: RunSpec, plan: RunPlan, table: Table, metric: str,
                  trials: pd.DataFrame) -> dict[str, Any]:
    """Write the search's results (trials.csv, epochs.csv, best_config.json, and trial_errors.txt when a
    trial failed): from here on the run resumes at the CV stage, and no later failure removes them.
    When every trial failed, trial_errors.txt is kept beside the run folder, which is then removed."""
    errors_file = run_folder.write_trial_errors(partial, trials)  # and logged, shown under --debug
    try:
        best = best_trial(trials, metric)
    except SearchError as exc:
        if errors_file is None:
            raise
        kept = run_folder.keep_beside(errors_file, partial)
        raise SearchError(f"{exc} Each failed trial's traceback is in {kept}.") from None
    best_config = {
        "trial_id": best["trial_id"],
        "hyperparameters": resolve_config(plan.space.config_of(best)),
        "metric": metric,
        "mode": METRICS[metric],
        "value": best[f"best_{metric}"],
        "best_epoch": best["best_epoch"],
        "epochs_trained": best["epochs"],
        "max_epochs": plan.fidelity.max_epochs,
        "seed": spec.seed,
        "data": table.source,
        "data_sha256": table.sha256,
    }
    run_folder.write_csv(partial / run_folder.EPOCHS, run_folder.epoch_history(partial, metric))
    run_folder.write_json(partial / run_folder.BEST_CONFIG, best_config)
    run_folder.write_csv(partial / run_folder.TRIALS, trials)  # last: its presence means the search is recorded
    return best_config


def _publish(spec: RunSpec, plan: RunPlan, trials: pd.DataFrame, partial: Path, final: Path, clock: RunClock,
             finished: export.RunSummary, devices: dict[str, Any], *, resumed: bool) -> RunOutcome:
    """After the CV, final fit and export (Ray may be stopping meanwhile): the report, then publish the folder."""
    import json

    from search.report import render_report

    clock.start(Stage.REPORT)
    run_folder.write_json(partial / run_folder.TIMING, clock.timing(resumed=resumed))  # the report shows it
    finished = replace(finished, against_boosting=render_report(partial).get("against_boosting", ""))
    clock.start(Stage.DONE)
    run_folder.write_json(partial / run_folder.TIMING, clock.timing(resumed=resumed))
    best_config = json.loads((partial / run_folder.BEST_CONFIG).read_text())
    run_dir = run_folder.commit_run(partial, final)
    if spec.is_remote_results():
        run_dir = run_folder.upload_run(run_dir, spec.results)  # type: ignore[assignment]
    return RunOutcome(run_dir, trials, best_config, tuple(plan.space.params), finished, devices)


def import_keras_meanwhile(spec: RunSpec, table: Table) -> None:
    """Import Keras (TensorFlow: 4-8 CPU-seconds on 2 cores) in the background while the search runs,
    where the driver will build the export: a table with categorical columns (Keras on JAX takes no
    strings), a cluster or GPUs (no CV worker here to build it), or a SavedModel asked for. Elsewhere a
    CV worker builds it and the driver never imports Keras. A later ``import keras`` waits for this one."""
    import sys

    from search.compute import in_background_silenced
    from search.selection import FitWorkers

    compute = spec.compute()
    built_by_a_worker = FitWorkers.possible(compute) and FitWorkers.can_build(compute, table.schema)
    if "keras" in sys.modules or (built_by_a_worker and not spec.export_savedmodel):
        return

    def load() -> None:
        import keras  # noqa: F401

    in_background_silenced(load, "hpsearch-keras-import")  # TensorFlow's C++ start-up lines off


def _keep_if_resumable(partial: Path, exc: BaseException, stage: Stage) -> None:
    """Ctrl-C or SIGTERM after the search started keeps the partial folder for ``resume``; so does any
    failure after the search finished (the search is never lost). A failed search is removed, and said so."""
    from search.compute import stop_requested

    if isinstance(exc, Interrupted):
        return
    searched = (partial / run_folder.TRIALS).is_file()
    how = "SIGTERM" if stop_requested() else "Ctrl-C"
    if isinstance(exc, KeyboardInterrupt) and (searched or (partial / run_folder.EXPERIMENT_DIR).is_dir()):
        raise Interrupted(f"stopped by {how} during the {stage} stage.", partial) from None
    if searched and isinstance(exc, Exception):
        raise SearchError(f"the {stage} stage failed ({first_line(exc)[:200]}); the finished search is kept "
                          f"in {partial}. Continue with `hpsearch resume {partial}` once the cause is fixed.") from None
    run_folder.abandon_run(partial)
    if isinstance(exc, HpsearchError):  # say which: kept for resume (above), or gone
        raise type(exc)(f"{exc} Nothing of the run was kept.") from None


def retrain_run(run_dir: str | Path, *, top_k: int | None = None, folds: int | None = None,
                repeats: int | None = None, threshold: float | None = None, threshold_rule: str | None = None,
                ensemble: bool | None = None, ensemble_members: int | None = None) -> export.RunSummary:
    """Redo the CV retrain and the export of a finished search, from its folder alone (and its data)."""
    from search.cluster import ray_session
    from search.report import render_report

    folder = Path(run_dir).resolve()
    overrides = {"top_k": top_k, "folds": folds, "repeats": repeats, "threshold": threshold,
                 "threshold_rule": threshold_rule, "ensemble": ensemble, "ensemble_members": ensemble_members}
    spec, plan, described = run_folder.read_run_spec(folder, overrides)
    trials = run_folder.read_search_trials(folder)
    table, splits = run_folder.reload_data(spec, described)
    with ray_session(spec.session_options()):
        finished = retrain_and_export(folder, spec, plan, table, splits, trials, RunClock.after_search(plan.budget),
                                      None)
    return replace(finished, against_boosting=render_report(folder).get("against_boosting", ""))


def retrain_and_export(run_dir: Path, spec: RunSpec, plan: RunPlan, table: Table, splits: Splits,
                       trials: pd.DataFrame, clock: RunClock, on_progress: Callable[[Any], None] | None,
                       head: HeadStart | None = None) -> export.RunSummary:
    """CV of the top-k configurations, the final fit, the test score and the export, each by its deadline.

    Writes ``cv.json``, ``oof.parquet``, ``test.json`` and ``test_predictions.parquet`` (when a test
    part was held out) and ``model/``; returns a summary. ``clock`` times the stages and gives their deadlines;
    ``head`` holds the CV's workers and baselines if the search started them (search/selection/head_start.py).
    """
    from search.data import raw_inputs
    from search.selection import TUNED_BOOSTING, build_export, cross_validate, fit_final_model, pick_candidates

    options = spec.cv_options()
    candidates = pick_candidates(trials, options.metric, options.candidates, plan.space, keep=options.keep)
    max_epochs = int(math.ceil(plan.fidelity.max_epochs))
    head = head or HeadStart(table, splits, plan.cv_rule, plan.cv_folds, options)
    rest = head.rest
    try:
        head.begin(ends_by=clock.deadline(Stage.CV))  # the baselines (in this process) run beside the CV
        cv = cross_validate(table, splits, candidates, metric=options.metric, rule=plan.cv_rule, folds=plan.cv_folds,
                            repeats=head.repeats, seed=options.seed, compute=options.compute,
                            threshold=options.threshold, max_epochs=max_epochs, deadline=clock.deadline(Stage.CV),
                            threshold_rule=options.threshold_rule, on_progress=on_progress, workers=head.workers,
                            ensemble_members=options.ensemble_members, ensemble_min_rows=options.ensemble_min_rows)
        clock.start(Stage.BASELINES)  # what is left of them
        baselines, tuned = head.baselines()
        run_folder.write_json(run_dir / run_folder.CV, {**cv.to_json(), "baselines": baselines})
        run_folder.write_parquet(run_dir / run_folder.OOF, cv.oof)

        clock.start(Stage.FINAL_FIT)
        final = fit_final_model(cv, table, rest, options.seed, options.compute, clock.deadline(Stage.FINAL_FIT),
                                head.workers)
        clock.start(Stage.EXPORT)
        test_inputs = raw_inputs(table.features.iloc[splits.test], table.schema) if len(splits.test) else None
        built = build_export(final, table.schema, export.check_inputs(table), test_inputs,
                             head.workers.builder(table.schema))
    finally:
        head.close()

    test: dict[str, Any] | None = None
    if built.test_probability is not None:
        probability, each = built.test_probability, built.network_test_probability  # an ensemble: each network too
        test = export.score_test(table.y[splits.test], probability, cv.threshold, None if each is None else
                                 export.member_probabilities(final.networks, each))
        on_test = {**{n: b["test"] for n, b in baselines.items()}, TUNED_BOOSTING: tuned["test"]}
        run_folder.write_json(run_dir / run_folder.TEST, {**test, "trained_on": final.trained_on, "baselines": on_test,
                                                    "tuned_boosting": {k: v for k, v in tuned.items() if k != "test"}})
        run_folder.write_parquet(run_dir / run_folder.TEST_PREDICTIONS,
                              pd.DataFrame({"row": splits.test, "y": table.y[splits.test], "probability": probability}))
    return export.export_model(run_dir, spec.export_options(), table, cv, built, final, test)


def encode_and_import_tune(spec: RunSpec, plan: RunPlan, table: Table, splits: Splits) -> Any:
    """:func:`encode_for_trials`, then Ray Tune's import (1 s alone, 3-4 s on 2 busy cores), while Ray
    starts: the driver mostly waits on Ray's processes then."""
    from search.tuning import import_tune

    data = encode_for_trials(spec, plan, table, splits)
    import_tune()
    return data


def encode_for_trials(spec: RunSpec, plan: RunPlan, table: Table, splits: Splits) -> Any:
    """Fit the preprocessing on the trials' training part only, and encode train and validation once
    (the validation part as the fixed stratified sample the trials score, on big tables)."""
    from search.data import fit_and_encode
    from search.tuning import TrialData

    val = splits.val
    if plan.fidelity.eval_rows < len(val):
        from sklearn.model_selection import train_test_split

        val = np.sort(train_test_split(val, train_size=plan.fidelity.eval_rows, stratify=table.y[val],
                                       random_state=spec.seed)[0])
    _, (x_train, x_val) = fit_and_encode(table.features.iloc[splits.train], table.schema, table.features.iloc[val])
    return TrialData(
        x_train=x_train,
        y_train=table.y[splits.train].astype(np.float32),
        x_val=x_val,
        y_val=table.y[val],
        metric=spec.metric,
        max_epochs=plan.fidelity.max_epochs,
        seed=spec.seed,
        fixed=plan.space.config_of({}),
        checkpoint_every=spec.checkpoint_every,
        compute=spec.compute(),
        reports_per_epoch=plan.fidelity.reports_per_epoch,
    )


def best_trial(trials: pd.DataFrame, metric: str) -> dict[str, Any]:
    """The trial with the best validation score; fewer epochs wins a tie. No usable trial is an error."""
    ranked = ranked_trials(trials, metric)
    if ranked.empty:
        counts = trials["status"].value_counts().to_dict()
        errors = trials.loc[trials["error"].fillna("").astype(str) != "", "error"].astype(str)
        if len(errors):
            common = errors.value_counts()
            cause = f" The most common error ({int(common.iloc[0])} of {len(trials)} trials): {common.index[0]}"
        elif counts.get("diverged"):
            cause = (f" {counts['diverged']} of {len(trials)} trials diverged: their loss or predictions became NaN "
                     f"or infinite.")
        else:
            cause = ""
        raise SearchError(f"all {len(trials)} trials failed ({counts}).{cause}")
    return ranked.head(1).to_dict("records")[0]


