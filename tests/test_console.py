"""The progress people expect: bars on a terminal, steady plain lines in a log, each stage's duration."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

from search.cli import console as console
from search.progress import FitProgress, Progress, StageProgress, TrialEnd


def _feed(show) -> None:  # noqa: ANN001
    show(StageProgress(None, 0.0, "search", time.time() + 300))
    show(Progress(total=6, metric="roc_auc", running=2))
    show(Progress(total=6, metric="roc_auc", running=2, finished=1, stopped_early=1, best=0.9731,
                  ended=TrialEnd("6da59_00003", "stopped early", 0.9731, 4)))
    show(Progress(total=6, metric="roc_auc", running=1, finished=1, stopped_early=1, best=0.9731))
    show(Progress(total=6, metric="roc_auc", running=0, finished=6, stopped_early=2, best=0.9812,
                  ended=TrialEnd("6da59_00005", "completed", 0.9812, 60)))
    show(StageProgress("search", 12.4, "CV"))
    for done in range(16):
        show(FitProgress("CV", done, 15, 9.0, metric="roc_auc"))
    show(StageProgress("CV", 20.2, "baselines"))
    show(StageProgress("baselines", 0.1, "final fit"))


def test_a_terminal_gets_a_live_display_on_stderr_with_a_bar_per_stage(monkeypatch):
    buffer, results = io.StringIO(), io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=buffer, force_terminal=True, width=140))
    monkeypatch.setattr(console, "out", Console(file=results, force_terminal=True, width=140))
    with console.progress_display(quiet=False) as show:
        _feed(show)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())  # without the terminal's escape codes
    assert "━" in text and "6/6" in text and "15/15" in text  # a bar with its counts, for trials and for CV
    assert "best roc_auc 0.9812" in text and "s left" in text  # the best so far, the budget's time left
    assert re.search(r"final fit\s.*━", text)  # its own bar
    assert "search: done in 12 s; CV: started" in text and "CV: done in 20 s; baselines: started" in text
    assert results.getvalue() == ""  # progress is not output


def test_a_log_gets_a_line_per_finished_trial_and_per_stage_and_the_latest_again(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=buffer, force_terminal=False, width=80, soft_wrap=True))
    display = console.progress_display(quiet=False)
    display.HEARTBEAT_S = 0.5
    with display as show:
        _feed(show)
        time.sleep(2.5)
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("search: started, budget ") and lines[0].endswith(" s left")
    # one line per finished trial: its short id, how it ended, its score and epochs; none as trials start
    assert lines[1:3] == ["trial 00003 stopped early: roc_auc 0.9731 after 4 epochs (1/6 done, 2 running; best "
                          "roc_auc 0.9731)",
                          "trial 00005 completed: roc_auc 0.9812 after 60 epochs (6/6 done, 0 running; best "
                          "roc_auc 0.9812)"]  # whole, though wider than the console: no hard wrap
    assert lines[3] == "search: done in 12 s; CV: started"
    assert [ln for ln in lines if ln.startswith("CV: ") and "fits" in ln] == [
        f"CV: {n}/15 fits done, about 9 s left" for n in (0, 4, 8, 12, 15)]  # at each quarter
    repeated = [ln for ln in lines if ln.startswith("baselines: done in 0 s; final fit: started (")]
    assert repeated and repeated[0].endswith(" s)")  # the heartbeat: the latest line, with the run's time


def test_quiet_shows_nothing(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(console, "out", Console(file=buffer))
    with console.progress_display(quiet=True) as show:
        assert show is None
    assert buffer.getvalue() == ""


def test_users_strings_are_printed_as_they_are(tmp_path):
    """Paths, run names, column names and labels with brackets, spaces and non-ASCII reach the console
    unchanged (Rich read `[v2]` as markup and printed `my data .csv`; `[/tmp]` raised MarkupError)."""
    import pandas as pd

    from tests.conftest import make_mixed_table, run_cli

    folder = tmp_path / "my data [v2] é"
    folder.mkdir()
    frame = make_mixed_table(n=120).rename(columns={"alpha": "[alpha] größe"})
    frame["label"] = frame["label"].map({"yes": "[yes] ja", "no": "no"})
    path = folder / "sales [v2].csv"
    frame.to_csv(path, index=False)
    proc = run_cli(["run", str(path), "--target", "label", "--positive", "[yes] ja", "--samples", "2",
                    "--max-epochs", "2", "--top-k", "1", "--folds", "2", "--repeats", "1", "--cpus", "2",
                    "--results", str(folder / "out [1]")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(path) in proc.stdout and "positive class '[yes] ja'" in proc.stdout
    assert f"results: {folder / 'out [1]'}" in proc.stdout
    assert pd.read_csv(next((folder / "out [1]").glob("*/trials.csv"))).shape[0] == 2

    missing = run_cli(["run", "[/tmp]/x [1].csv"], cwd=tmp_path)
    assert missing.returncode == 2 and "[/tmp]/x [1].csv" in missing.stderr, missing.stderr
    assert "unexpected" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_the_top_trials_fit_a_narrow_terminal_whole(tmp_path):
    """On an 80-column terminal the ids, scores and statuses print whole; the hyperparameters that do
    not fit are left out, and named, rather than every cell cut to ``…``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    searched = ["depth", "width", "dropout", "learning_rate", "activation", "numeric_embedding"]
    trials = pd.DataFrame({
        "trial_id": [f"6da59_{i:05d}" for i in range(8)], "depth": rng.integers(1, 5, 8),
        "width": rng.integers(8, 512, 8), "dropout": rng.uniform(0, 0.5, 8), "learning_rate": rng.uniform(1e-4, 1e-2, 8),
        "activation": rng.choice(["relu", "gelu"], 8), "numeric_embedding": ["periodic", "none"] * 4,
        "epochs": [60.0, 12.0] * 4, "best_epoch": [33.0, 4.0] * 4, "best_roc_auc": rng.uniform(0.9, 1.0, 8),
        "status": ["completed", "stopped early"] * 4})
    for width in (80, 200):
        buffer = io.StringIO()
        table, hidden = console.top_trials(trials, "roc_auc", searched, width)
        Console(file=buffer, width=width, force_terminal=True, color_system=None).print(table)
        text = buffer.getvalue()
        assert max(len(line) for line in text.splitlines()) <= width and "…│" not in text
        best = trials.sort_values("best_roc_auc", ascending=False).head(5)
        for row in best.itertuples():
            assert row.trial_id.split("_")[1] in text and f"{row.best_roc_auc:.4f}" in text
        assert "stopped early" in text
        assert (hidden != []) == (width == 80) and all(p not in text.splitlines()[2] for p in hidden)
