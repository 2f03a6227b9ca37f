"""What the commands print: progress while a run works, and its summary when it ends.

On a terminal the progress is one live line; in a log or a Ray job's output, a line per finished
trial or CV fit.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table as RichTable

from search.metrics import ranked_trials

out = Console(highlight=False)
if not out.is_terminal:
    out = Console(highlight=False, width=160)
err = Console(stderr=True, highlight=False)


def print_report(content: dict) -> None:
    from search.report import sections

    if content["partial"]:
        out.print(f"[bold]partial run[/bold]: missing {', '.join(content['missing'])}")
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
    """A live one-line status on a terminal; a line per finished trial elsewhere."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live = None
        self.last_printed: tuple = ()

    def __enter__(self):  # noqa: ANN204
        if self.quiet:
            return None
        if out.is_terminal:
            from rich.live import Live

            self.live = Live("", console=out, transient=True, refresh_per_second=4)
            self.live.__enter__()
        return self.update

    def update(self, p) -> None:  # noqa: ANN001
        from search.progress import FitProgress

        if isinstance(p, FitProgress):
            left = f", about {p.seconds_left:.0f} s left" if p.seconds_left is not None else ""
            line = f"{p.stage}: {p.done}/{p.total} fits done{left}"
            key = (p.stage, p.done)
        else:
            best = f"{p.best:.4f}" if p.best is not None else "-"
            line = (
                f"trials: {p.running} running, {p.finished}/{p.total} finished "
                f"({p.stopped_early} stopped early, {p.failed} failed); best {p.metric} {best}"
            )
            key = ("trials", p.finished, p.running)
        if self.live is not None:
            self.live.update(line)
        elif key[:2] != self.last_printed[:2] or key[2:] > self.last_printed[2:]:  # a fit done, or a trial started
            self.last_printed = key
            out.print(line)

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)


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
    from search.devices import describe, trials_on_gpu

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
