"""Bad input: one line, naming the problem and the fix, exit 2, no traceback, nothing in results/."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from search.cli.commands import app


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


def invoke(args: list[str], results: Path):
    result = CliRunner().invoke(app, ["run", *args, "--results", str(results)])
    return result


CASES = {
    "missing file": (["nowhere.csv"], r"data file nowhere.csv not found"),
    "empty file": (["{empty}"], r"is empty"),
    "a directory": (["{dir}"], r"is not a file"),
    "unparsable parquet": (["{garbage}"], r"cannot be read as Parquet"),
    "unknown target": (["{csv}", "--target", "nope"], r"target column 'nope' not found"),
    "one class": (["{one_class}", "--target", "y"], r"exactly 2 classes, found 1"),
    "three classes": (["{three}", "--target", "y"], r"found 3: a \(4\), b \(4\), c \(4\)"),
    "too few of a class": (["{rare}", "--target", "y"], r"class 1 has only 2 rows"),
    "no feature": (["{only_target}", "--target", "y"], r"no feature column"),
    "malformed space": (["{csv}", "--target", "label", "--space", "{bad_space}"], r"params.depth: low must be below high"),
    "unknown metric": (["{csv}", "--target", "label", "--metric", "auc"], r"--metric: unknown metric 'auc'; choose one of roc_auc"),
    "zero samples": (["{csv}", "--target", "label", "--samples", "0"], r"--samples: input should be greater than or equal to 1, got 0"),
    "unknown positive": (["{csv}", "--target", "label", "--positive", "maybe"], r"--positive maybe: not a label"),
    "unknown drop": (["{csv}", "--target", "label", "--drop", "ghost"], r"--drop ghost: no such column"),
    "bad name": (["{csv}", "--target", "label", "--name", "../up"], r"--name: '../up' is not a plain folder name"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line_and_leaves_nothing(case, tmp_path, mixed_csv, results):
    files = {
        "csv": mixed_csv,
        "empty": tmp_path / "empty.csv",
        "dir": tmp_path,
        "garbage": tmp_path / "garbage.parquet",
        "one_class": tmp_path / "one.csv",
        "three": tmp_path / "three.csv",
        "rare": tmp_path / "rare.csv",
        "only_target": tmp_path / "only.csv",
        "bad_space": tmp_path / "bad.yaml",
    }
    files["empty"].write_text("")
    files["garbage"].write_bytes(b"\x00\x01not parquet at all")
    files["one_class"].write_text("a,y\n" + "".join(f"{i},k\n" for i in range(10)))
    files["three"].write_text("a,y\n" + "".join(f"{i},{'abc'[i % 3]}\n" for i in range(12)))
    files["rare"].write_text("a,y\n" + "".join(f"{i},{int(i < 2)}\n" for i in range(40)))
    files["only_target"].write_text("y\n0\n1\n")
    files["bad_space"].write_text("params:\n  depth: {type: int, low: 3, high: 1}\n")
    args, pattern = CASES[case]
    args = [a.format(**files) for a in args]
    result = invoke(args, results)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert not results.exists() or not any(results.iterdir())


def test_an_existing_run_name_is_refused(mixed_csv, results):
    (results / "taken").mkdir(parents=True)
    result = invoke([str(mixed_csv), "--target", "label", "--name", "taken"], results)
    assert result.exit_code == 2
    assert "exists already. Choose another --name" in result.output
    assert sorted(p.name for p in results.iterdir()) == ["taken"]


def test_runs_lists_a_damaged_or_foreign_folder_and_goes_on(tmp_path):
    root = tmp_path / "results"
    (root / "foreign").mkdir(parents=True)  # no spec.json: someone else's folder
    (root / "cut").mkdir()
    (root / "cut" / "spec.json").write_text('{"name": "cut", "options": {')  # cut short
    (root / "odd").mkdir()
    (root / "odd" / "spec.json").write_text('{"name": "odd"}')  # valid JSON, not a run's
    result = CliRunner().invoke(app, ["runs", "--results", str(root)])
    assert result.exit_code == 0, result.output
    for name in ("foreign", "cut", "odd"):
        assert name in result.output
    assert result.output.count("damaged or not a run") == 3


def test_a_remote_results_uri_stages_in_a_folder_of_this_process_only():
    import os

    from search.spec import RunSpec

    root = RunSpec(results="file:///tmp/elsewhere").results_root()
    assert root.name == f"hpsearch-staging-{os.getpid()}"


@pytest.mark.slow
def test_more_cpus_per_trial_than_the_machine_has_is_refused_on_one_line(tmp_path, mixed_csv):
    """Ray would queue such a trial forever (the run hung until it was killed)."""
    from tests.conftest import run_cli

    proc = run_cli(["run", str(mixed_csv), "--target", "label", "--cpus", "2", "--cpus-per-trial", "64",
                    "--samples", "2", "--max-epochs", "2", "--results", str(tmp_path / "out"), "--name", "big"],
                   cwd=tmp_path, timeout=180)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --cpus-per-trial 64: this machine's Ray has 2 CPUs")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_resume_refuses_a_run_folder_others_can_write(tmp_path):
    """``resume`` unpickles Ray Tune's state from the folder: it must be the user's own."""
    import os

    from tests.conftest import run_cli

    partial = tmp_path / "out" / ".shared.partial"
    (partial / "tune").mkdir(parents=True)
    (partial / "tune" / "tuner.pkl").write_bytes(b"not to be loaded")
    os.chmod(partial / "tune" / "tuner.pkl", 0o666)
    proc = run_cli(["resume", str(tmp_path / "out" / "shared")], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "tuner.pkl is writable by others" in proc.stderr and "chmod -R go-w" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_name_in_use_is_refused_and_its_folder_left_alone(tmp_path, mixed_csv):
    """Two runs with one --name deleted each other's partial folder; now the second is refused."""
    root = tmp_path / "results"
    running = root / ".twin.partial"
    running.mkdir(parents=True)
    (running / "spec.json").write_text("{}")
    result = CliRunner().invoke(app, ["run", str(mixed_csv), "--target", "label", "--results", str(root),
                                      "--name", "twin", "--quiet"])
    assert result.exit_code == 2
    assert "--name twin: a run of that name is running or was interrupted" in result.output
    assert (running / "spec.json").read_text() == "{}"


def test_default_names_made_in_the_same_second_are_unique(tmp_path):
    from search.run_folder.writing import start_run

    first, _ = start_run(tmp_path, "data-20261201T120000", chosen=True)
    second, final = start_run(tmp_path, "data-20261201T120000", chosen=True)
    assert first.name == ".data-20261201T120000.partial" and second.name == ".data-20261201T120000-2.partial"
    assert final.name == "data-20261201T120000-2" and first.is_dir() and second.is_dir()
