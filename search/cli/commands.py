"""The ``hpsearch`` command: argument parsing, console output and exit codes, nothing else.

Every :class:`HpsearchError` becomes ``error: <message>`` on one line and exit code 2.
Heavy imports (TensorFlow, Ray) happen inside the commands, never at import time.
"""

from __future__ import annotations

import inspect
import sys
import typing
from pathlib import Path

import typer
from rich.table import Table as RichTable
from rich.text import Text

from search.cli.app import app, guard, quiet_libraries, spec_from
from search.cli.console import err, out, print_final, print_json, print_report, print_summary, progress_display
from search.errors import SpecError


@app.command()
def run(
    data: str = typer.Argument("builtin:breast_cancer", help="CSV or Parquet file, or builtin:breast_cancer."),
    target: str | None = typer.Option(None, help="Target column name, or index (-1 = last). Default: the last column."),
    no_header: bool = typer.Option(False, "--no-header", help="The CSV has no header row."),
    positive: str | None = typer.Option(None, help="Label of class 1. Default: 1/true/yes, else the rarer class."),
    drop: list[str] = typer.Option([], "--drop", help="Column to leave out (an id, a leak); repeat for more."),
    space: str = typer.Option("default", help="Space name in spaces/ or a path to a .yaml file."),
    hypermodel: str | None = typer.Option(None, help="Your own model instead: FILE.py:build_model, a KerasTuner "
                                          "build_model(hp) or HyperModel; its space is its hyperparameters."),
    name: str | None = typer.Option(None, help="Run name: results go to RESULTS/NAME. Default: <data>-<UTC time>."),
    results: str = typer.Option("results", help="Folder for run outputs."),
    metric: str = typer.Option("roc_auc", metavar="[roc_auc|accuracy|f1|log_loss]",
                               help="The metric the search maximises (log_loss: minimises)."),
    samples: int = typer.Option(40, help="Number of trials (configurations sampled)."),
    max_epochs: int | None = typer.Option(None, help="Epochs of a full trial. Default: the space's fixed.epochs, "
                                          "fewer on tables of over 10,000 training rows."),
    grace_period: float | None = typer.Option(None, help="ASHA: epochs before a trial can be stopped (fractions "
                                              "allowed). Default: 4, or a fifteenth of a full trial on big tables."),
    reduction_factor: float = typer.Option(3.0, help="ASHA: keep 1/factor of the trials at each rung."),
    searcher: str = typer.Option("random", metavar="[random|optuna]", help="random, or optuna (TPE)."),
    seed: int = typer.Option(0, help="Seed of the splits, the sampled configurations and the weights."),
    cpus: int | None = typer.Option(None, help="CPUs for the local Ray. Default: all."),
    cpus_per_trial: float = typer.Option(1.0, help="CPUs each trial reserves; trials run concurrently up to the CPUs."),
    gpus_per_trial: float = typer.Option(0.0, help="GPUs each trial reserves (fractions allowed)."),
    time_budget: float | None = typer.Option(None, help="Seconds the whole run may take (search, CV, final fit, "
                                             "export, report). Default: 300 + 1 ms per non-test row."),
    test_size: float = typer.Option(0.2, help="Share of rows held out from the search for the final test."),
    val_size: float = typer.Option(0.2, help="Share of the remaining rows the trials validate on."),
    top_k: int | None = typer.Option(None, help="Best configurations re-scored by stratified k-fold CV. Default: 3, "
                                     "or with the ensemble as many as --ensemble-members (the best 3, then the best "
                                     "of other network shapes)."),
    ensemble: bool | None = typer.Option(None, "--ensemble/--no-ensemble", help="Export the weighted mean of the CV's "
                                         "best networks where it beats the winner alone, cross-validated. Default: on "
                                         "tables of 1,000 non-test rows or more; --ensemble on any table."),
    ensemble_members: int = typer.Option(5, help="Most networks in the ensemble."),
    folds: int | None = typer.Option(None, help="CV folds. Default: 5, or the search's validation part when it "
                                     "holds over 20,000 rows."),
    repeats: int | None = typer.Option(None, help="CV repeats. Default: 3 below 300 non-test rows, else 1."),
    class_weight: str = typer.Option("auto", metavar="[auto|balanced|none]",
                                     help="balanced, none, or auto: balanced when a class is under 30%."),
    threshold: float | None = typer.Option(None, help="Fix the decision threshold instead of choosing it."),
    threshold_rule: str = typer.Option("auto", metavar="[auto|youden|accuracy|f1]",
                                       help="How the threshold is chosen out of fold: youden, accuracy, "
                                       "f1, or auto (accuracy/f1 for those metrics, else youden)."),
    export_savedmodel: bool = typer.Option(False, "--export-savedmodel", help="Also write a TF SavedModel."),
    address: str | None = typer.Option(None, envvar="RAY_ADDRESS", show_envvar=True,
                                       help="An existing Ray cluster: auto, ray://HOST:10001 or HOST:6379."),
    checkpoint_every: int = typer.Option(5, help="Checkpoint each trial every N epochs (0: never), for retries."),
    max_failures: int = typer.Option(2, help="Retries of a trial whose worker or node was lost."),
    backend: str = typer.Option("jax", metavar="[jax|tensorflow]",
                                help="Keras backend of the trials, CV and final fits."),
    mixed_precision: bool = typer.Option(False, "--mixed-precision",
                                         help="Train in float16 with float32 weights (GPUs); the export is float32."),
    mlflow: bool = typer.Option(False, "--mlflow", help="Track the run and its trials in MLflow (pip install "
                                "'hpsearch[mlflow]').", rich_help_panel="MLflow"),
    mlflow_uri: str | None = typer.Option(None, help="MLflow tracking URI. Default: sqlite:///mlflow.db here "
                                          "(artifacts in ./mlruns).", rich_help_panel="MLflow"),
    from_spec: str | None = typer.Option(None, "--from-spec", hidden=True, help="Run a spec written by submit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Search for the best MLP configuration on a table and save the results."""
    options = dict(locals())
    guard(lambda: _run(options, quiet))


def _run(options: dict, quiet: bool) -> None:

    spec = spec_from(options)
    if spec.address:
        from search.cluster import use_cluster_token

        use_cluster_token()  # before Ray is imported: it reads RAY_AUTH_MODE once
    from search.pipeline import plan_for, prepare, run_search

    if spec.hypermodel:
        quiet_libraries()  # Keras is imported to find the hypermodel's space
    space, table, splits = prepare(spec)  # fail fast, before the slow imports
    if not quiet:
        out.print(Text.assemble(
            ("hpsearch", "bold"),
            f": {table.source} ({table.n_rows} rows, {len(table.schema)} features, "
            f"positive class '{table.labels[1]}'), space {space.name}, {spec.samples} trials, "
            f"metric {spec.metric}, {len(splits.train)}/{len(splits.val)}/{len(splits.test)} rows "
            f"train/val/test"
        ))
        for line in plan_for(spec, space, splits).describe():
            out.print(line, markup=False)
        for note in table.notes:
            out.print(f"note: {note}", markup=False)
    quiet_libraries(import_keras=False)  # the run imports Keras while it searches
    with progress_display(quiet) as on_progress:
        outcome = run_search(spec, on_progress, prepared=(space, table, splits))
    if not quiet:
        print_summary(outcome, spec.metric)


def evaluate(outer_folds: int = 5, **options: object) -> None:
    """Nested CV of the whole procedure on DATA: the honest estimate of what a run delivers."""
    quiet = bool(options.pop("quiet"))
    guard(lambda: _evaluate(options, outer_folds, quiet))


def _evaluate(options: dict, outer_folds: int, quiet: bool) -> None:
    if not 2 <= outer_folds <= 20:
        raise SpecError(f"--outer-folds: must be between 2 and 20, got {outer_folds}.")
    spec = spec_from({**options, "from_spec": None})
    from search.evaluate import evaluate as run_nested

    quiet_libraries()

    def on_fold(k: int, fold: dict) -> None:
        if not quiet:
            s = fold["scores"]
            out.print(f"outer fold {k}/{outer_folds}: roc_auc {s['roc_auc']:.4f}, accuracy {s['accuracy']:.4f} "
                      f"at threshold {fold['threshold']:.3f} ({fold['seconds'] / 60:.1f} min)")

    folder = run_nested(spec, outer_folds, on_fold)
    if not quiet:
        out.print((folder / "evaluation.md").read_text(), markup=False)
        out.print(f"results: {folder}")


# `evaluate` takes every option of `run` that applies to a run on part of the table, plus --outer-folds.
_NOT_FOR_EVALUATE = {"test_size", "address", "from_spec", "export_savedmodel", "checkpoint_every", "max_failures",
                     "mlflow", "mlflow_uri"}
_RUN_TYPES = typing.get_type_hints(run)  # real types: typer cannot read `from __future__` strings here
evaluate.__signature__ = inspect.signature(run).replace(parameters=[  # type: ignore[attr-defined]
    *(p.replace(annotation=_RUN_TYPES[name]) for name, p in inspect.signature(run).parameters.items()
      if name not in _NOT_FOR_EVALUATE),
    inspect.Parameter("outer_folds", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                      default=typer.Option(5, help="Outer folds: each is scored by a run on the others.")),
])
app.command()(evaluate)


@app.command()
def resume(
    run_dir: str = typer.Argument(..., help="The interrupted run: results/NAME (or its .NAME.partial folder)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Continue an interrupted search (Ctrl-C, a killed session), then retrain, export and report."""

    def action() -> None:
        from search.pipeline import resume_run

        quiet_libraries()
        with progress_display(quiet) as on_progress:
            outcome = resume_run(run_dir, on_progress)
        if not quiet:
            print_summary(outcome, outcome.best["metric"])

    guard(action)


@app.command()
def retrain(
    run_dir: str = typer.Argument(..., help="A run folder, e.g. results/NAME."),
    top_k: int | None = typer.Option(None, help="Best configurations to re-score (default: the run's)."),
    folds: int | None = typer.Option(None, help="CV folds (default: the run's)."),
    repeats: int | None = typer.Option(None, help="CV repeats (default: the run's)."),
    threshold: float | None = typer.Option(None, help="Fix the decision threshold."),
    threshold_rule: str | None = typer.Option(None, help="youden, accuracy, f1 or auto (default: the run's)."),
    ensemble: bool | None = typer.Option(None, "--ensemble/--no-ensemble", help="Export an ensemble where it "
                                         "beats the winner alone (default: the run's)."),
    ensemble_members: int | None = typer.Option(None, help="Most networks in the ensemble (default: the run's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Re-score a finished search's best configurations by CV and export the winner (or the ensemble) again."""

    def action() -> None:
        from search.pipeline import retrain_run

        quiet_libraries()
        outcome = retrain_run(run_dir, top_k=top_k, folds=folds, repeats=repeats, threshold=threshold,
                              threshold_rule=threshold_rule, ensemble=ensemble, ensemble_members=ensemble_members)
        if not quiet:
            print_final(outcome, run_dir)

    guard(action)


@app.command()
def predict(
    run_dir: str = typer.Argument(..., help="A run folder with an exported model (results/NAME)."),
    data: str = typer.Argument(..., help="CSV or Parquet file with the feature columns."),
    out_path: str | None = typer.Option(None, "--out", help="Write predictions here (CSV) instead of stdout."),
    id_column: str | None = typer.Option(None, "--id", help="Copy this column into the predictions."),
) -> None:
    """Score a table with a run's exported model: probability and predicted label per row."""

    def action() -> None:
        from search.export import predict_file

        quiet_libraries()
        predictions, notes = predict_file(run_dir, data, id_column)
        for note in notes:
            err.print(f"note: {note}", markup=False, soft_wrap=True)
        if out_path:
            from search.run_folder import write_csv

            write_csv(Path(out_path).resolve(), predictions)
            err.print(f"{len(predictions)} predictions written to {out_path}", markup=False)
        else:
            sys.stdout.write(predictions.to_csv(index=False))

    guard(action)


@app.command()
def report(
    run_dir: str = typer.Argument(..., help="A run folder (results/NAME), finished or interrupted."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only rebuild the files."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's summary as JSON (docs/cli.md), nothing else."),
) -> None:
    """Rebuild report.html, report.md and report.json of a run, and print its summary."""

    def action() -> None:
        from search.report import REPORT_HTML, render_report, summary_json

        content = render_report(run_dir)
        if as_json:
            print_json(summary_json(content))
        elif not quiet:
            print_report(content)
            out.print(f"report: {Path(content['folder']) / REPORT_HTML}")

    guard(action)


@app.command()
def runs(results: str = typer.Option("results", help="Folder of run outputs."),
         as_json: bool = typer.Option(False, "--json", help="Print the runs as a JSON list (docs/cli.md).")) -> None:
    """List past runs: date, data, trials, best validation metric, status."""

    def action() -> None:
        from search.run_folder import list_runs

        found = list_runs(results)
        if as_json:
            print_json([{"schema": 1, **r} for r in found])
            return
        if not found:
            out.print(f"no runs in {Path(results).resolve()}")
            return
        table = RichTable(title=f"Runs in {Path(results).resolve()}")
        for col in ("name", "date", "data", "trials", "best", "status"):
            table.add_column(col)
        for r in found:
            best = f"{r['metric']} {r['best']:.4f}" if r["best"] is not None else "-"
            table.add_row(r["name"], r["date"], r["data"], str(r["trials"]), best, r["status"])
        out.print(table)

    guard(action)


# The cluster commands (submit, status, logs, stop, fetch) register after these, in their own module.
from search.cli import cluster_commands as cli_cluster  # noqa: E402,F401


def main() -> None:
    """Console-script entry point. The process ends as soon as the command and every exit handler are
    done: after a run the interpreter's own teardown (TensorFlow's and XLA's objects) took 1.8 s on 2
    cores, and by then everything is written and Ray is stopped. The fast end is an exit handler
    registered before any library's, so Python runs it last (handlers run in reverse order), after
    the non-daemon threads (Ray's stop: search/cluster/session.py) were joined."""
    import atexit
    import os

    os.environ["KERAS_BACKEND"] = "tensorflow"  # this process's Keras (search/__init__.py); trials: --backend
    outcome: dict[str, int | str | None] = {"code": 0}
    atexit.register(_end_process, outcome)
    try:
        app(prog_name="hpsearch")
    except SystemExit as done:
        outcome["code"] = done.code
    raise SystemExit(outcome["code"])


def _end_process(outcome: dict[str, int | str | None]) -> None:
    import os

    code = outcome["code"]
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


if __name__ == "__main__":
    sys.exit(main())
