"""The report: every section and plot from a real run, self-contained HTML, partial runs, Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from search.cli.commands import app
from tests.test_run import builtin_run  # noqa: F401  (the shared module-scoped run)

pytestmark = pytest.mark.slow
SECTIONS = ["Run summary", "Best configuration", "Use this model", "Cross-validation and baselines", "Ensemble",
            "Test part", "Top 10 trials", "Trials per epoch and the ASHA rungs", "Hyperparameters"]
FIGURES = ["curves", "winner", "params", "parallel", "importance", "test", "cv"]


@pytest.fixture
def run_dir(builtin_run):  # noqa: F811
    tmp_path, proc = builtin_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path / "out" / "bc"


def test_report_has_every_section_and_plot(run_dir):
    page = (run_dir / "report.html").read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page and f"## {title}" in (run_dir / "report.md").read_text()
    for key in FIGURES:
        assert re.search(rf"<img data-figure='{key}' alt='[^']{{40,}}' src='data:image/png;base64,[A-Za-z0-9+/=]{{200,}}'>",
                         page), key
    # self-contained: no external resource of any kind
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page) and "<link" not in page and "<script" not in page
    report = json.loads((run_dir / "report.json").read_text())
    cv = json.loads((run_dir / "cv.json").read_text())
    assert report["partial"] is False and report["cv"]["winner"] == cv["winner"]
    assert set(report["cv"]["baselines"]) == {"majority class", "logistic regression", "gradient boosting"}
    assert report["cv"]["baselines"]["gradient boosting"]["seconds"] > 0
    assert "gradient boosting" in report["against_boosting"]
    assert report["against_boosting"] in (run_dir / "report.md").read_text()
    # boosting tuned by a small random search, on the test part: in test.json, the verdict and the test table
    test = json.loads((run_dir / "test.json").read_text())
    tuned = test["baselines"]["gradient boosting, tuned"]
    assert 0.5 < tuned["roc_auc"] <= 1 and test["tuned_boosting"]["seconds"] > 0
    assert set(test["tuned_boosting"]["params"]) == {"learning_rate", "max_leaf_nodes", "min_samples_leaf",
                                                     "l2_regularization", "max_features", "max_iter"}
    assert f"{tuned['roc_auc']:.4f} for boosting tuned by a random search of 8" in report["against_boosting"]
    assert re.search(r"\| gradient boosting, tuned \| 0\.\d{4} \|", (run_dir / "report.md").read_text())
    assert report["cv"]["baselines"]["majority class"]["mean"]["roc_auc"] == pytest.approx(0.5)
    assert report["summary"]["trials_by_status"] == \
        __import__("pandas").read_csv(run_dir / "trials.csv")["status"].value_counts().to_dict()
    assert set(report["importance"]) <= set(report["summary"]["space"]["params"]) and report["importance"]
    assert len(report["top_trials"]) == 10 and report["summary"]["timing"]["total_s"] > 0
    assert report["verdict"].startswith("The network")
    # the rungs: how many trials trained to each, from trials.csv's epochs
    trials = __import__("pandas").read_csv(run_dir / "trials.csv")
    assert [r["trials"] for r in report["rungs"]] == [int((trials["epochs"] >= r["epoch"] - 1e-9).sum())
                                                      for r in report["rungs"]]
    assert report["rungs"][0]["trials"] == len(trials) and report["rungs"][-1]["full"]
    assert all(a["trials"] >= b["trials"] for a, b in zip(report["rungs"], report["rungs"][1:], strict=False))
    winner = next(c for c in cv["candidates"] if c["trial_id"] == cv["winner"])
    curve = winner["cv_curve"]  # the CV mean per epoch, whose peak is the epochs kept
    assert len(curve) >= winner["epochs"] and max(curve) == pytest.approx(curve[winner["epochs"] - 1], abs=1e-6)


def test_report_and_runs_commands(run_dir, tmp_path):
    copy = tmp_path / "results" / "bc"
    shutil.copytree(run_dir, copy)
    (copy / "report.html").unlink()
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "report.html").is_file() and f"report: {copy / 'report.html'}" in result.output
    for title in ("Best configuration", "Cross-validation and baselines", "Test part", "Top 10 trials"):
        assert title in result.output
    listing = CliRunner().invoke(app, ["runs", "--results", str(tmp_path / "results")], terminal_width=200)
    assert listing.exit_code == 0 and "bc" in listing.output and "finished" in listing.output
    assert "builtin:breast_cancer" in listing.output


def test_runs_and_report_print_json_for_scripts(run_dir, tmp_path):
    """``--json``: one JSON document on stdout and nothing else, with the keys docs/cli.md lists."""
    copy = tmp_path / "results" / "bc"
    shutil.copytree(run_dir, copy)
    shutil.copytree(run_dir, tmp_path / "results" / ".cut.partial")
    (tmp_path / "results" / ".cut.partial" / "cv.json").unlink()
    for args in (["runs", "--results", str(tmp_path / "results"), "--json"], ["report", str(copy), "--json"],
                 ["report", str(tmp_path / "results" / ".cut.partial"), "--json"]):
        proc = subprocess.run([sys.executable, "-m", "search", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = json.loads(proc.stdout)  # the whole of stdout is the document
        if args[0] == "runs":
            assert {(r["schema"], r["name"], r["status"]) for r in got} == {(1, "bc", "finished"),
                                                                            (1, ".cut.partial", "partial")}
            assert {"date", "data", "trials", "metric", "best", "path"} <= set(got[0])
            continue
        cv = json.loads((Path(args[1]) / "cv.json").read_text()) if (Path(args[1]) / "cv.json").is_file() else None
        test = json.loads((Path(args[1]) / "test.json").read_text())
        assert got["schema"] == 1 and got["complete"] == (cv is not None)
        assert got["test"]["roc_auc"] == test["roc_auc"] and got["model"]["path"].endswith("model/model.keras")
        if cv is None:
            assert got["missing"] == ["cv.json"] and got["winner"] is None and got["cv"] is None
        else:
            winner = next(c for c in cv["candidates"] if c["trial_id"] == cv["winner"])
            assert got["winner"] == cv["winner"] and got["cv"]["mean"] == winner["mean"]
            assert got["model"]["kind"] == ("ensemble" if cv["ensemble"]["chosen"] else "network")
            assert sum(m["weight"] for m in got["model"]["members"]) == pytest.approx(1.0)


def test_a_candidate_the_budget_left_unscored_is_named_not_ranked(run_dir, tmp_path):
    """A budgeted run's deadline can fall before a CV candidate's first fold; cv.json then holds it with
    no fold scores and null means, as the retrain stage writes it."""
    copy = tmp_path / "bc"
    shutil.copytree(run_dir, copy)
    cv = json.loads((copy / "cv.json").read_text())
    metrics = cv["candidates"][-1]["mean"]
    late = {**cv["candidates"][-1], "trial_id": "late_00009", "diverged_folds": 0, "skipped_folds": 3,
            "mean": dict.fromkeys(metrics), "std": dict.fromkeys(metrics, 0.0), "fold_scores": []}
    (copy / "cv.json").write_text(json.dumps({**cv, "candidates": cv["candidates"] + [late]}))
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    report = json.loads((copy / "report.json").read_text())
    assert "late_00009" not in [c["trial_id"] for c in report["cv"]["candidates"]]
    assert report["cv"]["unscored"] == ["late_00009 (the budget ran out)"]
    assert "Not scored in CV, so not in the table: late_00009 (the budget ran out)." in \
        (copy / "report.md").read_text()


def test_report_of_a_foreign_folder_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "is not an hpsearch run folder" in result.output


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _browse(browser: str, page: Path, tmp_path: Path, *args: str, width: int = 1280) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", f"--window-size={width},2400",
         *args, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )


# Run in the page once it has loaded: what overflows the window (a table may only inside its scrolling
# box), which table cell of one word (a number, an id) is broken over lines, how wide each plot is drawn.
MEASURE = """<script>addEventListener('load', () => {
  const page = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('.scroll, table, pre, img, p, h1, h2')]
    .filter(e => !(e.tagName === 'TABLE' && e.closest('.scroll')))
    .filter(e => e.getBoundingClientRect().right > page + 1)
    .map(e => e.tagName + ':' + (e.alt || e.textContent.slice(0, 30)));
  const broken = [...document.querySelectorAll('td')].filter(td => !/\\s/.test(td.textContent.trim()))
    .filter(td => { const r = document.createRange(); r.selectNodeContents(td);
                    return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size > 1; })
    .map(td => td.textContent);
  const plots = Object.fromEntries([...document.images].map(i => [i.dataset.figure, [i.clientWidth, i.naturalWidth]]));
  const out = document.createElement('pre');
  out.id = 'measured';
  out.textContent = JSON.stringify({scroll: document.documentElement.scrollWidth, client: page, wide, broken, plots,
                                    viewport: !!document.querySelector('meta[name=viewport]'),
                                    alts: [...document.images].map(i => i.alt)});
  document.body.appendChild(out);
});</script>"""


@pytest.mark.parametrize("width", [1280, 390])
def test_report_renders_in_headless_chromium(run_dir, tmp_path, width):
    """At 1280 px and on a phone's 390 nothing runs off the page (a wide table scrolls in its own box),
    no number or id is broken over two lines, every plot is drawn at its own size or shrunk to fit and
    says in words what it shows; at 1280 the slice plots and parallel coordinates are wide enough to read."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium found: .ci/run installs Debian's `chromium` (apt-get) where it can")
    shot = tmp_path / "report.png"
    proc = _browse(browser, run_dir / "report.html", tmp_path, f"--screenshot={shot}", width=width)
    assert shot.is_file(), proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.std() > 0.05  # not a blank page
    page = tmp_path / "measured.html"
    page.write_text((run_dir / "report.html").read_text().replace("</body>", MEASURE + "</body>"))
    dom = _browse(browser, page, tmp_path, "--dump-dom", "--virtual-time-budget=5000", width=width).stdout
    found = re.search(r"<pre id=\"measured\">(.*?)</pre>", dom, re.S)
    assert found, dom[-2000:]
    measured = json.loads(html.unescape(found.group(1)))
    assert measured["scroll"] <= measured["client"] and not measured["wide"], measured
    assert measured["broken"] == [], measured["broken"]
    assert measured["viewport"] and all(len(alt.split()) >= 8 for alt in measured["alts"]), measured["alts"]
    plots = measured["plots"]
    assert set(FIGURES) <= set(plots), plots
    assert all(shown <= natural for shown, natural in plots.values()), plots
    if width == 1280:
        assert plots["params"][0] >= 900 and plots["parallel"][0] >= 700, plots  # not thumbnails


def test_the_use_this_model_code_scores_as_hpsearch_predict_does(run_dir, tmp_path):
    """The report's code for this run, run as written in a fresh process, gives predict's probabilities."""
    import sys

    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    code = re.search(r"```python\n(.*?)```", (run_dir / "report.md").read_text(), re.S).group(1)
    assert f'run = "{run_dir}"' in code and "safe_mode=True" in code
    load_breast_cancer(as_frame=True).frame.drop(columns=["target"]).head(25).to_csv(tmp_path / "new.csv",
                                                                                      index=False)
    (tmp_path / "use.py").write_text(code + "\nassert 'search' not in sys.modules  # hpsearch is not needed\n"
                                     "print(json.dumps([float(p) for p in probability]))\n")
    ran = subprocess.run([sys.executable, "use.py"], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stderr[-2000:]
    predicted = CliRunner().invoke(app, ["predict", str(run_dir), str(tmp_path / "new.csv"),
                                         "--out", str(tmp_path / "p.csv")])
    assert predicted.exit_code == 0, predicted.output
    expected = pd.read_csv(tmp_path / "p.csv")["probability"].to_numpy()
    assert json.loads(ran.stdout.strip().splitlines()[-1]) == pytest.approx(expected.tolist(), abs=2e-6)


def test_the_report_renders_without_ray_or_keras(run_dir, tmp_path):
    """The report reads only the run folder: rebuilding it loads neither Ray nor a Keras backend."""
    import sys

    copy = tmp_path / "bc"
    shutil.copytree(run_dir, copy)
    for name in ("report.html", "report.md", "report.json"):
        (copy / name).unlink()
    script = ("import sys; from search.report.content import render_report; render_report(sys.argv[1]); "
              "heavy = {m.split('.')[0] for m in sys.modules} & {'ray', 'keras', 'tensorflow', 'jax'}; "
              "seam = sorted(m for m in sys.modules if m in ('search.tuning.tuner', 'search.tuning.trainable', 'search.selection.cv', "
              "'search.cluster.session', 'search.tuning.callbacks', 'search.selection.final_fit')); print(sorted(heavy), seam)")
    proc = subprocess.run([sys.executable, "-c", script, str(copy)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[] []"
    assert (copy / "report.html").is_file() and "<h2>Test part</h2>" in (copy / "report.html").read_text()
