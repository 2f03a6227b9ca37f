"""What the commands print: progress while a run works (on stderr), and its results (on stdout).

On a terminal the progress is a live Rich display; in a log or a Ray job's output, plain lines, one
per finished trial and per stage (see :class:`progress_display`). Nothing is hard-wrapped off a
terminal: a log's lines stay whole for grep.
"""

from __future__ import annotations

import sys
import threading
import time
from html import escape
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from search.metrics import ranked_trials

if TYPE_CHECKING:
    from search.export import RunSummary

# markup off: what is printed holds users' strings (paths, run names, columns, labels), and Rich would
# read `sales[v2].csv` as a tag and print `sales.csv`; styles are given as `style=`, never in the text.
OFF_TERMINAL_WIDTH = 400  # tables take their natural width (up to this); text lines are never wrapped
out = Console(highlight=False, markup=False)
if not out.is_terminal:
    out = Console(highlight=False, markup=False, width=OFF_TERMINAL_WIDTH, soft_wrap=True)
err = Console(stderr=True, highlight=False, markup=False)
if not err.is_terminal:
    err = Console(stderr=True, highlight=False, markup=False, width=OFF_TERMINAL_WIDTH, soft_wrap=True)


def short_id(trial_id: str) -> str:
    """A trial's id without the experiment's prefix that every trial of a run shares (``6da59_00012``
    -> ``00012``): the part that tells trials apart."""
    return trial_id.split("_", 1)[1] if "_" in trial_id else trial_id


def print_json(value: object) -> None:
    """``value`` as JSON on stdout, one document and nothing else, for scripts (``jq``)."""
    import json

    sys.stdout.write(json.dumps(value, indent=1, default=str) + "\n")
    sys.stdout.flush()


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
    """A run's progress as people expect it, on stderr (stdout keeps the results).

    On a terminal: a live Rich display, a bar for the trials (running, finished, stopped early and
    failed, the best score so far, the budget's time left) and one for each later stage (the CV's
    fits, the final fit, the export), and a line as each stage ends. In a log or a Ray job's output:
    one line per finished trial (its id, how it ended, its score and epochs), a line at each quarter
    of the CV's fits, one per stage, and the latest line again every ``HEARTBEAT_S`` seconds while
    nothing changes."""

    HEARTBEAT_S = 30.0

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars: Any = None
        self.notebook: NotebookBars | None = None
        self.tasks: dict[str, Any] = {}
        self.budget_ends: float | None = None
        self.stage: object = None
        self.last_line, self.last_key, self.last_time = "", (), time.monotonic()
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.closed = threading.Event()

    def __enter__(self):  # noqa: ANN204
        if self.quiet:
            return None
        if in_notebook():
            self.notebook = NotebookBars()
        elif err.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bars = Progress(TextColumn("{task.description:<9}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[detail]}"), console=err)
            self.bars.__enter__()
        else:
            threading.Thread(target=self._heartbeat, daemon=True).start()
        return self.update

    def update(self, p) -> None:  # noqa: ANN001
        from search.progress import FitProgress, StageProgress

        if isinstance(p, StageProgress):
            self._stage(p)
            return
        if isinstance(p, FitProgress):
            left = f", about {p.seconds_left:.0f} s left" if p.seconds_left is not None else ""
            name, done, total, detail = str(p.stage), p.done, p.total, f"fits{left}"
            line = f"{p.stage}: {p.done}/{p.total} fits done{left}"
            key = (str(p.stage), 4 * p.done // max(1, p.total))  # a line at each quarter
        else:
            best = f"best {p.metric} {p.best:.4f}" if p.best is not None else f"best {p.metric} -"
            name, done, total = "trials", p.finished, p.total
            detail = (f"{p.running} running, {p.stopped_early} stopped early, {p.failed} failed; {best}"
                      f"{self._budget_left()}")
            line, key = self._trial_line(p, best), ("trials", p.finished)
        if self.notebook is not None:
            self.notebook.task(name, done, total, detail)
        elif self.bars is not None:
            self._bar(name, done, total, detail)
        elif key != self.last_key and (name != "trials" or p.ended is not None):
            self.last_key = key
            self._say(line)

    @staticmethod
    def _trial_line(p, best: str) -> str:  # noqa: ANN001
        if p.ended is None:
            return f"trials: {p.running} running, {p.finished}/{p.total} finished; {best}"
        e = p.ended
        score = f"{p.metric} {e.score:.4f}" if e.score is not None else f"no {p.metric}"
        return (f"trial {short_id(e.trial_id)} {e.status}: {score} after {e.epochs:g} epochs "
                f"({p.finished}/{p.total} done, {p.running} running; {best})")

    def _budget_left(self) -> str:
        return "" if self.budget_ends is None else f"; budget {max(0.0, self.budget_ends - time.time()):.0f} s left"

    def _stage(self, p) -> None:  # noqa: ANN001
        self.budget_ends = p.budget_ends or self.budget_ends
        if p.ended is None:
            if p.started != self.stage:
                self.stage = p.started
                self._say(f"{p.started}: started{self._budget_left().replace(';', ',')}")
            return
        if self.bars is not None:
            ended = "trials" if str(p.ended) == "search" else str(p.ended)
            if ended in self.tasks:
                task = self.tasks[ended]
                total = self.bars.tasks[task].total or 1
                self.bars.update(task, completed=total, total=total)
            if p.started is not None and str(p.started) not in ("search", "CV"):  # a bar without a count
                self.tasks[str(p.started)] = self.bars.add_task(str(p.started), total=None, detail="")
        self.stage = p.started
        self._say(f"{p.ended}: done in {p.seconds:.0f} s" + (f"; {p.started}: started" if p.started else ""))

    def _bar(self, name: str, done: int, total: int, detail: str) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.bars.add_task(name, total=total, detail="")
        self.bars.update(self.tasks[name], completed=done, total=total, detail=detail)

    def _say(self, line: str) -> None:
        with self.lock:
            if self.notebook is not None:
                self.notebook.say(line)
            elif self.bars is not None:
                self.bars.console.print(line, markup=False)
            else:
                err.print(line, markup=False)
            self.last_line, self.last_time = line, time.monotonic()

    def _heartbeat(self) -> None:
        """Repeat the latest line, with the time since the run began, while nothing else is printed."""
        while not self.closed.wait(1.0):
            with self.lock:
                if self.last_line and time.monotonic() - self.last_time >= self.HEARTBEAT_S:
                    err.print(f"{self.last_line} ({time.monotonic() - self.started:.0f} s)", markup=False)
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


def _columns_that_fit(headers: list[str], rows: list[list[str]], width: int) -> list[int]:
    """The first five columns, then as many of the hyperparameters as the terminal's width holds whole:
    a narrow terminal would otherwise cut every id and score to ``…``."""
    used, shown = 1, []
    for i, header in enumerate(headers):
        need = max([len(header), *(len(r[i]) for r in rows)]) + 3  # a space either side and a border
        if i >= 5 and used + need > width:
            break
        used, shown = used + need, [*shown, i]
    return shown


def top_trials(trials, metric: str, searched: list[str], width: int) -> tuple[RichTable, list[str]]:  # noqa: ANN001
    """The five best trials as a table no wider than ``width``, and the hyperparameters left out of it."""
    column = f"best_{metric}"
    top = ranked_trials(trials, metric, usable_only=False).head(5)
    params = [c for c in searched if trials[c].nunique() > 1]
    prefix = str(top["trial_id"].iloc[0]).split("_", 1)[0] if len(top) else ""
    title = f"Top trials by validation {metric}" + (f" (trial ids of run {prefix}_…)" if "_" in "".join(
        top["trial_id"].astype(str)) else "")
    rows = [[short_id(str(row["trial_id"])), f"{row[column]:.4f}", str(int(row["best_epoch"])), str(row["epochs"]),
             row["status"], *(_short(row[p]) for p in params)] for row in top.to_dict("records")]
    headers = ["trial", metric, "best epoch", "epochs", "status", *params]
    shown = _columns_that_fit(headers, rows, width)
    table = RichTable(title=title)
    for i in shown:
        table.add_column(headers[i], no_wrap=True, min_width=max([len(headers[i]), *(len(r[i]) for r in rows)]))
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table, headers[len(shown):]


def print_summary(outcome, metric: str) -> None:  # noqa: ANN001
    trials = outcome.trials
    counts = trials["status"].value_counts()
    table, hidden = top_trials(trials, metric, outcome.searched, out.width)
    out.print(table)
    if hidden:
        out.print(f"(on a wider terminal also: {', '.join(hidden)}; all in trials.csv)")
    from search.compute import describe, trials_on_gpu

    out.print(
        f"devices: {describe(outcome.devices)}; {trials_on_gpu(trials)} of {len(trials)} trials trained on a GPU\n"
        "trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in counts.index)
        + f"\nbest: {metric} {outcome.best['value']:.4f} (trial {outcome.best['trial_id']}, "
        f"epoch {outcome.best['best_epoch']})"
    )
    print_final(outcome.final, outcome.run_dir)


def print_final(final: RunSummary, run_dir: object) -> None:
    mean, std = final.cv_mean, final.cv_std
    cv = ", ".join(f"{m} {mean[m]:.4f} ± {std[m]:.4f}" for m in ("roc_auc", "accuracy", "f1", "log_loss"))
    out.print(f"cv (winner {final.winner}): {cv}")
    ensemble = final.ensemble
    if ensemble.get("chosen"):
        members = ", ".join(f"{m['trial_id']} x{m['weight']:.2f}" for m in ensemble["members"])
        out.print(f"model: ensemble of {len(ensemble['members'])} networks ({members}); {ensemble['reason']}",
                  markup=False)
    elif ensemble:
        folds = sum(n.get("fold_models", 0) for n in ensemble.get("networks", []))
        alone = f"the winner alone, bagged as its {folds} fold models" if folds > 1 else "the winner alone"
        out.print(f"model: {alone}; {ensemble['reason']}", markup=False)
    if final.test:
        t = final.test
        out.print(
            f"test ({t['rows']} rows, threshold {final.threshold:.3f}): roc_auc {t['roc_auc']:.4f}, "
            f"accuracy {t['accuracy']:.4f}, f1 {t['f1']:.4f}, log_loss {t['log_loss']:.4f}"
        )
    if final.against_boosting:
        out.print(final.against_boosting, markup=False)
    out.print(f"results: {run_dir}")


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
