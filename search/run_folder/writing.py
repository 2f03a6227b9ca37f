"""Every path under ``results/`` and the atomic commit of a run.

A run writes into ``results/.<name>.partial/`` and is renamed to ``results/<name>/`` only when
it succeeded, so a failed or interrupted run never leaves a half-written folder behind.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from search.errors import SpecError

log = logging.getLogger(__name__)

SPEC = "spec.json"
TRIALS = "trials.csv"
EPOCHS = "epochs.csv"
BEST_CONFIG = "best_config.json"
CV = "cv.json"
TEST = "test.json"
OOF = "oof.parquet"  # the CV candidates' out-of-fold predictions: candidate, fold, row, y, probability
TEST_PREDICTIONS = "test_predictions.parquet"  # the final model's: row, y, probability
TIMING = "timing.json"
EXPERIMENT_DIR = "tune"  # Ray Tune's experiment folder (hpsearch resume continues from it)
TRIAL_ERRORS = "trial_errors.txt"  # each failed trial's full traceback
FAULTS = "faults.jsonl"  # trials Ray retried or gave up on (lost workers), one JSON per line


def check_free(results_root: Path, name: str) -> None:
    """Refuse a run name whose folder exists, before any work is done."""
    final = results_root / name
    if final.exists():
        raise SpecError(f"--name {name}: {final} exists already. Choose another --name or remove it.")


def start_run(results_root: Path, name: str, chosen: bool = False) -> tuple[Path, Path]:
    """Reserve ``results_root/<name>``; returns (partial folder to write into, final folder).

    The partial folder is created atomically, so two runs never share one. A name hpsearch chose
    (``chosen``) that is taken gets a ``-2``, ``-3``... suffix; a name the user gave is an error.
    """
    base = name
    for n in range(2, 1000 if chosen else 2):
        if not (results_root / name).exists() and not (results_root / f".{name}.partial").exists():
            break
        name = f"{base}-{n}"
    check_free(results_root, name)
    final = results_root / name
    partial = results_root / f".{name}.partial"
    results_root.mkdir(parents=True, exist_ok=True)
    try:
        partial.mkdir()
    except FileExistsError:
        raise SpecError(f"--name {name}: a run of that name is running or was interrupted ({partial}). "
                        f"Resume it with `hpsearch resume {final}`, or choose another --name.") from None
    return partial, final


def check_own_folder(folder: Path) -> None:
    """Refuse a run folder that another user owns or that anyone may write: ``resume`` unpickles Ray
    Tune's state from it (``tuner.pkl``), and unpickling runs code. A run folder is code."""
    if not hasattr(os, "getuid"):
        return
    tune = folder / "tune"
    for path in [folder, tune, *(tune.glob("*.pkl") if tune.is_dir() else [])]:
        if not path.exists():
            continue
        info = path.stat()
        if info.st_uid != os.getuid():
            raise SpecError(f"{path} belongs to another user (uid {info.st_uid}): resuming loads pickled state from "
                            f"it, which runs code. Resume only your own runs, or start a new one.")
        if info.st_mode & 0o002:  # (group-writable is left alone: a umask of 002 makes every file so)
            raise SpecError(f"{path} is writable by others: resuming loads pickled state from it, which runs "
                            f"code. If you trust it, `chmod -R go-w {folder}`.")


def commit_run(partial: Path, final: Path) -> Path:
    """Publish a finished run with one rename."""
    os.replace(partial, final)
    return final


def upload_run(run_dir: Path, destination: str) -> str:
    """Copy a finished run folder to ``destination/<name>`` (any pyarrow filesystem URI); returns the URI."""
    from pyarrow import fs

    target = destination.rstrip("/") + "/" + run_dir.name
    filesystem, path = fs.FileSystem.from_uri(target)
    if filesystem.get_file_info(path).type != fs.FileType.NotFound:
        raise SpecError(f"--results {destination}: {target} exists already. Choose another --name.")
    filesystem.create_dir(path, recursive=True)
    fs.copy_files(str(run_dir), path, source_filesystem=fs.LocalFileSystem(), destination_filesystem=filesystem)
    shutil.rmtree(run_dir, ignore_errors=True)
    return target


def fetch_run(source: str, name: str, local_root: Path) -> Path:
    """Copy ``source/<name>`` (a storage URI or a path) into ``local_root/<name>``."""
    from pyarrow import fs

    uri = source if "://" in source else Path(source).expanduser().resolve().as_uri()
    filesystem, path = fs.FileSystem.from_uri(uri.rstrip("/") + "/" + name)
    if filesystem.get_file_info(path).type != fs.FileType.Directory:
        raise SpecError(f"{source}: no run named {name} there. Check --storage and the run name.")
    check_free(local_root, name)
    partial = local_root / f".{name}.fetching"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        fs.copy_files(path, str(partial), source_filesystem=filesystem, destination_filesystem=fs.LocalFileSystem())
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return commit_run(partial, local_root / name)


def write_trial_errors(folder: Path, trials: pd.DataFrame) -> Path | None:
    """Write every errored trial's full traceback to ``folder/trial_errors.txt``; returns it (None when
    no trial errored). trials.csv keeps one line of each."""
    if "traceback" not in trials:
        return None
    failed = trials[trials["traceback"].fillna("").astype(str) != ""]
    if failed.empty:
        return None
    parts = [f"trial {row['trial_id']}: {row.get('error', '')}\n{row['traceback'].rstrip()}\n"
             for row in failed.to_dict("records")]
    for part in parts:
        log.debug("%s", part)
    path = folder / TRIAL_ERRORS
    _write_atomic(path, "\n".join(parts))
    return path


def keep_beside(path: Path, partial: Path) -> Path:
    """Move one file of a run that is about to be removed next to the run folders, as
    ``<name>.<file name>``, so that it outlives the run; returns its new path."""
    name = partial.name.removeprefix(".").removesuffix(".partial")
    kept = partial.parent / f"{name}.{path.name}"
    os.replace(path, kept)
    return kept


def abandon_run(partial: Path) -> None:
    shutil.rmtree(partial, ignore_errors=True)


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (temporary file, then rename); NaN becomes null."""
    text = json.dumps(_clean(payload), indent=2, sort_keys=False) + "\n"
    _write_atomic(path, text)


def write_text(path: Path, text: str) -> None:
    _write_atomic(path, text)


def write_csv(path: Path, table: pd.DataFrame) -> None:
    _write_atomic(path, table.to_csv(index=False))


def write_parquet(path: Path, table: pd.DataFrame) -> None:
    """Write a table as Parquet atomically: compact where a JSON list would grow with the rows."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    table.to_parquet(tmp, index=False)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
    os.replace(tmp, path)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def read_faults(run_dir: Path) -> list[dict[str, Any]]:
    """The fault records of a run (none when nothing failed)."""
    path = run_dir / FAULTS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a killed driver
    return records
