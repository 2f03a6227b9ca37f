"""Shared fixtures: tiny generated tables and a way to run the real ``hpsearch`` command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
FAKES = REPO / "tests" / "fakes"


def fakes(**variables: str) -> dict[str, str]:
    """Environment for a command whose processes load the test fakes (tests/fakes/sitecustomize.py):
    ``fakes(HPSEARCH_FAKE_EPOCH_SECONDS="0.3")``."""
    path = os.pathsep.join(p for p in (str(FAKES), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, **variables}


@pytest.fixture(scope="session", autouse=True)
def private_compile_cache(tmp_path_factory):
    """JAX's compile cache in a folder of this test session's, not the user's ~/.cache/hpsearch."""
    os.environ["HPSEARCH_XLA_CACHE"] = str(tmp_path_factory.mktemp("xla-cache"))


@pytest.fixture
def seed() -> int:
    return 7


def make_mixed_table(n: int = 160, seed: int = 7) -> pd.DataFrame:
    """A small learnable table: two numeric columns (one with gaps), one categorical, a yes/no target."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n, n_features=4, n_informative=3, n_redundant=0, random_state=seed, class_sep=1.5
    )
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"alpha": x[:, 0].round(4), "beta": x[:, 1].round(4), "gamma": x[:, 2].round(4)})
    df.loc[rng.random(n) < 0.15, "beta"] = np.nan
    df["colour"] = np.where(x[:, 3] > 0.3, "red", np.where(x[:, 3] < -0.3, "blue", "green"))
    df.loc[rng.random(n) < 0.05, "colour"] = np.nan
    df["label"] = np.where(y == 1, "yes", "no")
    return df


@pytest.fixture
def mixed_csv(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.csv"
    df = make_mixed_table()
    df.to_csv(path, index=False, na_rep="NA")
    return path


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 420):
    """Run ``python -m search`` in a fresh process, as a user would run ``hpsearch``."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "search", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def require_shared(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared datasets live beside the checkout (../shared/datasets)")
    return path


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren...), read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait_for(condition, proc: subprocess.Popen, seconds: float = 240) -> None:  # noqa: ANN001
    """Poll ``condition`` until it holds; fail if ``proc`` (the command under test) ends first or time runs out."""
    deadline = time.time() + seconds
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the command ended before the test could act on it: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            pytest.fail(f"the awaited state was not reached in {seconds} s")
        time.sleep(0.3)



def periodic_space(folder: Path, **fixed: object) -> Path:
    """The default space with periodic embeddings of the numbers fixed on (and ``fixed``), as a file."""
    import yaml

    from search.space import load_space

    space = load_space("default").to_dict()
    fixed = {"numeric_embedding": "periodic", **fixed}
    space["params"] = {k: v for k, v in space["params"].items() if k not in fixed}
    space["fixed"] = {**space["fixed"], **fixed}
    space["first_trials"] = [{k: v for k, v in point.items() if k not in fixed} for point in space["first_trials"]]
    path = folder / "periodic.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def make_big_table(n: int, seed: int = 0) -> pd.DataFrame:
    """A flights-like table of ``n`` rows: six numbers, a departure time as HHMM and a 105-level
    destination, with a late/on-time target that needs the interactions and the hour's cycle."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(n, 6)).round(4)
    hour, destination = rng.integers(0, 24, n), rng.integers(0, 105, n)
    odds = numbers[:, 0] - numbers[:, 1] * numbers[:, 2] / 2 + np.sin(hour * np.pi / 12) * 0.8 + (destination % 7 - 3) / 5
    table = pd.DataFrame({f"x{i}": numbers[:, i] for i in range(6)})
    table["dep_hhmm"], table["dest"] = hour * 100 + rng.integers(0, 60, n), [f"D{d:03d}" for d in destination]
    table["late"] = np.where(rng.random(n) * (1 + np.exp(-odds)) < 1, "yes", "no")
    return table


def save_text_model(folder: Path) -> None:
    """A minimal exported model with a text column (preprocessing + a tiny network), as a run folder holds it."""
    from search.data.encoding import build_preprocessor, fit_stats, input_name, raw_inputs
    from search.data.table import Feature
    from search.export.model_file import join_model, save_model
    from search.network.mlp import build_network

    frame = pd.DataFrame({"size": [1.0, 2.0, np.nan, 4.0], "colour": ["red", "blue", None, "red"]})
    schema = (Feature("size", "numeric"), Feature("colour", "categorical"))
    pre = build_preprocessor(fit_stats(frame, schema), schema)
    model = join_model(pre, build_network({"depth": 1, "width": 4}, pre.output.shape[-1]))
    metadata = {"features": [{"name": f.name, "input": input_name(f.name), "kind": f.kind} for f in schema],
                "labels": {"0": "no", "1": "yes"}, "threshold": 0.5, "header": True, "target": "y"}
    save_model(folder, model, metadata, raw_inputs(frame, schema))
