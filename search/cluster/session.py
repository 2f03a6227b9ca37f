"""The run's Ray session: a private local Ray (no dashboard, token authentication on) or a given
cluster and its token, the workers' environment, and the check that a trial's resources fit on some node.

Security: Ray 2.60 resolves a loopback node address to the machine's routable one and its gRPC
servers listen on every interface; its token authentication (on by default) is what keeps other
hosts out, and hpsearch leaves it on (README, "Security").
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.compute import QUIET_TENSORFLOW, keep_driver_off_gpus, largest_node, put_back_variables
from search.errors import ClusterError, message_line

if TYPE_CHECKING:
    from search.spec import SessionOptions

log = logging.getLogger(__name__)

WORKER_ENV = {**QUIET_TENSORFLOW, "PYTHONWARNINGS": "ignore"}


def worker_env(backend: str) -> dict[str, str]:
    """The workers' variables: a local Ray's workers inherit them at ``ray.init``; on a cluster they
    are the job's runtime env, and Ray keeps one pool of workers per set, so runs on other backends share none."""
    passed = {k: v for k, v in os.environ.items() if k.startswith("HPSEARCH_XLA")}
    return {**WORKER_ENV, "KERAS_BACKEND": backend, **passed}


def use_cluster_token() -> None:
    """Send the cluster's token when one is available and the user chose no mode.

    Ray's clients attach the token only with ``RAY_AUTH_MODE=token``; a cluster started by
    ``ray start`` has token authentication on by default and refuses clients without it.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    has_token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    if has_token or (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


@contextmanager
def ray_session(options: SessionOptions, while_starting: Callable[[], Any] | None = None) -> Iterator[Any]:
    """A Ray session for the search and the retrain; yields what ``while_starting`` returned.

    ``while_starting`` (the data's encoding) runs in another thread while Ray starts: Ray's start is
    2-3 s of waiting on its processes. On exit a Ray this session started
    stops in the background (1-1.5 s), while the run writes its report; the next session, and the
    end of the process, wait for it.
    """
    from search.compute import sigterm_as_ctrl_c

    _wait_for_stop()
    started_here, work = _start(options, while_starting)
    sigterm_as_ctrl_c()  # again: ray.init put Ray's own SIGTERM handler in place
    devices_before = keep_driver_off_gpus()
    try:
        _check_trials_fit(options)
        yield work
    finally:
        if started_here:
            _stop_in_background()
        put_back_variables(devices_before)


_stopping: list[threading.Thread] = []


def _stop_in_background() -> None:
    import ray

    thread = threading.Thread(target=ray.shutdown, name="hpsearch-ray-stop")  # not a daemon: the exit waits
    thread.start()
    _stopping.append(thread)


def _wait_for_stop() -> None:
    while _stopping:
        _stopping.pop().join()


def _start(options: SessionOptions, while_starting: Callable[[], Any] | None) -> tuple[bool, Any]:
    """Start Ray (:func:`_start_ray`) while ``while_starting`` runs in another thread. Ray starts in this
    one: its processes die with the thread that started them (Linux's parent-death signal is per thread)."""
    if while_starting is None:
        return _start_ray(options), None
    with ThreadPoolExecutor(1, thread_name_prefix="hpsearch-while-ray-starts") as pool:
        work = pool.submit(while_starting)
        try:
            started = _start_ray(options)
        except BaseException:
            work.cancel()
            raise
        try:
            return started, work.result()
        except BaseException:  # the session never began: a Ray started for it stops now (a notebook's next
            if started:        # run would reuse it, with this run's CPUs)
                import ray

                ray.shutdown()
            raise


def _check_trials_fit(options: SessionOptions) -> None:
    """Refuse a CPU or GPU reservation no node can meet: Ray would queue the trial forever. On a
    cluster (``--address``) such a node may yet come from its autoscaler: say so, and what it waits for."""
    cpus = largest_node("CPU")
    most = largest_node("GPU") if options.compute.gpus > 0 else 0.0
    if options.address:
        short = [f"{asked:g} {kind}s (the largest node has {has:g})"
                 for kind, asked, has in (("CPU", options.compute.cpus, cpus), ("GPU", options.compute.gpus, most))
                 if asked > has]
        if short:
            log.warning(f"waiting for the autoscaler: no node of the cluster has {' and '.join(short)} for one "
                        f"trial; the search starts when such a node joins (Ctrl-C stops it).")
        return
    if options.compute.cpus > cpus:
        raise ClusterError(
            f"--cpus-per-trial {options.compute.cpus:g}: this machine's Ray has {cpus:g} CPUs, and a trial runs on one "
            f"node. Ask for at most {cpus:g}, or run on a cluster with --address."
        )
    if options.compute.gpus <= 0:
        return
    if most == 0:
        raise ClusterError(
            f"--gpus-per-trial {options.compute.gpus:g}: Ray found no GPU on this machine. Leave the option out "
            f"to train on CPUs, or run on a machine with an NVIDIA GPU and the GPU extra (pip install -e '.[gpu]')."
        )
    if most and options.compute.gpus > most:
        raise ClusterError(
            f"--gpus-per-trial {options.compute.gpus:g}: no node has more than {most:g} GPUs, and a trial runs on "
            f"one node. Ask for at most {most:g} (fractions such as 0.25 put several trials on one GPU)."
        )


def _start_ray(options: SessionOptions) -> bool:
    """Start a private local Ray (no dashboard, token authentication on), unless one is connected.

    Ray 2.60 resolves a loopback node address to the machine's routable one and its gRPC
    servers listen on every interface; its token authentication (on by default) is what keeps
    other hosts out. See README, "Security".
    """
    import ray

    if ray.is_initialized():
        return False
    if options.address:
        # An existing cluster: its nodes need hpsearch installed (cluster.yaml does it) or, under
        # `hpsearch submit`, get it from the job's working_dir.
        use_cluster_token()
        # Inside a Ray Job the job's runtime env (set by `hpsearch submit`) already holds our
        # variables, and Ray refuses to merge a second one into it.
        in_job = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
        try:
            ray.init(address=options.address, log_to_driver=log.isEnabledFor(logging.DEBUG),
                     logging_level=logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.ERROR,
                     runtime_env=None if in_job else {"env_vars": worker_env(options.compute.backend)})
        except (ConnectionError, ValueError, RuntimeError) as exc:
            first = message_line(exc)
            raise ClusterError(
                f"--address {options.address}: cannot connect to a Ray cluster ({first[:200]}). "
                f"Check the address and that the cluster is up (`ray status`)."
            ) from None
        return True
    # The workers' variables go in through the environment the raylet inherits, not a runtime env:
    # Ray starts workers for a job with a runtime env anew, while these use the ones Ray prestarted
    # (the first trials start 1.0-1.5 s sooner). Put back at once: the driver is not a worker.
    variables = worker_env(options.compute.backend)
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    executable, sys.executable = sys.executable, python_without_spaces()
    try:
        ray.init(
            address="local",
            num_cpus=options.cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=log.isEnabledFor(logging.DEBUG),
            # Ray's token authentication stays on (its default); its notice about it is not shown.
            logging_level=logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.ERROR,
        )
    finally:
        sys.executable = executable
        put_back_variables(before)
    return True


def python_without_spaces() -> str:
    """This Python as Ray's raylet can start it for its workers. The raylet runs the workers' command
    through a shell without quoting it, so a venv in a folder with a space (``~/My Projects/.venv``)
    starts no worker at all; a link without spaces to the venv (``pyvenv.cfg`` is found beside the
    link's ``bin/``) starts the same Python with the same packages."""
    import hashlib
    import tempfile

    python = Path(sys.executable)
    prefix = Path(sys.prefix)
    if " " not in str(python) or not python.is_relative_to(prefix) or " " in tempfile.gettempdir():
        return sys.executable
    key = hashlib.sha256(str(prefix).encode()).hexdigest()[:12]
    link = Path(tempfile.gettempdir()) / f"hpsearch-python-{os.getuid() if hasattr(os, 'getuid') else 0}-{key}"
    if not link.is_symlink() or link.resolve() != prefix.resolve():
        temporary = link.with_name(f"{link.name}.{os.getpid()}")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(prefix, target_is_directory=True)
        os.replace(temporary, link)
    return str(link / python.relative_to(prefix))
