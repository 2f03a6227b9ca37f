"""The cluster commands of ``hpsearch``: submit, status, logs, stop, fetch (see search/cluster/jobs.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from search.cli.app import app, guard, spec_from
from search.cli.console import out, print_json

# Ray's own CLI (`ray job submit`) reads the dashboard's address from RAY_ADDRESS too.
DASHBOARD = {"envvar": "RAY_ADDRESS", "show_envvar": True, "help": "The cluster's dashboard URL."}


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    address: str = typer.Option(..., envvar="RAY_ADDRESS", show_envvar=True,
                                help="The cluster's dashboard, e.g. http://127.0.0.1:8265."),
    storage: str = typer.Option(..., help="Where the job writes results: a shared path or s3://, gs:// URI."),
) -> None:
    """Submit a search as a Ray Job. Every other argument is a `hpsearch run` argument."""

    def action() -> None:
        import typer.main

        from search import cluster
        from search.pipeline import prepare

        run_command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
        parsed = run_command.make_context("run", list(ctx.args)).params
        spec = spec_from(parsed)
        if spec.data.startswith("builtin:") or Path(spec.data).is_file():
            prepare(spec)  # bad input fails here, not on the cluster
        job_id, job_spec = cluster.submit(spec, address, storage)
        out.print(f"submitted job {job_id}: run {job_spec.name}, results to {storage}/{job_spec.name}", markup=False)
        out.print(f"follow: hpsearch logs {job_id} --address {address} --follow", markup=False)
        out.print(f"fetch:  hpsearch fetch {job_spec.name} --storage {storage}", markup=False)

    guard(action)


@app.command()
def status(job_id: str, address: str = typer.Option(..., **DASHBOARD),
           as_json: bool = typer.Option(False, "--json", help="Print the status as JSON (docs/cli.md).")) -> None:
    """Print a submitted job's status."""

    def action() -> None:
        from search import cluster

        info = cluster.status(address, job_id)
        if as_json:
            print_json({"schema": 1, **info})
            return
        out.print(f"{info['job']}: {info['status']} {info['message']}".rstrip(), markup=False)

    guard(action)


@app.command()
def logs(
    job_id: str,
    address: str = typer.Option(..., **DASHBOARD),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the job ends; exit 1 if it failed "
                                "or was stopped, as `ray job submit` does."),
) -> None:
    """Print (or follow) a submitted job's output."""

    def action() -> None:
        from search import cluster

        if follow:
            cluster.follow(address, job_id, lambda text: (sys.stdout.write(text), sys.stdout.flush()))
            ended = cluster.status(address, job_id)
            if ended["status"] != "SUCCEEDED":
                from search.cli.console import err

                err.print(f"job {job_id} ended {ended['status']}: {ended['message']}"[:300].rstrip(), soft_wrap=True)
                raise typer.Exit(1)
        else:
            sys.stdout.write(cluster.logs(address, job_id))

    guard(action)


@app.command()
def stop(job_id: str, address: str = typer.Option(..., **DASHBOARD)) -> None:
    """Stop a submitted job."""

    def action() -> None:
        from search import cluster

        stopped = cluster.stop(address, job_id)
        out.print(f"{job_id}: {'stop requested' if stopped else 'not running'}", markup=False)

    guard(action)


@app.command()
def fetch(
    name: str,
    storage: str = typer.Option(..., help="The --storage the job wrote to."),
    results: str = typer.Option("results", help="Local folder to copy the run into."),
) -> None:
    """Copy a run's folder from the cluster's storage into the local results folder."""

    def action() -> None:
        from search.run_folder import fetch_run

        local = fetch_run(storage, name, Path(results).expanduser().resolve())
        out.print(f"fetched: {local}", markup=False)

    guard(action)
