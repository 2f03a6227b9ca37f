"""Searches as Ray Jobs on a cluster: submit, status, logs, stop. No trial runs here.

A submitted job carries its own code and data: a staging folder with ``search/``, ``spaces/``,
the data file (when it is a local file) and the resolved run spec becomes the job's
``working_dir``, so the cluster's nodes need no install of hpsearch. The job writes its results
to ``--storage`` (a path the cluster and you share, or an ``s3://``/``gs://`` URI through
pyarrow), where ``hpsearch fetch`` finds them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.cluster.session import use_cluster_token
from search.compute import QUIET_TENSORFLOW
from search.errors import ClusterError, message_line
from search.spec import RunSpec

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # search/
SPEC_FILE = "job_spec.json"
JOB_ENV = {**QUIET_TENSORFLOW, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}


def client_for(address: str) -> JobSubmissionClient:
    """A Jobs client for the dashboard at ``address`` (``http://HEAD:8265``), with a one-line error."""
    use_cluster_token()  # before Ray is imported: it reads RAY_AUTH_MODE once
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError or ValueError here
        first = message_line(exc)
        raise ClusterError(
            f"--address {address}: cannot reach the Ray dashboard ({first[:200]}). "
            f"Give http://HEAD:8265, through `ray dashboard cluster.yaml` or an SSH tunnel."
        ) from None


def stage_job(spec: RunSpec, storage: str, folder: Path) -> tuple[str, RunSpec]:
    """Fill ``folder`` as the job's working_dir; returns the entrypoint and the spec the job runs."""
    shutil.copytree(PACKAGE_DIR, folder / "search", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PACKAGE_DIR.parent / "spaces", folder / "spaces")
    update: dict[str, Any] = {"results": storage, "address": "auto", "name": spec.run_name()}
    data = Path(spec.data)
    if not spec.data.startswith("builtin:") and data.is_file():
        (folder / "data").mkdir()
        shutil.copy2(data, folder / "data" / data.name)
        update["data"] = f"data/{data.name}"
    space = Path(spec.space)
    if space.suffix in (".yaml", ".yml") and space.is_file():
        shutil.copy2(space, folder / "spaces" / f"job-{space.name}")
        update["space"] = f"spaces/job-{space.name}"
    if spec.hypermodel:  # the job's workers import it from their copy of the working dir
        from search.network import parse_ref

        file, function = parse_ref(spec.hypermodel)
        (folder / "hypermodel").mkdir()
        shutil.copy2(file, folder / "hypermodel" / file.name)
        update["hypermodel"] = f"hypermodel/{file.name}:{function}"
    job_spec = spec.model_copy(update=update)
    (folder / SPEC_FILE).write_text(json.dumps(job_spec.model_dump(mode="json"), indent=2))
    return f"python -m search run --from-spec {SPEC_FILE}", job_spec


def submit(spec: RunSpec, address: str, storage: str) -> tuple[str, RunSpec]:
    """Submit ``spec`` as a Ray Job; returns (job id, the spec the job runs)."""
    client = client_for(address)
    with tempfile.TemporaryDirectory(prefix="hpsearch-job-") as tmp:
        entrypoint, job_spec = stage_job(spec, storage, Path(tmp))
        job_id = client.submit_job(
            entrypoint=entrypoint,
            runtime_env={"working_dir": tmp, "env_vars": {**JOB_ENV, **_debug_env()}},
            metadata={"hpsearch_name": str(job_spec.name), "storage": storage},
        )
    return job_id, job_spec


def _debug_env() -> dict[str, str]:
    """`hpsearch --debug submit` makes the job print tracebacks too."""
    return {"HPSEARCH_DEBUG": "1"} if os.environ.get("HPSEARCH_DEBUG") else {}


def status(address: str, job_id: str) -> dict[str, Any]:
    info = _call(address, job_id, lambda c: c.get_job_info(job_id))
    return {"job": job_id, "status": str(info.status.value if hasattr(info.status, "value") else info.status),
            "message": info.message or "", "metadata": info.metadata or {}}


def logs(address: str, job_id: str) -> str:
    return _call(address, job_id, lambda c: c.get_job_logs(job_id))


def follow(address: str, job_id: str, write: Any) -> None:
    """Stream the job's logs until it ends."""
    import asyncio

    async def tail(client: JobSubmissionClient) -> None:
        async for lines in client.tail_job_logs(job_id):
            write(lines)

    _call(address, job_id, lambda c: asyncio.run(tail(c)))


def stop(address: str, job_id: str) -> bool:
    return bool(_call(address, job_id, lambda c: c.stop_job(job_id)))


def _call(address: str, job_id: str, action: Any) -> Any:
    client = client_for(address)
    try:
        return action(client)
    except RuntimeError as exc:
        first = message_line(exc)
        raise ClusterError(f"job {job_id}: {first[:200]}. List jobs with `ray job list --address {address}`.") from None
