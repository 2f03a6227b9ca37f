"""``search.run`` in a real Jupyter kernel (ipykernel, driven through jupyter_client as a notebook
front end drives it), as a notebook user runs it: a live
progress display in the cell, no TensorFlow or CUDA start-up lines, errors that name the keyword, and a
DataFrame's run that is self-contained (``retrain`` works once the temporary folder is gone)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytest.importorskip("ipykernel", reason="the test extra's ipykernel is not installed")

CELLS = [
    """
import json
import numpy as np, pandas as pd
from sklearn.datasets import make_classification
x, y = make_classification(n_samples=140, n_features=5, random_state=3)
frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)]).assign(label=np.where(y == 1, "yes", "no"))
""",
    """
import search
result = search.run(frame, target="label", samples=2, max_epochs=2, top_k=1, folds=2, repeats=1, cpus=2,
                    results="out", name="nb")
""",
    """
print("BEST " + json.dumps({"params": result.best_params, "score": result.best_score,
                            "search_best": result.best_config["value"]}))
""",
    """
try:
    search.run(frame, target="label", samples=0, results="out")
except search.SpecError as exc:
    print("ERROR " + str(exc))
""",
]


def _run_cells(folder: Path) -> list[list[dict]]:
    """Each cell's output messages (stream, display_data, update_display_data, error), in order."""
    import os

    from jupyter_client.manager import start_new_kernel

    kernel, client = start_new_kernel(kernel_name="python3", cwd=str(folder), env={**os.environ})
    try:
        cells = []
        for code in CELLS:
            msg_id = client.execute(code.strip())
            messages = []
            while True:
                msg = client.get_iopub_msg(timeout=600)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
                if msg["msg_type"] in ("stream", "display_data", "update_display_data", "error"):
                    messages.append({"type": msg["msg_type"], **msg["content"]})
            cells.append(messages)
        return cells
    finally:
        client.stop_channels()
        kernel.shutdown_kernel(now=True)


def _text(messages: list[dict]) -> str:
    return "".join(m.get("text", "") for m in messages if m["type"] == "stream")


@pytest.mark.slow
def test_a_notebook_run_shows_live_progress_and_leaves_a_self_contained_folder(tmp_path):
    before = set(Path(tempfile.gettempdir()).glob("hpsearch-frame-*"))
    cells = _run_cells(tmp_path)
    assert not any(m["type"] == "error" for cell in cells for m in cell), cells
    shown = [m for m in cells[1] if m["type"] in ("display_data", "update_display_data")]
    assert shown[0]["type"] == "display_data" and "hpsearch-progress" in shown[0]["data"]["text/html"]
    display_id = shown[0]["transient"]["display_id"]
    updates = [m for m in shown[1:] if m["type"] == "update_display_data"]
    assert len(updates) >= 4 and all(m["transient"]["display_id"] == display_id for m in updates)  # in place
    last = updates[-1]["data"]["text/html"]
    assert "<progress" in last and "2/2" in last and "report: done" in last
    streams = "".join(_text(cell) for cell in cells)
    for noise in ("cuInit", "TF_ENABLE_ONEDNN_OPTS", "absl::InitializeLog", "oneDNN", "cuda"):
        assert noise not in streams, streams[-2000:]

    best = json.loads(_text(cells[2]).split("BEST ", 1)[1])
    cv = json.loads((tmp_path / "out" / "nb" / "cv.json").read_text())
    winner = next(c for c in cv["candidates"] if c["trial_id"] == cv["winner"])
    assert best["params"] == winner["hyperparameters"] and best["score"] == winner["mean"]["roc_auc"]
    error = _text(cells[3])
    assert "ERROR samples" in error and "--samples" not in error, error

    run = tmp_path / "out" / "nb"
    spec = json.loads((run / "spec.json").read_text())
    assert (run / "data.parquet").is_file() and spec["data"]["kept_as"] == "data.parquet"
    assert set(Path(tempfile.gettempdir()).glob("hpsearch-frame-*")) == before  # no temporary file left
    retrained = run_cli(["retrain", str(run)], cwd=tmp_path)
    assert retrained.returncode == 0, retrained.stderr[-2000:]
