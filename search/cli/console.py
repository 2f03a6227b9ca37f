"""What the commands print: progress while a run works, and its summary when it ends.

On a terminal the progress is rich progress bars; in a log or a Ray job's output, plain lines (see
:class:`progress_display`).
"""

from __future__ import annotations

import sys
import threading
import time
from html import escape
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from search.metrics import ranked_trials

# markup off: what is printed holds users' strings (paths, run names, columns, labels), and Rich would
# read `sales[v2].csv` as a tag and print `sales.csv`; styles are given as `style=`, never in the text.
out = Console(highlight=False, markup=False)
if not out.is_terminal:
    out = Console(highlight=False, markup=False, width=160)
err = Console(stderr=True, highlight=False, markup=False)


def print_report(content: dict) -> None:
    from search.report import sections

    if content["partial"]:
        out.print(Text.assemble(("partial run", "bold"), f": missing {', '.join(content['missing'])}"))
    for section in sections(content):
        if not section.rows:
            continue
        table = RichTable(title=section.title, title_justify="left")
        for col in section.rows[0]:
            table.add_column(str(col))
        for row in section.rows[1:]:
            table.add_row(*(str(c) for c in row))
        out.print(table)
        for p in section.paragraphs:
            out.print(p, markup=False)


class progress_display:
    """A run's progress as people expect it. On a terminal: rich progress bars for the trials and for
    the CV fits, with counts, the best score so far and the time left. In a log or a Ray job's output:
    the same as plain lines, one when a trial starts or finishes or a fit is done, and the latest again
    every ``HEARTBEAT_S`` seconds while nothing changes. Each stage's end and duration, either way."""

    HEARTBEAT_S = 30.0

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars: Any = None
        self.notebook: NotebookBars | None = None
        self.tasks: dict[str, Any] = {}
        self.last_line, self.last_key, self.last_time = "", (), time.monotonic()
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.closed = threading.Event()

    def __enter__(self):  # noqa: ANN204
        if self.quiet:
            return None
        if in_notebook():
            self.notebook = NotebookBars()
        elif out.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bars = Progress(TextColumn("{task.description:<6}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[detail]}"), console=out)
            self.bars.__enter__()
        else:
            threading.Thread(target=self._heartbeat, daemon=True).start()
        return self.update

    def update(self, p) -> None:  # noqa: ANN001
        from search.progress import FitProgress, StageProgress

        if isinstance(p, StageProgress):
            self._say(f"{p.ended}: done in {p.seconds:.0f} s" + (f"; {p.started}: started" if p.started else ""))
            return
        if isinstance(p, FitProgress):
            left = f", about {p.seconds_left:.0f} s left" if p.seconds_left is not None else ""
            name, done, total, detail = p.stage, p.done, p.total, "fits"
            line, key = f"{p.stage}: {p.done}/{p.total} fits done{left}", (p.stage, p.done)
        else:
            best = f"best {p.metric} {p.best:.4f}" if p.best is not None else f"best {p.metric} -"
            name, done, total = "trials", p.finished, p.total
            detail = f"{p.running} running, {p.stopped_early + p.failed} stopped or failed; {best}"
            line = (f"trials: {p.running} running, {p.finished}/{p.total} finished ({p.stopped_early} stopped "
                    f"early, {p.failed} failed); {best}")
            key = ("trials", p.finished, p.running)
        if self.notebook is not None:
            self.notebook.task(name, done, total, detail)
        elif self.bars is not None:
            if name not in self.tasks:
                self.tasks[name] = self.bars.add_task(name, total=total, detail="")
            self.bars.update(self.tasks[name], completed=done, total=total, detail=detail)
        elif key[:2] != self.last_key[:2] or key[2:] > self.last_key[2:]:  # a fit done, or a trial started
            self.last_key = key
            self._say(line)

    def _say(self, line: str) -> None:
        with self.lock:
            if self.notebook is not None:
                self.notebook.say(line)
            elif self.bars is not None:
                self.bars.console.print(line, markup=False)
            else:
                out.print(line, markup=False)
            self.last_line, self.last_time = line, time.monotonic()

    def _heartbeat(self) -> None:
        """Repeat the latest line, with the time since the run began, while nothing else is printed."""
        while not self.closed.wait(1.0):
            with self.lock:
                if self.last_line and time.monotonic() - self.last_time >= self.HEARTBEAT_S:
                    out.print(f"{self.last_line} ({time.monotonic() - self.started:.0f} s)", markup=False)
                    self.last_time = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.closed.set()
        if self.bars is not None:
            self.bars.__exit__(*exc)


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel: its cells show HTML, and nothing there is a terminal."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and hasattr(shell, "kernel")


class NotebookBars:
    """Progress bars in a Jupyter cell: one HTML display updated in place through IPython's display
    handle (no ipywidgets needed), a row per stage and the stages' end lines under them."""

    def __init__(self) -> None:
        from IPython.display import HTML, display

        self.rows: dict[str, tuple[int, int, str]] = {}
        self.lines: list[str] = []
        self.handle = display(HTML(self._html()), display_id=True)

    def task(self, name: str, done: int, total: int, detail: str) -> None:
        self.rows[name] = (done, total, detail)
        self._show()

    def say(self, line: str) -> None:
        self.lines.append(line)
        self._show()

    def _html(self) -> str:
        rows = "".join(
            f"<tr><td><code>{escape(name)}</code></td><td><progress value='{done}' max='{max(total, 1)}' "
            f"style='width:16em'></progress></td><td>{done}/{total}</td><td>{escape(detail)}</td></tr>"
            for name, (done, total, detail) in self.rows.items())
        lines = "".join(f"<div>{escape(line)}</div>" for line in self.lines)
        return f"<div class='hpsearch-progress'><table>{rows}</table>{lines}</div>"

    def _show(self) -> None:
        from IPython.display import HTML

        if self.handle is not None:
            self.handle.update(HTML(self._html()))


def print_summary(outcome, metric: str) -> None:  # noqa: ANN001
    trials = outcome.trials
    counts = trials["status"].value_counts()
    column = f"best_{metric}"
    top = ranked_trials(trials, metric, usable_only=False).head(5)
    params = [c for c in outcome.searched if trials[c].nunique() > 1]
    table = RichTable(title=f"Top trials by validation {metric}")
    for col in ["trial", metric, "best epoch", "epochs", "status", *params]:
        table.add_column(col)
    for row in top.to_dict("records"):
        table.add_row(
            row["trial_id"], f"{row[column]:.4f}", str(int(row["best_epoch"])), str(row["epochs"]),
            row["status"], *(_short(row[p]) for p in params),
        )
    out.print(table)
    from search.compute import describe, trials_on_gpu

    out.print(
        f"devices: {describe(outcome.devices)}; {trials_on_gpu(trials)} of {len(trials)} trials trained on a GPU\n"
        "trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in counts.index)
        + f"\nbest: {metric} {outcome.best['value']:.4f} (trial {outcome.best['trial_id']}, "
        f"epoch {outcome.best['best_epoch']})"
    )
    print_final(outcome.final, outcome.run_dir)


def print_final(final: dict, run_dir: object) -> None:
    mean, std = final["cv_mean"], final["cv_std"]
    cv = ", ".join(f"{m} {mean[m]:.4f} ± {std[m]:.4f}" for m in ("roc_auc", "accuracy", "f1", "log_loss"))
    out.print(f"cv (winner {final['winner']}): {cv}")
    ensemble = final.get("ensemble") or {}
    if ensemble.get("chosen"):
        members = ", ".join(f"{m['trial_id']} x{m['weight']:.2f}" for m in ensemble["members"])
        out.print(f"model: ensemble of {len(ensemble['members'])} networks ({members}); {ensemble['reason']}",
                  markup=False)
    elif ensemble:
        out.print(f"model: the winner alone; {ensemble['reason']}", markup=False)
    if final["test"]:
        t = final["test"]
        out.print(
            f"test ({t['rows']} rows, threshold {final['threshold']:.3f}): roc_auc {t['roc_auc']:.4f}, "
            f"accuracy {t['accuracy']:.4f}, f1 {t['f1']:.4f}, log_loss {t['log_loss']:.4f}"
        )
    if final.get("against_boosting"):
        out.print(final["against_boosting"], markup=False)
    out.print(f"results: {run_dir}")


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
