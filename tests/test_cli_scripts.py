"""What scripts rely on: --version, shell completion, RAY_ADDRESS, choices in --help."""

from __future__ import annotations

from importlib.metadata import version

from tests.conftest import run_cli


def test_version_prints_the_installed_version(tmp_path):
    proc = run_cli(["--version"], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"hpsearch {version('hpsearch')}"


def test_completion_scripts_for_bash_and_zsh_and_their_answers(tmp_path):
    for shell, marker in (("bash", "complete -o default -F _hpsearch_completion hpsearch"),
                          ("zsh", "#compdef hpsearch")):
        script = run_cli([], cwd=tmp_path, env={"_HPSEARCH_COMPLETE": f"source_{shell}"})
        assert script.returncode == 0 and marker in script.stdout, (shell, script.stdout, script.stderr)
    answer = run_cli([], cwd=tmp_path, env={"_HPSEARCH_COMPLETE": "complete_bash", "COMP_WORDS": "hpsearch re",
                                            "COMP_CWORD": "1"})
    assert set(answer.stdout.split()) == {"resume", "retrain", "report"}, answer.stdout


def test_ray_address_is_the_default_address_as_for_rays_own_cli(tmp_path):
    proc = run_cli(["status", "raysubmit_x"], cwd=tmp_path, env={"RAY_ADDRESS": "http://127.0.0.1:9"})
    assert proc.returncode == 2 and proc.stderr.startswith("error: --address http://127.0.0.1:9"), proc.stderr
    assert "RAY_ADDRESS" in run_cli(["run", "--help"], cwd=tmp_path).stdout


def test_help_lists_the_choices(tmp_path):
    text = run_cli(["run", "--help"], cwd=tmp_path).stdout
    for choices in ("[roc_auc|accuracy|f1|log_loss]", "[random|optuna]", "[jax|tensorflow]",
                    "[auto|balanced|none]", "[auto|youden|accuracy|f1]"):
        assert choices in text, choices
    assert "<str>" not in text.split("--metric")[1].split("\n")[0]


WARNINGS_CHECK = """
import warnings
from search.cli.app import quiet_libraries
quiet_libraries(import_keras=False)
warnings.warn_explicit("a library's notice", DeprecationWarning, "ops.py", 1, module="tensorflow.python.ops")
warnings.warn_explicit("a library's notice", FutureWarning, "base.py", 1, module="sklearn.base")
warnings.warn("the user's own warning", UserWarning)
"""


def test_the_cli_silences_the_libraries_warnings_not_the_users(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-W", "always", "-c", WARNINGS_CHECK], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "the user's own warning" in proc.stderr and "a library's notice" not in proc.stderr
