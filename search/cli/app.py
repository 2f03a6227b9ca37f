"""The ``hpsearch`` Typer app and what every command shares: the error guard (every
:class:`HpsearchError` becomes ``error: <message>`` on one line and exit code 2), the run options'
validation into a ``RunSpec``, and quiet libraries. The commands are in ``cli.py`` and ``cli_cluster.py``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from search.cli.console import err
from search.errors import HpsearchError, Interrupted, first_line

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts hold literal brackets (pip install 'hpsearch[mlflow]')
    help="Find the best Keras binary classifier for a table, with Ray Tune and ASHA.",
)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("hpsearch")
        except PackageNotFoundError:  # run from a checkout that was never installed
            found = sys.modules["search"].__version__
        print(f"hpsearch {found}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and Ray's logs."),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print hpsearch's version and exit.")) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s")
    if debug:
        os.environ["HPSEARCH_DEBUG"] = "1"


def spec_from(options: dict):  # noqa: ANN202
    """The RunSpec of `run`'s parsed options (or of the spec file a submitted job carries)."""
    import json

    from search.errors import SpecError
    from search.spec import RunSpec

    if options.get("from_spec"):
        try:
            spec = RunSpec.from_options(**json.loads(Path(options["from_spec"]).read_text()))
        except (OSError, ValueError) as exc:
            raise SpecError(f"--from-spec {options['from_spec']}: cannot be read ({exc}).") from None
        leave_job_dir()
        return spec
    options = {k: v for k, v in options.items() if k not in ("quiet", "from_spec")}
    options["header"] = not options.pop("no_header")
    options["drop"] = tuple(options["drop"])
    if options.get("hypermodel"):  # Ray's workers import it by path, from wherever they run
        from search.network import absolute

        options["hypermodel"] = absolute(options["hypermodel"])
    return RunSpec.from_options(**options)


def leave_job_dir() -> None:
    """Run a submitted job from a private copy of its working_dir.

    Ray 2.60 deletes a job's working_dir package while the job's driver still runs in it (seen at
    the end of ``Tuner.fit``: ``os.getcwd()`` fails, and once a lazy import of ``search.data.encoding``),
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


def guard(action) -> None:  # noqa: ANN001
    from search.compute import sigterm_as_ctrl_c, stderr_restored

    sigterm_as_ctrl_c()  # SIGTERM stops a run as Ctrl-C does
    try:
        try:
            action()
        except BaseException:
            stderr_restored()  # a background import may still point stderr at /dev/null (search/pipeline.py)
            raise
    except Interrupted as exc:
        err.print(f"interrupted: {exc} Its state is in {exc.partial}.\n"
                  f"resume with: hpsearch resume {resume_target(exc.partial)}", soft_wrap=True, markup=False)
        raise typer.Exit(130) from None
    except HpsearchError as exc:
        cause = exc.__cause__ or exc.__context__  # what went wrong underneath, e.g. in a user's build_model
        if os.environ.get("HPSEARCH_DEBUG") and cause is not None:
            import traceback

            err.print("".join(traceback.format_exception(cause)).rstrip(), soft_wrap=True, markup=False)
        err.print(f"error: {exc}", soft_wrap=True, markup=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted: nothing was saved.")
        raise typer.Exit(130) from None
    except typer.Exit:  # a command's own exit code (logs --follow of a failed job)
        raise
    except Exception as exc:
        if os.environ.get("HPSEARCH_DEBUG"):
            raise
        err.print(
            f"error: unexpected {first_line(exc)} (run with --debug for details)",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(1) from None


def resume_target(partial: object) -> str:
    """``results/NAME`` for ``results/.NAME.partial``, relative to here when it is below here."""
    path = Path(str(partial))
    target = path.parent / path.name.removeprefix(".").removesuffix(".partial")
    try:
        return str(target.relative_to(Path.cwd()))
    except ValueError:
        return str(target)


# The libraries whose warnings (deprecations, TensorFlow's and Ray's notices) the console leaves out;
# a warning raised in the user's own code (a --hypermodel file, a notebook) still shows.
LIBRARIES_WARNING = (r"(search|ray|tensorflow|keras|tf_keras|jax|jaxlib|absl|google|mlflow|optuna|sklearn|scipy|"
                     r"pandas|numpy|pyarrow|pydantic|typer|click|rich|keras_tuner|h5py|ml_dtypes|optree|urllib3|"
                     r"matplotlib|sqlalchemy|alembic)(\.|$)")


def quiet_libraries(import_keras: bool = True) -> None:
    """Keep TensorFlow's and Ray's start-up chatter off the console (``--debug`` shows it); Keras is
    imported now, silenced, unless the caller imports it later (``hpsearch run``: during the search)."""
    if os.environ.get("HPSEARCH_DEBUG"):
        return
    from search.compute import native_stderr_silenced, quiet_tensorflow

    quiet_tensorflow()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import warnings

    warnings.filterwarnings("ignore", module=LIBRARIES_WARNING)
    # Trial errors are recorded in trials.csv; Ray's own tracebacks of them would bury the summary.
    for name in ("ray", "ray.tune", "ray.train", "ray.air", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if not import_keras:
        return
    with native_stderr_silenced():  # TensorFlow's C++ start-up lines
        import keras  # noqa: F401
