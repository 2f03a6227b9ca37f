"""The ``hpsearch`` command: argument parsing, console output and exit codes, nothing else.

Every :class:`HpsearchError` becomes ``error: <message>`` on one line and exit code 2.
Heavy imports (TensorFlow, Ray) happen inside the commands, never at import time.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import typing
from pathlib import Path

import typer
from rich.table import Table as RichTable

from search.console import err, out, print_final, print_report, print_summary, progress_display
from search.errors import HpsearchError, Interrupted, SpecError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Find the best Keras binary classifier for a table, with Ray Tune and ASHA.",
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and Ray's logs.")) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s")
    if debug:
        os.environ["HPSEARCH_DEBUG"] = "1"


@app.command()
def run(
    data: str = typer.Argument("builtin:breast_cancer", help="CSV or Parquet file, or builtin:breast_cancer."),
    target: str | None = typer.Option(None, help="Target column name, or index (-1 = last). Default: the last column."),
    no_header: bool = typer.Option(False, "--no-header", help="The CSV has no header row."),
    positive: str | None = typer.Option(None, help="Label of class 1. Default: 1/true/yes, else the rarer class."),
    drop: list[str] = typer.Option([], "--drop", help="Column to leave out (an id, a leak); repeat for more."),
    space: str = typer.Option("default", help="Space name in spaces/ or a path to a .yaml file."),
    name: str | None = typer.Option(None, help="Run name: results go to RESULTS/NAME. Default: <data>-<UTC time>."),
    results: str = typer.Option("results", help="Folder for run outputs."),
    metric: str = typer.Option("roc_auc", help="roc_auc, accuracy, f1 or log_loss."),
    samples: int = typer.Option(40, help="Number of trials (configurations sampled)."),
    max_epochs: int | None = typer.Option(None, help="Epochs of a full trial. Default: the space's fixed.epochs, "
                                          "fewer on tables of over 10,000 training rows."),
    grace_period: float | None = typer.Option(None, help="ASHA: epochs before a trial can be stopped (fractions "
                                              "allowed). Default: 4, or a fifteenth of a full trial on big tables."),
    reduction_factor: float = typer.Option(3.0, help="ASHA: keep 1/factor of the trials at each rung."),
    searcher: str = typer.Option("random", help="random, or optuna (TPE)."),
    seed: int = typer.Option(0, help="Seed of the splits, the sampled configurations and the weights."),
    cpus: int | None = typer.Option(None, help="CPUs for the local Ray. Default: all."),
    cpus_per_trial: float = typer.Option(1.0, help="CPUs each trial reserves; trials run concurrently up to the CPUs."),
    gpus_per_trial: float = typer.Option(0.0, help="GPUs each trial reserves (fractions allowed)."),
    time_budget: float | None = typer.Option(None, help="Seconds the whole run may take (search, CV, final fit, "
                                             "export, report). Default: 300 + 1 ms per non-test row."),
    test_size: float = typer.Option(0.2, help="Share of rows held out from the search for the final test."),
    val_size: float = typer.Option(0.2, help="Share of the remaining rows the trials validate on."),
    top_k: int = typer.Option(3, help="Best configurations re-scored by stratified k-fold CV."),
    folds: int | None = typer.Option(None, help="CV folds. Default: 5, or the search's validation part when it "
                                     "holds over 20,000 rows."),
    repeats: int | None = typer.Option(None, help="CV repeats. Default: 3 below 300 non-test rows, else 1."),
    class_weight: str = typer.Option("auto", help="balanced, none, or auto: balanced when a class is under 30%."),
    threshold: float | None = typer.Option(None, help="Fix the decision threshold instead of choosing it."),
    threshold_rule: str = typer.Option("auto", help="How the threshold is chosen out of fold: youden, accuracy, "
                                       "f1, or auto (accuracy/f1 for those metrics, else youden)."),
    export_savedmodel: bool = typer.Option(False, "--export-savedmodel", help="Also write a TF SavedModel."),
    address: str | None = typer.Option(None, help="An existing Ray cluster: auto, ray://HOST:10001 or HOST:6379."),
    checkpoint_every: int = typer.Option(5, help="Checkpoint each trial every N epochs (0: never), for retries."),
    max_failures: int = typer.Option(2, help="Retries of a trial whose worker or node was lost."),
    backend: str = typer.Option("jax", help="Keras backend of the trials, CV and final fits: jax or tensorflow."),
    mixed_precision: bool = typer.Option(False, "--mixed-precision",
                                         help="Train in float16 with float32 weights (GPUs); the export is float32."),
    from_spec: str | None = typer.Option(None, "--from-spec", hidden=True, help="Run a spec written by submit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Search for the best MLP configuration on a table and save the results."""
    options = dict(locals())
    _guard(lambda: _run(options, quiet))


def _run(options: dict, quiet: bool) -> None:

    spec = _spec_from(options)
    if spec.address:
        from search.cluster import use_cluster_token

        use_cluster_token()  # before Ray is imported: it reads RAY_AUTH_MODE once
    from search.pipeline import plan_for, prepare, run_search

    space, table, splits = prepare(spec)  # fail fast, before the slow imports
    if not quiet:
        out.print(
            f"[bold]hpsearch[/bold]: {table.source} ({table.n_rows} rows, {len(table.schema)} features, "
            f"positive class '{table.labels[1]}'), space {space.name}, {spec.samples} trials, "
            f"metric {spec.metric}, {len(splits.train)}/{len(splits.val)}/{len(splits.test)} rows "
            f"train/val/test"
        )
        for line in plan_for(spec, space, splits).describe():
            out.print(line, markup=False)
        for note in table.notes:
            out.print(f"note: {note}", markup=False)
    _quiet_libraries()
    with progress_display(quiet) as on_progress:
        outcome = run_search(spec, on_progress, prepared=(space, table, splits))
    if not quiet:
        print_summary(outcome, spec.metric)


def evaluate(outer_folds: int = 5, **options: object) -> None:
    """Nested CV of the whole procedure on DATA: the honest estimate of what a run delivers."""
    quiet = bool(options.pop("quiet"))
    _guard(lambda: _evaluate(options, outer_folds, quiet))


def _evaluate(options: dict, outer_folds: int, quiet: bool) -> None:
    if not 2 <= outer_folds <= 20:
        raise SpecError(f"--outer-folds: must be between 2 and 20, got {outer_folds}.")
    spec = _spec_from({**options, "from_spec": None})
    from search.evaluate import evaluate as run_nested

    _quiet_libraries()

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
_NOT_FOR_EVALUATE = {"test_size", "address", "from_spec", "export_savedmodel", "checkpoint_every", "max_failures"}
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

        _quiet_libraries()
        with progress_display(quiet) as on_progress:
            outcome = resume_run(run_dir, on_progress)
        if not quiet:
            print_summary(outcome, outcome.best["metric"])

    _guard(action)


@app.command()
def retrain(
    run_dir: str = typer.Argument(..., help="A run folder, e.g. results/NAME."),
    top_k: int | None = typer.Option(None, help="Best configurations to re-score (default: the run's)."),
    folds: int | None = typer.Option(None, help="CV folds (default: the run's)."),
    repeats: int | None = typer.Option(None, help="CV repeats (default: the run's)."),
    threshold: float | None = typer.Option(None, help="Fix the decision threshold."),
    threshold_rule: str | None = typer.Option(None, help="youden, accuracy, f1 or auto (default: the run's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Re-score a finished search's best configurations by CV and export the winner again."""

    def action() -> None:
        from search.pipeline import retrain_run

        _quiet_libraries()
        outcome = retrain_run(run_dir, top_k=top_k, folds=folds, repeats=repeats, threshold=threshold,
                              threshold_rule=threshold_rule)
        if not quiet:
            print_final(outcome, run_dir)

    _guard(action)


@app.command()
def predict(
    run_dir: str = typer.Argument(..., help="A run folder with an exported model (results/NAME)."),
    data: str = typer.Argument(..., help="CSV or Parquet file with the feature columns."),
    out_path: str | None = typer.Option(None, "--out", help="Write predictions here (CSV) instead of stdout."),
    id_column: str | None = typer.Option(None, "--id", help="Copy this column into the predictions."),
) -> None:
    """Score a table with a run's exported model: probability and predicted label per row."""

    def action() -> None:
        from search.predict import predict_file

        _quiet_libraries()
        predictions, notes = predict_file(run_dir, data, id_column)
        for note in notes:
            err.print(f"note: {note}", markup=False, soft_wrap=True)
        if out_path:
            from search.results import write_csv

            write_csv(Path(out_path).resolve(), predictions)
            err.print(f"{len(predictions)} predictions written to {out_path}", markup=False)
        else:
            sys.stdout.write(predictions.to_csv(index=False))

    _guard(action)


@app.command()
def report(
    run_dir: str = typer.Argument(..., help="A run folder (results/NAME), finished or interrupted."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only rebuild the files."),
) -> None:
    """Rebuild report.html, report.md and report.json of a run, and print its summary."""

    def action() -> None:
        from search.report import REPORT_HTML, render_report

        content = render_report(run_dir)
        if not quiet:
            print_report(content)
            out.print(f"report: {Path(content['folder']) / REPORT_HTML}")

    _guard(action)


@app.command()
def runs(results: str = typer.Option("results", help="Folder of run outputs.")) -> None:
    """List past runs: date, data, trials, best validation metric, status."""

    def action() -> None:
        from search.run_folder import list_runs

        found = list_runs(results)
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

    _guard(action)


def _spec_from(options: dict):  # noqa: ANN202
    """The RunSpec of `run`'s parsed options (or of the spec file a submitted job carries)."""
    import json

    from search.errors import SpecError
    from search.spec import RunSpec

    if options.get("from_spec"):
        try:
            spec = RunSpec.from_options(**json.loads(Path(options["from_spec"]).read_text()))
        except (OSError, ValueError) as exc:
            raise SpecError(f"--from-spec {options['from_spec']}: cannot be read ({exc}).") from None
        _leave_job_dir()
        return spec
    options = {k: v for k, v in options.items() if k not in ("quiet", "from_spec")}
    options["header"] = not options.pop("no_header")
    options["drop"] = tuple(options["drop"])
    return RunSpec.from_options(**options)


def _leave_job_dir() -> None:
    """Run a submitted job from a private copy of its working_dir.

    Ray 2.60 deletes a job's working_dir package while the job's driver still runs in it (seen at
    the end of ``Tuner.fit``: ``os.getcwd()`` fails, and once a lazy import of ``search.preprocess``),
    so the driver moves to a copy first and imports from there.
    """
    import atexit
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="hpsearch-job-"))
    job_dir = Path.cwd()
    shutil.copytree(job_dir, home, dirs_exist_ok=True)
    os.chdir(home)
    # Modules imported later (lazily) must come from the copy too: `python -m` put the job's
    # working_dir first on sys.path.
    sys.path[:] = [str(home) if p in ("", str(job_dir)) else p for p in sys.path]
    atexit.register(shutil.rmtree, home, True)


def _guard(action) -> None:  # noqa: ANN001
    from search import signals

    signals.install()  # SIGTERM stops a run as Ctrl-C does
    try:
        action()
    except Interrupted as exc:
        err.print(f"interrupted: {exc} Its state is in {exc.partial}.\n"
                  f"resume with: hpsearch resume {_resume_target(exc.partial)}", soft_wrap=True, markup=False)
        raise typer.Exit(130) from None
    except HpsearchError as exc:
        err.print(f"error: {exc}", soft_wrap=True, markup=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted: nothing was saved.")
        raise typer.Exit(130) from None
    except Exception as exc:
        if os.environ.get("HPSEARCH_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        err.print(
            f"error: unexpected {type(exc).__name__}: {first} (run with --debug for details)",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(1) from None


def _resume_target(partial: object) -> str:
    """``results/NAME`` for ``results/.NAME.partial``, relative to here when it is below here."""
    path = Path(str(partial))
    target = path.parent / path.name.removeprefix(".").removesuffix(".partial")
    try:
        return str(target.relative_to(Path.cwd()))
    except ValueError:
        return str(target)


def _quiet_libraries() -> None:
    """Keep TensorFlow's and Ray's start-up chatter off the console (``--debug`` shows it)."""
    if os.environ.get("HPSEARCH_DEBUG"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    import warnings

    warnings.filterwarnings("ignore")
    # Trial errors are recorded in trials.csv; Ray's own tracebacks of them would bury the summary.
    for name in ("ray", "ray.tune", "ray.train", "ray.air", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from search.devices import native_stderr_silenced

    with native_stderr_silenced():  # TensorFlow's C++ start-up lines
        import keras  # noqa: F401


# The cluster commands (submit, status, logs, stop, fetch) live in their own module.
from search import cli_cluster  # noqa: E402,F401


def main() -> None:
    """Console-script entry point."""
    app(prog_name="hpsearch")


if __name__ == "__main__":
    sys.exit(main())
